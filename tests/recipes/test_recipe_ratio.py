"""Mixing by ratio on tiny real builds: upsampling (a factor, a count above the source's size), caps (a source's, the
recipe's), shares by task (with a size, or sized by the binding task), deliberate repeats through duplicate rows and
dedup (never taken for duplicates, never counted twice), the base rows without repeats, and the record (the report,
the CLI summary and the card) with the requested rows next to the rows in `train`, per source and per task."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from llava_mixes import schema
from llava_mixes.builders import SOURCES
from llava_mixes.building.entry import Built, build
from llava_mixes.building.mixing import DUPLICATE_SPLIT
from llava_mixes.building.report import RECIPE_COUNTS, recipe_accounted
from llava_mixes.building.tables import format_recipe_table, format_task_table
from llava_mixes.cli.main import main
from llava_mixes.decontam import CONTAMINATED_SPLIT
from llava_mixes.errors import ConfigError
from llava_mixes.playground import Playground
from llava_mixes.playground.eval import write_eval_playground
from llava_mixes.publish.publish import CARD_FILE
from llava_mixes.recipes.recipe import parse_recipe
from llava_mixes.recipes.sampling import REPEAT_MARK
from llava_mixes.workflows.handover import run_export
from llava_mixes.workflows.release import release

PLAIN = tuple(SOURCES)
NAMES = {SOURCES[config].name: config for config in SOURCES}


def build_text(playground: Playground, tmp_path: Path, text: str, name: str = "ratio") -> Built:
    recipe = tmp_path / f"{name}.yaml"
    recipe.write_text(f"name: {name}\n{text}")
    kwargs = {"recipe": str(recipe), "content_cache_dir": str(tmp_path / "cc")}
    return build("recipe", str(playground.root), str(tmp_path / "hf"), **kwargs)


def plain_rows(playground: Playground, tmp_path: Path, config: str) -> int:
    built = build(config, str(playground.root), str(tmp_path / "hf"), content_cache_dir=str(tmp_path / "cc"))
    return len(built.dataset[schema.TRAIN_SPLIT])


def train_by_source(built: Built) -> Counter[str]:
    return Counter(NAMES[source] for source in built.dataset[schema.TRAIN_SPLIT][schema.SOURCE])


def assert_accounted(built: Built) -> None:
    """Every source's rows accounted for, `train` = kept + repeats per source, and the tasks add up."""
    sources = built.report.recipe["sources"]
    assert recipe_accounted(built.report)
    assert all(c["rows_in"] == sum(c[key] for key in RECIPE_COUNTS[1:]) for c in sources.values())
    in_train = train_by_source(built)
    assert {config: c["kept"] + c["repeats"] for config, c in sources.items() if c["kept"]} == dict(in_train)
    ids = built.dataset[schema.TRAIN_SPLIT][schema.ID]
    assert len(set(ids)) == len(ids)  # every repeat has its own id


def test_a_factor_takes_every_row_that_many_times(playground: Playground, tmp_path: Path) -> None:
    rows = plain_rows(playground, tmp_path, "textocr-gpt4v")
    built = build_text(playground, tmp_path, "sources:\n  - mix665k\n  - {config: textocr-gpt4v, sample: 2.0}\n")
    assert_accounted(built)
    line = built.report.recipe["sources"]["textocr-gpt4v"]
    assert line["requested"] == 2 * rows and line["repeats"] == line["kept"] == rows
    ids = [row_id for row_id in built.dataset[schema.TRAIN_SPLIT][schema.ID] if row_id.startswith("textocr")]
    originals = [row_id for row_id in ids if REPEAT_MARK not in row_id]
    # The kept rows, then their repeats, each with the row's id and `#r1`.
    assert ids == originals + [f"{row_id}#r1" for row_id in originals]
    assert built.report.recipe["sources"]["mix665k"]["repeats"] == 0


def test_a_count_above_the_size_repeats_every_row_and_draws_the_rest(playground: Playground, tmp_path: Path) -> None:
    rows = plain_rows(playground, tmp_path, "textocr-gpt4v")
    built = build_text(
        playground, tmp_path, f"seed: 4\nsources:\n  - {{config: textocr-gpt4v, sample: {2 * rows + 3}}}\n"
    )
    assert_accounted(built)
    train = built.dataset[schema.TRAIN_SPLIT]
    assert len(train) == 2 * rows + 3
    times = Counter(row_id.split(REPEAT_MARK)[0] for row_id in train[schema.ID])
    assert sorted(Counter(times.values()).items()) == [(2, rows - 3), (3, 3)]
    again = build_text(
        playground, tmp_path, f"seed: 4\nsources:\n  - {{config: textocr-gpt4v, sample: {2 * rows + 3}}}\n", "again"
    )
    assert again.dataset[schema.TRAIN_SPLIT][schema.ID] == train[schema.ID]


