"""SVIT core's normalised rows and rejections, value for value, against a stored golden copy.

The playground below holds SVIT core's four files with every quirk the builder must handle (missing and
mistyped fields, empty blocks, misplaced and repeated `<image>` tokens, odd roles, non-ASCII text, lone
surrogates, records nested too deep, missing, misplaced and undecodable images). Its rows, all columns,
and its rejection report were stored in `golden/svit_core.json` by the builder before it was optimised;
any change in an output value fails this test. Set `LLAVA_MIXES_WRITE_GOLDEN=1` to write the copy again
(only when an output change is intended).
"""

from __future__ import annotations

import dataclasses
import gc
import io
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from llava_mixes.builders.svit_core import SvitCore
from llava_mixes.errors import BadRecordError, MalformedSourceError
from llava_mixes.sources.images import ImageIndex
from llava_mixes.sources.normalise import SourceNormaliser

GOLDEN = Path(__file__).with_name("golden") / "svit_core.json"
FIRST_ID = 1_000_000
DEEP = "[" * 70 + "]" * 70


def _jpeg(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (shade, 40, 90)).save(buffer, "JPEG")
    return buffer.getvalue()


def _turns(*values: Any, roles: tuple[Any, ...] = ("user", "gpt")) -> list[dict[str, Any]]:
    return [{"from": roles[number % len(roles)], "value": value} for number, value in enumerate(values)]


def _block(*values: Any, **extra: Any) -> dict[str, Any]:
    return {**extra, "content": _turns(*values)}


def _conversation_records() -> list[str]:
    """`conversation.json`'s records as JSON texts: well-formed ones, then every quirk of ids and images."""
    records: list[Any] = [
        {
            "image_id": FIRST_ID + number,
            "conversations": [_block("Q?", "A.", "Why?", "So.", topic="t"), _block("Q", "A")],
        }
        for number in range(6)
    ]
    for image_id in ("1000001", 1000002.0, 1.5, True, None, "abc", -5, " 12", "007", "\u0661\u0662", 0, 2**62):
        records.append({"image_id": image_id, "conversations": [_block("Which?", "This.")]})
    records.append({"conversations": [_block("No id?", "None.")]})
    for image in ("vg/VG_100K/1000003.jpg", "", "   ", 5, "../outside.jpg", "vg/VG_100K/1000004", None):
        records.append({"image_id": FIRST_ID + 7, "image": image, "conversations": [_block("Img?", "Yes.")]})
    texts = [json.dumps(record) for record in records]
    texts.append(
        '{"image_id": 1000001, "image_id": 1000002, "conversations": [{"content": [{"from": "user", '
        '"value": "Dup key?"}, {"from": "gpt", "value": "Last wins."}]}], "extra": {"a": [1, 2.5, null]}}'
    )
    texts.append(
        '{"image_id": 1000003, "conversations": [{"content": [{"from": "user", "value": "Lone \\ud800?"}, '
        '{"from": "gpt", "value": "Yes."}]}, {"content": [{"from": "user", "value": "Pair \\ud83d\\ude00 '
        '\\u00e9?"}, {"from": "gpt", "value": "Fine \\udc00."}]}]}'
    )
    texts.append('{"image_id": 1000004, "conversations": [{"content": ' + DEEP + "}]}")
    texts.append(
        '{"image_id": 1000005,\n  "conversations": [ {"content": [ {"from": "user", "value": "Spaced"} ,'
        '\n {"from": "gpt", "value": "out"} ] } ] }'
    )
    return texts


