from __future__ import annotations

import json
from pathlib import Path

import datasets
import datasets.data_files
import pytest
from helpers import assert_schema_invariants

import llava_mixes
from llava_mixes import schema
from llava_mixes.build_report import BuildReport
from llava_mixes.embedding.embedders import ThumbnailEmbedder
from llava_mixes.errors import BadRecordError, ConfigError, MalformedSourceError, MissingDataError
from llava_mixes.playground.layout import ANNOTATION_FILE, Playground


def load(playground: Playground, config: str, **kwargs: object) -> datasets.DatasetDict:
    return datasets.load_dataset("llava_mixes", config, data_dir=str(playground.root), **kwargs)


def test_plugin_resolves_without_scanning_data_dir(playground: Playground, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_scan(*args: object, **kwargs: object) -> None:
        raise AssertionError("data_dir was scanned for data files")

    monkeypatch.setattr(datasets.data_files, "get_data_patterns", no_scan)
    monkeypatch.setattr(datasets.load, "get_data_patterns", no_scan)
    builder = datasets.load_dataset_builder("llava_mixes", "mix665k", data_dir=str(playground.root))
    assert isinstance(builder, llava_mixes.LlavaMixes)
    assert datasets.get_dataset_config_names("llava_mixes")[:4] == [
        "mix665k",
        "mix665k-dedup-0.7",
        "mix665k-dedup-0.8",
        "mix665k-dedup-0.9",
    ]


def test_plain_config_normalises_and_rejects_with_reasons(playground: Playground) -> None:
    dataset = load(playground, "mix665k")
    train = dataset["train"]
    assert list(dataset) == ["train"]
    assert train.features == schema.ROW_FEATURES
    assert_schema_invariants(train)
    report = llava_mixes.load_report(dataset)
    assert {r.source_id: r.reason for r in report.rejected} == {
        "000000777777": "undecodable_image",
        "31337": "undecodable_image",
        "0000000000": "missing_image",
        "escape": "path_escapes_data_dir",
        "backwards": "turns_not_alternating",
        "two-tokens": "multiple_image_tokens",
    }
    expected = {f"llava_v1_5_mix665k-{r.row_index:07d}": r.reason for r in report.rejected}
    assert expected == playground.expected_rejections
    assert report.rows_in == playground.rows == len(train) + report.rejected_rows
    total = report.total()
    assert total.rows == len(train) and total.rejected_rows == report.rejected_rows


def test_quirky_rows_come_out_right(playground: Playground) -> None:
    train = load(playground, "mix665k")["train"]
    by_source_id: dict[str, list[dict]] = {}
    for row in train:
        by_source_id.setdefault(row[schema.SOURCE_ID], []).append(row)
    gqa = next(row for row in train if row[schema.IMAGE_GROUP] == "gqa")
    assert gqa[schema.SOURCE_ID].isdigit() and gqa[schema.TASK] == "vqa"
    assert [row[schema.SOURCE_ID] for row in train].count("sharegpt_0") == 1
    assert any(len(rows) == 2 for rows in by_source_id.values())  # a repeated id, two rows, two ids
    mid = by_source_id["mid-token"][0]
    assert (
        mid[schema.CONVERSATIONS][0]["value"]
        == "<image>\nWhat do you think is going on in this snapshot?\nIn a style that echoes."
    )
    text_only = by_source_id["sharegpt_1"][0]
    assert text_only[schema.IMAGE] is None and text_only[schema.TASK] == "text"
    formats = {row[schema.IMAGE].format for row in train if row[schema.IMAGE_GROUP] == "ocr_vqa"}
    assert formats == {"JPEG", "GIF", "PNG"}
    gif_named_file = next(
        row for row in train if row[schema.IMAGE_GROUP] == "ocr_vqa" and row[schema.IMAGE].format == "GIF"
    )
    assert gif_named_file[schema.IMAGE_PATH].endswith(".jpg")


def test_dedup_config_removes_exactly_the_planted_copies(
    playground: Playground, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    original = ThumbnailEmbedder.embed
    monkeypatch.setattr(
        ThumbnailEmbedder, "embed", lambda self, batch: calls.append(len(batch)) or original(self, batch)
    )
    dataset = load(playground, "mix665k-dedup-0.8", embedder="thumbnail")
    assert list(dataset) == ["train", "removed"]
    removed = dataset["removed"]
    assert {row[schema.IMAGE_PATH]: row[schema.DUPLICATE_OF] for row in removed} == {
        copy: original_path for copy, (original_path, _) in playground.planted.items()
    }
    assert all(0.8 <= similarity <= 1.0 for similarity in removed[schema.SIMILARITY])
    assert_schema_invariants(dataset["train"])
    report = llava_mixes.load_report(dataset)
    total = report.total()
    assert total.removed_images == len(playground.planted) and total.removed_rows == len(removed)
    assert report.rows_in == len(dataset["train"]) + len(removed) + report.rejected_rows
    assert sum(calls) == report.embedding["images"] > 0

    calls.clear()
    other = load(playground, "mix665k", embedder="thumbnail", dedup_threshold=0.95)
    assert sum(calls) == 0
    assert llava_mixes.load_report(other).dedup["threshold"] == 0.95


def test_threshold_one_keeps_near_copies_and_an_empty_split_still_loads(playground: Playground) -> None:
    dataset = load(playground, "mix665k", embedder="thumbnail", dedup_threshold=1.0, dedup_scope="global")
    assert dataset["removed"][schema.SIMILARITY] == [1.0]  # only the byte-identical copy
    (playground.root / "vg" / "VG_100K" / "99999.jpg").unlink()
    empty = load(playground, "mix665k", embedder="thumbnail", dedup_threshold=1.0, download_mode="force_redownload")
    assert len(empty["removed"]) == 0


def test_keep_embeddings_adds_the_column(playground: Playground) -> None:
    dataset = load(playground, "mix665k-dedup-0.9", embedder="thumbnail", keep_embeddings=True)
    assert dataset["train"].features[schema.EMBEDDING] == schema.embedding_feature(1024)


def test_tiny_vit_checkpoint_builds_a_dedup_config(playground: Playground, tiny_clip: Path) -> None:
    dataset = load(playground, "mix665k-dedup-0.9", embedder=str(tiny_clip), device="cpu", batch_size=8)
    report = llava_mixes.load_report(dataset)
    assert report.dedup["embedder"]["model"] == str(tiny_clip)
    assert len(dataset["train"]) + len(dataset["removed"]) + report.rejected_rows == playground.rows


def test_error_policy_stops_at_the_first_bad_record(playground: Playground) -> None:
    with pytest.raises(BadRecordError, match=r"row 49 .*undecodable_image"):
        load(playground, "mix665k", on_bad_records="error")


def test_missing_data_dir_and_annotation_file_say_what_to_download(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match="pass data_dir"):
        datasets.load_dataset("llava_mixes", "mix665k")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingDataError, match="liuhaotian/LLaVA-Instruct-150K"):
        datasets.load_dataset("llava_mixes", "mix665k", data_dir=str(tmp_path / "empty"))


def test_malformed_annotation_file_names_file_and_position(playground: Playground) -> None:
    path = playground.root / ANNOTATION_FILE
    path.write_text(path.read_text().replace('"conversations"', '"conversations" :: ', 1))
    with pytest.raises(MalformedSourceError, match=r"llava_v1_5_mix665k.json: malformed JSON at line \d+, column \d+"):
        load(playground, "mix665k")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dedup_threshold": 0}, "dedup_threshold=0 "),
        ({"dedup_scope": "everything"}, r"choose one of \['group', 'global'\]"),
        ({"on_bad_records": "warn"}, r"choose one of \['skip', 'error'\]"),
        ({"batch_size": 0}, "batch_size=0"),
    ],
)
def test_bad_config_values_name_the_value_and_allowed_ones(playground: Playground, kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load(playground, "mix665k", **kwargs)


def test_unknown_config_lists_the_available_ones(playground: Playground) -> None:
    with pytest.raises(ValueError, match=r"mix665k-dedup-0\.8"):
        load(playground, "mix665k-dedup-0.85")


def test_report_round_trips_through_json(playground: Playground, tmp_path: Path) -> None:
    report = llava_mixes.load_report(load(playground, "mix665k"))
    report.save(tmp_path / "r.json")
    assert BuildReport.load(tmp_path / "r.json") == report
    assert json.loads((tmp_path / "r.json").read_text())["reject_reasons"]["undecodable_image"] == 2


def test_speed_and_dedup_settings_do_not_rebuild_a_plain_config(playground: Playground) -> None:
    first = datasets.load_dataset_builder("llava_mixes", "mix665k", data_dir=str(playground.root))
    again = datasets.load_dataset_builder(
        "llava_mixes", "mix665k", data_dir=str(playground.root), embedder="thumbnail", batch_size=3, num_workers=1
    )
    assert again.cache_dir == first.cache_dir
    other = datasets.load_dataset_builder(
        "llava_mixes", "mix665k", data_dir=str(playground.root), on_bad_records="error"
    )
    assert other.cache_dir != first.cache_dir
    dedup = datasets.load_dataset_builder(
        "llava_mixes", "mix665k-dedup-0.8", data_dir=str(playground.root), embedder="thumbnail"
    )
    assert (
        dedup.cache_dir
        != datasets.load_dataset_builder("llava_mixes", "mix665k-dedup-0.8", data_dir=str(playground.root)).cache_dir
    )
