"""Issue 21's publishing cases: a publish deletes only what it wrote, never reaches the data it reads, loses no
release to a concurrent publish or a `kill -9`, and turns bad flags and damaged manifests into one-line errors;
`check-repo` verifies every file against the manifest's checksums and exits cleanly."""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import datasets
import pytest

import llava_mixes.publish.publish as publish_module
from llava_mixes.building.entry import build
from llava_mixes.cli.main import main
from llava_mixes.errors import PublishError
from llava_mixes.playground.layout import Playground
from llava_mixes.publish.check_repo import check_repo
from llava_mixes.publish.local import JOURNAL_FILE, LocalRepo
from llava_mixes.publish.publish import MANIFEST_FILE, publish
from llava_mixes.publish.repos import STAGING_PREFIX
from llava_mixes.workflows.release import release

REPO = "demo/llava_mixes"
DEDUP = "mix665k-dedup-0.8"
THUMBNAIL = {"embedder": "thumbnail"}


def cli_publish(playground: Playground, out: Path, *configs: str, version: str = "1.0.0", extra: tuple = ()) -> int:
    argv = ["publish", *configs, "--repo", REPO, "--version", version, "--local-dir", str(out)]
    return main([*argv, "--data-dir", str(playground.root), "--no-card-views", *extra])


def manifest(out: Path) -> dict:
    return json.loads((out / MANIFEST_FILE).read_text())


def leftovers(out: Path) -> list[str]:
    return sorted(name for name in os.listdir(out) if name.startswith(STAGING_PREFIX) or name == JOURNAL_FILE)


def test_a_users_file_in_a_config_folder_is_never_deleted(playground: Playground, tmp_path: Path) -> None:
    out = tmp_path / "D"
    (out / "mix665k").mkdir(parents=True)
    (out / "mix665k" / "notes.txt").write_text("mine")
    assert cli_publish(playground, out, "mix665k") == 0
    assert (out / "mix665k" / "notes.txt").read_text() == "mine"
    assert cli_publish(playground, out, "mix665k", version="1.1.0", extra=("--max-shard-size", "20KB")) == 0
    assert (out / "mix665k" / "notes.txt").read_text() == "mine"
    assert not (out / "mix665k" / "train-00000-of-00001.parquet").exists()  # the project's own stale shard goes
    assert check_repo(out) == []


