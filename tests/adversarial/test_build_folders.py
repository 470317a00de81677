"""Build folders (issue 21, sections 4 and 6): a damaged build folder is rebuilt, never served; `verify` hashes every
file against the build record; a build that loses a whole image folder fails, naming it, unless allowed.

Every input of a build folder is attacked: its Arrow files, `dataset_info.json`, the build record, the records of
inputs, the report, `datasets`' own `cache-*.arrow` files, a symbolic link to the folder, two builds at once, a
build killed with SIGKILL, and the cache locations from the environment.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import datasets
import pytest

import llava_mixes
from llava_mixes import schema
from llava_mixes.building.entry import build, verify
from llava_mixes.building.freshness import BUILD_RECORD
from llava_mixes.building.losses import RowsLostError
from llava_mixes.cli.main import main
from llava_mixes.playground.layout import ANNOTATION_FILE, Playground

FEATURE = "caches and build folders"

PLAIN = "mix665k"
DEDUP = "mix665k-dedup-0.8"
TRAIN_FILE = "llava_mixes-train.arrow"


def load(playground: Playground, config: str = PLAIN, **kwargs: Any) -> datasets.DatasetDict:
    if config != PLAIN:
        kwargs.setdefault("embedder", "thumbnail")
    return datasets.load_dataset("llava_mixes", config, data_dir=str(playground.root), **kwargs)


def folder_of(dataset: datasets.DatasetDict) -> Path:
    return Path(dataset["train"].cache_files[0]["filename"]).parent


def rows(dataset: datasets.DatasetDict) -> dict[str, list[dict[str, Any]]]:
    return {name: list(split.remove_columns(schema.IMAGE)) for name, split in dataset.items()}


def first_build(playground: Playground, config: str = PLAIN) -> tuple[dict[str, list[dict[str, Any]]], Path]:
    """The rows of a first build, read before any damage (a file cut under a memory map would fault), and its
    folder."""
    dataset = load(playground, config)
    return rows(dataset), folder_of(dataset)


def rebuilt_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.getMessage().startswith("rebuilding")]


def assert_rebuilt_the_same(
    playground: Playground,
    before: dict[str, list[dict[str, Any]]],
    caplog: pytest.LogCaptureFixture,
    config: str = PLAIN,
) -> None:
    """The next load says once why it rebuilds, and gives the rows of the first build."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="llava_mixes"):
        again = load(playground, config)
    assert len(rebuilt_lines(caplog)) == 1, rebuilt_lines(caplog)
    assert rows(again) == before
    assert verify_plain(playground, config) == []


def verify_plain(playground: Playground, config: str = PLAIN) -> list[str]:
    kwargs = {"embedder": "thumbnail"} if config != PLAIN else {}
    return [problem for problems in verify(config, str(playground.root), **kwargs).values() for problem in problems]


def halve(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_bits(path: Path) -> None:
    """Flip every bit of 64 bytes in the middle of `path`, where the conversations are: same size, same mtime."""
    stat = path.stat()
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(byte ^ 0xFF for byte in data[middle : middle + 64])
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


# Case 4 of issue 21: halved, emptied and bit-flipped Arrow files.
@pytest.mark.adversarial("repaired")
@pytest.mark.parametrize("damage", [halve, lambda path: path.write_bytes(b"")], ids=["halved", "emptied"])
def test_a_cut_train_arrow_file_is_rebuilt_on_load_with_one_warning(
    playground: Playground, damage: Any, caplog: pytest.LogCaptureFixture
) -> None:
    before, folder = first_build(playground)
    damage(folder / TRAIN_FILE)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="llava_mixes"):
        again = load(playground)
    lines = [record for record in caplog.records if record.getMessage().startswith("rebuilding")]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert f"its folder is damaged: {TRAIN_FILE} is" in lines[0].getMessage()
    assert rows(again) == before


