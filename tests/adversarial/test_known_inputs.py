"""Bad inputs that were already handled before issue 10, kept in the adversarial suite so that the tally covers
them: each is one bad 665K record (or file) beside a good one, and its outcome class is asserted."""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import datasets
import pytest
from PIL import Image

import llava_mixes
from llava_mixes import schema
from llava_mixes.errors import BadRecordError, MalformedSourceError, MissingDataError

FEATURE = "annotations and images"

ANNOTATIONS = "llava_v1_5_mix665k.json"
GOOD_IMAGE = "coco/train2017/000000000001.jpg"


def jpeg(seed: int = 0) -> bytes:
    image = Image.new("RGB", (48, 40), (seed * 40 % 256, 90, 200))
    image.putpixel((seed % 48, 3), (0, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG")
    return buffer.getvalue()


def turns(first: str = "<image>\nWhat is this?", answer: str = "A picture.") -> list[dict[str, str]]:
    return [{"from": "human", "value": first}, {"from": "gpt", "value": answer}]


GOOD_ROW = {"id": "good", "image": GOOD_IMAGE, "conversations": turns()}


def write_data(root: Path, records: list[Any], files: dict[str, bytes] | None = None) -> Path:
    """A data dir with the good row first, then `records`, and the image files (the good one included)."""
    for name, data in {GOOD_IMAGE: jpeg(), **(files or {})}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / ANNOTATIONS).write_text(json.dumps([GOOD_ROW, *records]))
    return root


def build(data_dir: Path, **kwargs: object) -> tuple[datasets.Dataset, llava_mixes.BuildReport]:
    dataset = datasets.load_dataset("llava_mixes", "mix665k", data_dir=str(data_dir), split="train", **kwargs)
    return dataset, llava_mixes.load_report(dataset)


def png_header_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height` (a decompression bomb's shape) with one tiny data chunk."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = chunk(b"IDAT", zlib.compress(b"\0" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + data + chunk(b"IEND", b"")


REJECTED_CASES: dict[str, tuple[Any, dict[str, bytes], str]] = {
    "path with ..": ({"id": "x", "image": "../outside.jpg", "conversations": turns()}, {}, "path_escapes_data_dir"),
    "absolute path": ({"id": "x", "image": "/etc/hostname", "conversations": turns()}, {}, "path_escapes_data_dir"),
    "missing image": ({"id": "x", "image": "coco/train2017/9.jpg", "conversations": turns()}, {}, "missing_image"),
    "truncated JPEG": (
        {"id": "x", "image": "coco/train2017/2.jpg", "conversations": turns()},
        {"coco/train2017/2.jpg": jpeg(2)[:200]},
        "undecodable_image",
    ),
    "zero-byte image": (
        {"id": "x", "image": "coco/train2017/3.jpg", "conversations": turns()},
        {"coco/train2017/3.jpg": b""},
        "undecodable_image",
    ),
    "text file named .jpg": (
        {"id": "x", "image": "coco/train2017/4.jpg", "conversations": turns()},
        {"coco/train2017/4.jpg": b"not a picture at all\n"},
        "undecodable_image",
    ),
    "decompression bomb header": (
        {"id": "x", "image": "coco/train2017/5.png", "conversations": turns()},
        {"coco/train2017/5.png": png_header_claiming(60000, 60000)},
        "undecodable_image",
    ),
    "turns that do not alternate": (
        {"id": "x", "conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}]},
        {},
        "turns_not_alternating",
    ),
    "ends on a human turn": (
        {"id": "x", "conversations": [*turns("Hi?"), {"from": "human", "value": "And?"}]},
        {},
        "last_turn_not_gpt",
    ),
    "empty turn": ({"id": "x", "conversations": turns("Hi?", "   ")}, {}, "empty_turn"),
    "system role": (
        {"id": "x", "conversations": [{"from": "system", "value": "Be nice."}, *turns("Hi?")]},
        {},
        "bad_role",
    ),
    "two image tokens": (
        {"id": "x", "image": GOOD_IMAGE, "conversations": turns("<image>\n<image>\nTwo?")},
        {},
        "multiple_image_tokens",
    ),
    "image token in an answer": (
        {"id": "x", "image": GOOD_IMAGE, "conversations": turns("What is this?", "<image> here")},
        {},
        "image_token_misplaced",
    ),
    "image token in a text-only row": ({"id": "x", "conversations": turns()}, {}, "image_token_in_text_only_row"),
    "no conversations": ({"id": "x", "image": GOOD_IMAGE}, {}, "malformed_record"),
    "conversations is a string": ({"id": "x", "conversations": "human: hi"}, {}, "malformed_record"),
    "record is a number": (42, {}, "malformed_record"),
    "record is null": (None, {}, "malformed_record"),
    "turn value is a number": (
        {"id": "x", "conversations": [{"from": "human", "value": 7}, {"from": "gpt", "value": "ok"}]},
        {},
        "malformed_record",
    ),
    "image is a number": ({"id": "x", "image": 12, "conversations": turns()}, {}, "malformed_record"),
}


@pytest.mark.adversarial("rejected")
@pytest.mark.parametrize("case", sorted(REJECTED_CASES))
def test_a_bad_record_is_rejected_with_its_reason_and_the_rest_builds(tmp_path: Path, case: str) -> None:
    record, files, reason = REJECTED_CASES[case]
    dataset, report = build(write_data(tmp_path / "data", [record], files))
    assert dataset[schema.SOURCE_ID] == ["good"]
    assert [(item.row_index, item.reason) for item in report.rejected] == [(1, reason)]
    assert report.rows_in == len(dataset) + report.rejected_rows == 2


@pytest.mark.adversarial("error")
def test_the_error_policy_stops_at_the_first_bad_record_and_names_it(tmp_path: Path) -> None:
    data = write_data(tmp_path / "data", [{"id": "bad-one", "conversations": turns("Hi?", "  ")}])
    with pytest.raises(BadRecordError, match="bad-one"):
        build(data, on_bad_records="error")


MALFORMED_FILES: dict[str, tuple[bytes, str]] = {
    "truncated array": (b'[{"id": "a", "conversations": []}, {"id": "b"', "malformed JSON"),
    "an object, not an array": (b'{"id": "a"}', "expected a JSON array"),
    "empty file": (b"", "the file is empty"),
    "garbage after a record": (b'[{"id": "a", "conversations": []} xyz]', "malformed JSON"),
}


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("case", sorted(MALFORMED_FILES))
def test_a_malformed_annotation_file_stops_the_build_naming_the_file(tmp_path: Path, case: str) -> None:
    text, message = MALFORMED_FILES[case]
    data = tmp_path / "data"
    data.mkdir()
    (data / ANNOTATIONS).write_bytes(text)
    with pytest.raises(MalformedSourceError, match=message) as raised:
        build(data)
    assert ANNOTATIONS in str(raised.value)


@pytest.mark.adversarial("error")
def test_a_missing_annotation_file_says_what_to_download(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    with pytest.raises(MissingDataError, match=ANNOTATIONS):
        build(tmp_path / "data")


@pytest.mark.adversarial("correct")
def test_odd_but_valid_records_build_as_they_should(tmp_path: Path) -> None:
    """A BOM, int and repeated ids, a trailing `<image>`, a GIF behind `.jpg`, a link inside data_dir,
    emoji, a NUL character and a 100 KB answer."""
    gif = io.BytesIO()
    Image.new("P", (20, 20), 3).save(gif, "GIF")
    records = [
        {"id": 7, "image": "gqa/images/1.jpg", "conversations": turns("What?\n<image>")},
        {"id": 7, "image": "coco/train2017/linked.jpg", "conversations": turns(answer="😀 \u0000 ok")},
        {"id": "long", "conversations": turns("Tell me.", "x" * 100_000)},
    ]
    data = write_data(tmp_path / "data", records, {"gqa/images/1.jpg": gif.getvalue()})
    os.symlink(data / GOOD_IMAGE, data / "coco/train2017/linked.jpg")
    (data / ANNOTATIONS).write_bytes(b"\xef\xbb\xbf" + (data / ANNOTATIONS).read_bytes())
    dataset, report = build(data)
    assert report.rejected == []
    assert dataset[schema.SOURCE_ID] == ["good", "7", "7", "long"]
    assert len(set(dataset[schema.ID])) == 4
    rows = dataset.select_columns([schema.CONVERSATIONS, schema.IMAGE_GROUP])
    assert rows[1][schema.CONVERSATIONS][0]["value"] == "<image>\nWhat?"
    assert rows[1][schema.IMAGE_GROUP] == "gqa"
    assert rows[2][schema.CONVERSATIONS][1]["value"] == "😀 \u0000 ok"
    assert len(rows[3][schema.CONVERSATIONS][1]["value"]) == 100_000