def test_caps_bound_each_source_and_a_sources_own_cap_replaces_the_recipes(
    playground: Playground, tmp_path: Path
) -> None:
    text = (
        "cap: 7\nsources:\n  - mix665k\n  - {config: sharegpt4v-mix665k, cap: 11}\n"
        "  - {config: textocr-gpt4v, sample: 5.0}\nduplicate_rows: keep\n"
    )
    built = build_text(playground, tmp_path, text)
    assert_accounted(built)
    assert train_by_source(built) == {"mix665k": 7, "sharegpt4v-mix665k": 11, "textocr-gpt4v": 7}
    assert {config: c["requested"] for config, c in built.report.recipe["sources"].items()} == {
        "mix665k": 7,
        "sharegpt4v-mix665k": 11,
        "textocr-gpt4v": 7,
    }
    table = format_recipe_table(built.report)
    assert "| 7 (all, cap 7) |" in table and "| 11 (all, cap 11) |" in table and "| 7 (5.0, cap 7) |" in table


def test_shares_with_a_size_take_each_tasks_rows(playground: Playground, tmp_path: Path) -> None:
    text = (
        "sources:\n  - mix665k\n  - {config: textocr-gpt4v, sample: 2.0}\n"
        "shares: {vqa: 0.5, ocr_caption: 0.3, conversation: 0.2}\nsize: 10\nduplicate_rows: keep\n"
    )
    built = build_text(playground, tmp_path, text)
    assert_accounted(built)
    assert Counter(built.dataset[schema.TRAIN_SPLIT][schema.TASK]) == {"vqa": 5, "ocr_caption": 3, "conversation": 2}
    tasks = built.report.recipe["tasks"]
    assert {task: (line["share"], line["requested"], line["in_train"]) for task, line in tasks.items()} == {
        "conversation": (0.2, 2, 2),
        "ocr_caption": (0.3, 3, 3),
        "vqa": (0.5, 5, 5),
    }
    # Rows of the tasks the shares do not name leave as not sampled.
    mix = built.report.recipe["sources"]["mix665k"]
    assert mix["not_sampled"] == plain_rows(playground, tmp_path, "mix665k") - 7


def test_without_a_size_the_binding_task_sizes_the_mix(playground: Playground, tmp_path: Path) -> None:
    text = "sources:\n  - mix665k\n  - textocr-gpt4v\nshares: {ocr_caption: 0.5, vqa: 0.5}\n"
    built = build_text(playground, tmp_path, text)
    ocr = plain_rows(playground, tmp_path, "textocr-gpt4v")
    tasks = Counter(built.dataset[schema.TRAIN_SPLIT][schema.TASK])
    assert tasks == {"ocr_caption": ocr, "vqa": ocr}  # every OCR row, as many VQA rows


def test_a_share_that_cannot_be_met_fails_and_names_the_way_out(playground: Playground, tmp_path: Path) -> None:
    text = "sources:\n  - mix665k\n  - textocr-gpt4v\nshares: {ocr_caption: 0.5, vqa: 0.5}\nsize: 30\n"
    with pytest.raises(ConfigError, match=r"the task 'ocr_caption' .*needs 15 rows.*hold \d+ of it; raise the sample"):
        build_text(playground, tmp_path, text)
    upsampled = text.replace("  - textocr-gpt4v", "  - {config: textocr-gpt4v, sample: 4.0}")
    built = build_text(playground, tmp_path, upsampled, "upsampled")
    assert Counter(built.dataset[schema.TRAIN_SPLIT][schema.TASK]) == {"ocr_caption": 15, "vqa": 15}


def test_repeats_are_never_duplicates_and_leave_with_their_row(playground: Playground, tmp_path: Path) -> None:
    """ShareGPT4V's mix repeats rows of the 665K mix: upsampling both 3 times removes the same rows as exact
    duplicates, benchmark pictures and near duplicates as taking them once, and none of the repeats of a removed row
    is in `train`."""
    evals = write_eval_playground(playground.root).root
    sources = "sources:\n  - {config: mix665k, sample: SAMPLE}\n  - {config: sharegpt4v-mix665k, sample: SAMPLE}\n"
    text = sources + "dedup: {threshold: 0.8, embedder: thumbnail}\n"
    text += f"decontaminate: {{references: [{str(evals)!r}], embedder: thumbnail}}\n"
    once = build_text(playground, tmp_path, text.replace("SAMPLE", "1.0"), "once")
    thrice = build_text(playground, tmp_path, text.replace("SAMPLE", "3.0"), "thrice")
    assert_accounted(thrice)
    share = thrice.report.recipe["sources"]["sharegpt4v-mix665k"]
    for config in ("mix665k", "sharegpt4v-mix665k"):
        for key in ("duplicate_rows", "contaminated", "removed", "kept", "not_sampled"):
            assert once.report.recipe["sources"][config][key] == thrice.report.recipe["sources"][config][key]
    assert share["duplicate_rows"] > 0 and share["repeats"] == 2 * share["kept"]
    assert thrice.report.recipe["sources"]["mix665k"]["contaminated"] > 0
    assert thrice.report.duplicate_rows == once.report.duplicate_rows
    splits = (DUPLICATE_SPLIT, CONTAMINATED_SPLIT, schema.REMOVED_SPLIT)
    for split in splits:
        assert thrice.dataset[split][schema.ID] == once.dataset[split][schema.ID]
    gone = {row_id for split in splits for row_id in thrice.dataset[split][schema.ID]}
    assert not any(REPEAT_MARK in row_id for row_id in gone)
    train = thrice.dataset[schema.TRAIN_SPLIT][schema.ID]
    assert not {row_id.split(REPEAT_MARK)[0] for row_id in train} & gone
    # The rows dedup started from, without the repeats: what `llava-mixes report` analyses.
    assert sorted(thrice.base[schema.ID]) == sorted(once.base[schema.ID])
    assert thrice.report.total().kept_rows == once.report.total().kept_rows


