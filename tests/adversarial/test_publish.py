"""Publishing attacked as a hostile or careless user would: the target folder's own files (links out, files and
folders in the way, edited shards, a read-only folder, a full disk), its manifest, journal, staging folders and
lock file, the card's YAML that check-repo reads, a Hub repo's manifest and tree, and the publish flags.

What publishing reads, each row attacked below:
- the --local-dir folder: every file and link in it, `llava_mixes_manifest.json`, `README.md`,
  `.llava_mixes-commit.json` (the journal), `.llava_mixes-staging-*` folders and `.llava_mixes.lock`;
- a Hub repo: its tree (file list), its manifest at the head of the branch;
- check-repo: the same folder, the card's front matter and `data_files` patterns, every recorded shard;
- flags: --version, --repo, --branch, --max-shard-size, --local-dir against --data-dir, the token.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import fsspec.implementations.local
import pytest
from fake_hub import EMPTY_SHA, RecordingHubApi
from huggingface_hub import CommitOperationDelete
from huggingface_hub.utils import validate_repo_id
from hypothesis import given
from hypothesis import strategies as st
from permissions import mode_bits_bind

from llava_mixes.building.entry import Built, build
from llava_mixes.cli.main import main
from llava_mixes.errors import ConfigError, LlavaMixesError, PathEscapeError, PublishError
from llava_mixes.paths import check_file_name
from llava_mixes.playground.layout import Playground, write_playground
from llava_mixes.publish.check_repo import check_repo
from llava_mixes.publish.front_matter import read_front_matter
from llava_mixes.publish.local import JOURNAL_FILE, LOCK_FILE, LocalRepo
from llava_mixes.publish.manifest import MANIFEST_FILE, VERSION_PATTERN, parse_manifest, version_key
from llava_mixes.publish.parquet import MIN_SHARD_BYTES, parse_shard_size
from llava_mixes.publish.publish import CARD_FILE, PublishResult, check_arguments, publish, read_manifest
from llava_mixes.publish.repos import STAGING_PREFIX, HubRepo

FEATURE = "publish"

REPO = "demo/llava_mixes"
CONFIG = "mix665k"
TRAIN = f"{CONFIG}/train-00000-of-00001.parquet"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """mix665k built once for the module, in its own caches."""
    folder = tmp_path_factory.mktemp("publish_built")
    playground = write_playground(folder / "playground")
    return build(CONFIG, str(playground.root), str(folder / "hf"), content_cache_dir=str(folder / "cc"))


def local(built: Built, out: Path, version: str = "1.0.0", **kwargs: Any) -> PublishResult:
    target = LocalRepo(out)
    target.open()
    return publish([built], target, REPO, version, **kwargs)


def tree(folder: Path) -> dict[str, bytes]:
    """Every regular file under `folder` (links not followed) and its bytes."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }


def manifest(out: Path) -> dict[str, Any]:
    return json.loads((out / MANIFEST_FILE).read_text())


def write_manifest(out: Path, data: Any) -> None:
    (out / MANIFEST_FILE).write_text(json.dumps(data))