@pytest.mark.adversarial("repaired")
def test_a_halved_train_arrow_file_is_rebuilt_by_the_cli(playground: Playground, tmp_path: Path) -> None:
    argv = ["--log-level", "error", "build", PLAIN, "--data-dir", str(playground.root)]
    argv += ["--stats-json", str(tmp_path / "stats.json")]
    assert main(argv) == 0
    halve(folder_of(load(playground)) / TRAIN_FILE)
    assert main(argv) == 0
    assert main(argv) == 0
    assert len(load(playground)["train"]) == playground.rows - 6


@pytest.mark.adversarial("correct")
def test_flipped_bits_in_the_train_arrow_file_are_found_by_verify_and_named(
    playground: Playground, capsys: pytest.CaptureFixture[str]
) -> None:
    _, folder = first_build(playground)
    flip_bits(folder / TRAIN_FILE)
    argv = ["--log-level", "error", "verify", PLAIN, "--data-dir", str(playground.root)]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert f"damaged: {folder}" in out and f"{TRAIN_FILE} does not match its SHA-256" in out
    assert verify_plain(playground) == [f"{TRAIN_FILE} does not match its SHA-256 from the build"]


@pytest.mark.adversarial("correct")
def test_verify_says_ok_for_a_whole_build_and_names_a_damaged_base(
    playground: Playground, capsys: pytest.CaptureFixture[str]
) -> None:
    dedup = load(playground, DEDUP)
    argv = ["--log-level", "error", "verify", DEDUP, "--data-dir", str(playground.root), "--embedder", "thumbnail"]
    assert main(argv) == 0
    assert capsys.readouterr().out.count("ok: ") == 2
    base = folder_of(load(playground))
    flip_bits(base / TRAIN_FILE)
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert f"ok: {folder_of(dedup)}" in out and f"damaged: {base}" in out


