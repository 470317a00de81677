"""Stale builds: an edit to the raw files (a row's text, a row added or cut, an image's bytes, a missing image
restored) shows up in the next build of the plain and the dedup config, through `load_dataset` and the CLI,
with no cache clearing; a release of changed rows under a released version is refused; and what must not
rebuild (a touch, speed settings) does not."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pytest

import llava_mixes
from llava_mixes import schema
from llava_mixes.building.report import BuildReport
from llava_mixes.cli.main import main
from llava_mixes.playground.layout import ANNOTATION_FILE, Playground
from llava_mixes.playground.pictures import encode, synthetic_photo

FEATURE = "stale builds"

PLAIN = "mix665k"
DEDUP = "mix665k-dedup-0.8"
CONFIGS = (PLAIN, DEDUP)
MISSING = "textvqa/train_images/ffffffffffffffff.jpg"


def load(playground: Playground, config: str, **kwargs: Any) -> datasets.DatasetDict:
    if config != PLAIN:
        kwargs.setdefault("embedder", "thumbnail")
    return datasets.load_dataset("llava_mixes", config, data_dir=str(playground.root), **kwargs)


def cli_build(playground: Playground, config: str, tmp_path: Path) -> BuildReport:
    stats = tmp_path / f"{config}.stats.json"
    argv = ["--log-level", "error", "build", config, "--data-dir", str(playground.root), "--stats-json", str(stats)]
    assert main([*argv, *(["--embedder", "thumbnail"] if config != PLAIN else [])]) == 0
    return BuildReport.load(stats)


def records(playground: Playground) -> list[dict[str, Any]]:
    return json.loads((playground.root / ANNOTATION_FILE).read_text())


def write_records(playground: Playground, rows: list[dict[str, Any]]) -> None:
    (playground.root / ANNOTATION_FILE).write_text(json.dumps(rows, indent=1))


def rows_by_source_id(dataset: datasets.DatasetDict) -> dict[str, dict[str, Any]]:
    return {row[schema.SOURCE_ID]: row for split in dataset.values() for row in dataset_rows(split)}


def dataset_rows(split: datasets.Dataset) -> list[dict[str, Any]]:
    return list(split.remove_columns(schema.IMAGE))


def picture(seed: int, size: tuple[int, int] = (160, 120)) -> Any:
    return synthetic_photo(np.random.default_rng(seed), *size)


@pytest.mark.adversarial("reflected")
@pytest.mark.parametrize("config", CONFIGS)
def test_an_edited_row_is_reflected_even_with_its_size_and_mtime_kept(playground: Playground, config: str) -> None:
    before = rows_by_source_id(load(playground, config))
    path = playground.root / ANNOTATION_FILE
    stat = path.stat()
    rows = records(playground)
    old = rows[0]["conversations"][1]["value"]
    rows[0]["conversations"][1]["value"] = old.swapcase()
    write_records(playground, rows)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    after = rows_by_source_id(load(playground, config))
    edited = str(rows[0]["id"])
    assert before[edited][schema.CONVERSATIONS][1]["value"] == old
    assert after[edited][schema.CONVERSATIONS][1]["value"] == old.swapcase()


@pytest.mark.adversarial("reflected")
@pytest.mark.parametrize("config", CONFIGS)
def test_an_added_row_is_reflected_by_the_cli_and_load_dataset(
    playground: Playground, config: str, tmp_path: Path
) -> None:
    assert cli_build(playground, config, tmp_path).rows_in == playground.rows
    rows = records(playground)
    added = {"id": "added-row", "image": rows[0]["image"], "conversations": rows[0]["conversations"]}
    write_records(playground, [*rows, added])
    report = cli_build(playground, config, tmp_path)
    assert report.rows_in == playground.rows + 1
    assert "added-row" in rows_by_source_id(load(playground, config))


@pytest.mark.adversarial("reflected")
@pytest.mark.parametrize("config", CONFIGS)
def test_rows_cut_from_55_to_20_are_reflected_by_the_cli_and_load_dataset(
    playground: Playground, config: str, tmp_path: Path
) -> None:
    assert playground.rows == 55
    first = cli_build(playground, config, tmp_path)
    assert first.rows_in == 55 and first.total().rows == 49
    write_records(playground, records(playground)[:20])
    report = cli_build(playground, config, tmp_path)
    assert report.rows_in == 20
    dataset = load(playground, config)
    assert sum(len(split) for split in dataset.values()) + llava_mixes.load_report(dataset).rejected_rows == 20


def replace_planted_copy(playground: Playground, keep_mtime: bool) -> str:
    """Overwrite the planted re-encoded copy of a COCO picture with an unrelated picture; return its path."""
    copy = next(path for path, (_, kind) in playground.planted.items() if kind == "re-encoded")
    file = playground.root / copy
    stat = file.stat()
    file.write_bytes(encode(picture(99)))
    if keep_mtime:
        os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return copy


@pytest.mark.adversarial("reflected")
@pytest.mark.parametrize("keep_mtime", [False, True], ids=["new-mtime", "mtime-restored"])
def test_replaced_image_bytes_are_reflected_in_the_plain_and_the_dedup_config(
    playground: Playground, keep_mtime: bool
) -> None:
    dedup_before = load(playground, DEDUP)
    plain_before = {
        row[schema.IMAGE_PATH]: row[schema.IMAGE_SHA256] for row in dataset_rows(load(playground, PLAIN)["train"])
    }
    copy = replace_planted_copy(playground, keep_mtime)
    assert copy in dedup_before["removed"][schema.IMAGE_PATH]
    dedup_after = load(playground, DEDUP)
    assert copy not in dedup_after["removed"][schema.IMAGE_PATH]
    assert copy in dedup_after["train"][schema.IMAGE_PATH]
    plain_after = {
        row[schema.IMAGE_PATH]: row[schema.IMAGE_SHA256] for row in dataset_rows(load(playground, PLAIN)["train"])
    }
    assert plain_after[copy] != plain_before[copy]
    assert {path: sha for path, sha in plain_after.items() if path != copy} == {
        path: sha for path, sha in plain_before.items() if path != copy
    }


@pytest.mark.adversarial("reflected")
@pytest.mark.parametrize("config", CONFIGS)
def test_an_image_rewritten_in_place_with_the_same_size_and_mtime_is_reflected(
    playground: Playground, config: str
) -> None:
    """Two BMPs of one size: only the content and the ctime tell them apart."""
    copy = next(path for path, (_, kind) in playground.planted.items() if kind == "resized")
    file = playground.root / copy
    file.write_bytes(encode(picture(7), "BMP"))
    before = rows_by_source_id(load(playground, config))
    stat = file.stat()
    file.write_bytes(encode(picture(8), "BMP"))
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (file.stat().st_size, file.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    after = rows_by_source_id(load(playground, config))
    row_id = next(key for key, row in after.items() if row[schema.IMAGE_PATH] == copy)
    assert after[row_id][schema.IMAGE_SHA256] != before[row_id][schema.IMAGE_SHA256]


@pytest.mark.adversarial("reflected")
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("restored_as", [MISSING, MISSING[:-4] + ".png"], ids=["same-name", "other-extension"])
def test_a_restored_missing_image_is_reflected(
    playground: Playground, config: str, restored_as: str, tmp_path: Path
) -> None:
    first = cli_build(playground, config, tmp_path)
    assert [r.reason for r in first.rejected if r.source_id == "0000000000"] == [schema.MISSING_IMAGE]
    (playground.root / restored_as).write_bytes(
        encode(picture(4242), "PNG" if restored_as.endswith("png") else "JPEG")
    )
    report = cli_build(playground, config, tmp_path)
    assert "0000000000" not in {r.source_id for r in report.rejected}
    assert report.rows_in == report.total().rows + report.rejected_rows == playground.rows
    row = rows_by_source_id(load(playground, config))["0000000000"]
    assert row[schema.IMAGE_PATH] == MISSING and row[schema.IMAGE_SHA256]


@pytest.mark.adversarial("reflected")
def test_a_dedup_config_whose_base_was_rebuilt_since_is_rebuilt(playground: Playground) -> None:
    """The plain build picks up the edit first; the dedup build then follows it without rebuilding the base."""
    load(playground, DEDUP)
    write_records(playground, records(playground)[:20])
    base = load(playground, PLAIN)["train"]
    assert len(base) == 20
    base_file = Path(base.cache_files[0]["filename"])
    built = base_file.stat().st_mtime_ns, base_file.stat().st_ino
    dataset = load(playground, DEDUP)
    assert llava_mixes.load_report(dataset).rows_in == 20
    assert (base_file.stat().st_mtime_ns, base_file.stat().st_ino) == built


@pytest.mark.adversarial("error")
def test_publishing_changed_rows_under_a_released_version_is_refused(playground: Playground, tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = ["--log-level", "error", "publish", PLAIN, "--repo", "demo/llava_mixes", "--version", "1.0.0"]
    argv += ["--local-dir", str(out), "--data-dir", str(playground.root), "--no-card-views"]
    assert main(argv) == 0
    assert main(argv) == 0  # the same content again: nothing to do
    rows = records(playground)
    rows[0]["conversations"][1]["value"] += " Edited."
    write_records(playground, rows)
    manifest = (out / "llava_mixes_manifest.json").read_text()
    assert main(argv) == 2
    assert (out / "llava_mixes_manifest.json").read_text() == manifest
    assert [release["version"] for release in json.loads(manifest)["versions"]] == ["1.0.0"]


@pytest.mark.adversarial("correct")
def test_a_touched_file_and_other_speed_settings_reuse_the_build(
    playground: Playground, caplog: pytest.LogCaptureFixture
) -> None:
    load(playground, DEDUP)
    annotation = playground.root / ANNOTATION_FILE
    os.utime(annotation)
    with caplog.at_level(logging.INFO, logger="llava_mixes"):
        again = load(playground, DEDUP, batch_size=3, num_workers=1)
    assert not [record for record in caplog.records if "rebuilding" in record.getMessage()]
    assert llava_mixes.load_report(again).rows_in == playground.rows


@pytest.mark.adversarial("reflected")
def test_a_rebuild_says_which_input_changed(playground: Playground, caplog: pytest.LogCaptureFixture) -> None:
    load(playground, PLAIN)
    replace_planted_copy(playground, keep_mtime=False)
    with caplog.at_level(logging.INFO, logger="llava_mixes"):
        load(playground, PLAIN)
    lines = [record.getMessage() for record in caplog.records if "rebuilding" in record.getMessage()]
    assert len(lines) == 1 and "changed" in lines[0] and "coco/train2017" in lines[0]


@pytest.mark.adversarial("correct")
def test_an_empty_annotation_file_builds_zero_rows_with_a_report(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / ANNOTATION_FILE).write_text("[]")
    dataset = datasets.load_dataset("llava_mixes", PLAIN, data_dir=str(data))
    assert len(dataset["train"]) == 0
    report = llava_mixes.load_report(dataset)
    assert report.rows_in == 0 and report.rejected == [] and report.total().rows == 0


@pytest.mark.adversarial("repaired")
@pytest.mark.parametrize("damage", ["garbage", "deleted"])
def test_a_damaged_record_of_inputs_rebuilds_the_same_rows(
    playground: Playground, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    first = load(playground, PLAIN)["train"]
    record = Path(first.cache_files[0]["filename"]).parent / "llava_mixes_inputs.arrow"
    if damage == "garbage":
        record.write_bytes(os.urandom(4096))
    else:
        record.unlink()
    rows = dataset_rows(first)
    with caplog.at_level(logging.INFO, logger="llava_mixes"):
        again = load(playground, PLAIN)["train"]
    assert [record.getMessage() for record in caplog.records if "rebuilding" in record.getMessage()]
    assert dataset_rows(again) == rows


def mix(playground: Playground, recipe: Path, **kwargs: Any) -> datasets.DatasetDict:
    return datasets.load_dataset("llava_mixes", "recipe", data_dir=str(playground.root), recipe=str(recipe), **kwargs)


@pytest.mark.adversarial("reflected")
def test_an_edited_source_of_a_recipe_reaches_its_splits_past_datasets_cached_maps(
    playground: Playground, tmp_path: Path
) -> None:
    """Issue 21, 3: the recipe's maps over its rebuilt base (`cache-*.arrow`) were reused, keyed by a fingerprint
    that named the build folder only."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("sources: [mix665k, svit-mix665k]\ndedup: {threshold: 0.8}\n")
    mix(playground, recipe)
    svit = playground.root / "SVIT_mix_665K.json"
    rows = json.loads(svit.read_text())
    edited = next(row for row in rows if str(row["id"]).startswith("svit_"))
    edited["conversations"][1]["value"] += " EDITED"
    svit.write_text(json.dumps(rows))
    again = mix(playground, recipe)
    fresh = mix(playground, recipe, cache_dir=str(tmp_path / "fresh"))
    where = {
        split: [row[schema.SOURCE_ID] for row in dataset_rows(rows) if "EDITED" in str(row)]
        for split, rows in again.items()
    }
    assert where == {split: [edited["id"]] if split == "train" else [] for split in again}
    assert {split: dataset_rows(rows) for split, rows in again.items()} == {
        split: dataset_rows(rows) for split, rows in fresh.items()
    }