def test_a_local_dir_that_is_the_data_dir_is_refused_and_no_source_is_deleted(
    playground: Playground, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = playground.root / "textocr-gpt4v" / "train.jsonl"
    source.parent.mkdir()
    (playground.root / "train.jsonl").rename(source)
    before = source.read_bytes()
    argv = ["publish", "textocr-gpt4v", "--repo", REPO, "--version", "1.0.0", "--no-card-views"]
    for local_dir, data_dir in (
        (playground.root, playground.root),
        (playground.root.parent, playground.root),
        (playground.root / "out", playground.root),
    ):
        caplog.clear()
        assert main([*argv, "--local-dir", str(local_dir), "--data-dir", str(data_dir)]) == 2
        assert "choose one apart from the data" in caplog.text
    assert source.read_bytes() == before
    assert not (playground.root / "textocr-gpt4v" / "train-00000-of-00001.parquet").exists()

    elsewhere = tmp_path / "D"  # a folder apart from the data that holds a file of the same name
    (elsewhere / "textocr-gpt4v").mkdir(parents=True)
    (elsewhere / "textocr-gpt4v" / "train.jsonl").write_bytes(before)
    assert main([*argv, "--local-dir", str(elsewhere), "--data-dir", str(playground.root)]) == 0
    assert (elsewhere / "textocr-gpt4v" / "train.jsonl").read_bytes() == before


def test_two_publishes_into_one_folder_at_once_lose_no_release(
    playground: Playground, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = {name: build(name, str(playground.root)) for name in ("mix665k", "svit-mix665k")}
    out = tmp_path / "D"
    LocalRepo(out).open()
    # Each publish waits in its export for the other (3 s at most): without the lock both read the empty manifest
    # before either commits; with it the second waits for the first to commit and reads its manifest.
    meeting = threading.Barrier(2)
    export = publish_module.export_config

    def export_after_meeting(*args: object, **kwargs: object) -> dict:
        with contextlib.suppress(threading.BrokenBarrierError):
            meeting.wait(timeout=3)
        return export(*args, **kwargs)

    monkeypatch.setattr(publish_module, "export_config", export_after_meeting)
    errors: list[BaseException] = []

    def run(name: str, version: str) -> None:
        try:
            publish([built[name]], LocalRepo(out), REPO, version)
        except BaseException as error:  # noqa: BLE001 - collected for the assertion below
            errors.append(error)

    first = threading.Thread(target=run, args=("mix665k", "1.0.0"))
    first.start()
    while meeting.n_waiting == 0 and first.is_alive():
        threading.Event().wait(0.01)
    second = threading.Thread(target=run, args=("svit-mix665k", "1.1.0"))
    second.start()
    first.join()
    second.join()
    assert errors == []
    assert [release["version"] for release in manifest(out)["versions"]] == ["1.0.0", "1.1.0"]
    assert sorted(manifest(out)["configs"]) == ["mix665k", "svit-mix665k"]
    assert "`svit-mix665k`" in (out / "README.md").read_text() and "`mix665k`" in (out / "README.md").read_text()
    assert check_repo(out) == [] and leftovers(out) == []


KILLER = """
import os, signal, sys
from pathlib import Path

out, cache, data, version = Path(sys.argv[1]).resolve(), sys.argv[2], sys.argv[3], sys.argv[4]
staged, after = sys.argv[5] == "staging", int(sys.argv[6])
replace, moved = os.replace, []


def replace_then_die(source, target, *args, **kwargs):
    name = os.fspath(target)
    if name.startswith(str(out)) and ("{staging}" in name) == staged and name.endswith(".parquet"):
        if len(moved) == after:
            os.kill(os.getpid(), signal.SIGKILL)
        moved.append(name)
    return replace(source, target, *args, **kwargs)


os.replace = replace_then_die
from llava_mixes.workflows.release import release

release(["{config}"], "{repo}", version, data, local_dir=out, cache_dir=cache, max_shard_size="20KB",
        config_kwargs={{"embedder": "thumbnail"}}, card_views=False)
"""


def killed_publish(playground: Playground, out: Path, cache: Path, version: str, where: str, after: int) -> int:
    """A publish of DEDUP as `version` (shards of 20 KB) killed (SIGKILL) as it moves shard number `after` + 1
    into place in the tree (`where="tree"`: in its commit) or in its staging folder (`"staging"`: before it)."""
    script = KILLER.format(staging=STAGING_PREFIX, config=DEDUP, repo=REPO)
    argv = [sys.executable, "-c", script, str(out), str(cache), str(playground.root), version, where, str(after)]
    return subprocess.run(argv, capture_output=True, timeout=300, check=False).returncode


def test_a_publish_killed_in_its_commit_is_detected_and_finished_by_the_next(
    playground: Playground, tmp_path: Path
) -> None:
    out, cache = tmp_path / "D", tmp_path / "hf_datasets"
    release([DEDUP], REPO, "1.0.0", str(playground.root), local_dir=out, cache_dir=str(cache), config_kwargs=THUMBNAIL)
    assert killed_publish(playground, out, cache, "1.1.0", "tree", after=3) == -signal.SIGKILL
    shards = [path for path in os.listdir(out / DEDUP) if path.startswith("train-") and "-of-00001" not in path]
    assert len(shards) == 3  # three new shards in place, under the old manifest
    problems = check_repo(out)
    assert any(problem.startswith(JOURNAL_FILE) for problem in problems), problems
    assert any("not recorded in the manifest, yet the card's data_files would load it" in p for p in problems)
    assert main(["check-repo", str(out)]) == 1

    again = release(
        [DEDUP], REPO, "1.1.0", str(playground.root), local_dir=out, cache_dir=str(cache), max_shard_size="20KB",
        config_kwargs=THUMBNAIL, card_views=False,
    )  # fmt: skip
    assert not again.changed  # the interrupted commit was finished: 1.1.0 already holds this content
    assert leftovers(out) == [] and check_repo(out) == []
    assert [release["version"] for release in manifest(out)["versions"]] == ["1.0.0", "1.1.0"]
    assert datasets.load_dataset(str(out), DEDUP, split="train").num_rows == 42


def test_a_publish_killed_before_its_commit_leaves_the_old_release_and_its_staging_folder_is_removed(
    playground: Playground, tmp_path: Path
) -> None:
    out, cache = tmp_path / "D", tmp_path / "hf_datasets"
    release([DEDUP], REPO, "1.0.0", str(playground.root), local_dir=out, cache_dir=str(cache), config_kwargs=THUMBNAIL)
    before = {path: (out / path).read_bytes() for path in manifest(out)["configs"][DEDUP]["files"]}
    assert killed_publish(playground, out, cache, "1.1.0", "staging", after=1) == -signal.SIGKILL
    assert {path: (out / path).read_bytes() for path in before} == before
    [staging] = leftovers(out)
    assert staging.startswith(STAGING_PREFIX)
    assert [problem for problem in check_repo(out) if not problem.startswith(staging)] == []
    release([DEDUP], REPO, "1.2.0", str(playground.root), local_dir=out, cache_dir=str(cache), config_kwargs=THUMBNAIL)
    assert leftovers(out) == [] and check_repo(out) == []


@pytest.mark.parametrize("size", ["0", "-1", "abc", "1e3", "1.5GB", "12"])
def test_a_bad_shard_size_is_one_line_before_anything_is_built(
    playground: Playground, tmp_path: Path, size: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert cli_publish(playground, tmp_path / "D", DEDUP, extra=("--max-shard-size", size)) == 2
    assert f"--max-shard-size {size!r} is not allowed" in caplog.text and "'500MB'" in caplog.text
    assert not (tmp_path / "D").exists()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[]", "a top level of type list"),
        ("{}", "has no `format`"),
        ('{"format": 1, "default": null, "configs": [], "versions": []}', "`configs` of type list"),
        ('{"format": 1, "default": null, "configs": {}, "versions": [{"version": 3}]}', "release version '3'"),
        ('{"format": 1, "default": null, "configs": {}, "versions"', "is not JSON"),
        ('{"format": 2, "default": null, "configs": {}, "versions": []}', "has format '2'"),
    ],
)
def test_a_broken_manifest_is_one_line_naming_it(
    playground: Playground, tmp_path: Path, text: str, words: str, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "D"
    out.mkdir()
    (out / MANIFEST_FILE).write_text(text)
    with pytest.raises(PublishError, match=MANIFEST_FILE) as raised:
        release(["mix665k"], REPO, "1.0.0", str(playground.root), local_dir=out)
    assert words in str(raised.value) and "\n" not in str(raised.value)
    assert cli_publish(playground, out, "mix665k") == 2
    assert (out / MANIFEST_FILE).read_text() == text


def test_check_repo_hands_arrow_no_python_file_object(
    playground: Playground, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Arrow's threads used to release a Python file object (opened by `datasets`' streaming reader) during
    interpreter shutdown, now and then: "terminate called without an active exception", SIGABRT after "ok".
    check-repo now reads its rows through native Arrow files: no data file is opened by `open()` (the way
    `datasets`' reader opens a local file before handing it to Arrow)."""
    out = tmp_path / "D"
    release([DEDUP], REPO, "1.0.0", str(playground.root), local_dir=out, config_kwargs=THUMBNAIL)
    opened: list[str] = []
    opener = builtins.open

    def recording(file: object, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(file))
        return opener(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", recording)
    assert check_repo(out) == []
    assert [path for path in opened if path.endswith(".parquet")] == []


def test_check_repo_exits_cleanly_every_time(playground: Playground, tmp_path: Path) -> None:
    """The same shutdown, seen from outside: it aborted in about one run in five before."""
    out = tmp_path / "D"
    release([DEDUP], REPO, "1.0.0", str(playground.root), local_dir=out, config_kwargs=THUMBNAIL)
    command = [sys.executable, "-m", "llava_mixes", "check-repo", str(out)]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)]
    for run in runs:
        stdout, stderr = run.communicate(timeout=300)
        assert (run.returncode, stdout.decode().strip()) == (0, f"{out}: ok"), stderr.decode()[-500:]
        assert b"terminate called" not in stderr


@pytest.mark.parametrize("listed", ["../outside.parquet", "/tmp/outside.parquet", f"{DEDUP}/../../outside.parquet"])
def test_a_manifest_path_that_leads_out_is_refused_and_nothing_outside_is_touched(
    playground: Playground, tmp_path: Path, listed: str
) -> None:
    out = tmp_path / "D"
    release([DEDUP], REPO, "1.0.0", str(playground.root), local_dir=out, config_kwargs=THUMBNAIL, card_views=False)
    outside = tmp_path / "outside.parquet"
    outside.write_bytes(b"precious")
    data = manifest(out)
    entry = data["configs"][DEDUP]
    entry["files"][listed] = next(iter(entry["files"].values()))
    (out / MANIFEST_FILE).write_text(json.dumps(data))
    with pytest.raises(PublishError, match="not allowed"):
        release([DEDUP], REPO, "1.1.0", str(playground.root), local_dir=out, config_kwargs=THUMBNAIL)
    assert outside.read_bytes() == b"precious"
    assert any("not allowed" in problem for problem in check_repo(out))
