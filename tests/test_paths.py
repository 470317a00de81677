"""The containment helper: every path from untrusted input resolves inside its root, or is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from adversarial.permissions import mode_bits_bind
from hypothesis import given
from hypothesis import strategies as st

from llava_mixes.errors import PathEscapeError
from llava_mixes.paths import Skipped, check_file_name, contained, walk_files


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/ with a file, a sub-folder, a link inside, links out, a dangling link and a loop; a secret beside."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "a.jpg").write_bytes(b"a")
    (root / "sub" / "b.jpg").write_bytes(b"b")
    (tmp_path / "secret.txt").write_text("secret")
    (root / "inside.jpg").symlink_to(root / "sub" / "b.jpg")
    (root / "out.jpg").symlink_to(tmp_path / "secret.txt")
    (root / "outdir").symlink_to(tmp_path)
    (root / "dangling.jpg").symlink_to(root / "nothing.jpg")
    (root / "loop1").symlink_to(root / "loop2")
    (root / "loop2").symlink_to(root / "loop1")
    return root


def test_a_file_inside_resolves(tree: Path) -> None:
    assert contained(tree, "a.jpg") == (tree / "a.jpg").resolve()
    assert contained(tree, "sub/../a.jpg") == (tree / "a.jpg").resolve()
    assert contained(tree, "inside.jpg") == (tree / "sub" / "b.jpg").resolve()


@pytest.mark.parametrize(
    ("written", "words"),
    [
        ("../secret.txt", "leads outside"),
        ("/etc/hostname", "leads outside"),
        ("/proc/self/environ", "leads outside"),
        ("out.jpg", "leads outside"),
        ("outdir/secret.txt", "leads outside"),
        ("dangling.jpg", "not found"),
        ("missing.jpg", "not found"),
        ("loop1", "cannot be resolved"),
    ],
)
def test_escapes_dangling_links_and_loops_are_refused_with_the_path_named(
    tree: Path, written: str, words: str
) -> None:
    with pytest.raises(PathEscapeError, match=words) as caught:
        contained(tree, written, what="picture")
    assert written in str(caught.value) and str(caught.value).startswith("picture ")


def test_walk_lists_files_once_and_names_what_it_skips(tree: Path) -> None:
    skipped: list[Skipped] = []
    files = list(walk_files(tree, on_skip=skipped.append))
    assert files == [(tree / "a.jpg").resolve(), (tree / "sub" / "b.jpg").resolve()]
    reasons = {entry.path.name: entry.reason for entry in skipped}
    assert set(reasons) == {"out.jpg", "outdir", "dangling.jpg", "loop1", "loop2"}
    assert reasons["dangling.jpg"] == "dangling symbolic link"
    assert reasons["out.jpg"].startswith("leads outside")


def test_walk_survives_a_folder_linked_into_itself(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"x")
    (tmp_path / "a" / "again").symlink_to(tmp_path / "a")
    assert list(walk_files(tmp_path, keep=lambda name: name.endswith(".png"))) == [(tmp_path / "a" / "x.png")]


def test_walk_skips_an_unreadable_folder_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "closed").mkdir()
    (tmp_path / "closed").chmod(0)
    skipped: list[Skipped] = []
    try:
        with mode_bits_bind():  # as root too (CI runs as root): the folder's mode binds
            assert list(walk_files(tmp_path, on_skip=skipped.append)) == []
    finally:
        (tmp_path / "closed").chmod(0o755)
    assert [entry.path.name for entry in skipped] == ["closed"]


_SEGMENT = st.sampled_from(["..", ".", "a.jpg", "sub", "b.jpg", "out.jpg", "outdir", "loop1", "", "/", "x"])


@given(parts=st.lists(_SEGMENT, max_size=6), absolute=st.booleans())
def test_whatever_is_written_the_answer_lies_inside_the_root_or_is_refused(
    tmp_path_factory: pytest.TempPathFactory, parts: list[str], absolute: bool
) -> None:
    root = _tree_once(tmp_path_factory)
    written = ("/" if absolute else "") + "/".join(parts)
    try:
        resolved = contained(root, written)
    except PathEscapeError:
        return
    assert resolved == root or root in resolved.parents
    assert resolved.exists()


_TREES: dict[str, Path] = {}


def _tree_once(factory: pytest.TempPathFactory) -> Path:
    if "root" not in _TREES:
        base = factory.mktemp("contained")
        root = base / "root"
        (root / "sub").mkdir(parents=True)
        (root / "a.jpg").write_bytes(b"a")
        (root / "sub" / "b.jpg").write_bytes(b"b")
        (base / "secret.txt").write_text("secret")
        (root / "out.jpg").symlink_to(base / "secret.txt")
        (root / "outdir").symlink_to(base)
        (root / "loop1").symlink_to(root / "loop1")
        _TREES["root"] = root.resolve()
    return _TREES["root"]


@pytest.mark.parametrize("name", ["llava-en-all", "mix665k+zh600k", "a.b_c=1", "x" * 200])
def test_plain_names_are_file_names(name: str) -> None:
    assert check_file_name(name, "recipe name") == name


@pytest.mark.parametrize(
    "name", ["x/../../../../ESC", "../ESC", "/abs", ".hidden", "a..b", "", "a\\b", "a\x00b", "x" * 201, None, 3]
)
def test_names_that_would_leave_their_folder_are_refused(name: object) -> None:
    with pytest.raises(PathEscapeError, match="recipe name"):
        check_file_name(name, "recipe name")


@given(st.text(max_size=40))
def test_an_accepted_name_is_one_path_component(name: str) -> None:
    try:
        check_file_name(name, "name")
    except PathEscapeError:
        return
    assert Path(name).name == name and name not in (".", "..") and os.sep not in name
