"""Hostile and careless ratio settings in recipes (`sample` factors and counts, `cap`, `shares`, `size`): NaN,
infinities, negatives, booleans, strings, huge factors, a zero cap, shares that do not sum to 1, unknown tasks,
shares no source can meet, a mix that would take 10^12 rows, and hostile task labels in the record. Each gives one
`LlavaMixesError` naming the value and what is allowed, or the right mix."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from llava_mixes import schema
from llava_mixes.builders import SOURCES
from llava_mixes.building import mixing
from llava_mixes.building.entry import build
from llava_mixes.building.report import BuildReport, ReportError, recipe_accounted
from llava_mixes.building.tables import TASK_LINES, format_recipe_table, format_task_table
from llava_mixes.cli.main import main
from llava_mixes.errors import ConfigError
from llava_mixes.playground import Playground
from llava_mixes.recipes import sampling
from llava_mixes.recipes.recipe import Recipe, RecipeSource, load_recipe

FEATURE = "recipes"

PLAIN = tuple(SOURCES)
MESSAGE_LIMIT = 1200


def refused(tmp_path: Path, text: str, match: str) -> str:
    path = tmp_path / "ratio.yaml"
    path.write_text(text, encoding="utf-8")
    started = time.monotonic()
    with pytest.raises(ConfigError, match=match) as caught:
        load_recipe(path, PLAIN)
    assert time.monotonic() - started < 5
    assert len(str(caught.value)) < MESSAGE_LIMIT
    return str(caught.value)


def build_text(playground: Playground, tmp_path: Path, text: str, name: str = "ratio") -> object:
    recipe = tmp_path / f"{name}.yaml"
    recipe.write_text(f"name: {name}\n{text}")
    kwargs = {"recipe": str(recipe), "content_cache_dir": str(tmp_path / "cc")}
    return build("recipe", str(playground.root), str(tmp_path / "hf"), **kwargs)


SOURCE = "sources:\n  - {config: mix665k, SETTING}\n"
SHARES = "sources: [mix665k]\nshares: SHARES\n"


@pytest.mark.adversarial("error")
@pytest.mark.parametrize(
    ("setting", "match"),
    [
        ("sample: .nan", r"sample=nan is not allowed"),
        ("sample: -.inf", r"sample=-inf is not allowed"),
        ("sample: -2.0", r"sample=-2.0 is not allowed; a fraction must lie in \(0, 1\], a factor in \(1, 1000\]"),
        ("sample: 1000.5", r"sample=1000.5 is not allowed; .*a factor in \(1, 1000\]"),
        ("sample: 1.0e+12", r"sample=1000000000000.0 is not allowed"),
        (
            "sample: 1000000000000",
            r"sample=1000000000000 is not allowed; a count must be >= 1 and at most 100,000,000",
        ),
        ("sample: 1e12", r"sample='1e12' is not allowed; give 'all', a row count"),  # YAML 1.1: a string
        ("sample: '2.0'", r"sample='2.0' is not allowed; give 'all', a row count"),
        ("sample: false", r"sample=False is not allowed"),
        ("cap: 0", r"sources\[mix665k\]\.cap=0 is not allowed; give a row count in \[1, 100,000,000\]"),
        ("cap: -5", r"sources\[mix665k\]\.cap=-5 is not allowed"),
        ("cap: 2.5", r"sources\[mix665k\]\.cap=2.5 is not allowed"),
        ("cap: true", r"sources\[mix665k\]\.cap=True is not allowed"),
        ("cap: 350K", r"sources\[mix665k\]\.cap='350K' is not allowed"),
        ("cap: 100000001", r"cap=100000001 is not allowed"),
    ],
)
def test_bad_samples_and_caps_name_the_value_and_the_range(tmp_path: Path, setting: str, match: str) -> None:
    refused(tmp_path, SOURCE.replace("SETTING", setting), match)


@pytest.mark.adversarial("error")
@pytest.mark.parametrize(
    ("shares", "match"),
    [
        ("{vqa: 0.5, caption: 0.4}", r"sum to 0.9, not 1; make them sum to 1 \(within 0.001\)"),
        ("{vqa: 0.6, caption: 0.6}", r"sum to 1.2, not 1"),
        ("{vqa: .nan, caption: 0.5}", r"shares.'vqa'=nan is not allowed; a share lies in \(0, 1\]"),
        ("{vqa: .inf}", r"shares.'vqa'=inf is not allowed"),
        ("{vqa: -0.5, caption: 1.5}", r"shares.'caption'=1.5 is not allowed|shares.'vqa'=-0.5 is not allowed"),
        ("{vqa: 0, caption: 1}", r"shares.'vqa'=0 is not allowed; .*leave a task out"),
        ("{vqa: true}", r"shares.'vqa'=True is not allowed"),
        ("{vqa: '0.5', caption: 0.5}", r"shares.'vqa'='0.5' is not allowed"),
        ("{}", r"shares=\{\} is not allowed; give a mapping of 1-1000 tasks"),
        ("[vqa, caption]", r"shares: 'vqa' is not allowed; give task: share pairs"),
        ("0.5", r"shares=0.5 is not allowed"),
        ("{1: 1.0}", r"shares: the task 1 is not allowed; give a task name"),
        ("{'  ': 1.0}", r"shares: the task '  ' is not allowed"),
    ],
)
def test_bad_shares_name_the_value_and_what_is_allowed(tmp_path: Path, shares: str, match: str) -> None:
    refused(tmp_path, SHARES.replace("SHARES", shares), match)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ratio.yaml"
    path.write_text(text)
    return path


@pytest.mark.adversarial("error")
@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("sources: [mix665k]\nsize: 100\n", r"size=100 is not allowed without shares"),
        (SHARES.replace("SHARES", "{vqa: 1}") + "size: 0\n", r"size=0 is not allowed; give a row count"),
        (SHARES.replace("SHARES", "{vqa: 1}") + "size: true\n", r"size=True is not allowed"),
        (SHARES.replace("SHARES", "{vqa: 1}") + "size: 1000000000000\n", r"size=1000000000000 is not allowed"),
        (SHARES.replace("SHARES", "{vqa: 1}") + "size: 2.5\n", r"size=2.5 is not allowed"),
        ("sources: [mix665k]\ncap: 0\n", r"^cap=0 is not allowed; give a row count"),
        ("sources: [mix665k]\ncap: .nan\n", r"^cap=nan is not allowed"),
    ],
)
def test_bad_sizes_and_recipe_caps_are_refused(tmp_path: Path, text: str, match: str) -> None:
    refused(tmp_path, text, match)


@pytest.mark.adversarial("correct")
def test_shares_a_rounding_away_from_one_and_nulls_are_read_as_meant(tmp_path: Path) -> None:
    near = load_recipe(_write(tmp_path, SHARES.replace("SHARES", "{vqa: 0.49999, caption: 0.5}")), PLAIN)
    assert near.shares == (("caption", 0.5), ("vqa", 0.49999))
    nothing = load_recipe(_write(tmp_path, SHARES.replace("SHARES", "null") + "cap: null\nsize: null\n"), PLAIN)
    assert (nothing.shares, nothing.cap, nothing.size) == (None, None, None)  # null: as if left out
    thirds = {"a": 0.333, "b": 0.333, "c": 0.333}
    targets = sampling.share_targets(tuple(thirds.items()), {"a": 100, "b": 100, "c": 100}, 99)
    assert targets == {"a": 33, "b": 33, "c": 33}


@pytest.mark.adversarial("error")
def test_a_factor_that_would_make_a_trillion_rows_is_refused_before_any_memory_is_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class BillionRows:
        def __len__(self) -> int:
            return 10**9

    def never(*args: object) -> np.ndarray:
        raise AssertionError("drew counts for a mix that is refused")

    monkeypatch.setattr(sampling, "draw_counts", never)
    monkeypatch.setattr("llava_mixes.recipes.recipe.draw_counts", never)
    recipe = Recipe("huge", (RecipeSource("mix665k", 1000.0),))
    source = mixing.SourceBuild("mix665k", BillionRows(), BuildReport("mix665k", "1", ["mix665k"]))  # type: ignore[arg-type]
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"asks 1,000,000,000,000 rows \(mix665k: 1,000,000,000,000\), more than"):
        mixing.sample_sources(recipe, [source])
    assert time.monotonic() - started < 1


@pytest.mark.adversarial("error")
def test_a_mix_over_the_bound_is_refused_on_a_real_build(
    playground: Playground, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mixing, "MAX_MIX_ROWS", 1000)
    with pytest.raises(ConfigError, match=r"more than the 1,000 a recipe may take; lower a source's sample or give"):
        build_text(playground, tmp_path, "sources:\n  - {config: mix665k, sample: 100.0}\n")


@pytest.mark.adversarial("error")
def test_a_misspelt_task_names_the_tasks_there_are(
    playground: Playground, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recipe = tmp_path / "typo.yaml"
    recipe.write_text("sources: [mix665k, textocr-gpt4v]\nshares: {ocr: 0.5, vqa: 0.5}\n")
    caches = ["--cache-dir", str(tmp_path / "hf"), "--content-cache-dir", str(tmp_path / "cc")]
    assert main(["build", "--recipe", str(recipe), "--data-dir", str(playground.root), *caches]) == 2
    assert "no sampled row has the task 'ocr'; the sampled rows' tasks: [" in caplog.text
    assert "'ocr_caption'" in caplog.text


@pytest.mark.adversarial("error")
def test_a_share_of_a_task_no_source_holds_is_refused(playground: Playground, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no sampled row has the task 'ocr_caption'; the sampled rows' tasks"):
        build_text(playground, tmp_path, "sources: [mix665k]\nshares: {ocr_caption: 0.5, vqa: 0.5}\n")


@pytest.mark.adversarial("error")
def test_a_share_a_cap_leaves_too_few_rows_for_is_refused(playground: Playground, tmp_path: Path) -> None:
    text = (
        "sources:\n  - mix665k\n  - {config: textocr-gpt4v, cap: 1}\nshares: {ocr_caption: 0.5, vqa: 0.5}\nsize: 10\n"
    )
    with pytest.raises(ConfigError, match=r"the task 'ocr_caption' \(share 0.5 of size=10\) needs 5 rows, .*hold 1"):
        build_text(playground, tmp_path, text)


@pytest.mark.adversarial("correct")
def test_a_tiny_factor_still_takes_one_row_and_a_cap_bounds_the_repeats(
    playground: Playground, tmp_path: Path
) -> None:
    built = build_text(
        playground,
        tmp_path,
        "cap: 9\nsources:\n  - {config: mix665k, sample: 0.0001}\n  - {config: textocr-gpt4v, sample: 1000.0}\n",
    )
    counts = Counter(built.dataset[schema.TRAIN_SPLIT][schema.SOURCE])
    assert counts == {"llava_v1_5_mix665k": 1, "textocr_gpt4v": 9}
    assert recipe_accounted(built.report)


@pytest.mark.adversarial("reflected")
def test_an_edited_cap_or_share_shows_in_the_next_build(playground: Playground, tmp_path: Path) -> None:
    first = build_text(playground, tmp_path, "sources:\n  - {config: mix665k, cap: 5}\n", "edited")
    second = build_text(playground, tmp_path, "sources:\n  - {config: mix665k, cap: 6}\n", "edited")
    third = build_text(playground, tmp_path, "sources:\n  - {config: mix665k, cap: 6}\nshares: {vqa: 1}\n", "edited")
    assert [len(each.dataset[schema.TRAIN_SPLIT]) for each in (first, second)] == [5, 6]
    assert set(third.dataset[schema.TRAIN_SPLIT][schema.TASK]) == {"vqa"}


@pytest.mark.adversarial("correct")
def test_hostile_task_labels_stay_one_table_cell() -> None:
    report = BuildReport("recipe", "1", ["zh600k"])
    report.recipe = {
        "sources": {
            "zh600k": {
                "rows_in": 2,
                "rejected": 0,
                "not_sampled": 0,
                "duplicate_rows": 0,
                "contaminated": 0,
                "not_embedded": 0,
                "removed": 0,
                "kept": 2,
                "repeats": 0,
                "requested": 2,
            }
        },
        "tasks": {
            "a | b\n| c": {"share": None, "requested": 1, "in_train": 1},
            "(no task)": {"share": None, "requested": 1, "in_train": 1},
        },
    }
    lines = format_task_table(report).splitlines()
    assert len(lines) == 5 and "| a \\| b \\| c | — | 1 | 1 | 0.5 |" in lines
    assert recipe_accounted(report)
    report.recipe["tasks"]["(no task)"]["in_train"] = 7  # a hand-edited record that does not add up
    assert not recipe_accounted(report)


@pytest.mark.adversarial("correct")
def test_a_record_from_before_ratios_still_renders() -> None:
    """A published card of an older release holds recipe records without `requested`, `repeats` or `tasks`."""
    report = BuildReport("recipe", "1", ["mix665k"])
    counts = {
        "rows_in": 3,
        "rejected": 1,
        "not_sampled": 0,
        "duplicate_rows": 0,
        "contaminated": 0,
        "not_embedded": 0,
        "removed": 0,
        "kept": 2,
    }
    report.recipe = {"sources": {"mix665k": counts}, "settings": {"sources": [{"config": "mix665k"}]}}
    table = format_recipe_table(report)
    assert "| mix665k | 3 | 1 | 0 | 0 | 0 | 0 | 0 | 2 | 0 | 2 | — |" in table
    assert format_task_table(report) == "" and recipe_accounted(report)


@pytest.mark.adversarial("correct")
@pytest.mark.parametrize(
    ("sources", "shares", "left_out"),
    [
        ("[mix665k, textocr-gpt4v]", "{ocr_caption: 1.0}", "mix665k"),
        ("[textocr-gpt4v, mix665k]", "{vqa: 1.0}", "textocr-gpt4v"),
        ("[textocr-gpt4v, sharegpt4v-mix665k, mix665k]", "{vqa: 1.0}", "textocr-gpt4v"),
    ],
)
def test_a_source_the_shares_take_nothing_from_is_all_not_sampled(
    playground: Playground, tmp_path: Path, sources: str, shares: str, left_out: str
) -> None:
    built = build_text(playground, tmp_path, f"sources: {sources}\nshares: {shares}\n")
    line = built.report.recipe["sources"][left_out]
    assert line["not_sampled"] == line["rows_in"] - line["rejected"] > 0 and line["kept"] == line["requested"] == 0
    assert recipe_accounted(built.report) and len(built.dataset[schema.TRAIN_SPLIT]) > 0


@pytest.mark.adversarial("correct")
def test_ten_thousand_task_labels_and_a_long_one_keep_the_table_short() -> None:
    """A source keeps the labels its annotations hold: a hostile file can give every row its own."""
    report = BuildReport("recipe", "1", ["zh600k"])
    tasks = {f"label {number}": {"share": None, "requested": 2, "in_train": 1} for number in range(10_000)}
    tasks["vqa"] = {"share": 1.0, "requested": 5, "in_train": 3}
    tasks["x" * 5000] = {"share": None, "requested": 9, "in_train": 9}
    report.recipe = {"sources": {}, "tasks": tasks}
    lines = format_task_table(report).splitlines()
    assert len(lines) == 2 + TASK_LINES + 2 and max(map(len, lines)) < 200
    assert "| vqa | 1 | 5 | 3 |" in "\n".join(lines)  # a task with a share is always shown
    assert lines[-2].startswith(f"| {10_002 - TASK_LINES:,} other tasks | — |")
    assert lines[-1] == "| total | 1 | 20,014 | 10,012 | 1 |"


@pytest.mark.adversarial("error")
@pytest.mark.parametrize(
    "recipe",
    [
        {"sources": {"mix665k": {"kept": "2"}}},
        {"sources": {"mix665k": {"repeats": -1}}},
        {"sources": {"mix665k": {"kept": True}}},
        {"sources": [], "tasks": {}},
        {"sources": {}, "tasks": {"vqa": {"share": "0.5", "requested": 1, "in_train": 1}}},
        {"sources": {}, "tasks": {"vqa": {"share": None, "requested": 1.5, "in_train": 1}}},
        {"sources": {}, "tasks": {"vqa": 3}},
    ],
)
def test_a_report_whose_recipe_record_lost_its_types_is_refused_by_name(tmp_path: Path, recipe: dict) -> None:
    path = tmp_path / "llava_mixes_report.json"
    report = BuildReport("recipe", "1", ["mix665k"])
    report.recipe = recipe
    path.write_text(json.dumps(report.to_json()))
    with pytest.raises(ReportError, match=r"the build report .*llava_mixes_report.json cannot be read"):
        BuildReport.load(path)