@pytest.mark.adversarial("error")
def test_verify_of_a_config_never_built_exits_1_and_builds_nothing(
    playground: Playground, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["--log-level", "error", "verify", PLAIN, "--data-dir", str(playground.root)]
    assert main([*argv, "--cache-dir", str(tmp_path / "hf")]) == 1
    assert "it holds no finished build" in capsys.readouterr().out
    assert not list((tmp_path / "hf").rglob("*.arrow"))


# Every file of a build folder, deleted one at a time, and the folder's other records damaged.
@pytest.mark.adversarial("repaired")
@pytest.mark.parametrize(
    "name",
    [TRAIN_FILE, "llava_mixes_report.json", "llava_mixes_inputs.arrow", "llava_mixes_inputs.json", BUILD_RECORD],
)
def test_a_deleted_file_of_the_build_folder_is_rebuilt(
    playground: Playground, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    before, folder = first_build(playground)
    (folder / name).unlink()
    assert_rebuilt_the_same(playground, before, caplog)


@pytest.mark.adversarial("repaired")
def test_a_deleted_dataset_info_json_is_rebuilt(playground: Playground) -> None:
    before, folder = first_build(playground)
    (folder / "dataset_info.json").unlink()
    assert rows(load(playground)) == before and verify_plain(playground) == []


@pytest.mark.adversarial("repaired")
@pytest.mark.parametrize("config", [PLAIN, DEDUP])
def test_split_sizes_edited_in_dataset_info_json_are_rebuilt(
    playground: Playground, config: str, caplog: pytest.LogCaptureFixture
) -> None:
    before, folder = first_build(playground, config)
    info_path = folder / "dataset_info.json"
    info = json.loads(info_path.read_text())
    info["splits"]["train"]["num_examples"] = 20
    info_path.write_text(json.dumps(info))
    assert_rebuilt_the_same(playground, before, caplog, config)


@pytest.mark.adversarial("repaired")
@pytest.mark.parametrize("content", ["{", "[]", '{"splits": 3}', ""], ids=["cut", "a list", "odd splits", "empty"])
def test_a_damaged_dataset_info_json_is_set_aside_and_rebuilt(
    playground: Playground, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    before, folder = first_build(playground)
    (folder / "dataset_info.json").write_text(content)
    with caplog.at_level(logging.WARNING, logger="llava_mixes"):
        again = load(playground)
    assert rows(again) == before
    assert any("dataset_info.json cannot be read" in record.getMessage() for record in caplog.records)
    assert not (folder_of(again) / "dataset_info.json.damaged").exists()


@pytest.mark.adversarial("repaired")
@pytest.mark.parametrize("same_size", [False, True], ids=["a list", "a digit changed"])
def test_a_replaced_report_is_rebuilt_and_load_report_gives_the_build_s(
    playground: Playground, same_size: bool, caplog: pytest.LogCaptureFixture
) -> None:
    before, folder = first_build(playground)
    path = folder / "llava_mixes_report.json"
    text = path.read_text()
    path.write_text(text.replace('"rows_in": 55', '"rows_in": 56') if same_size else "[]")
    assert_rebuilt_the_same(playground, before, caplog)
    assert llava_mixes.load_report(load(playground)).rows_in == playground.rows


def _signed(files: dict[str, Any], splits: dict[str, Any]) -> str:
    """A build record with the checksum a build gives it (so that only its content is wrong)."""
    checksum = hashlib.sha256(json.dumps([files, splits], sort_keys=True).encode()).hexdigest()
    return json.dumps({"format": 1, "files": files, "splits": splits, "sha256": checksum})


OUTSIDE = {"../../../../../etc/hostname": {"size": 1, "sha256": "0" * 64}}
SPLITS = {"train": {"num_examples": 49, "shard_lengths": None}}


@pytest.mark.adversarial("repaired")
@pytest.mark.parametrize(
    "record",
    ["garbage {", "[1, 2]", _signed(OUTSIDE, SPLITS), _signed({}, SPLITS)],
    ids=["garbage", "a list", "a file outside the folder", "no files, signed"],
)
def test_a_damaged_build_record_is_rebuilt(
    playground: Playground, record: str, caplog: pytest.LogCaptureFixture
) -> None:
    before, folder = first_build(playground)
    (folder / BUILD_RECORD).write_text(record)
    assert_rebuilt_the_same(playground, before, caplog)


@pytest.mark.adversarial("correct")
def test_an_edited_build_record_fails_its_own_checksum(playground: Playground) -> None:
    _, folder = first_build(playground)
    record = json.loads((folder / BUILD_RECORD).read_text())
    del record["files"][TRAIN_FILE]
    (folder / BUILD_RECORD).write_text(json.dumps(record))
    assert verify_plain(playground) == [f"its build record {BUILD_RECORD} is damaged"]


@pytest.mark.adversarial("repaired")
def test_a_train_arrow_file_replaced_by_a_folder_is_rebuilt(
    playground: Playground, caplog: pytest.LogCaptureFixture
) -> None:
    before, folder = first_build(playground)
    path = folder / TRAIN_FILE
    path.unlink()
    path.mkdir()
    assert_rebuilt_the_same(playground, before, caplog)


@pytest.mark.adversarial("correct")
def test_a_stray_shard_and_a_stray_cache_file_in_the_folder_change_nothing(
    playground: Playground, caplog: pytest.LogCaptureFixture
) -> None:
    before, folder = first_build(playground)
    folder = folder
    shutil.copy(folder / TRAIN_FILE, folder / "llava_mixes-train-00001-of-00002.arrow")
    (folder / "cache-0123456789abcdef.arrow").write_bytes(b"not arrow")
    with caplog.at_level(logging.INFO, logger="llava_mixes"):
        again = load(playground)
    assert rebuilt_lines(caplog) == [] and rows(again) == before


@pytest.mark.adversarial("reflected")
def test_a_users_map_over_two_builds_is_not_served_after_one_is_rebuilt(playground: Playground) -> None:
    """`datasets` caches the map beside the first build; the second's rebuild must change its key."""

    def shout(row: dict[str, Any]) -> dict[str, Any]:
        return {"answer": row[schema.CONVERSATIONS][1]["value"].upper()}

    def both() -> datasets.Dataset:
        parts = [
            load(playground, config)["train"].select_columns([schema.CONVERSATIONS])
            for config in (PLAIN, "svit-mix665k")
        ]
        return datasets.concatenate_datasets(parts).map(shout)

    first = both()
    assert first.cache_files and "EDITED" not in " ".join(first["answer"])
    path = playground.root / "SVIT_mix_665K.json"
    records = json.loads(path.read_text())
    records[0]["conversations"][1]["value"] += " edited"
    path.write_text(json.dumps(records))
    assert "EDITED" in " ".join(both()["answer"])


@pytest.mark.adversarial("reflected")
def test_a_build_folder_reached_through_a_symbolic_link_is_rebuilt_where_it_leads(playground: Playground) -> None:
    _, folder = first_build(playground)
    elsewhere = folder.with_name("elsewhere")
    folder.rename(elsewhere)
    folder.symlink_to(elsewhere, target_is_directory=True)
    records = json.loads((playground.root / ANNOTATION_FILE).read_text())
    (playground.root / ANNOTATION_FILE).write_text(json.dumps(records[:30]))
    again = load(playground)
    assert folder.is_symlink() and len(again["train"]) + len(llava_mixes.load_report(again).rejected) == 30
    assert verify_plain(playground) == []


def _cli_build(playground: Playground, tmp_path: Path, name: str) -> subprocess.Popen[bytes]:
    """`llava-mixes build` in another process, into a datasets cache shared by every call; its log goes to a file
    (`<name>.log`), which never fills up and blocks it as a pipe would."""
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "hf_shared"), "HF_HUB_OFFLINE": "1"}
    env.update(HF_DATASETS_OFFLINE="1", HF_DATASETS_DISABLE_PROGRESS_BARS="1")
    argv = [sys.executable, "-m", "llava_mixes.cli.main", "--log-level", "info", "build", PLAIN]
    argv += ["--data-dir", str(playground.root), "--stats-json", str(tmp_path / f"{name}.json")]
    with (tmp_path / f"{name}.log").open("wb") as log:
        return subprocess.Popen(argv, env=env, stdout=log, stderr=log)


@pytest.mark.adversarial("correct")
def test_two_builds_of_one_stale_config_at_once_rebuild_it_once(playground: Playground, tmp_path: Path) -> None:
    datasets.load_dataset("llava_mixes", PLAIN, data_dir=str(playground.root), cache_dir=str(tmp_path / "hf_shared"))
    records = json.loads((playground.root / ANNOTATION_FILE).read_text())
    (playground.root / ANNOTATION_FILE).write_text(json.dumps(records * 40))  # stale, and long enough to overlap
    runs = [_cli_build(playground, tmp_path, name) for name in ("first", "second")]
    codes = [run.wait(timeout=300) for run in runs]
    logs = [(tmp_path / f"{name}.log").read_text() for name in ("first", "second")]
    assert codes == [0, 0], logs
    assert sum(log.count("Generating dataset llava_mixes") for log in logs) == 1, logs
    first, second = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("first", "second"))
    assert first == second and first["rows_in"] == 40 * playground.rows


