"""A published copy's pictures, shards, manifest, card, columns and turns, as a hostile publisher or a damaged disk
leaves them (see test_export.py for the inputs export reads)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import export_copies
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from export_copies import (
    TRAIN_FILE,
    Ran,
    every_file,
    export_argv,
    image_indices,
    records,
    set_image,
    train_rows,
)
from published_copy import CONFIG, MANIFEST, edit_rows, picture, publish_demo, reseal, sha256, shard_name

from llava_mixes import schema

FEATURE = "export"

# The shared fixtures (a module-level name is what pytest looks them up by).
demo, copy, secret, cli = export_copies.demo, export_copies.copy, export_copies.secret, export_copies.cli

# --- The pictures a copy holds ------------------------------------------------------------------------------------


def png_header_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height` (a decompression bomb's shape) with one tiny data chunk."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


BAD_BYTES = {
    "not_a_picture": b"HF_TOKEN=hf_not_a_picture\n",
    "empty": b"",
    "truncated_png": picture("blue", (64, 64))[:60],
    "decompression_bomb": png_header_claiming(40000, 40000),
    "random_20_mib": os.urandom(20 << 20),
}


@pytest.mark.adversarial("rejected")
@pytest.mark.parametrize("case", list(BAD_BYTES))
def test_picture_bytes_that_do_not_decode_skip_their_row(
    copy: Path, tmp_path: Path, cli: Callable[..., Ran], case: str
) -> None:
    data = BAD_BYTES[case]
    edit_rows(copy, set_image(0, {"path": "x.png", "bytes": data}, image_sha256=sha256(data)))
    ran = cli(*export_argv(copy, tmp_path / "O"))
    assert ran.code == 0, ran.log
    assert "undecodable_image: 1" in ran.out and len(records(tmp_path / "O")) == len(train_rows(copy)) - 1
    if data:
        assert data not in every_file(tmp_path / "O").values()


@pytest.mark.adversarial("rejected")
def test_picture_bytes_that_are_not_their_checksum_skip_their_row(
    copy: Path, tmp_path: Path, cli: Callable[..., Ran]
) -> None:
    """A bit flip in a shard whose manifest was resealed, or bytes swapped by hand: the row's own checksum says so."""
    edit_rows(copy, set_image(0, {"path": "x.png", "bytes": picture("purple")}))
    edit_rows(copy, set_image(1, {"path": "y.png", "bytes": picture("olive")}, image_sha256=None))
    ran = cli(*export_argv(copy, tmp_path / "O"))
    assert ran.code == 0, ran.log
    assert "image_checksum_mismatch: 2" in ran.out
    assert picture("purple") not in every_file(tmp_path / "O").values()


@pytest.mark.adversarial("rejected")
def test_a_picture_over_the_size_limit_is_not_read(
    copy: Path, tmp_path: Path, cli: Callable[..., Ran], monkeypatch: pytest.MonkeyPatch
) -> None:
    from llava_mixes.exporters import pictures

    data = picture("white", (300, 300), "BMP")
    monkeypatch.setattr(pictures, "MAX_PICTURE_BYTES", len(data) - 1)
    edit_rows(copy, set_image(0, {"path": "x.bmp", "bytes": data}, image_sha256=sha256(data)))
    ran = cli(*export_argv(copy, tmp_path / "O"))
    assert ran.code == 0 and "picture_too_large: 1" in ran.out


@pytest.mark.adversarial("rejected")
def test_a_row_with_neither_bytes_nor_path_is_skipped(copy: Path, tmp_path: Path, cli: Callable[..., Ran]) -> None:
    first = set_image(0, {"path": None, "bytes": None})
    edit_rows(copy, lambda rows: set_image(1, None, image_path=None)(first(rows)))
    ran = cli(*export_argv(copy, tmp_path / "O"))
    assert ran.code == 0, ran.log
    assert "image_tag_mismatch: 1" in ran.out and "picture_not_stored: 1" in ran.out


