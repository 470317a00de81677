"""Property tests of what export parses: a published copy's image structs and `image_path`s, its manifest, and the
values of the `export` and `report` flags. Random and mutated inputs give the right result or the project's own
error (`LlavaMixesError`, or argparse's exit 2), never a read outside the copy or a write outside the output."""

from __future__ import annotations

import contextlib
import io
import json
import os
import posixpath
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from published_copy import CONFIG, image_row, picture, sha256, tiny_copy

from llava_mixes import schema
from llava_mixes.cli.main import main
from llava_mixes.errors import ConfigError, LlavaMixesError
from llava_mixes.exporters.pictures import (
    IMAGE_CHECKSUM_MISMATCH,
    PICTURE_NOT_STORED,
    PICTURE_OUTSIDE_COPY,
    PICTURE_TOO_LARGE,
    Missing,
    Pictures,
    clean_relative,
)
from llava_mixes.exporters.published import MANIFEST, config_shards, read_published
from llava_mixes.outputs import output_folder
from llava_mixes.report.write import report_folder

SECRET = b"HF_TOKEN=hf_property_secret"
GOOD = picture("orange")
REASONS = {
    PICTURE_OUTSIDE_COPY,
    PICTURE_NOT_STORED,
    IMAGE_CHECKSUM_MISMATCH,
    PICTURE_TOO_LARGE,
    schema.MISSING_IMAGE,
    schema.UNDECODABLE_IMAGE,
    schema.UNREADABLE_IMAGE,
}


@given(st.text(max_size=300))
def test_a_clean_relative_path_stays_inside_any_folder(text: str) -> None:
    clean = clean_relative(text)
    if clean is None:
        return
    assert not clean.startswith("/") and "\0" not in clean
    assert posixpath.normpath(posixpath.join("/root", clean)).startswith("/root/")
    assert all(part not in ("", ".", "..") and not part.startswith(".") for part in clean.split("/"))


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    """A copy folder with a good picture, a link out and a loop; a secret beside it; the user's image folder."""
    copy, folder = tmp_path / "copy", tmp_path / "original"
    (copy / "pics").mkdir(parents=True)
    (folder / "coco").mkdir(parents=True)
    (copy / "pics" / "ok.png").write_bytes(GOOD)
    (tmp_path / "secret.txt").write_bytes(SECRET)
    (copy / "pics" / "out.png").symlink_to(tmp_path / "secret.txt")
    (copy / "pics" / "loop.png").symlink_to(copy / "pics" / "loop.png")
    (folder / "coco" / "x.png").write_bytes(GOOD)
    return {"root": tmp_path, "copy": copy, "folder": folder, "secret": tmp_path / "secret.txt"}


PATHS = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "/proc/self/environ",
            "/etc/hostname",
            "../secret.txt",
            "pics/ok.png",
            "pics/out.png",
            "pics/loop.png",
            "/etc",
        ]
    ),
    st.text(max_size=40),
)
DATA = st.one_of(st.none(), st.just(GOOD), st.just(SECRET), st.binary(max_size=64))
SHAS = st.one_of(st.none(), st.just(sha256(GOOD)), st.just(sha256(SECRET)), st.text(max_size=70))
IMAGE_PATHS = st.one_of(
    st.none(), st.sampled_from(["coco/x.png", "../../x.png", "by-sha256/a.png"]), st.text(max_size=40)
)


@settings(max_examples=60)
@given(path=PATHS, data=DATA, sha=SHAS, image_path=IMAGE_PATHS, with_folder=st.booleans(), hub=st.booleans())
def test_an_untrusted_picture_is_used_only_from_the_copy_and_only_when_it_checks_out(
    layout: dict[str, Path], path: Any, data: Any, sha: Any, image_path: Any, with_folder: bool, hub: bool
) -> None:
    images = layout["root"] / "images"
    pictures = Pictures(
        layout["folder"] if with_folder else None,
        images,
        files_from=None if hub else layout["copy"],
        untrusted=True,
    )
    row = {schema.ID: "r", schema.IMAGE: {"path": path, "bytes": data}, schema.IMAGE_PATH: image_path}
    row[schema.IMAGE_SHA256] = sha
    try:
        placed = pictures.place(row)
    except LlavaMixesError:
        return
    if placed is None:
        assert data is None and image_path is None and not path
    elif isinstance(placed, Missing):
        assert placed.reason in REASONS
    else:
        real = os.path.realpath(placed)
        allowed = [os.path.realpath(images)] + ([os.path.realpath(layout["folder"])] if with_folder else [])
        assert any(real.startswith(folder + os.sep) for folder in allowed)
        assert Path(placed).read_bytes() == GOOD
    for file in images.rglob("*") if images.exists() else []:
        assert not file.is_file() or file.read_bytes() == GOOD