@pytest.mark.adversarial("repaired")
def test_a_build_killed_with_sigkill_leaves_nothing_that_the_next_build_serves(
    playground: Playground, tmp_path: Path
) -> None:
    records = json.loads((playground.root / ANNOTATION_FILE).read_text())
    (playground.root / ANNOTATION_FILE).write_text(json.dumps(records * 200))
    run = _cli_build(playground, tmp_path, "killed")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((tmp_path / "hf_shared").rglob("*.incomplete")):
        time.sleep(0.02)
    run.send_signal(signal.SIGKILL)
    run.wait()
    leftovers = list((tmp_path / "hf_shared").rglob("*.incomplete"))
    assert leftovers, "the build finished before it could be killed"
    (leftovers[0] / "llava_mixes-train-00001-of-00002.arrow").write_bytes(b"half a shard")
    again = datasets.load_dataset(
        "llava_mixes", PLAIN, data_dir=str(playground.root), cache_dir=str(tmp_path / "hf_shared")
    )
    report = llava_mixes.load_report(again)
    assert report.rows_in == 200 * playground.rows and len(again["train"]) == report.rows_in - report.rejected_rows
    folder = folder_of(again)
    assert not (folder / "llava_mixes-train-00001-of-00002.arrow").exists()
    assert not list(folder.parent.glob("*.incomplete"))