@pytest.mark.adversarial("error")
def test_a_copy_of_paths_without_image_folder_names_the_flag(
    demo: tuple[Path, Path], tmp_path: Path, cli: Callable[..., Ran]
) -> None:
    paths_copy = publish_demo(demo[0], tmp_path / "paths", tmp_path, images="paths")
    ran = cli(*export_argv(paths_copy, tmp_path / "O"))
    assert ran.code == 2 and "image_folder" in ran.log
    assert not (tmp_path / "O" / TRAIN_FILE).exists()
    ran = cli(*export_argv(paths_copy, tmp_path / "O", "--image-folder", demo[0]))
    assert ran.code == 0 and "missing_image: 1" in ran.out  # the one picture saved under another extension


HOSTILE_IMAGE_PATHS = {
    "dotdot": "../../../escape.png",
    "absolute": "/tmp/escape.png",
    "nul": "coco/a\0b.png",
    "absurd": "x" * 5000 + ".png",
    "hidden": ".llava_mixes_outputs.json",
    "spoofed_content_name": "by-sha256/" + "0" * 64 + ".png",
    "drive": "C:/escape.png",
    "control": "coco/a\nb.png",
}


@pytest.mark.adversarial("correct")
@pytest.mark.parametrize("case", list(HOSTILE_IMAGE_PATHS))
def test_an_image_path_that_cannot_name_a_file_writes_by_content(
    copy: Path, tmp_path: Path, cli: Callable[..., Ran], case: str
) -> None:
    data = picture("teal")
    edit_rows(
        copy,
        set_image(
            0, {"path": "p.png", "bytes": data}, image_sha256=sha256(data), image_path=HOSTILE_IMAGE_PATHS[case]
        ),
    )
    out = tmp_path / "O"
    ran = cli(*export_argv(copy, out))
    assert ran.code == 0, ran.log
    row = train_rows(copy)[image_indices(train_rows(copy))[0]]
    [record] = [record for record in records(out) if record["id"] == row[schema.SOURCE_ID]]
    assert record["image"].startswith(f"by-sha256/{sha256(data)}.")
    assert (out / "images" / record["image"]).read_bytes() == data
    inside = {str(path) for path in out.rglob("*")}
    assert not [path for path in tmp_path.rglob("*escape*") if str(path) not in inside]


