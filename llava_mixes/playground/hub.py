"""The playground's Hub-hosted releases, in their real folder layout with the pictures inside the Parquet files:
`LLaVA-NeXT-Data/data/train-0000N-of-00002.parquet` and `LLaVA-OneVision-Data/<subset>/train-*.parquet`.

LLaVA-NeXT's quirks: a second shard with extra columns (`images`, `note`), a truncated JPEG, a null picture (a
text-only row), an empty conversation, a row with two pictures, a null `data_source`, a re-encoded copy of one of
its own pictures, and (`cross_copy`) a re-encoded copy of a 665K mix picture, which a recipe mixing the two
removes. OneVision: one row per subset (text only in the language-only subsets), and in `sharegpt4o` a second
shard, a planted copy, a broken picture and rows without `data_source`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from llava_mixes.builders.onevision import LANGUAGE_ONLY, SUBSET_SOURCES, SUBSETS, OneVisionSingleImage
from llava_mixes.playground.pictures import encode, synthetic_photo
from llava_mixes.playground.sources import FixtureWriter, SourceFixture

NEXT_DIR = "LLaVA-NeXT-Data/data"
ONEVISION_DIR = "LLaVA-OneVision-Data"
QUIRKY_SUBSET = "sharegpt4o"
_TURN = pa.struct([("from", pa.string()), ("value", pa.string())])
_IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
HUB_SCHEMA = pa.schema(
    [("id", pa.string()), ("conversations", pa.list_(_TURN)), ("data_source", pa.string()), ("image", _IMAGE)]
)
"""The releases' Parquet schema (the card's features)."""


@dataclass
class CrossCopy:
    """A LLaVA-NeXT row whose picture re-encodes a 665K mix picture file."""

    copy_image_path: str
    original_image_path: str


def qa(question: str, answer: str, with_image: bool = True) -> list[dict[str, str]]:
    """One round, the question led by `<image>` when the row has a picture."""
    return [
        {"from": "human", "value": f"<image>\n{question}" if with_image else question},
        {"from": "gpt", "value": answer},
    ]


def hub_record(row_id: str, data: bytes | None, source: str | None, turns: list[dict[str, str]]) -> dict[str, Any]:
    """One row as the releases store it: the picture as the `datasets` Image struct."""
    image = None if data is None else {"bytes": data, "path": f"{row_id}.jpg"}
    return {"id": row_id, "conversations": turns, "data_source": source, "image": image}


def write_shard(path: Path, records: list[dict[str, Any]], schema: pa.Schema = HUB_SCHEMA) -> None:
    """Write `records` as one Parquet file, a few rows per row group as `datasets` does for pictures."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(records, schema=schema), path, row_group_size=4)


def _reencoded(photo: Image.Image) -> bytes:
    """The picture saved again as a low-quality JPEG, as the 665K mix's planted re-encoded copies are."""
    return encode(Image.open(io.BytesIO(encode(photo, quality=40))))