def old_digest(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def test_the_digest_covers_every_new_key_and_keeps_the_old_ones() -> None:
    base = {"sources": [{"config": "mix665k", "sample": 0.5}]}
    one = parse_recipe(base, "a", PLAIN)
    before = {
        "name": "a",
        "sources": [{"config": "mix665k", "sample": 0.5}],
        "seed": 0,
        "dedup": None,
        "decontaminate": None,
        "duplicate_rows": "remove",
    }
    assert one.digest() == old_digest(before)  # a recipe without the new keys keeps the digest it had
    variants = [
        {"sources": [{"config": "mix665k", "sample": 2.0}]},
        {"sources": [{"config": "mix665k", "sample": 0.5, "cap": 10}]},
        {**base, "cap": 10},
        {**base, "shares": {"vqa": 1.0}},
        {**base, "shares": {"vqa": 0.5, "caption": 0.5}},
        {**base, "shares": {"vqa": 0.5, "caption": 0.5}, "size": 100},
    ]
    digests = {parse_recipe(data, "a", PLAIN).digest() for data in variants}
    assert len(digests) == len(variants) and one.digest() not in digests
    same = parse_recipe({**base, "shares": {"caption": 0.5, "vqa": 0.5}}, "a", PLAIN)
    assert same.digest() == parse_recipe(variants[4], "a", PLAIN).digest()  # the order of the shares is no setting


def test_the_cli_summary_shows_requested_and_in_train_per_source_and_task(
    playground: Playground, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tmp_path / "mix.yaml"
    recipe.write_text(
        "sources:\n  - mix665k\n  - {config: textocr-gpt4v, sample: 2.0}\nshares: {vqa: 0.5, ocr_caption: 0.5}\n"
    )
    argv = ["build", "--recipe", str(recipe), "--data-dir", str(playground.root), "--cache-dir", str(tmp_path / "hf")]
    assert main([*argv, "--content-cache-dir", str(tmp_path / "cc")]) == 0
    printed = capsys.readouterr().out
    built = build_text(playground, tmp_path, recipe.read_text(), "mix")
    assert format_recipe_table(built.report) in printed and format_task_table(built.report) in printed
    assert re.search(r"\| ocr_caption \| 0\.5 \| \d+ \| \d+ \| 0\.5 \|", printed)
    assert "requested (sample)" in printed and "| repeats |" in printed


def test_the_card_and_an_export_of_the_published_copy_show_the_repeats(playground: Playground, tmp_path: Path) -> None:
    recipe = tmp_path / "mix.yaml"
    recipe.write_text(
        "name: mix\nsources:\n  - mix665k\n  - {config: textocr-gpt4v, sample: 3.0}\n"
        "cap: 40\nshares: {vqa: 0.5, ocr_caption: 0.5}\nsize: 24\n"
    )
    out = tmp_path / "out"
    kwargs = {"content_cache_dir": str(tmp_path / "cc")}
    release(
        [],
        "demo/llava_mixes",
        "1.0.0",
        str(playground.root),
        recipes=[str(recipe)],
        local_dir=out,
        cache_dir=str(tmp_path / "hf"),
        config_kwargs=kwargs,
    )
    built = build_text(playground, tmp_path, recipe.read_text().removeprefix("name: mix\n"), "mix")
    card = (out / CARD_FILE).read_text()
    assert format_recipe_table(built.report) in card and format_task_table(built.report) in card
    assert "`train` holds kept + repeats" in card and "| ocr_caption | 0.5 | 12 | 12 | 0.5 |" in card
    # The card's settings are the recipe as built: read again, they have its digest.
    block = re.search(r"```yaml\n(.*?)\n```", card.split("### `recipe-mix`")[1], flags=re.DOTALL).group(1)
    settings = {key: value for key, value in yaml.safe_load(block).items() if value is not None}
    assert parse_recipe(settings, "other", PLAIN).digest() == built.report.recipe["digest"]
    exported, _ = run_export("recipe-mix", "llava", tmp_path / "export", from_=out)
    records = json.loads(exported.data_file.read_text())
    train = built.dataset[schema.TRAIN_SPLIT]
    # LLaVA's `id` is the source's id: a repeat has its row's.
    assert [record["id"] for record in records] == train[schema.SOURCE_ID] and exported.rows == len(train)
    pictures = {record["image"] for record in records if "image" in record}
    assert exported.images_written == len(pictures) < exported.image_rows  # a repeated row's picture written once