@pytest.mark.adversarial("correct")
def test_image_paths_that_collide_each_get_their_own_file(copy: Path, tmp_path: Path, cli: Callable[..., Ran]) -> None:
    red, blue, green = picture("red"), picture("blue"), picture("green")

    def edit(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for index, (data, path) in enumerate([(red, "c/a.png"), (blue, "c/a.png"), (green, "c/a.png/b.png")]):
            rows = set_image(index, {"path": None, "bytes": data}, image_sha256=sha256(data), image_path=path)(rows)
        return rows

    edit_rows(copy, edit)
    out = tmp_path / "O"
    ran = cli(*export_argv(copy, out))
    assert ran.code == 0, ran.log
    rows, exported = train_rows(copy), records(out)  # every row exported, in order
    written = [exported[i]["image"] for i in image_indices(rows)[:3]]
    assert [(out / "images" / path).read_bytes() for path in written] == [red, blue, green]
    assert written[0] == "c/a.png" and written[1].startswith("by-sha256/") and written[2].startswith("by-sha256/")


# --- The copy's files: shards, manifest, card ---------------------------------------------------------------------


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("damage", ["truncated", "emptied", "bit_flip", "removed"])
def test_a_damaged_shard_is_refused_by_its_checksum(
    copy: Path, tmp_path: Path, cli: Callable[..., Ran], damage: str
) -> None:
    shard = copy / shard_name(CONFIG)
    data = shard.read_bytes()
    if damage == "removed":
        shard.unlink()
    else:
        shard.write_bytes(
            {"truncated": data[: len(data) // 2], "emptied": b""}.get(
                damage, data[:100] + bytes([data[100] ^ 1]) + data[101:]
            )
        )
    ran = cli(*export_argv(copy, tmp_path / "O"))
    assert ran.code == 2 and shard_name(CONFIG) in ran.log
    assert not (tmp_path / "O" / TRAIN_FILE).exists()


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("content", ["not_parquet", "truncated_parquet", "wrong_row_count"])
def test_a_resealed_shard_that_is_not_the_copys_parquet_is_refused(
    copy: Path, tmp_path: Path, cli: Callable[..., Ran], content: str
) -> None:
    """A hostile publisher can make the manifest match any bytes: the Parquet reader is the next check."""
    shard = copy / shard_name(CONFIG)
    if content == "not_parquet":
        shard.write_bytes(b"PAR1 this is no parquet PAR1")
    elif content == "truncated_parquet":
        shard.write_bytes(shard.read_bytes()[:-64])
    reseal(copy)
    if content == "wrong_row_count":
        manifest = json.loads((copy / MANIFEST).read_text())
        manifest["configs"][CONFIG]["splits"]["train"]["num_examples"] += 1
        (copy / MANIFEST).write_text(json.dumps(manifest))
    ran = cli(*export_argv(copy, tmp_path / "O"))
    assert ran.code == 2 and "Traceback" not in ran.log and str(copy) in ran.log


def _manifest_edit(name: str, copy: Path, secret: Path) -> None:
    manifest_path = copy / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    entry = manifest["configs"][CONFIG]
    shard = shard_name(CONFIG)
    if name == "not_json":
        manifest_path.write_text("{not json")
        return
    if name == "a_list":
        manifest = [manifest]
    elif name == "no_configs":
        del manifest["configs"]
    elif name == "config_not_a_mapping":
        manifest["configs"][CONFIG] = "train.parquet"
    elif name == "shard_dotdot":
        entry["splits"]["train"]["files"] = ["../outside.parquet"]
        entry["files"]["../outside.parquet"] = entry["files"][shard]
    elif name == "shard_absolute":
        entry["splits"]["train"]["files"] = [str(secret)]
    elif name == "shard_not_described":
        entry["files"] = {}
    elif name == "sha_not_hex":
        entry["files"][shard]["sha256"] = "../../etc/passwd"
    elif name == "size_negative":
        entry["files"][shard]["size"] = -1
    elif name == "no_train_split":
        entry["splits"] = {"removed": entry["splits"]["removed"]}
    elif name == "deeply_nested":
        manifest_path.write_text("[" * 100000 + "]" * 100000)
        return
    manifest_path.write_text(json.dumps(manifest))


MANIFEST_EDITS = [
    "not_json",
    "a_list",
    "no_configs",
    "config_not_a_mapping",
    "shard_dotdot",
    "shard_absolute",
    "shard_not_described",
    "sha_not_hex",
    "size_negative",
    "no_train_split",
    "deeply_nested",
]


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("edit", MANIFEST_EDITS)
def test_a_broken_or_hostile_manifest_is_one_clear_error(
    copy: Path, secret: Path, tmp_path: Path, cli: Callable[..., Ran], edit: str
) -> None:
    _manifest_edit(edit, copy, secret)
    ran = cli(*export_argv(copy, tmp_path / "O"))
    assert ran.code == 2 and "Traceback" not in ran.log
    assert MANIFEST in ran.log or str(copy) in ran.log
    assert not (tmp_path / "O" / TRAIN_FILE).exists()


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("what", ["manifest", "shard"])
def test_a_manifest_or_shard_that_links_out_of_the_copy_is_refused(
    copy: Path, tmp_path: Path, cli: Callable[..., Ran], what: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    name = MANIFEST if what == "manifest" else shard_name(CONFIG)
    shutil.move(str(copy / name), outside / "moved")
    (copy / name).symlink_to(outside / "moved")
    ran = cli(*export_argv(copy, tmp_path / "O"))
    assert ran.code == 2 and "leads outside" in ran.log


@pytest.mark.adversarial("correct")
def test_a_card_whose_front_matter_points_outside_the_copy_is_not_read(
    copy: Path, tmp_path: Path, cli: Callable[..., Ran]
) -> None:
    """`datasets` would read any file a card's `data_files` names (absolute or `../`): export reads the manifest."""
    planted = tmp_path / "planted"
    planted.mkdir()
    rows = train_rows(copy)
    for row in rows:
        row[schema.CONVERSATIONS][-1]["value"] = "PLANTED"
    table = pq.read_table(copy / shard_name(CONFIG))
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), planted / "train.parquet")
    card = (copy / "README.md").read_text()
    card = card.replace(f"path: {CONFIG}/train-*", f"path: {planted}/train.parquet", 1)
    assert str(planted) in card
    (copy / "README.md").write_text(card)
    ran = cli(*export_argv(copy, tmp_path / "O"))
    assert ran.code == 0, ran.log
    assert "PLANTED" not in (tmp_path / "O" / TRAIN_FILE).read_text()


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("column", [schema.CONVERSATIONS, schema.IMAGE, schema.ID])
def test_a_column_of_another_type_is_one_clear_error(tmp_path: Path, cli: Callable[..., Ran], column: str) -> None:
    from published_copy import image_row, tiny_copy

    rows = [image_row(0, picture())]
    copy = tiny_copy(tmp_path / "pub", rows)
    shard = copy / shard_name("tiny")
    table = pq.read_table(shard)
    index = table.schema.get_field_index(column)
    replaced = pa.array([json.dumps(value, default=str) for value in table.column(column).to_pylist()])
    table = table.set_column(index, pa.field(column, pa.string()), replaced)
    metadata = json.loads(table.schema.metadata[b"huggingface"])
    metadata["info"]["features"][column] = {"dtype": "string", "_type": "Value"}
    table = table.replace_schema_metadata({b"huggingface": json.dumps(metadata).encode()})
    if column == schema.ID:
        table = table.set_column(index, pa.field(column, pa.int64()), pa.array([7]))
        metadata["info"]["features"][column] = {"dtype": "int64", "_type": "Value"}
        table = table.replace_schema_metadata({b"huggingface": json.dumps(metadata).encode()})
    pq.write_table(table, shard)
    reseal(copy, "tiny")
    ran = cli("export", "tiny", "--from", copy, "--format", "jsonl", "--out", tmp_path / "O")
    assert ran.code == 2 and f"column '{column}' has type" in ran.log


@pytest.mark.adversarial("rejected")
def test_rows_with_broken_turns_are_skipped_with_their_reason(tmp_path: Path, cli: Callable[..., Ran]) -> None:
    from published_copy import image_row, tiny_copy

    good = image_row(0, picture())
    rows = [good]
    rows.append(image_row(1, picture("blue"), conversations=[]))
    rows.append(
        image_row(
            2,
            picture("green"),
            conversations=[{"from": "system", "value": "<image>\nx"}, {"from": "gpt", "value": "y"}],
        )
    )
    rows.append(
        image_row(
            3,
            picture("gray"),
            conversations=[{"from": "human", "value": "<image>\nx"}, {"from": "gpt", "value": None}],
        )
    )
    rows.append(image_row(4, picture("pink"), conversations=[{"from": None, "value": "<image>\nx"}]))
    rows.append(image_row(5, picture("navy"), duplicate_of="x-0", similarity=0.9))
    rows.append(image_row(6, picture("lime"), similarity=float("nan")))
    copy = tiny_copy(
        tmp_path / "pub",
        [{**row, "duplicate_of": row.get("duplicate_of"), "similarity": row.get("similarity")} for row in rows],
    )
    for fmt in ("llava", "jsonl"):
        ran = cli("export", "tiny", "--from", copy, "--format", fmt, "--out", tmp_path / "O")
        assert ran.code == 0, ran.log
        expected = "empty_conversation: 1, bad_role: 2, empty_turn: 1, removed_by_dedup: 1"
        assert all(part in ran.out for part in expected.split(", "))
        assert ("unwritable_value: 1" in ran.out) == (fmt == "jsonl")


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("revision", ["v2.0.0", "", "1.0.0\0"])
def test_a_revision_a_folder_does_not_hold_is_one_clear_error(
    copy: Path, tmp_path: Path, cli: Callable[..., Ran], revision: str
) -> None:
    ran = cli(*export_argv(copy, tmp_path / "O", "--revision", revision))
    assert ran.code == 2 and "revision" in ran.log