def write_llava_next(root: Path, rng: np.random.Generator, mix_picture: tuple[str, Image.Image]) -> SourceFixture:
    """LLaVA-NeXT-Data's two shards (see the module docstring); `mix_picture`: a 665K picture's path and picture."""
    writer = FixtureWriter(root, "llava_next_779k")
    photos = [synthetic_photo(rng) for _ in range(6)]
    sources = ["sharegpt4v", "laion_gpt4v", "llava_demo", "coco", "docvqa", "chartqa"]
    first: list[dict[str, Any]] = []
    for number, (photo, source) in enumerate(zip(photos, sources, strict=True)):
        first.append(
            hub_record(f"next_{number}", encode(photo), source, qa(f"What is in picture {number}?", "Shapes."))
        )
        writer.next_row()
    image_path = "llava_next_779k-{0:07d}/next_{0}.jpg".format
    # Picture 3 has the texture that copy verification needs (recipes verify copies; see `embedding.verify`).
    first.append(hub_record("next_6", _reencoded(photos[3]), "coco", qa("And this one?", "The same shapes.")))
    writer.fixture.planted[image_path(6)] = (image_path(3), "re-encoded")
    writer.next_row()
    broken = encode(synthetic_photo(rng))
    first.append(hub_record("next_7", broken[: len(broken) // 3], "coco", qa("Broken?", "Yes.")))
    writer.next_row("undecodable_image")
    first.append(hub_record("next_8", None, "sharegpt", qa("Explain recursion.", "It calls itself.", False)))
    writer.next_row()
    first.append(hub_record("next_9", encode(synthetic_photo(rng)), "coco", []))
    writer.next_row("empty_conversation")
    write_shard(root / NEXT_DIR / "train-00000-of-00002.parquet", first)
    second_schema = HUB_SCHEMA.append(pa.field("images", pa.list_(_IMAGE))).append(pa.field("note", pa.string()))
    second = [
        {**hub_record("next_10", encode(synthetic_photo(rng)), None, qa("No source?", "None.")), "note": "x"},
        {
            **hub_record("next_11", None, "multi", qa("Compare them.", "They differ.")),
            "images": [{"bytes": encode(photo), "path": None} for photo in photos[:2]],
        },
        hub_record("next_12", _reencoded(mix_picture[1]), "coco", qa("What colour is it?", "Blue.")),
    ]
    writer.next_row()
    writer.next_row("multiple_images")
    writer.next_row()
    write_shard(root / NEXT_DIR / "train-00001-of-00002.parquet", second, second_schema)
    return writer.fixture


def next_cross_copy(mix_picture_path: str) -> CrossCopy:
    """The LLaVA-NeXT row that copies the 665K picture at `mix_picture_path` (see `write_llava_next`)."""
    return CrossCopy("llava_next_779k-0000012/next_12.jpg", mix_picture_path)


def _subset_rows(subset: str, rng: np.random.Generator) -> tuple[list[list[dict[str, Any]]], list[str | None], dict]:
    """A subset's shards, each row's expected rejection, and its planted copies by row number."""
    if subset in LANGUAGE_ONLY:
        return [[hub_record(f"{subset}_0", None, subset, qa("Add 2 and 3.", "5.", False))]], [None], {}
    photo = synthetic_photo(rng)
    if subset != QUIRKY_SUBSET:
        return [[hub_record(f"{subset}_0", encode(photo), subset, qa("What is shown?", "Shapes."))]], [None], {}
    other = synthetic_photo(rng)
    broken = encode(other)[:200]
    first = [
        hub_record("s4o_0", encode(photo), QUIRKY_SUBSET, qa("Describe it.", "Shapes.")),
        hub_record("s4o_1", encode(other), None, qa("And this?", "Other shapes.")),
    ]
    second = [
        hub_record("s4o_2", _reencoded(photo), None, qa("Again?", "The same.")),
        hub_record("s4o_3", broken, QUIRKY_SUBSET, qa("Broken?", "Yes.")),
    ]
    return [first, second], [None, None, None, "undecodable_image"], {2: 0}


def write_onevision(root: Path, rng: np.random.Generator) -> dict[str, SourceFixture]:
    """OneVision's subset folders; the fixtures of `onevision-si` and of each subset's config."""
    whole = FixtureWriter(root, OneVisionSingleImage.name)
    fixtures: dict[str, SourceFixture] = {}
    for subset, source in zip(SUBSETS, SUBSET_SOURCES, strict=True):
        shards, reasons, planted = _subset_rows(subset, rng)
        own = FixtureWriter(root, source.name)
        start = whole.fixture.rows
        for number, shard in enumerate(shards):
            write_shard(root / ONEVISION_DIR / subset / f"train-{number:05d}-of-{len(shards):05d}.parquet", shard)
        records = [record for shard in shards for record in shard]
        for reason in reasons:
            own.next_row(reason)
            whole.next_row(reason)
        for copy, original in planted.items():
            for writer, offset in ((own, 0), (whole, start)):
                name = writer.fixture.source
                path = "{}-{:07d}/{}.jpg".format
                copied = path(name, offset + copy, records[copy]["id"])
                writer.fixture.planted[copied] = (path(name, offset + original, records[original]["id"]), "re-encoded")
        fixtures[source.config_name] = own.fixture
    fixtures[OneVisionSingleImage.config_name] = whole.fixture
    return fixtures