def _complex_records() -> list[Any]:
    """`complex_reasoning.json`: blocks and turns of every wrong shape."""
    blocks: list[Any] = [5, None, "x", {}, {"content": 5}, {"content": []}, {"content": [5]}, {"topic": "t"}]
    blocks += [{"content": [{"from": "user"}, {"from": "gpt", "value": "A"}]}]
    blocks += [{"content": [{"value": "Q"}, {"from": "gpt", "value": "A"}]}]
    blocks += [{"content": _turns("Q", "A", roles=(role, "gpt"))} for role in ("USER", "Human", "system", 3, None)]
    blocks += [{"content": _turns("Q", "A", roles=("user", role))} for role in ("GPT", "assistant", "Assistant")]
    blocks += [{"content": _turns(value, "A")} for value in (5, None, "", "  ", "\n", "é ✓ 😀")]
    blocks += [{"content": _turns("Q", value)} for value in ("", " \t", 5)]
    blocks += [{"content": _turns("Q", "A", roles=("gpt", "user"))}]
    blocks += [{"content": _turns("Q", "A", roles=("user", "user"))}]
    blocks += [{"content": _turns("Q", "A", "Q2")}]
    blocks += [{"content": _turns("Q")}]
    blocks += [{"content": {"from": "user", "value": "Q"}}]
    records: list[Any] = [
        {"image_id": FIRST_ID + number % 6, "conversations": [block]} for number, block in enumerate(blocks)
    ]
    records.append({"image_id": FIRST_ID, "conversations": []})
    records.append({"image_id": FIRST_ID, "conversations": "not a list"})
    records.append({"image_id": FIRST_ID, "conversations": {"content": _turns("Q", "A")}})
    records.append({"image_id": FIRST_ID, "id": "own-id"})
    records += [5, "a string", None, [1, 2], True, 2.5]
    return records


def _referring_records() -> list[Any]:
    """`referring_qa.json`: where the `<image>` token may stand, and the images that are missing or broken."""
    values = [
        "<image>\nQ",
        "<image>",
        "Q <image>",
        "Q\n<image>",
        "<image>Q",
        "Q<image>Q",
        "Q \n <image> \n R",
        "<image> <image>",
        "\n<image>\n",
        "<IMAGE> Q",
    ]
    records: list[Any] = [
        {"image_id": FIRST_ID + number % 6, "conversations": [_block(value, "A <st>x<ed> [0.1, 0.2, 0.3, 0.4].")]}
        for number, value in enumerate(values)
    ]
    records.append({"image_id": FIRST_ID, "conversations": [_block("Q", "A <image>")]})
    records.append({"image_id": FIRST_ID, "conversations": [_block("Q", "A", "<image> again", "B")]})
    records.append({"image_id": FIRST_ID, "conversations": [_block("<image>Q", "A", "<image>", "B")]})
    for image_id in (FIRST_ID + 8, FIRST_ID + 9, FIRST_ID + 10, FIRST_ID + 11, 31415926):
        records.append({"image_id": image_id, "conversations": [_block("Where?", "There."), _block("And?", "Here.")]})
    return records


def _detail_records() -> list[Any]:
    """`detail_description.json`: one block per record, the common shape, some long texts."""
    return [
        {"image_id": FIRST_ID + number % 6, "conversations": [_block("Describe it.", f"It shows {number}. " * 30)]}
        for number in range(25)
    ]


def write_svit_playground(root: Path) -> Path:
    """The four SVIT core files and their VG pictures under `root` (see the module docstring)."""
    for number in range(8):
        (root / "vg/VG_100K").mkdir(parents=True, exist_ok=True)
        (root / f"vg/VG_100K/{FIRST_ID + number}.jpg").write_bytes(_jpeg(number * 20))
    (root / "vg/VG_100K_2").mkdir(parents=True)
    (root / f"vg/VG_100K_2/{FIRST_ID + 8}.jpg").write_bytes(_jpeg(200))
    (root / f"vg/VG_100K/{FIRST_ID + 9}.png").write_bytes(_jpeg(210))
    (root / f"vg/VG_100K/{FIRST_ID + 10}.jpg").write_bytes(b"not a picture")
    (root / "vg/VG_100K/0.jpg").write_bytes(_jpeg(220))
    (root / "vg/VG_100K/7.jpg").write_bytes(_jpeg(230))
    (root / "vg/VG_100K/12.jpg").write_bytes(_jpeg(240))
    (root / "conversation.json").write_text("[" + ",\n".join(_conversation_records()) + "]")
    (root / "complex_reasoning.json").write_text(json.dumps(_complex_records()))
    (root / "referring_qa.json").write_text(json.dumps(_referring_records(), ensure_ascii=False))
    (root / "detail_description.json").write_text(json.dumps(_detail_records(), indent=1))
    return root


