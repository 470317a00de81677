"""Quiet output (issue 23, item 7): `datasets`' bars of sub-second internal steps hidden, the bars of long work
kept, warnings on their own lines, the removal alarm only on groups big enough to mean something, and the demo
ending with the next three commands, each of which runs as printed."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import datasets
import pytest

from llava_mixes import progress
from llava_mixes.building.report import REMOVAL_ALARM_MIN_ROWS, BuildReport, GroupStats, alarm_line, removal_alarms
from llava_mixes.cli.main import main
from llava_mixes.playground.layout import Playground

ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@pytest.fixture
def bars_on() -> Iterator[None]:
    """Progress bars shown, as outside the test suite (tests/conftest.py hides them)."""
    datasets.enable_progress_bars()
    yield
    datasets.disable_progress_bars()


@pytest.mark.usefixtures("bars_on")
def test_quiet_hides_datasets_bars_of_a_small_step_and_shows_them_again() -> None:
    with progress.quiet(progress.QUIET_ROWS - 1):
        assert datasets.utils.are_progress_bars_disabled()
    assert not datasets.utils.are_progress_bars_disabled()
    with progress.quiet(progress.QUIET_ROWS):
        assert not datasets.utils.are_progress_bars_disabled()


def test_quiet_leaves_bars_hidden_where_they_were() -> None:
    with progress.quiet(1):
        pass
    assert datasets.utils.are_progress_bars_disabled()


@pytest.mark.usefixtures("bars_on")
def test_quiet_restores_the_bars_after_an_error() -> None:
    with pytest.raises(RuntimeError), progress.quiet(1):
        raise RuntimeError("a step failed")
    assert not datasets.utils.are_progress_bars_disabled()


@pytest.mark.usefixtures("bars_on")
def test_a_small_cast_draws_no_bar(capsys: pytest.CaptureFixture[str]) -> None:
    rows = datasets.Dataset.from_dict({"a": [1, 2, 3]}).select([0, 2])
    with progress.quiet(len(rows)):
        rows.add_column("b", ["x", "y"]).cast(
            datasets.Features({"a": datasets.Value("int64"), "b": datasets.Value("string")})
        )
    assert capsys.readouterr().err == ""
    rows.add_column("b", ["x", "y"])
    assert "Flattening the indices" in capsys.readouterr().err  # the check above can fail


def test_the_command_line_keeps_long_bars_drops_short_ones_and_puts_warnings_on_their_own_line(
    playground: Playground, tmp_path: Path
) -> None:
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_DATASETS_DISABLE_PROGRESS_BARS", None)
    argv = [sys.executable, "-m", "llava_mixes", "build", "mix665k-dedup-0.8", "--data-dir", str(playground.root)]
    argv += ["--embedder", "thumbnail", "--stats-json", str(tmp_path / "s.json")]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Normalising llava_v1_5_mix665k" in done.stderr and "Embedding images" in done.stderr
    assert "Casting the dataset" not in done.stderr and "Flattening the indices" not in done.stderr
    warning = "WARNING llava_mixes.sources.normalise: llava_v1_5_mix665k: rejected 6 of 55 rows"
    line = next(line for line in re.split(r"[\r\n]", done.stderr) if warning in line)
    assert ESCAPES.sub("", line).startswith(warning)  # at the start of a cleared line, not after a bar


def _report(*groups: GroupStats, contaminated: dict[str, dict[str, int]] | None = None) -> BuildReport:
    report = BuildReport("mix665k-dedup-0.8", "1.0.0", ["mix665k"], dedup={"threshold": 0.8})
    report.groups = list(groups)
    report.decontamination = {"groups": contaminated or {}, "benchmarks": [], "rows_removed": 0}
    return report


def test_the_removal_alarm_needs_a_group_of_the_minimum_size() -> None:
    small = REMOVAL_ALARM_MIN_ROWS - 1
    report = _report(
        GroupStats("sam", rows=small, kept_rows=0, removed_rows=small),
        GroupStats("coco", rows=REMOVAL_ALARM_MIN_ROWS, kept_rows=13, removed_rows=7),
        contaminated={"sam": {"rows": small, "contaminated": small}, "gqa": {"rows": 20, "contaminated": 7}},
    )
    assert REMOVAL_ALARM_MIN_ROWS == 20
    assert [(alarm["step"], alarm["image_group"]) for alarm in removal_alarms(report)] == [
        ("dedup", "coco"),
        ("decontamination", "gqa"),
    ]
    assert removal_alarms(_report(GroupStats("sam", rows=3, kept_rows=2, removed_rows=1))) == []


def test_the_alarm_line_states_the_minimum_group_size() -> None:
    [alarm] = removal_alarms(_report(GroupStats("coco", rows=20, kept_rows=10, removed_rows=10)))
    assert alarm_line(alarm).startswith(
        "dedup removed 10 of 20 rows (50%) of the group 'coco', more than 30% (an alarm for groups of 20 rows or "
        "more); see the removed pairs"
    )


def test_the_demo_ends_with_three_commands_that_run_as_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["--log-level", "error", "demo", "--out", "my demo"]) == 0
    out = capsys.readouterr().out
    assert "ALARM" not in out  # the playground's groups are all smaller than the alarm's minimum
    head, _, tail = out.rpartition("\nnext, try:\n")
    assert head.endswith("statistics written to my demo/*.stats.json\n")
    lines = tail.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["llava-mixes", "report"],
        ["llava-mixes", "export"],
        ["llava-mixes", "publish"],
    ]
    for line in lines:
        assert main(["--log-level", "error", *shlex.split(line, comments=True)[1:]]) == 0, line
    assert (tmp_path / "my demo" / "report" / "index.html").is_file()
    assert (tmp_path / "my demo" / "release" / "README.md").is_file()
    assert any((tmp_path / "my demo" / "exported").iterdir())