def _mutate(value: Any, draw: st.DrawFn) -> Any:
    """The manifest with one value somewhere replaced by a random JSON value, or one key deleted."""
    if isinstance(value, dict) and value and draw(st.integers(0, 3)):
        key = draw(st.sampled_from(sorted(value, key=str)))
        copied = dict(value)
        if draw(st.booleans()):
            del copied[key]
        else:
            copied[key] = _mutate(value[key], draw)
        return copied
    if isinstance(value, list) and value and draw(st.integers(0, 3)):
        index = draw(st.integers(0, len(value) - 1))
        return [*value[:index], _mutate(value[index], draw), *value[index + 1 :]]
    return draw(JSON)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return tiny_copy(tmp_path / "tiny", [image_row(0, GOOD), image_row(1, picture("navy"))], config=CONFIG)


@settings(max_examples=60)
@given(data=st.data())
def test_a_mutated_manifest_names_only_shards_in_the_copy_or_is_refused(tiny: Path, data: st.DataObject) -> None:
    manifest = json.loads((tiny / MANIFEST).read_text())
    mutated = _mutate(manifest, data.draw)
    try:
        shards, rows, _ = config_shards(mutated, CONFIG, str(tiny))
    except LlavaMixesError:
        return
    assert rows is None or rows >= 0
    for shard in shards:
        assert not shard.path.startswith("/") and ".." not in shard.path.split("/")
        assert len(shard.sha256) == 64 and shard.size >= 0


@settings(max_examples=30)
@given(edit=st.binary(max_size=8), at=st.integers(0, 4000))
def test_a_manifest_with_bytes_changed_reads_or_is_refused(tiny: Path, edit: bytes, at: int) -> None:
    original = (tiny / MANIFEST).read_bytes()
    at = min(at, len(original))
    (tiny / MANIFEST).write_bytes(original[:at] + edit + original[at + len(edit) :])
    try:
        published = read_published(tiny, CONFIG)
    except LlavaMixesError:
        return
    finally:
        (tiny / MANIFEST).write_bytes(original)
    assert len(published.dataset) == 2


NAMES = st.one_of(
    st.text(max_size=30).filter(lambda text: not text.startswith(("/", "-"))),
    st.sampled_from(["", ".", "..", "file.txt", "file.txt/sub", "link-out", "loop", "\0", "a" * 300]),
)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder with a file, a link that leads out of it and a loop: relative flag values land here."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "file.txt").write_text("mine")
    (work / "link-out").symlink_to(tmp_path)
    (work / "loop").symlink_to(work / "loop")
    monkeypatch.chdir(work)
    return work


@given(name=NAMES)
def test_an_output_folder_value_is_a_folder_or_one_clear_error(workdir: Path, name: str) -> None:
    for check in (lambda: output_folder(name, "out", {"data_dir": workdir / "file.txt"}), lambda: report_folder(name)):
        try:
            folder = check()
        except ConfigError:
            continue
        assert folder.is_absolute() and (folder.is_dir() or not folder.exists())
    assert (workdir / "file.txt").read_text() == "mine"


FLAG_VALUES = st.one_of(NAMES, st.sampled_from(["O", "O/images", "../outside", "tiny", "tiny/mix665k-dedup-0.8"]))


@settings(max_examples=25)
@given(
    out=FLAG_VALUES,
    images_dir=st.none() | FLAG_VALUES,
    fmt=st.sampled_from(["llava", "llamafactory", "swift", "jsonl"]) | st.text(max_size=8),
    revision=st.none() | st.sampled_from(["v1.0.0", "1.0.0", "v9"]) | st.text(max_size=8),
    image_folder=st.none() | FLAG_VALUES,
    name=st.none() | st.text(max_size=12),
)
def test_export_flag_values_give_an_export_or_exit_2(
    tiny: Path,
    workdir: Path,
    out: str,
    images_dir: str | None,
    fmt: str,
    revision: str | None,
    image_folder: str | None,
    name: str | None,
) -> None:
    if not os.path.lexists(workdir / "tiny"):
        (workdir / "tiny").symlink_to(tiny)
    before = {path: path.read_bytes() for path in tiny.rglob("*") if path.is_file()}
    argv = ["export", CONFIG, "--from", "tiny", "--format", fmt, "--out", out]
    for flag, value in (("--images-dir", images_dir), ("--revision", revision)):
        argv += [flag, value] if value is not None else []
    argv += ["--image-folder", image_folder] if image_folder is not None else []
    argv += ["--name", name] if name is not None else []
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
    except SystemExit as stop:
        code = stop.code
    assert code in (0, 2)
    assert {path: path.read_bytes() for path in tiny.rglob("*") if path.is_file()} == before
    assert not (workdir.parent / "secret.txt").exists()
