"""What a new user meets in the first hour (issue 13): mistyped names, renamed annotation files, flags that
would do nothing, the conventions of `hf` and `datasets-cli`, and `python -m llava_mixes`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
from fake_hub import RecordingHubApi

import llava_mixes
from llava_mixes.cli.main import main
from llava_mixes.errors import ConfigError
from llava_mixes.playground import write_playground
from llava_mixes.playground.layout import Playground
from llava_mixes.workflows.release import release

TEXTOCR = "textocr-gpt4v"
RENAMED = "textocr-gpt4v.train.jsonl"


@pytest.fixture
def renamed(playground: Playground) -> Playground:
    """The playground with textOCR-GPT-4v's `train.jsonl` saved under another name."""
    (playground.root / "train.jsonl").rename(playground.root / RENAMED)
    return playground


@pytest.mark.parametrize("command", [["build"], ["report", "--out", "R"]])
def test_a_mistyped_config_is_one_line_naming_the_closest_configs(
    command: list[str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    argv = [command[0], "mix665k-dedup-08", "--data-dir", str(tmp_path), *command[1:]]
    assert main(argv) == 2
    [record] = [record for record in caplog.records if record.levelname == "ERROR"]
    assert (
        "unknown config 'mix665k-dedup-08'; did you mean mix665k-dedup-0.8, mix665k-dedup-0.9, mix665k-dedup-0.7?"
        in (record.getMessage())
    )
    assert "svit-core-dedup-0.9" not in record.getMessage() and "Traceback" not in caplog.text


def test_data_files_name_a_renamed_annotation_file(renamed: Playground) -> None:
    fixture = renamed.sources[TEXTOCR]
    ds = datasets.load_dataset("llava_mixes", TEXTOCR, data_dir=str(renamed.root), data_files=RENAMED)
    report = llava_mixes.load_report(ds)
    assert report.rows_in == fixture.rows
    assert len(ds["train"]) == fixture.rows - len(fixture.expected_rejections)


def test_data_files_reach_the_base_of_a_dedup_config(renamed: Playground) -> None:
    kwargs = {"data_dir": str(renamed.root), "data_files": [RENAMED], "embedder": "thumbnail"}
    ds = datasets.load_dataset("llava_mixes", f"{TEXTOCR}-dedup-0.8", **kwargs)
    assert llava_mixes.load_report(ds).rows_in == renamed.sources[TEXTOCR].rows


def test_the_data_files_flag_builds_from_a_renamed_file(
    renamed: Playground, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stats = tmp_path / "stats.json"
    argv = ["build", TEXTOCR, "--data-dir", str(renamed.root), "--stats-json", str(stats)]
    assert main([*argv, "--data-files", RENAMED]) == 0
    assert json.loads(stats.read_text())["rows_in"] == renamed.sources[TEXTOCR].rows


def test_a_missing_annotation_file_names_the_similarly_named_ones(
    renamed: Playground, caplog: pytest.LogCaptureFixture
) -> None:
    (renamed.root / "notes.jsonl").write_text("{}\n")
    assert main(["build", TEXTOCR, "--data-dir", str(renamed.root)]) == 2
    assert f"Similarly named files are here: {RENAMED};" in caplog.text and "--data-files" in caplog.text
    assert "notes.jsonl" not in caplog.text


def test_data_files_keyed_by_a_source_outside_the_config_are_refused(renamed: Playground) -> None:
    with pytest.raises(ConfigError, match=r"data_files key 'mix665k' names no source of this config"):
        datasets.load_dataset("llava_mixes", TEXTOCR, data_dir=str(renamed.root), data_files={"mix665k": RENAMED})


def test_embedding_flags_on_a_plain_config_are_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert main(["build", "mix665k", "--data-dir", str(tmp_path), "--embedder", "nonexistent/model"]) == 2
    assert "--embedder does not apply to mix665k: not deduplicated" in caplog.text


def test_a_threshold_that_contradicts_the_named_config_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    argv = ["publish", "mix665k-dedup-0.8", "--threshold", "0.9", "--repo", "a/b", "--version", "1.0.0"]
    assert main([*argv, "--local-dir", str(tmp_path / "OUT"), "--data-dir", str(tmp_path)]) == 2
    assert "--threshold 0.9 contradicts mix665k-dedup-0.8, whose threshold is 0.8" in caplog.text
    assert "mix665k-dedup-0.9, or mix665k --threshold 0.9" in caplog.text and not (tmp_path / "OUT").exists()


def test_version_and_help_follow_the_hf_conventions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out.startswith(f"llava-mixes {llava_mixes.__version__} (")
    with pytest.raises(SystemExit):
        main(["build", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "images per embedder forward pass (default: 64)" in text and "(default: auto)" in text
    assert "stop at the first one (default: skip)" in text and "examples: HF_HUB_OFFLINE=1 llava-mixes build" in text
    with pytest.raises(SystemExit):
        main(["publish", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--token TOKEN" in text and "--commit-message" in text and "(default: bytes)" in text


def test_the_build_header_says_what_dedup_compares(playground: Playground, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["build", "mix665k-dedup-0.8", "--data-dir", str(playground.root), "--embedder", "thumbnail"]
    assert main([*argv, "--scope", "global", "--stats-json", str(playground.root / "s.json")]) == 0
    assert (
        "dedup: images at cosine >= 0.8 to a kept image removed, compared across all images" in capsys.readouterr().out
    )


def test_publish_takes_a_commit_message(playground: Playground) -> None:
    api = RecordingHubApi()
    kwargs = {"api": api, "config_kwargs": {"embedder": "thumbnail"}, "card_views": False}
    release(["mix665k"], "demo/llava_mixes", "1.0.0", str(playground.root), commit_message="first cut", **kwargs)
    assert dict(api.calls)["create_commit"]["commit_message"] == "first cut"


def test_python_m_llava_mixes_builds_without_an_import_to_forget(tmp_path: Path) -> None:
    folder = write_playground(tmp_path / "pg").root
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    argv = [sys.executable, "-m", "llava_mixes", "build", TEXTOCR, "--data-dir", str(folder)]
    done = subprocess.run([*argv, "--stats-json", str(tmp_path / "s.json")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"{TEXTOCR} (v1.0.0)" in done.stdout and (tmp_path / "s.json").exists()