@pytest.fixture
def released(built: Built, tmp_path: Path) -> Path:
    """A folder holding release 1.0.0 of mix665k (one shard per split)."""
    out = tmp_path / "D"
    local(built, out)
    return out


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file outside every folder a publish is given."""
    path = tmp_path / "secret.txt"
    path.write_text("TOPSECRET")
    return path


# The folder's own files


@pytest.mark.adversarial("error")
def test_a_config_folder_that_links_out_is_refused(built: Built, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "D"
    out.mkdir()
    (out / CONFIG).symlink_to(outside, target_is_directory=True)
    with pytest.raises(PathEscapeError, match="leads outside"):
        local(built, out)
    assert list(outside.iterdir()) == []
    assert not (out / MANIFEST_FILE).exists()


@pytest.mark.adversarial("correct")
def test_a_card_replaced_by_a_link_out_is_replaced_not_written_through(
    built: Built, released: Path, secret: Path
) -> None:
    (released / CARD_FILE).unlink()
    (released / CARD_FILE).symlink_to(secret)
    local(built, released, "1.1.0", max_shard_size="20KB")
    assert secret.read_text() == "TOPSECRET"
    assert not (released / CARD_FILE).is_symlink() and check_repo(released) == []


@pytest.mark.adversarial("error")
def test_a_manifest_that_links_out_is_not_read(built: Built, released: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.json"
    copy.write_bytes((released / MANIFEST_FILE).read_bytes())
    (released / MANIFEST_FILE).unlink()
    (released / MANIFEST_FILE).symlink_to(copy)
    with pytest.raises(PathEscapeError, match="leads outside"):
        local(built, released, "1.1.0")
    assert any("leads outside" in problem for problem in check_repo(released))


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_a_manifest_that_is_no_regular_file_is_refused_at_once(built: Built, tmp_path: Path, kind: str) -> None:
    out = tmp_path / "D"
    out.mkdir()
    if kind == "fifo":
        os.mkfifo(out / MANIFEST_FILE)
    else:
        (out / MANIFEST_FILE).mkdir()
    started = time.monotonic()
    with pytest.raises(PublishError, match="not a regular file"):
        local(built, out)
    assert time.monotonic() - started < 10


@pytest.mark.adversarial("error")
def test_a_recorded_shard_replaced_by_a_link_out_is_reported_and_never_deleted(
    built: Built, released: Path, secret: Path
) -> None:
    (released / TRAIN).unlink()
    (released / TRAIN).symlink_to(secret)
    assert any(TRAIN in problem and "outside" in problem for problem in check_repo(released))
    with pytest.raises(PublishError, match="not the file llava-mixes wrote there"):
        local(built, released, "1.1.0", max_shard_size="20KB")
    assert secret.read_text() == "TOPSECRET" and (released / TRAIN).is_symlink()


@pytest.mark.adversarial("correct")
def test_a_shard_with_flipped_bits_fails_check_repo(released: Path) -> None:
    data = bytearray((released / TRAIN).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (released / TRAIN).write_bytes(bytes(data))
    assert [problem for problem in check_repo(released) if problem.startswith(TRAIN)] == [
        f"{TRAIN}: its SHA-256 differs from the manifest's; the file is damaged or replaced"
    ]


@pytest.mark.adversarial("error")
def test_a_recorded_shard_the_user_edited_is_not_deleted(built: Built, released: Path) -> None:
    (released / TRAIN).write_bytes(b"my edit")
    with pytest.raises(PublishError, match=f"{TRAIN} is not the file llava-mixes wrote there"):
        local(built, released, "1.1.0", max_shard_size="20KB")
    assert (released / TRAIN).read_bytes() == b"my edit"
    assert [release["version"] for release in manifest(released)["versions"]] == ["1.0.0"]


@pytest.mark.adversarial("error")
def test_an_unrecorded_file_the_card_would_load_is_refused_not_deleted(built: Built, released: Path) -> None:
    (released / CONFIG / "train-extra.parquet").write_bytes(b"not ours")
    assert any("train-extra.parquet: not recorded in the manifest" in p for p in check_repo(released))
    with pytest.raises(PublishError, match=r"train-extra\.parquet, which the card's data_files would load"):
        local(built, released, "1.1.0", max_shard_size="20KB")
    assert (released / CONFIG / "train-extra.parquet").read_bytes() == b"not ours"


@pytest.mark.adversarial("error")
def test_a_file_where_a_config_folder_goes_is_refused(built: Built, tmp_path: Path) -> None:
    out = tmp_path / "D"
    out.mkdir()
    (out / CONFIG).write_text("a file")
    with pytest.raises(PublishError, match="is a file where the release needs a folder"):
        local(built, out)
    assert (out / CONFIG).read_text() == "a file" and not (out / MANIFEST_FILE).exists()


@pytest.mark.adversarial("error")
def test_a_folder_where_a_shard_goes_is_refused_and_the_commit_finished_once_it_is_moved(
    built: Built, tmp_path: Path
) -> None:
    out = tmp_path / "D"
    (out / TRAIN).mkdir(parents=True)
    with pytest.raises(PublishError, match="is a folder where the release writes the file"):
        local(built, out)
    (out / TRAIN).rmdir()
    assert not local(built, out).changed  # the journal's commit was finished: 1.0.0 is there
    assert check_repo(out) == []


@pytest.mark.adversarial("error")
def test_a_read_only_folder_is_one_error_and_the_release_stays(built: Built, released: Path) -> None:
    before = tree(released)
    folders = [released, *(path for path in released.rglob("*") if path.is_dir())]
    for folder in folders:
        folder.chmod(0o555)
    try:
        with mode_bits_bind(), pytest.raises(PublishError, match="writable"):
            local(built, released, "1.1.0", max_shard_size="20KB")
    finally:
        for folder in folders:
            folder.chmod(0o755)
    assert tree(released) == before


@pytest.mark.adversarial("error")
def test_a_new_folder_that_cannot_be_written_is_one_error(built: Built, tmp_path: Path) -> None:
    out = tmp_path / "D"
    out.mkdir()
    out.chmod(0o555)
    try:
        with mode_bits_bind(), pytest.raises(PublishError, match="writable"):
            local(built, out)
    finally:
        out.chmod(0o755)
    assert os.listdir(out) == []


@pytest.mark.adversarial("error")
def test_a_full_disk_while_writing_shards_is_one_error_and_the_release_stays(
    built: Built, released: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = tree(released)

    def full(self: object, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), getattr(self, "path", None))

    monkeypatch.setattr(fsspec.implementations.local.LocalFileOpener, "write", full, raising=False)
    with pytest.raises(PublishError, match="No space left on device"):
        local(built, released, "1.1.0", max_shard_size="20KB")
    assert tree(released) == before
    assert not [name for name in os.listdir(released) if name.startswith(STAGING_PREFIX)]


@pytest.mark.adversarial("error")
def test_a_full_disk_while_writing_the_journal_is_one_error_and_the_release_stays(
    built: Built, released: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = tree(released)

    def full(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(PublishError, match="No space left on device"):
        local(built, released, "1.1.0", max_shard_size="20KB")
    monkeypatch.undo()
    assert tree(released) == before
    assert [name for name in os.listdir(released) if name.startswith(".")] == [LOCK_FILE]
    assert check_repo(released) == []


# Concurrent and interrupted publishes


@pytest.mark.adversarial("correct")
def test_two_publishes_of_the_same_version_at_once_write_it_once(built: Built, tmp_path: Path) -> None:
    out = tmp_path / "D"
    results: list[PublishResult] = []
    threads = [threading.Thread(target=lambda: results.append(local(built, out))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(result.changed for result in results) == [False, True]
    assert [release["version"] for release in manifest(out)["versions"]] == ["1.0.0"]
    assert check_repo(out) == []


@pytest.mark.adversarial("error")
def test_a_second_content_for_a_version_published_meanwhile_is_refused(built: Built, released: Path) -> None:
    with pytest.raises(PublishError, match="already exists with different content"):
        local(built, released, "1.0.0", max_shard_size="20KB")
    assert check_repo(released) == []


def interrupted(built: Built, out: Path, monkeypatch: pytest.MonkeyPatch, moves: int) -> None:
    """Publish 1.1.0 (20 KB shards) into `out`, stopped like a kill after `moves` files went into place."""
    replace, done = os.replace, []

    def replace_then_stop(source: Any, target: Any) -> None:
        if STAGING_PREFIX not in os.fspath(target) and os.fspath(target).endswith(".parquet"):
            if len(done) == moves:
                raise KeyboardInterrupt
            done.append(target)
        replace(source, target)

    monkeypatch.setattr(os, "replace", replace_then_stop)
    with pytest.raises(KeyboardInterrupt):
        local(built, out, "1.1.0", max_shard_size="20KB")
    monkeypatch.undo()


@pytest.mark.adversarial("repaired")
def test_a_later_version_after_a_half_commit_finishes_it_first(
    built: Built, released: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    interrupted(built, released, monkeypatch, moves=2)
    assert (released / JOURNAL_FILE).exists() and check_repo(released) != []
    local(built, released, "1.2.0")
    assert [release["version"] for release in manifest(released)["versions"]] == ["1.0.0", "1.1.0", "1.2.0"]
    assert check_repo(released) == [] and not (released / JOURNAL_FILE).exists()


@pytest.mark.adversarial("error")
def test_a_half_commit_whose_staging_folder_is_gone_is_one_error(
    built: Built, released: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    interrupted(built, released, monkeypatch, moves=2)
    staging = json.loads((released / JOURNAL_FILE).read_text())["staging"]
    for path in (released / staging).rglob("*.parquet"):
        path.unlink()
    with pytest.raises(PublishError, match=f"neither staged in {staging} nor in place"):
        local(built, released, "1.2.0")


@pytest.mark.adversarial("error")
@pytest.mark.parametrize(
    "journal",
    [
        "{not json",
        '{"format": 1, "staging": "../../x", "message": "m", "place": [], "delete": []}',
        '{"format": 1, "staging": ".llava_mixes-staging-a", "message": "m", "place": [], '
        '"delete": [["../secret.txt", "' + "0" * 64 + '"]]}',
        "[]",
    ],
)
def test_a_damaged_or_hostile_journal_is_one_error_and_deletes_nothing(
    built: Built, released: Path, secret: Path, journal: str
) -> None:
    (released / JOURNAL_FILE).write_text(journal)
    before = tree(released)
    with pytest.raises(PublishError, match="journal of an interrupted publish, cannot be used"):
        local(built, released, "1.1.0")
    assert tree(released) == before and secret.read_text() == "TOPSECRET"


@pytest.mark.adversarial("error")
def test_a_journal_that_deletes_a_users_file_is_refused(built: Built, released: Path) -> None:
    (released / CONFIG / "notes.txt").write_text("mine")
    journal = {"format": 1, "staging": ".llava_mixes-staging-a", "message": "m", "place": []}
    journal["delete"] = [[f"{CONFIG}/notes.txt", "0" * 64]]
    (released / JOURNAL_FILE).write_text(json.dumps(journal))
    with pytest.raises(PublishError, match=r"notes\.txt is not the file llava-mixes wrote there"):
        local(built, released, "1.1.0")
    assert (released / CONFIG / "notes.txt").read_text() == "mine"


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("link", ["staging folder", "staged file"])
def test_a_journal_that_would_move_a_file_in_from_outside_is_refused(
    built: Built, released: Path, secret: Path, link: str
) -> None:
    """A planted journal whose staging folder (or a file in it) links to a file outside, with its right SHA-256:
    finishing that commit would move the outside file into the tree."""
    staging = released / f"{STAGING_PREFIX}planted"
    digest = hashlib.sha256(secret.read_bytes()).hexdigest()
    if link == "staging folder":
        staging.symlink_to(secret.parent, target_is_directory=True)
        place = [[secret.name, digest]]
    else:
        staging.mkdir()
        (staging / "README.md").symlink_to(secret)
        place = [["README.md", digest]]
    journal = {"format": 1, "staging": staging.name, "message": "m", "place": place, "delete": []}
    (released / JOURNAL_FILE).write_text(json.dumps(journal))
    with pytest.raises(LlavaMixesError, match=r"link|leads outside"):
        local(built, released, "1.1.0")
    assert secret.read_text() == "TOPSECRET"


@pytest.mark.adversarial("correct")
def test_a_staging_name_that_links_out_is_never_followed(built: Built, released: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    (released / f"{STAGING_PREFIX}planted").symlink_to(outside, target_is_directory=True)
    local(built, released, "1.1.0", max_shard_size="20KB")
    assert (outside / "keep.txt").read_text() == "keep"
    assert check_repo(released) == [f"{STAGING_PREFIX}planted: left by an interrupted (or running) publish; the next "
                                    "publish removes it"]  # fmt: skip


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("kind", ["link", "folder"])
def test_a_lock_file_that_is_a_link_or_a_folder_is_refused(
    built: Built, tmp_path: Path, secret: Path, kind: str
) -> None:
    out = tmp_path / "D"
    out.mkdir()
    if kind == "link":
        (out / LOCK_FILE).symlink_to(secret)
    else:
        (out / LOCK_FILE).mkdir()
    with pytest.raises(PublishError, match="llava-mixes locks the folder with it"):
        local(built, out)
    assert secret.read_text() == "TOPSECRET"


# The manifest's content


@pytest.mark.adversarial("error")
@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda m: m["configs"][CONFIG]["files"].update({"other/x.parquet": {"sha256": "0" * 64, "size": 1}}),
         "outside its folder"),
        (lambda m: m["configs"][CONFIG].update(sources=["nowhere"]), "does not render the card"),
        (lambda m: m["versions"][-1]["configs"].update({CONFIG: "1" * 64}), "latest release"),
        (lambda m: m["versions"].append(dict(m["versions"][0])), "not lower"),
        (lambda m: m.update(default="x"), "default config 'x'"),
        (lambda m: m["configs"][CONFIG]["splits"]["train"].update(num_examples=-3), "num_examples"),
        (lambda m: m["configs"][CONFIG].update(features={"a": {"_type": "Nope"}}), "does not render the card"),
        (lambda m: m["configs"][CONFIG]["splits"].update(other=m["configs"][CONFIG]["splits"].pop("train")),
         "does not render the card"),
    ],
)  # fmt: skip
def test_a_manifest_edited_out_of_shape_is_one_error(built: Built, released: Path, edit: Any, words: str) -> None:
    data = manifest(released)
    edit(data)
    write_manifest(released, data)
    with pytest.raises(PublishError, match=MANIFEST_FILE) as raised:
        local(built, released, "1.1.0")
    assert words in str(raised.value)


@pytest.mark.adversarial("error")
@pytest.mark.parametrize(
    "data",
    [
        b"[" * 200_000 + b"]" * 200_000,
        b'{"format": 1, "default": null, "configs": {}, "versions": []}\xff',
        b'{"format": 1, "default": null, "configs": {}, "versions": [], "x": ' + b"9" * 5000 + b"}",
        b'{"format": NaN, "default": null, "configs": {}, "versions": []}',
        b"",
    ],
    ids=["nested", "not-utf8", "huge-int", "nan", "empty"],
)
def test_a_malformed_manifest_is_one_error_fast(built: Built, tmp_path: Path, data: bytes) -> None:
    out = tmp_path / "D"
    out.mkdir()
    (out / MANIFEST_FILE).write_bytes(data)
    started = time.monotonic()
    with pytest.raises(PublishError, match=MANIFEST_FILE):
        local(built, out)
    assert time.monotonic() - started < 10


@pytest.mark.adversarial("error")
def test_a_huge_manifest_is_refused_unread(built: Built, tmp_path: Path) -> None:
    out = tmp_path / "D"
    out.mkdir()
    with open(out / MANIFEST_FILE, "wb") as handle:
        handle.truncate(1 << 30)  # sparse: a gigabyte that takes no disk
    started = time.monotonic()
    with pytest.raises(PublishError, match="it is not read"):
        local(built, out)
    assert time.monotonic() - started < 5


# The card that check-repo reads


@pytest.mark.adversarial("correct")
@pytest.mark.parametrize(
    ("card", "words"),
    [
        ("---\na: &x [1, 2]\nb: &y [*x, *x]\nc: [*y, *y]\n---\n", "uses the alias *x"),
        ("---\n" + "- " * 100 + "1\n---\n", "nested deeper than 64"),
        ("---\n- 1\n- 2\n---\n", "not a mapping"),
        ("---\nconfigs:\n- config_name: c\n  data_files: 7\n  default: true\n---\n", "README.md"),
        ("---\nconfigs: [[1]]\n---\n", "README.md"),
    ],
)
def test_a_card_whose_yaml_is_hostile_is_one_problem_fast(released: Path, card: str, words: str) -> None:
    (released / CARD_FILE).write_text(card)
    started = time.monotonic()
    problems = [problem for problem in check_repo(released) if problem.startswith(CARD_FILE)]
    assert len(problems) == 1 and words in problems[0], problems
    assert time.monotonic() - started < 10


@pytest.mark.adversarial("correct")
def test_a_card_that_is_not_utf8_is_one_problem(released: Path) -> None:
    (released / CARD_FILE).write_bytes(b"---\npretty_name: \xff\n---\n")
    assert [problem for problem in check_repo(released) if problem.startswith(CARD_FILE)] == [
        f"{CARD_FILE}: not UTF-8 (byte 17)"
    ]


@pytest.mark.adversarial("correct")
@pytest.mark.parametrize("pattern", ["../outside/*.parquet", "/etc/*", f"{CONFIG}/../../outside/*"])
def test_data_files_that_lead_out_are_a_problem_and_nothing_outside_is_read(
    released: Path, tmp_path: Path, pattern: str
) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "x.parquet").write_bytes(b"not even parquet")
    card = (released / CARD_FILE).read_text()
    (released / CARD_FILE).write_text(card.replace(f"path: {CONFIG}/train-*", f"path: {pattern}", 1))
    problems = check_repo(released)
    assert any("is not a relative path pattern inside the tree" in problem for problem in problems), problems
    assert not any("not a readable Parquet file" in problem for problem in problems)


@pytest.mark.adversarial("correct")
def test_a_card_that_links_out_is_not_read(released: Path, secret: Path) -> None:
    (released / CARD_FILE).unlink()
    (released / CARD_FILE).symlink_to(secret)
    problems = [problem for problem in check_repo(released) if problem.startswith(CARD_FILE)]
    assert len(problems) == 1 and "leads outside" in problems[0] and "TOPSECRET" not in problems[0]


@pytest.mark.adversarial("correct")
def test_a_card_that_drops_a_config_of_the_manifest_is_a_problem(built: Built, released: Path) -> None:
    card = (released / CARD_FILE).read_text()
    (released / CARD_FILE).write_text(card.replace(f"config_name: {CONFIG}", "config_name: other", 1))
    assert any("lists the configs ['other'], the manifest ['mix665k']" in p for p in check_repo(released))


# A Hub repo as the target


def hub_with(files: dict[str, bytes]) -> RecordingHubApi:
    api = RecordingHubApi()
    api.branches["main"] = api._new_commit(EMPTY_SHA, {**api.trees[EMPTY_SHA], **files})
    return api


def hub_publish(built: Built, api: RecordingHubApi, version: str = "1.0.0", **kwargs: Any) -> PublishResult:
    target = HubRepo(REPO, api)
    target.open()
    return publish([built], target, REPO, version, **kwargs)


@pytest.mark.adversarial("error")
def test_a_hub_repo_whose_manifest_is_broken_is_one_error_and_no_commit(built: Built) -> None:
    api = hub_with({MANIFEST_FILE: b'{"format": 1, "configs": []}', CARD_FILE: b"# card"})
    with pytest.raises(PublishError, match=f"the Hub dataset {REPO}: {MANIFEST_FILE} has no `default`"):
        hub_publish(built, api)
    assert "create_commit" not in api.methods()


@pytest.mark.adversarial("error")
def test_a_hub_file_the_card_would_load_but_no_one_recorded_is_refused(built: Built, released: Path) -> None:
    files = {path: data for path, data in tree(released).items() if not path.startswith(".")}
    api = hub_with({**files, f"{CONFIG}/train-planted.parquet": b"x"})
    with pytest.raises(PublishError, match=r"train-planted\.parquet, which the card's data_files would load"):
        hub_publish(built, api, "1.1.0", max_shard_size="20KB")
    assert "create_commit" not in api.methods()


@pytest.mark.adversarial("correct")
@pytest.mark.parametrize("train_on_the_hub", [True, False])
def test_a_hub_republish_deletes_only_recorded_files_that_are_there(
    built: Built, released: Path, train_on_the_hub: bool
) -> None:
    files = {path: data for path, data in tree(released).items() if not path.startswith(".")}
    files[f"{CONFIG}/notes.txt"] = b"mine"
    if not train_on_the_hub:
        del files[TRAIN]  # recorded, but someone deleted it on the Hub
    api = hub_with(files)
    result = hub_publish(built, api, "1.1.0", max_shard_size="20KB")
    operations = dict(api.calls)["create_commit"]["operations"]
    deleted = [operation.path_in_repo for operation in operations if isinstance(operation, CommitOperationDelete)]
    assert deleted == result.deleted == ([TRAIN] if train_on_the_hub else [])
    assert api.trees[api.head][f"{CONFIG}/notes.txt"] == b"mine"


# Flags


@pytest.mark.adversarial("error")
@pytest.mark.parametrize(
    "argv",
    [
        ["--version", "1.0.0\n"],
        ["--version", "01.0.0"],
        ["--version", "1.0.0-rc1"],
        ["--repo", "demo/llava_mixes\n"],
        ["--repo", "../../x"],
        ["--max-shard-size", "999"],
        ["--max-shard-size", "9" * 40],
    ],
)
def test_a_careless_flag_is_one_line_before_anything_is_built(
    playground: Playground, tmp_path: Path, argv: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    base = {"--repo": REPO, "--version": "1.0.0", **dict(zip(argv[::2], argv[1::2], strict=True))}
    flags = [item for pair in base.items() for item in pair]
    command = ["publish", CONFIG, *flags, "--local-dir", str(tmp_path / "D"), "--data-dir", str(playground.root)]
    assert main(command) == 2
    assert "is not allowed" in caplog.text and not (tmp_path / "D").exists()


@pytest.mark.adversarial("error")
def test_a_local_dir_that_links_to_the_data_dir_is_refused(
    playground: Playground, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "D").symlink_to(playground.root, target_is_directory=True)
    command = ["publish", CONFIG, "--repo", REPO, "--version", "1.0.0", "--local-dir", str(tmp_path / "D")]
    assert main([*command, "--data-dir", str(playground.root)]) == 2
    assert "is the --data-dir" in caplog.text and not (playground.root / CONFIG).exists()


@pytest.mark.adversarial("correct")
def test_a_tiny_shard_size_writes_no_empty_shard(built: Built, tmp_path: Path) -> None:
    out = tmp_path / "D"
    result = local(built, out, max_shard_size=MIN_SHARD_BYTES)
    train = [path for path in result.written if path.startswith(f"{CONFIG}/train-")]
    assert len(train) == built.dataset["train"].num_rows  # one row per shard at most, never an empty one
    assert check_repo(out) == []


# Property tests: the manifest, the card's front matter, the shard size


def valid_manifest(released_manifest: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(released_manifest))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


class BytesTarget:
    """A target holding only a manifest's bytes, for `read_manifest`."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, path: str) -> bytes | None:
        return self.data

    def files(self) -> list[str]:
        return [MANIFEST_FILE]

    def describe(self) -> str:
        return "the folder"


