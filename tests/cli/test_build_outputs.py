"""What `llava-mixes build` and `verify` write and answer: one naming rule for statistics files (issue 21, 2), and
every flag value either builds or is one clear error (exit 2), never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llava_mixes.building.report import BuildReport, stats_file_name
from llava_mixes.cli.main import main
from llava_mixes.errors import PathEscapeError
from llava_mixes.playground.eval import write_eval_playground
from llava_mixes.playground.layout import Playground

DEDUP = "mix665k-dedup-0.8"


def test_a_decontaminated_build_does_not_overwrite_the_plain_configs_statistics(
    playground: Playground, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["--log-level", "error", "build", DEDUP, "--data-dir", str(playground.root), "--embedder", "thumbnail"]
    assert main(argv) == 0
    plain = (tmp_path / f"{DEDUP}.stats.json").read_text()
    evals = write_eval_playground(playground.root)
    assert main([*argv, "--decontaminate", str(evals.root)]) == 0
    assert (tmp_path / f"{DEDUP}.stats.json").read_text() == plain
    decontaminated = json.loads((tmp_path / f"{DEDUP}-decontaminated.stats.json").read_text())
    assert decontaminated["decontamination"]["rows_removed"] > 0
    assert main(["--log-level", "error", "build", "mix665k", "--data-dir", str(playground.root)]) == 0
    threshold = ["--threshold", "0.85", "--embedder", "thumbnail"]
    assert main(["--log-level", "error", "build", "mix665k", "--data-dir", str(playground.root), *threshold]) == 0
    assert sorted(path.name for path in tmp_path.glob("*.stats.json")) == [
        "mix665k-dedup-0.8-decontaminated.stats.json",
        "mix665k-dedup-0.8.stats.json",
        "mix665k-dedup-0.85.stats.json",
        "mix665k.stats.json",
    ]


def test_a_recipe_named_to_leave_the_folder_writes_no_statistics_outside(
    playground: Playground, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "a" / "b" / "work"
    (work / "recipe-x").mkdir(parents=True)  # so that the name's `..` steps would resolve
    monkeypatch.chdir(work)
    recipe = tmp_path / "escape.yaml"
    recipe.write_text('name: "x/../../../ESC"\nsources: [zh600k]\n')
    assert main(["--log-level", "error", "build", "--recipe", str(recipe), "--data-dir", str(playground.root)]) == 2
    assert not list(tmp_path.rglob("ESC*"))


@given(name=st.text(max_size=30), threshold=st.one_of(st.none(), st.floats(0.01, 1.0)), decontaminated=st.booleans())
def test_statistics_file_names_are_one_path_component_or_refused(
    name: str, threshold: float | None, decontaminated: bool
) -> None:
    report = BuildReport(name, "1.0.0", [])
    report.dedup = {"threshold": threshold} if threshold is not None else None
    report.decontamination = {"rows_removed": 0} if decontaminated else None
    try:
        file_name = stats_file_name(report)
    except PathEscapeError:
        return
    assert "/" not in file_name and ".." not in file_name and file_name.endswith(".stats.json")
    assert file_name.endswith("-decontaminated.stats.json") == decontaminated


FLAGS = (
    "--max-rejected",
    "--threshold",
    "--batch-size",
    "--num-workers",
    "--decontaminate-threshold",
    "--decontaminate-embedder",
    "--scope",
    "--precision",
    "--on-bad-records",
    "--embedder",
    "--device",
)
VALUES = st.one_of(
    st.text(max_size=12),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.integers(-3, 3).map(str),
    st.sampled_from(["0", "1", "0.5", "1e3", "-0", "group", "fp32", "skip", "thumbnail", "cpu"]),
)


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:  # argparse: a value of the wrong type or not among the choices
        return int(exit_.code or 0)


@given(flag=st.sampled_from(FLAGS), value=VALUES)
def test_any_flag_value_finds_the_build_folder_or_is_one_clear_error(flag: str, value: str, tmp_path: Path) -> None:
    """`verify` sets a config up exactly as `build` does, then finds no build (exit 1); a value that is refused
    exits 2 with the project's own error."""
    argv = ["--log-level", "error", "verify", DEDUP, "--data-dir", str(tmp_path / "data")]
    code = _exit_code([*argv, "--cache-dir", str(tmp_path / "hf"), f"{flag}={value}"])
    assert code in (1, 2)
    if flag == "--max-rejected":
        try:
            share = float(value)
        except ValueError:
            share = float("nan")
        assert code == (1 if 0 <= share <= 1 else 2)
