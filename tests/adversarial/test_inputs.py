"""Annotation inputs that exhaust memory, point errors at the wrong byte, or carry text UTF-8 cannot hold."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import textwrap
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
from llava_mixes.embedding.embedders import ThumbnailEmbedder, resolve_embedder
from llava_mixes.embedding.preprocess import PIXELS_VERSION, to_8bit
from llava_mixes.errors import MalformedSourceError
from llava_mixes.sources import json_guard
from llava_mixes.sources.readers import iter_json_array, iter_json_lines, iter_parquet

FEATURE = "annotations and images"

ANNOTATIONS = "llava_v1_5_mix665k.json"


def text_row(number: int, answer: str = "Fine.") -> dict[str, Any]:
    """A text-only 665K row (no image to write)."""
    return {
        "id": f"row{number}",
        "conversations": [{"from": "human", "value": f"Question {number}?"}, {"from": "gpt", "value": answer}],
    }


def write_annotations(folder: Path, pieces: list[bytes]) -> Path:
    """A 665K annotation file whose array elements are the given JSON texts, one per line."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ANNOTATIONS
    path.write_bytes(b"[\n" + b",\n".join(pieces) + b"\n]\n")
    return path


def encoded(record: Any) -> bytes:
    return json.dumps(record).encode()


def nested(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


def build(data_dir: Path) -> tuple[datasets.Dataset, llava_mixes.BuildReport]:
    dataset = datasets.load_dataset("llava_mixes", "mix665k", data_dir=str(data_dir), split="train")
    return dataset, llava_mixes.load_report(dataset)


CHILD = textwrap.dedent(
    """
    import json, resource, sys

    import datasets
    import llava_mixes

    def peak() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    with open("/proc/self/statm") as handle:
        virtual = int(handle.read().split()[0]) * resource.getpagesize()
    # A cap, so that a reader without limits fails here with MemoryError instead of swapping the machine.
    resource.setrlimit(resource.RLIMIT_AS, (virtual + (3 << 30), resource.RLIM_INFINITY))
    datasets.disable_progress_bars()
    before = peak()
    dataset = datasets.load_dataset("llava_mixes", "mix665k", data_dir=sys.argv[1], split="train")
    report = llava_mixes.load_report(dataset)
    print(json.dumps({
        "rows": dataset["source_id"][:],
        "rejected": [[item.row_index, item.reason, item.detail] for item in report.rejected],
        "growth": peak() - before,
    }))
    """
)


@pytest.mark.adversarial("rejected")
def test_rows_nested_200000_and_30000_deep_are_rejected_in_little_memory(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    write_annotations(
        data_dir, [encoded(text_row(0)), nested(200_000), encoded(text_row(2)), nested(30_000), encoded(text_row(4))]
    )
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    env |= {"HF_HOME": str(tmp_path / "hf"), "HF_DATASETS_CACHE": str(tmp_path / "ds")}
    env["LLAVA_MIXES_CACHE"] = str(tmp_path / "content")
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(data_dir)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["rows"] == ["row0", "row2", "row4"]
    assert [(index, reason) for index, reason, _ in result["rejected"]] == [
        (1, schema.MALFORMED_RECORD),
        (3, schema.MALFORMED_RECORD),
    ]
    assert all(f"deeper than {json_guard.MAX_DEPTH} levels" in detail for _, _, detail in result["rejected"])
    assert result["growth"] < 1 << 30


@pytest.mark.adversarial("rejected")
def test_depth_limit_is_exact_in_a_json_array(tmp_path: Path) -> None:
    limit = json_guard.MAX_DEPTH
    deepest_allowed = {**text_row(0), "extra": json.loads(nested(limit - 2))}  # the array and the record: 2 levels
    too_deep = {**text_row(1), "extra": json.loads(nested(limit - 1))}
    tricky = text_row(2, answer='brackets in text: [[[[{{{{ "quoted \\\\" ]]]] and a \\" quote')
    path = write_annotations(tmp_path, [encoded(deepest_allowed), encoded(too_deep), encoded(tricky)])
    records = list(iter_json_array(path))
    assert records[0] == (0, deepest_allowed)
    assert records[1][0] == 1 and records[1][1][0] == "malformed" and f"deeper than {limit}" in records[1][1][1]
    assert records[2] == (2, tricky)


@pytest.mark.adversarial("rejected")
def test_deep_json_line_is_one_rejected_record(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_bytes(encoded(text_row(0)) + b"\n" + nested(200_000) + b"\n" + encoded(text_row(2)) + b"\n")
    records = list(iter_json_lines(path))
    assert records[0] == (0, text_row(0)) and records[2] == (2, text_row(2))
    assert records[1][1][0] == "malformed" and "200000 levels deep" in records[1][1][1]


@pytest.mark.adversarial("error")
def test_parquet_column_nested_too_deep_stops_naming_the_file(tmp_path: Path) -> None:
    """Arrow bounds a Parquet schema's nesting itself (100 levels of its own, about 50 lists)."""
    data_type: pa.DataType = pa.int64()
    for _ in range(json_guard.MAX_DEPTH + 1):
        data_type = pa.list_(data_type)
    path = tmp_path / "train.parquet"
    pq.write_table(pa.table({"id": ["a"], "deep": pa.array([None], type=data_type)}), path)
    with pytest.raises(MalformedSourceError, match=rf"{path}: not a readable Parquet file: .*too deeply nested"):
        list(iter_parquet(path))


@pytest.mark.adversarial("rejected")
def test_record_over_the_size_limit_is_rejected_and_the_rest_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(json_guard, "MAX_RECORD_BYTES", 4096)
    big = text_row(1, answer="x" * 20_000)
    write_annotations(tmp_path, [encoded(text_row(0)), encoded(big), encoded(text_row(2))])
    dataset, report = build(tmp_path)
    assert dataset["source_id"][:] == ["row0", "row2"]
    assert [(item.row_index, item.reason) for item in report.rejected] == [(1, schema.MALFORMED_RECORD)]
    assert "larger than the 4,096-byte limit" in report.rejected[0].detail


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("bad_at", [125, 70_000, 270_000])
def test_non_utf8_byte_is_reported_at_its_own_offset(tmp_path: Path, bad_at: int) -> None:
    rows = []
    while sum(len(row) + 2 for row in rows) < bad_at + 1000:
        rows.append(encoded(text_row(len(rows), answer="a" * 200)))
    path = write_annotations(tmp_path, rows)
    data = bytearray(path.read_bytes())
    while data[bad_at : bad_at + 1] != b"a":  # land inside an answer's text
        bad_at += 1
    data[bad_at] = 0xFF
    path.write_bytes(bytes(data))
    line = data[:bad_at].count(b"\n") + 1
    column = bad_at - data[:bad_at].rfind(b"\n")
    with pytest.raises(MalformedSourceError) as caught:
        list(iter_json_array(path))
    assert f"line {line}, column {column} (byte {bad_at})" in str(caught.value)
    assert "not UTF-8" in str(caught.value)


@pytest.mark.adversarial("rejected")
def test_lone_surrogate_rejects_the_row_and_a_pair_is_kept(tmp_path: Path) -> None:
    lone_turn = encoded(text_row(1)).replace(b"Fine.", b"Fine \\ud800 here")
    lone_id = encoded(text_row(2)).replace(b'"row2"', b'"row\\udc00"')
    pair = encoded(text_row(3)).replace(b"Fine.", b"Fine \\ud83d\\ude00")
    unused = encoded({**text_row(4), "note": "\ud800"})
    escaped_backslash = encoded(text_row(5)).replace(b"Fine.", b"not an escape: \\\\ud800")
    write_annotations(tmp_path, [encoded(text_row(0)), lone_turn, lone_id, pair, unused, escaped_backslash])
    dataset, report = build(tmp_path)
    assert dataset["source_id"][:] == ["row0", "row3", "row4", "row5"]
    assert dataset[1]["conversations"][1]["value"] == "Fine \U0001f600"
    assert dataset[3]["conversations"][1]["value"] == "not an escape: \\ud800"
    rejected = {item.row_index: (item.reason, item.detail) for item in report.rejected}
    assert set(rejected) == {1, 2}
    assert rejected[1] == (schema.INVALID_TEXT, "turn 1 (gpt) holds a lone surrogate U+D800 at character 5")
    assert rejected[2] == (schema.INVALID_TEXT, "id holds a lone surrogate U+DC00 at character 3")


@pytest.mark.adversarial("rejected")
def test_lone_surrogate_in_json_lines_is_kept_for_the_row_check(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_bytes(encoded(text_row(0)).replace(b"Fine.", b"\\ud800") + b"\n")
    assert next(iter_json_lines(path))[1]["conversations"][1]["value"] == "\ud800"


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def gradient(high: int = 240) -> np.ndarray:
    """An 8-bit diagonal gradient with a bright square, 10 to `high`."""
    rows, columns = np.mgrid[0:64, 0:64]
    values = 10 + (rows + columns) * (high - 10) // 126
    values[20:30, 35:50] = high
    return values.astype(np.uint8)


def sixteen_bit(values: np.ndarray) -> Image.Image:
    """The 16-bit twin of 8-bit grey `values` (each level times 257), as a 16-bit PNG decodes: mode I;16."""
    image = Image.open(io.BytesIO(png(Image.fromarray(values.astype(np.uint16) * 257))))
    assert image.mode == "I;16"
    return image


@pytest.mark.adversarial("correct")
def test_16_bit_grey_png_is_not_a_flat_picture_in_a_dedup_build(tmp_path: Path) -> None:
    folder = tmp_path / "coco" / "train2017"
    folder.mkdir(parents=True)
    (folder / "deep.png").write_bytes(png(sixteen_bit(gradient())))
    (folder / "flat.png").write_bytes(png(Image.new("L", (64, 64), 128)))
    rows = [
        {
            "id": name,
            "image": f"coco/train2017/{name}.png",
            "conversations": [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "A."}],
        }
        for name in ("deep", "flat")
    ]
    write_annotations(tmp_path, [encoded(row) for row in rows])
    dataset = datasets.load_dataset(
        "llava_mixes", "mix665k-dedup-0.8", data_dir=str(tmp_path), embedder="thumbnail", keep_embeddings=True
    )
    assert dataset["train"]["source_id"][:] == ["deep", "flat"] and dataset["removed"].num_rows == 0
    deep, flat = np.asarray(dataset["train"]["embedding"][:], dtype=np.float64)
    assert abs(deep @ flat) < 0.1


@pytest.mark.adversarial("correct")
@pytest.mark.parametrize("mode", ["I;16", "I", "F", "RGBA", "LA", "P", "CMYK", "RGB"])
def test_every_pixel_format_embeds_like_its_8_bit_twin(mode: str) -> None:
    values = gradient()
    twin = Image.fromarray(values, mode="L")
    if mode == "I;16":
        image = sixteen_bit(values)
    elif mode == "I":
        image = Image.fromarray(values.astype(np.int32) * 257, mode="I")
    elif mode == "F":
        image = Image.fromarray(values.astype(np.float32) / 255, mode="F")
    else:
        image = twin.convert(mode)
    assert to_8bit(image, "L").mode == "L" and to_8bit(image, "RGB").mode == "RGB"
    expected = np.asarray(twin, dtype=np.float64)
    assert np.abs(np.asarray(to_8bit(image, "L"), dtype=np.float64) - expected).max() <= 3
    embedder = ThumbnailEmbedder()
    data = png(image) if mode not in ("I", "F", "CMYK") else _tiff(image)
    assert float(embedder.prepare(data) @ embedder.prepare(png(twin))) > 0.99


def _tiff(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "TIFF")
    return buffer.getvalue()


@pytest.mark.adversarial("correct")
def test_transparent_pixels_are_laid_on_white() -> None:
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)  # black and fully transparent
    rgba[:4, :, 3] = 255  # the top half opaque black
    rgb = np.asarray(to_8bit(Image.fromarray(rgba, mode="RGBA"), "RGB"))
    assert (rgb[:4] == 0).all() and (rgb[4:] == 255).all()


@pytest.mark.adversarial("correct")
def test_hf_processor_pixels_of_a_16_bit_png_match_its_8_bit_twin(tiny_clip: Path) -> None:
    embedder = resolve_embedder(str(tiny_clip), device="cpu")
    values = gradient()
    wide = embedder.prepare(png(sixteen_bit(values))).astype(np.int64)
    narrow = embedder.prepare(png(Image.fromarray(values, mode="L"))).astype(np.int64)
    assert np.abs(wide - narrow).max() <= 1 and narrow.std() > 10


@pytest.mark.adversarial("correct")
def test_vectors_of_the_old_pixel_handling_are_never_reused() -> None:
    old = {"kind": "thumbnail", "size": 32, "version": 1}
    old_key = "thumbnail-" + hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:20]
    assert ThumbnailEmbedder().key() != old_key
    assert ThumbnailEmbedder().identity()["pixels"] == PIXELS_VERSION


@pytest.mark.adversarial("rejected")
@pytest.mark.parametrize("chunk_bytes", [16, 61, 4096])
def test_limits_hold_when_records_span_read_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_bytes: int
) -> None:
    monkeypatch.setattr(json_guard, "_CHUNK_BYTES", chunk_bytes)
    rows = [text_row(number, answer=f'a "quoted" \\ [text] {{{number}}}') for number in range(40)]
    pieces = [encoded(row) for row in rows]
    pieces[7] = nested(300)
    pieces[21] = encoded(text_row(21)).replace(b"Fine.", b"x \\ud800 y")
    path = write_annotations(tmp_path, pieces)
    records = dict(iter_json_array(path))
    assert len(records) == 40
    assert records[7][0] == "malformed" and "deeper than 64 levels" in records[7][1]
    assert records[21]["conversations"][1]["value"] == "x \ud800 y"
    assert all(records[number] == rows[number] for number in range(40) if number not in (7, 21))