def assert_usable(parsed: dict[str, Any]) -> None:
    """What every later step relies on in an accepted manifest."""
    for name, entry in parsed["configs"].items():
        check_file_name(name, "config")
        for path in [*entry["files"], *entry.get("card_files", {})]:
            assert path.startswith(f"{name}/") and ".." not in path.split("/") and not path.startswith("/")
    assert parsed["default"] is None or parsed["default"] in parsed["configs"]
    keys = [version_key(release["version"]) for release in parsed["versions"]]
    assert keys == sorted(set(keys)) and all(VERSION_PATTERN.fullmatch(r["version"]) for r in parsed["versions"])


@pytest.fixture(scope="module")
def sample_manifest(built: Built, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("sample") / "D"
    local(built, out)
    local(built, out, "1.1.0", max_shard_size="20KB")
    return manifest(out)


def paths_in(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path of keys and indexes into a JSON value."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths_in(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths_in(item, (*prefix, index))
    return found


HOSTILE_NAMES = ["../x", "/etc/passwd", f"{CONFIG}/../../x", f"{CONFIG}/.hidden", f"{CONFIG}//x", f"{CONFIG}/", "."]


@pytest.mark.adversarial("correct")
@given(data=st.data())
def test_property_a_mutated_manifest_is_read_right_or_refused(sample_manifest: dict[str, Any], data: Any) -> None:
    """One value replaced by random JSON, one key renamed, or one string (a path, a name) renamed everywhere it
    occurs, to a random or a hostile name."""
    mutated = valid_manifest(sample_manifest)
    where = data.draw(st.sampled_from(paths_in(mutated)))
    holder = mutated
    for step in where[:-1]:
        holder = holder[step]
    kind = data.draw(st.sampled_from(["value", "key", "everywhere"]))
    name = data.draw(st.sampled_from(HOSTILE_NAMES) | st.text(max_size=12))
    if kind == "key" and where and isinstance(holder, dict):
        holder[name] = holder.pop(where[-1])
    elif kind == "everywhere" and where and isinstance(where[-1], str):
        mutated = json.loads(json.dumps(mutated).replace(json.dumps(where[-1]), json.dumps(name)))
    elif where:
        holder[where[-1]] = data.draw(JSON)
    else:
        mutated = data.draw(JSON)
    text = json.dumps(mutated).encode()
    try:
        parsed = read_manifest(BytesTarget(text))  # type: ignore[arg-type]
    except PublishError:
        return
    assert parsed == json.loads(text)
    assert_usable(parsed)


SEGMENTS = st.sampled_from(["..", ".", "", CONFIG, "x.parquet", ".hidden", "a b", "/", "\\", "~"]) | st.text(
    max_size=6
)


@pytest.mark.adversarial("correct")
@given(data=st.data(), segments=st.lists(SEGMENTS, min_size=1, max_size=5), absolute=st.booleans())
def test_property_a_recorded_path_renamed_everywhere_is_read_right_or_refused(
    sample_manifest: dict[str, Any], data: Any, segments: list[str], absolute: bool
) -> None:
    """A recorded file's path replaced, in every place the manifest names it, by a generated one."""
    old = data.draw(st.sampled_from(sorted(sample_manifest["configs"][CONFIG]["files"])))
    new = ("/" if absolute else "") + "/".join(segments)
    text = json.dumps(sample_manifest).replace(json.dumps(old), json.dumps(new)).encode()
    try:
        parsed = read_manifest(BytesTarget(text))  # type: ignore[arg-type]
    except PublishError:
        return
    assert_usable(parsed)
    assert all(check_file_name(part, "part") for part in new.split("/"))


@pytest.mark.adversarial("correct")
@given(cut=st.integers(min_value=0), noise=st.binary(max_size=40))
def test_property_damaged_manifest_bytes_are_read_right_or_refused(
    sample_manifest: dict[str, Any], cut: int, noise: bytes
) -> None:
    text = json.dumps(sample_manifest).encode()
    damaged = text[: cut % (len(text) + 1)] + noise
    try:
        parsed = parse_manifest(damaged, "the folder")
    except PublishError:
        return
    assert_usable(parsed)


@pytest.mark.adversarial("correct")
def test_the_sample_manifest_itself_reads_back_unchanged(sample_manifest: dict[str, Any]) -> None:
    assert read_manifest(BytesTarget(json.dumps(sample_manifest).encode())) == sample_manifest  # type: ignore[arg-type]


# PyYAML reads NEL and the Unicode line and paragraph separators inside a plain scalar as line breaks, so they do
# not survive its own round trip; a config name never holds them (`paths.check_file_name`).
YAML_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"), exclude_characters="\x85\u2028\u2029"),
    max_size=10,
)
YAML_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | YAML_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(YAML_TEXT, inner, max_size=4),
    max_leaves=20,
)