# Case 5 of issue 21: a missing image folder.
@pytest.mark.adversarial("error")
def test_a_build_missing_the_coco_folder_fails_naming_it(
    playground: Playground, caplog: pytest.LogCaptureFixture
) -> None:
    shutil.rmtree(playground.root / "coco")
    with pytest.raises(RowsLostError, match=r"coco/ \(\d+ rows\)") as caught:
        build(DEDUP, str(playground.root), embedder="thumbnail")
    assert "max_rejected=" in str(caught.value) and "--max-rejected" in str(caught.value)
    argv = ["build", DEDUP, "--data-dir", str(playground.root), "--embedder", "thumbnail"]
    caplog.clear()
    assert main(argv) == 2
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1 and "coco/" in errors[0] and "%" in errors[0]


@pytest.mark.adversarial("correct")
def test_a_missing_folder_allowed_by_max_rejected_builds_and_is_named(
    playground: Playground, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    shutil.rmtree(playground.root / "coco")
    shutil.rmtree(playground.root / "gqa")
    with pytest.raises(RowsLostError) as caught:
        build(PLAIN, str(playground.root))
    assert "coco/" in str(caught.value) and "gqa/" in str(caught.value)
    allowed = str(caught.value).split("max_rejected=")[1].split(" ")[0]
    with caplog.at_level(logging.WARNING, logger="llava_mixes"):
        built = build(PLAIN, str(playground.root), max_rejected=float(allowed))
    named = [record.getMessage() for record in caplog.records if "allowed by max_rejected" in record.getMessage()]
    assert len(named) == 1 and "coco/ (" in named[0] and "gqa/ (" in named[0]
    assert built.report.rows_in == playground.rows
    with pytest.raises(RowsLostError):
        build(PLAIN, str(playground.root))  # the cached build is not served under the default either
    argv = ["--log-level", "error", "build", PLAIN, "--data-dir", str(playground.root)]
    assert main([*argv, "--max-rejected", allowed, "--stats-json", str(tmp_path / "s.json")]) == 0


@pytest.mark.adversarial("correct")
def test_the_playground_s_planted_bad_rows_pass_under_the_default(playground: Playground) -> None:
    for config in ("pretrain558k", "sharegpt4v-mix665k", "textocr-gpt4v", "svit-core", "zh600k", PLAIN):
        assert build(config, str(playground.root)).report.rejected_rows > 0


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("value", ["-0.1", "1.5", "nan", "abc"])
def test_a_bad_max_rejected_is_one_clear_error(playground: Playground, value: str) -> None:
    argv = ["--log-level", "error", "build", PLAIN, "--data-dir", str(playground.root), "--max-rejected", value]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse refuses what is no number
        code = exit_.code
    assert code == 2


# The cache locations the environment names.
@pytest.mark.adversarial("error")
@pytest.mark.parametrize("where", ["LLAVA_MIXES_CACHE", "--cache-dir"])
def test_a_cache_location_that_is_a_file_is_one_clear_error(
    playground: Playground,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    where: str,
) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    argv = ["build", PLAIN, "--data-dir", str(playground.root), "--stats-json", str(tmp_path / "s.json")]
    if where == "--cache-dir":
        argv += ["--cache-dir", str(a_file)]
    else:
        monkeypatch.setenv(where, str(a_file))
    assert main(argv) == 2
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1 and str(a_file) in errors[0], errors
