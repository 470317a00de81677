from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

from llava_mixes.builders import SOURCES
from llava_mixes.cli.main import main
from llava_mixes.playground.layout import Playground


def test_list_prints_every_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:4]] == [
        "mix665k",
        "mix665k-dedup-0.7",
        "mix665k-dedup-0.8",
        "mix665k-dedup-0.9",
    ]


def test_build_prints_the_table_and_writes_json(
    playground: Playground, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stats = tmp_path / "stats.json"
    argv = ["--log-level", "error", "build", "mix665k-dedup-0.8", "--data-dir", str(playground.root)]
    assert main([*argv, "--embedder", "thumbnail", "--stats-json", str(stats)]) == 0
    out = capsys.readouterr().out
    assert "| coco | 15 | 13 | 3 | 10 | 12 | 3 |" in out
    assert "rejected rows by reason: undecodable_image: 2" in out
    data = json.loads(stats.read_text())
    assert data["total"]["removed_images"] == len(playground.planted)
    assert data["rows_in"] == data["total"]["rows"] + data["rejected_rows"]


def test_build_errors_are_one_clear_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["build", "mix665k", "--data-dir", str(tmp_path / "empty")]) == 2
    assert "llava_v1_5_mix665k.json" in caplog.text


def test_demo_runs_offline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "mix665k-dedup-0.8 (v1.0.0)" in out and "| total | 49 | 44 | 7 | 37 | 42 | 6 |" in out
    assert (tmp_path / "demo" / "mix665k-dedup-0.8.stats.json").exists()
    assert (tmp_path / "demo" / "mix665k-dedup-0.8-decontaminated.stats.json").exists()
    plain = [*(name for name, source in SOURCES.items() if source.family is None), "mix665k+zh600k"]
    assert all(f"\n{name} (v1.0.0)" in out for name in [*plain, "mix665k+zh600k-dedup-0.8"])
    assert "| zh600k | 7 | 7 | 1 | 6 | 6 | 2 |" in out and "| total | 56 | 51 | 8 | 43 | 48 | 8 |" in out
    # The recipe build goes through the config `recipe`: its per-source and per-benchmark tables, its report.
    assert "\nrecipe (v1.0.0)" in out and "recipe llava-en-all-decontaminated (" in out and "| pope |" in out
    report = json.loads((tmp_path / "demo" / "recipe-llava-en-all-decontaminated.stats.json").read_text())
    assert report["recipe"]["sources"]["svit-mix665k"]["rows_in"] > 0
    # Last, the shipped recipe that mixes a Hub release (pictures as Parquet bytes) with the 665K files.
    hub = json.loads((tmp_path / "demo" / "recipe-llava-next-665k.stats.json").read_text())["recipe"]["sources"]
    assert hub["llava-next-779k"]["rows_in"] > 0 and hub["llava-next-779k"]["removed"] > 0


def test_list_embedders_states_each_embedders_thresholds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--embedders"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert set(rows) == {"openai/clip-vit-large-patch14-336", "thumbnail", "gradients", "<file>.pt"}
    assert ">= 0.70 + verification" in rows["gradients"] and ">= 0.90" in rows["thumbnail"]


def test_export_writes_the_kept_rows_for_llava_and_says_how_to_train(
    playground: Playground, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["export", "mix665k-dedup-0.8", "--data-dir", str(playground.root), "--format", "llava"]
    assert main([*argv, "--out", str(tmp_path / "out"), "--embedder", "thumbnail"]) == 0
    printed = capsys.readouterr().out
    records = json.loads((tmp_path / "out" / "mix665k-dedup-0.8.llava.json").read_text())
    assert f"--data_path {tmp_path / 'out' / 'mix665k-dedup-0.8.llava.json'}" in printed
    exported = {record.get("image") for record in records}
    assert exported & {original for original, _ in playground.planted.values()}
    assert not exported & set(playground.planted)
    assert len(records) == playground.rows - len(playground.expected_rejections) - len(playground.planted)


def test_export_takes_exactly_one_of_a_build_and_a_published_copy(playground: Playground, tmp_path: Path) -> None:
    argv = ["export", "mix665k", "--format", "jsonl", "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2
    with pytest.raises(SystemExit):
        main([*argv, "--data-dir", str(playground.root), "--from", str(tmp_path)])


def test_a_command_puts_the_log_levels_it_set_back(capsys: pytest.CaptureFixture[str]) -> None:
    """`--log-level` lasts one command: a later command or library call in the same process logs as before."""
    package = logging.getLogger("llava_mixes")
    package.setLevel(logging.WARNING)
    verbosity = datasets.utils.logging.get_verbosity()
    assert main(["--log-level", "error", "list"]) == 0
    assert package.level == logging.WARNING
    assert datasets.utils.logging.get_verbosity() == verbosity
    package.setLevel(logging.NOTSET)


def test_a_reader_that_stops_reading_ends_the_command_quietly() -> None:
    """`llava-mixes list | head -1`: no BrokenPipeError traceback once the reader has gone."""
    command = f"{sys.executable} -m llava_mixes list | head -1"
    finished = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=120)
    assert finished.stdout.startswith("mix665k ")
    assert "Traceback" not in finished.stderr and "BrokenPipeError" not in finished.stderr