@pytest.mark.adversarial("correct")
@given(metadata=st.dictionaries(YAML_TEXT.filter(bool), YAML_VALUES, max_size=5), body=st.text(max_size=50))
def test_property_card_front_matter_written_by_yaml_reads_back(metadata: dict[str, Any], body: str) -> None:
    import yaml

    written = yaml.safe_dump(metadata, allow_unicode=True)
    try:
        parsed, _ = read_front_matter(f"---\n{written}---\n{body}".encode(), CARD_FILE)
    except PublishError as error:
        assert "alias" in str(error) and "*id0" in written, error  # only a shared object makes safe_dump alias
        return
    assert parsed == (metadata or {})


@pytest.mark.adversarial("correct")
@given(
    text=st.text(max_size=300),
    position=st.integers(min_value=0),
    insert=st.sampled_from(["*a", "&a ", "[", "{", ":", "\n- ", "\t", "---\n"]),
)
def test_property_mutated_card_front_matter_reads_or_is_refused(text: str, position: int, insert: str) -> None:
    card = "---\nconfigs:\n- config_name: c\n  data_files: c/train-*\n" + text + "\n---\n# body\n"
    spot = position % (len(card) + 1)
    mutated = (card[:spot] + insert + card[spot:]).encode()
    started = time.monotonic()
    try:
        parsed, _ = read_front_matter(mutated, CARD_FILE)
    except PublishError:
        return
    finally:
        assert time.monotonic() - started < 2
    assert isinstance(parsed, dict) and all(isinstance(key, str) for key in parsed)


@pytest.mark.adversarial("correct")
@given(value=st.one_of(st.text(max_size=20), st.integers(), st.floats(), st.none(), st.booleans()))
def test_property_a_shard_size_is_a_size_of_at_least_the_minimum_or_refused(value: Any) -> None:
    try:
        size = parse_shard_size(value)
    except ConfigError as error:
        assert "--max-shard-size" in str(error) and "\n" not in str(error)
        return
    assert isinstance(size, int) and size >= MIN_SHARD_BYTES
    assert not isinstance(value, bool | float) and value is not None


@pytest.mark.adversarial("correct")
@given(
    repo=st.text(max_size=30) | st.sampled_from([REPO, "a..b/c", "a/b.git", "a--b/c", "a/b.", "a/" + "b" * 100]),
    version=st.text(max_size=12) | st.just("1.2.3"),
)
def test_property_a_repo_and_version_are_accepted_only_whole(repo: str, version: str) -> None:
    try:
        check_arguments(repo, version, "bytes")
    except ConfigError as error:
        assert "is not allowed" in str(error) and str(error).count("\n") == 0
        return
    assert VERSION_PATTERN.fullmatch(version) and repo.count("/") == 1
    validate_repo_id(repo)  # the Hub takes it
