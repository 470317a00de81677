"""Hostile and careless Hub-release folders (LLaVA-NeXT-Data's and LLaVA-OneVision-Data's Parquet with the
pictures inside): wrong column types, huge rows and row groups, damaged or vanishing shards, symlinks out of
data_dir, download leftovers, odd pictures."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import llava_mixes
from llava_mixes import schema
from llava_mixes.builders.llava_next import LlavaNext779k
from llava_mixes.errors import BadRecordError, MalformedSourceError, MissingDataError, PathEscapeError
from llava_mixes.exporters import export
from llava_mixes.playground.hub import HUB_SCHEMA, NEXT_DIR, hub_record, qa, write_shard
from llava_mixes.playground.pictures import encode, synthetic_photo
from llava_mixes.sources import readers

FEATURE = "hub sources"
CONFIG = "llava-next-779k"


def picture(seed: int, fmt: str = "JPEG") -> bytes:
    return encode(synthetic_photo(np.random.default_rng(seed)), fmt)


def good(number: int) -> dict[str, Any]:
    return hub_record(f"g{number}", picture(number), "coco", qa(f"What is in {number}?", "Shapes."))


def shard(data_dir: Path, number: int = 0) -> Path:
    return data_dir / NEXT_DIR / f"train-{number:05d}-of-00002.parquet"


def write_table(path: Path, columns: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)


def build(data_dir: Path, **kwargs: Any) -> tuple[datasets.Dataset, llava_mixes.BuildReport]:
    dataset = datasets.load_dataset("llava_mixes", CONFIG, data_dir=str(data_dir), split="train", **kwargs)
    return dataset, llava_mixes.load_report(dataset)


def reasons(report: llava_mixes.BuildReport) -> dict[str, str]:
    return {str(item.source_id): item.reason for item in report.rejected}


def with_good_shard(data_dir: Path) -> None:
    write_shard(shard(data_dir, 1), [good(1), good(2)])


@pytest.mark.adversarial("rejected")
def test_conversations_as_a_string_column(tmp_path: Path) -> None:
    with_good_shard(tmp_path)
    write_table(shard(tmp_path), {"id": ["s"], "conversations": ["human: hi\ngpt: hello"], "image": [None]})
    train, report = build(tmp_path)
    assert reasons(report) == {"s": schema.MALFORMED_RECORD} and len(train) == 2


@pytest.mark.adversarial("rejected")
def test_image_as_a_path_string_column_is_never_looked_up(tmp_path: Path) -> None:
    with_good_shard(tmp_path)
    (tmp_path / "secret.jpg").write_bytes(picture(9))
    turns = [qa("What?", "That.")]
    write_table(shard(tmp_path), {"id": ["p"], "conversations": turns, "image": ["../../secret.jpg"]})
    train, report = build(tmp_path)
    assert reasons(report) == {"p": schema.MALFORMED_RECORD} and len(train) == 2


@pytest.mark.adversarial("rejected")
def test_image_struct_with_only_a_path_is_missing_not_read_from_disk(tmp_path: Path) -> None:
    with_good_shard(tmp_path)
    (tmp_path / "coco.jpg").write_bytes(picture(9))
    record = {**good(0), "image": {"bytes": None, "path": str(tmp_path / "coco.jpg")}}
    write_shard(shard(tmp_path), [record])
    _, report = build(tmp_path)
    assert reasons(report) == {"g0": schema.MISSING_IMAGE}


@pytest.mark.adversarial("correct")
def test_image_as_a_plain_binary_column_and_integer_ids(tmp_path: Path) -> None:
    data = picture(3)
    write_table(shard(tmp_path), {"id": [7], "conversations": [qa("What?", "That.")], "image": [data]})
    train, report = build(tmp_path)
    assert not report.rejected and train[0][schema.SOURCE_ID] == "7"
    assert train.cast_column(schema.IMAGE, datasets.Image(decode=False))[0][schema.IMAGE]["bytes"] == data


@pytest.mark.adversarial("rejected")
def test_data_source_of_the_wrong_type_or_with_control_characters(tmp_path: Path) -> None:
    write_table(shard(tmp_path), {"id": ["n"], "conversations": [qa("q", "a")], "data_source": [3], "image": [None]})
    write_shard(shard(tmp_path, 1), [{**good(1), "data_source": "coco\x1b[31m"}, good(2)])
    train, report = build(tmp_path)
    assert reasons(report) == {"n": schema.MALFORMED_RECORD, "g1": schema.MALFORMED_RECORD} and len(train) == 1


@pytest.mark.adversarial("error")
def test_a_json_file_named_parquet(tmp_path: Path) -> None:
    shard(tmp_path).parent.mkdir(parents=True)
    shard(tmp_path).write_text('[{"id": 1}]')
    with pytest.raises(MalformedSourceError, match=r"train-00000-of-00002.parquet: not a readable Parquet file"):
        build(tmp_path)


@pytest.mark.adversarial("error")
def test_a_truncated_shard(tmp_path: Path) -> None:
    write_shard(shard(tmp_path), [good(number) for number in range(6)])
    data = shard(tmp_path).read_bytes()
    shard(tmp_path).write_bytes(data[: len(data) // 2])
    with pytest.raises(MalformedSourceError, match="not a readable Parquet file"):
        build(tmp_path)


@pytest.mark.adversarial("error")
def test_a_shard_whose_pages_are_corrupted(tmp_path: Path) -> None:
    write_shard(shard(tmp_path), [good(number) for number in range(8)])
    data = bytearray(shard(tmp_path).read_bytes())
    for offset in range(200, len(data) - 2000, 97):  # the footer stays readable; the pages are garbage
        data[offset] ^= 0xFF
    shard(tmp_path).write_bytes(bytes(data))
    with pytest.raises((MalformedSourceError, BadRecordError)):
        build(tmp_path, on_bad_records="error")


@pytest.mark.adversarial("correct")
def test_an_empty_shard_beside_a_full_one(tmp_path: Path) -> None:
    write_shard(shard(tmp_path), [])
    with_good_shard(tmp_path)
    train, report = build(tmp_path)
    assert len(train) == report.rows_in == 2 and train[schema.SOURCE_ID] == ["g1", "g2"]


@pytest.mark.adversarial("error")
def test_a_symlinked_shard_leading_out_of_data_dir(tmp_path: Path) -> None:
    outside = tmp_path / "outside.parquet"
    write_shard(outside, [good(5)])
    data_dir = tmp_path / "data"
    with_good_shard(data_dir)
    shard(data_dir).symlink_to(outside)
    with pytest.raises(PathEscapeError, match=r"outside\.parquet"):
        build(data_dir)


@pytest.mark.adversarial("correct")
def test_a_download_folder_that_is_itself_a_symlink_builds(tmp_path: Path) -> None:
    disk = tmp_path / "big_disk" / "LLaVA-NeXT-Data"
    write_shard(disk / "data" / "train-00000-of-00001.parquet", [good(1)])
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "LLaVA-NeXT-Data").symlink_to(disk, target_is_directory=True)
    train, _ = build(data_dir)
    assert train[schema.SOURCE_ID] == ["g1"]


@pytest.mark.adversarial("error")
def test_a_shard_that_vanishes_mid_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_shard(shard(tmp_path), [good(0)])
    with_good_shard(tmp_path)
    read = LlavaNext779k.iter_records

    def lose_the_next_shard(self: LlavaNext779k, paths: list[Path], on_bytes: Any = None) -> Iterator[Any]:
        for number, item in enumerate(read(self, paths, on_bytes)):
            if number == 0:
                paths[1].unlink()
            yield item

    monkeypatch.setattr(LlavaNext779k, "iter_records", lose_the_next_shard)
    with pytest.raises(MalformedSourceError, match=r"train-00001-of-00002\.parquet: not a readable Parquet file"):
        build(tmp_path)
    monkeypatch.undo()
    with_good_shard(tmp_path)
    train, _ = build(tmp_path)  # nothing of the failed build is served
    assert train[schema.SOURCE_ID] == ["g0", "g1", "g2"]


@pytest.mark.adversarial("reflected")
def test_an_edited_shard_shows_in_the_next_build(tmp_path: Path) -> None:
    write_shard(shard(tmp_path), [good(0)])
    first, _ = build(tmp_path)
    write_shard(shard(tmp_path), [{**good(0), "conversations": qa("Edited?", "Yes.")}])
    second, _ = build(tmp_path)
    assert first[0][schema.CONVERSATIONS][1]["value"] == "Shapes."
    assert second[0][schema.CONVERSATIONS][1]["value"] == "Yes."


@pytest.mark.adversarial("rejected")
def test_a_huge_conversation(tmp_path: Path) -> None:
    with_good_shard(tmp_path)
    write_shard(shard(tmp_path), [hub_record("huge", None, "x", qa("Long?", "y" * ((64 << 20) + 1), False))])
    train, report = build(tmp_path)
    assert reasons(report) == {"huge": schema.MALFORMED_RECORD} and len(train) == 2


@pytest.mark.adversarial("error")
def test_a_row_group_over_the_read_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_shard(shard(tmp_path), [good(number) for number in range(4)])
    monkeypatch.setattr(readers, "MAX_ROW_GROUP_BYTES", 1000)
    with pytest.raises(MalformedSourceError, match=r"row group 0 holds .* bytes uncompressed"):
        build(tmp_path)


@pytest.mark.adversarial("rejected")
def test_a_decompression_bomb_and_random_bytes(tmp_path: Path) -> None:
    bomb = io.BytesIO()
    Image.new("1", (40000, 40000)).save(bomb, "PNG")
    records = [
        {**good(0), "image": {"bytes": bomb.getvalue(), "path": "bomb.png"}},
        {**good(1), "image": {"bytes": os.urandom(3000), "path": "noise.jpg"}},
        good(2),
    ]
    write_shard(shard(tmp_path), records)
    train, report = build(tmp_path)
    assert reasons(report) == {"g0": schema.UNDECODABLE_IMAGE, "g1": schema.UNDECODABLE_IMAGE} and len(train) == 1


@pytest.mark.adversarial("correct")
def test_png_bytes_under_a_jpg_name_and_a_grey_picture(tmp_path: Path) -> None:
    grey = encode(Image.new("L", (30, 20), 128), "PNG")
    records = [
        {**good(0), "image": {"bytes": picture(0, "PNG"), "path": "x.jpg"}},
        {**good(1), "image": {"bytes": grey, "path": None}},
    ]
    write_shard(shard(tmp_path), records)
    train, report = build(tmp_path)
    assert not report.rejected and len(train) == 2


@pytest.mark.adversarial("correct")
def test_stored_names_that_climb_stay_labels_and_export_stays_inside(tmp_path: Path) -> None:
    record = {**good(0), "image": {"bytes": picture(0), "path": "../../../etc/passwd"}}
    write_shard(shard(tmp_path), [record, {**good(1), "image": {"bytes": picture(1), "path": "/abs/evil.jpg"}}])
    train, _ = build(tmp_path)
    assert train[schema.IMAGE_PATH] == ["llava_next_779k-0000000/passwd", "llava_next_779k-0000001/evil.jpg"]
    result = export(train, "llava", tmp_path / "out", progress=False)
    written = [path for path in (tmp_path / "out").rglob("*") if path.is_file()]
    assert all((tmp_path / "out") in path.resolve().parents for path in written) and result.image_rows == 2


@pytest.mark.adversarial("correct")
def test_repeated_ids_across_shards_get_distinct_row_ids(tmp_path: Path) -> None:
    write_shard(shard(tmp_path), [good(0)])
    write_shard(shard(tmp_path, 1), [{**good(1), "id": "g0"}])
    train, _ = build(tmp_path)
    assert train[schema.SOURCE_ID] == ["g0", "g0"] and len(set(train[schema.ID])) == 2


@pytest.mark.adversarial("correct")
def test_download_leftovers_are_not_read(tmp_path: Path) -> None:
    with_good_shard(tmp_path)
    leftovers = tmp_path / "LLaVA-NeXT-Data" / ".cache" / "huggingface" / "download" / "data"
    leftovers.mkdir(parents=True)
    (leftovers / "train-00000-of-00002.parquet").write_bytes(b"partial")
    (leftovers / "train-00000-of-00002.parquet.incomplete").write_bytes(b"partial")
    (tmp_path / NEXT_DIR / "folder.parquet").mkdir()
    (tmp_path / "LLaVA-NeXT-Data" / "llava_next_raw_format").mkdir()
    write_shard(tmp_path / "LLaVA-NeXT-Data" / "llava_next_raw_format" / "other.parquet", [good(9)])
    train, _ = build(tmp_path)
    assert train[schema.SOURCE_ID] == ["g1", "g2"]


@pytest.mark.adversarial("rejected")
def test_turns_nested_one_level_too_deep(tmp_path: Path) -> None:
    with_good_shard(tmp_path)
    turn = pa.struct([("from", pa.string()), ("value", pa.string())])
    nested = pa.schema([("id", pa.string()), ("conversations", pa.list_(pa.list_(turn)))])
    pq.write_table(
        pa.Table.from_pylist([{"id": "d", "conversations": [qa("q", "a")]}], schema=nested), shard(tmp_path)
    )
    _, report = build(tmp_path)
    assert reasons(report) == {"d": schema.MALFORMED_RECORD}


@pytest.mark.adversarial("correct")
def test_an_image_struct_with_extra_fields(tmp_path: Path) -> None:
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string()), ("width", pa.int32())])
    odd = HUB_SCHEMA.set(HUB_SCHEMA.get_field_index("image"), pa.field("image", image))
    write_shard(shard(tmp_path), [{**good(0), "image": {"bytes": picture(0), "path": "a.jpg", "width": 1}}], odd)
    train, report = build(tmp_path)
    assert not report.rejected and train[schema.IMAGE_PATH] == ["llava_next_779k-0000000/a.jpg"]


@pytest.mark.adversarial("error")
def test_the_error_policy_names_the_first_bad_row(tmp_path: Path) -> None:
    images = HUB_SCHEMA.append(pa.field("images", pa.list_(pa.binary())))
    write_shard(shard(tmp_path), [good(0), {**good(1), "image": None, "images": [picture(1), picture(2)]}], images)
    with pytest.raises(BadRecordError, match=r"llava_next_779k row 1 \(id 'g1'\) rejected: multiple_images"):
        build(tmp_path, on_bad_records="error")


@pytest.mark.adversarial("error")
def test_a_missing_onevision_subset_fails_the_whole_release_naming_it(tmp_path: Path) -> None:
    from llava_mixes.builders.onevision import SUBSETS

    for subset in SUBSETS[1:]:
        write_shard(tmp_path / "LLaVA-OneVision-Data" / subset / "train-00000-of-00001.parquet", [good(1)])
    with pytest.raises(MissingDataError, match=r"no Parquet files in .*CLEVR-Math\(MathV360K\)\. Download"):
        datasets.load_dataset("llava_mixes", "onevision-si", data_dir=str(tmp_path))
    one, _ = (
        datasets.load_dataset("llava_mixes", "onevision-sroie", data_dir=str(tmp_path), split="train"),
        None,
    )
    assert one[schema.IMAGE_GROUP] == ["coco"]  # the row's own data_source, not the folder
