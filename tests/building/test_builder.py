from __future__ import annotations

import hashlib
import json
from pathlib import Path

import datasets
import datasets.data_files
import pytest
from helpers import assert_schema_invariants
from hypothesis import given
from hypothesis import strategies as st

import llava_mixes
from llava_mixes import schema
from llava_mixes.building.freshness import (
    BUILD_RECORD,
    BuildRecord,
    damage_reason,
    folder_problems,
    parse_build_record,
    read_build_record,
    write_build_record,
)
from llava_mixes.building.report import BuildReport, GroupStats, ReportError
from llava_mixes.building.tables import format_table
from llava_mixes.embedding import weights
from llava_mixes.embedding.embedders import ThumbnailEmbedder
from llava_mixes.errors import BadRecordError, ConfigError, MalformedSourceError, MissingDataError
from llava_mixes.playground.layout import ANNOTATION_FILE, Playground
from llava_mixes.schema import Rejection
from llava_mixes.sources import inputs as build_inputs


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


# Readers of what a build wrote (the build record, the report, the derived build's record, the remembered digests):
# random and mutated input gives the right answer or the project's own error, never a crash.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 1 << 40) | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=12,
)


def _paths(value: object, prefix: tuple = ()) -> list[tuple]:
    """Every key path into a JSON value, the value itself included."""
    found = [prefix]
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for key, child in items:
        found += _paths(child, (*prefix, key))
    return found


def _mutated(value: object, path: tuple, replacement: object) -> object:
    if not path:
        return replacement
    copy = json.loads(json.dumps(value))
    parent = copy
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = replacement
    return copy


def _whole_folder(folder: Path) -> dict:
    """A build folder of two files, their record and `dataset_info.json`; returns the record's JSON."""
    folder.mkdir(exist_ok=True)
    (folder / "llava_mixes-train.arrow").write_bytes(b"rows" * 100)
    (folder / "llava_mixes_report.json").write_text('{"rows_in": 3}')
    splits = datasets.SplitDict()
    splits.add(datasets.SplitInfo("train", num_bytes=400, num_examples=3))
    write_build_record(folder, "llava_mixes", splits)
    datasets.DatasetInfo(splits=splits).write_to_directory(str(folder))
    return json.loads((folder / BUILD_RECORD).read_text())


@given(data=st.data())
def test_a_mutated_build_record_is_read_or_refused_and_the_folder_check_never_crashes(
    data: st.DataObject, tmp_path: Path
) -> None:
    folder = tmp_path / "build"
    record = _whole_folder(folder)
    assert folder_problems(folder, full=True) == []
    path = data.draw(st.sampled_from(_paths(record)))
    mutated = _mutated(record, path, data.draw(JSON))
    (folder / BUILD_RECORD).write_text(json.dumps(mutated))
    read = read_build_record(folder)
    assert read is None or isinstance(read, BuildRecord)
    problems = folder_problems(folder, full=True)
    assert all(isinstance(problem, str) for problem in problems)
    assert (problems == []) == (read is not None and read == parse_build_record(record))


@given(content=st.binary(max_size=200) | JSON.map(lambda value: json.dumps(value).encode()))
def test_random_bytes_as_a_build_record_or_dataset_info_are_a_damaged_folder(content: bytes, tmp_path: Path) -> None:
    folder = tmp_path / "build"
    _whole_folder(folder)
    for name in (BUILD_RECORD, "dataset_info.json"):
        original = (folder / name).read_bytes()
        (folder / name).write_bytes(content)
        assert (damage_reason(folder) is None) == (content == original)
        (folder / name).write_bytes(original)


def _sample_report() -> dict:
    report = BuildReport("mix665k", "1.0.0", ["mix665k"], rows_in=3)
    report.rejected = [Rejection("llava_v1_5_mix665k", 2, "x", "coco", "coco/a.jpg", "missing_image", "no file")]
    report.groups = [GroupStats("coco", rows=2, images=2, kept_images=2, kept_rows=2, rejected_rows=1)]
    report.dedup = {"threshold": 0.8}
    return report.to_json()


@given(data=st.data())
def test_a_mutated_build_report_loads_whole_or_is_a_report_error(data: st.DataObject, tmp_path: Path) -> None:
    original = _sample_report()
    path = data.draw(st.sampled_from(_paths(original)))
    (tmp_path / "report.json").write_text(json.dumps(_mutated(original, path, data.draw(JSON))))
    try:
        report = BuildReport.load(tmp_path / "report.json")
    except ReportError as error:
        assert "report.json" in str(error)
        return
    format_table(report)
    assert report.to_json()["rows_in"] == report.rows_in


@given(meta=JSON)
def test_a_plain_builds_record_of_inputs_is_read_or_counts_as_changed(meta: object, tmp_path: Path) -> None:
    (tmp_path / build_inputs.INPUTS_META).write_text(json.dumps(meta))
    reason = build_inputs.stale_reason(tmp_path, [])
    assert isinstance(reason, str)
    assert build_inputs.read_meta(tmp_path) is None or isinstance(build_inputs.read_meta(tmp_path), dict)


@given(content=st.binary(max_size=120) | JSON.map(lambda value: json.dumps(value).encode()))
def test_a_remembered_digest_that_is_damaged_is_read_again(content: bytes, tmp_path: Path) -> None:
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights" * 50)
    true = hashlib.sha256(model.read_bytes()).hexdigest()
    assert weights.file_digest(model) == true
    (record,) = (tmp_path / "content_cache" / weights.DIGESTS_DIR).iterdir()
    record.write_bytes(content)
    weights._remembered.clear()
    assert weights.file_digest(model) == true


def test_a_build_record_of_sharded_splits_names_every_shard(tmp_path: Path) -> None:
    for name in ("llava_mixes-train-00000-of-00002.arrow", "llava_mixes-train-00001-of-00002.arrow"):
        (tmp_path / name).write_bytes(b"rows")
    (tmp_path / "llava_mixes-removed.arrow").write_bytes(b"")
    (tmp_path / "llava_mixes_report.json").write_text("{}")
    (tmp_path / "cache-0123.arrow").write_bytes(b"a map's result")
    splits = datasets.SplitDict()
    splits.add(datasets.SplitInfo("train", num_examples=3, shard_lengths=[2, 1]))
    splits.add(datasets.SplitInfo("removed", num_examples=0))
    record = write_build_record(tmp_path, "llava_mixes", splits)
    assert sorted(record.files) == [
        "llava_mixes-removed.arrow",
        "llava_mixes-train-00000-of-00002.arrow",
        "llava_mixes-train-00001-of-00002.arrow",
        "llava_mixes_report.json",
    ]
    datasets.DatasetInfo(splits=splits).write_to_directory(str(tmp_path))
    assert folder_problems(tmp_path, full=True) == []
    (tmp_path / "llava_mixes-train-00001-of-00002.arrow").unlink()
    assert folder_problems(tmp_path) == ["llava_mixes-train-00001-of-00002.arrow is gone (No such file or directory)"]