def _portable(value: Any, root: str) -> Any:
    """`value` with the playground's absolute path written as `<root>`, and no object addresses."""
    if isinstance(value, str):
        return re.sub(r" at 0x[0-9a-f]+>", " at 0x...>", value.replace(root, "<root>"))
    if isinstance(value, dict):
        return {key: _portable(item, root) for key, item in value.items()}
    if isinstance(value, list):
        return [_portable(item, root) for item in value]
    return value


def normalised(root: Path, cache: Path, batch_rows: int) -> dict[str, Any]:
    """Every output of normalising the playground: rows (all columns), rejections, counts, the error policy's
    message."""
    source = SvitCore()
    source.batch_rows = batch_rows
    normaliser = SourceNormaliser(source, root, ImageIndex(cache), "skip")
    tables = list(normaliser.tables())
    assert all(table.schema.equals(normaliser.arrow_schema, check_metadata=True) for table in tables)
    rows = [row for table in tables for row in table.to_pylist()]
    strict = SvitCore()
    strict.batch_rows = batch_rows
    with pytest.raises(BadRecordError) as stopped:
        for _ in SourceNormaliser(strict, root, ImageIndex(cache), "error").tables():
            pass
    result = {
        "rows": rows,
        "rejected": [dataclasses.asdict(rejection) for rejection in normaliser.result.rejected],
        "rows_in": normaliser.result.rows_in,
        "rows_out": normaliser.result.rows_out,
        "error_policy": str(stopped.value),
    }
    return _portable(result, os.path.normpath(os.path.abspath(root)))


def _golden(key: str, value: Any) -> Any:
    """The stored golden value under `key`; first stored as `value` when `LLAVA_MIXES_WRITE_GOLDEN=1`."""
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    if os.environ.get("LLAVA_MIXES_WRITE_GOLDEN") == "1":
        golden[key] = json.loads(json.dumps(value))
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(golden, indent=1, ensure_ascii=True, sort_keys=True) + "\n")
    return golden[key]


@pytest.mark.parametrize("batch_rows", [7, 4096])
def test_svit_core_output_matches_the_golden_copy(tmp_path: Path, batch_rows: int) -> None:
    root = write_svit_playground(tmp_path / "playground")
    result = normalised(root, tmp_path / "cache", batch_rows)
    assert result["rows_in"] == result["rows_out"] + len(result["rejected"]) == 127
    assert json.loads(json.dumps(result)) == _golden(f"skip, batches of {batch_rows}", result)


def test_svit_core_file_that_is_not_utf8_stops_with_its_place(tmp_path: Path) -> None:
    root = write_svit_playground(tmp_path / "playground")
    text = (root / "referring_qa.json").read_bytes()
    (root / "referring_qa.json").write_bytes(text.replace(b"Where?", b"Wh\xff\xfere?", 1))
    normaliser = SourceNormaliser(SvitCore(), root, ImageIndex(tmp_path / "cache"), "skip")
    with pytest.raises(MalformedSourceError) as stopped:
        for _ in normaliser.tables():
            pass
    assert gc.isenabled(), "the garbage collector stays paused after a failed read"
    message = str(stopped.value).replace(os.path.normpath(os.path.abspath(root)), "<root>")
    assert "not UTF-8" in message
    assert message == _golden("not_utf8", message)
