"""The playground's part for a source with no hand-written fixture, from the source's own `example_record`: a
few generated pictures, one re-encoded copy planted among them, the records in the source's annotation format
(a JSON array, JSON Lines or Parquet, by the file's suffix) where the source looks for them first."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from llava_mixes.playground.pictures import encode, synthetic_photo
from llava_mixes.playground.sources import FixtureWriter, SourceFixture
from llava_mixes.sources.base import Source

PICTURES = 5
FOLDER = "generic"


def write_generic(root: Path, source: Source, rng: np.random.Generator) -> SourceFixture:
    """Write `source`'s generic fixture under `root` (see the module docstring) and describe it."""
    writer = FixtureWriter(root, source.name)
    prefix = source.image_prefixes[0]
    photos = [synthetic_photo(rng) for _ in range(PICTURES)]
    blobs = [encode(photo) for photo in photos] + [encode(photos[1], quality=40)]
    images = [f"{FOLDER}/{source.config_name}/{number:03d}.jpg" for number in range(len(blobs))]
    for number, (image, data) in enumerate(zip(images, blobs, strict=True)):
        writer.image("/".join(part for part in (prefix, image) if part), data)
        writer.row(source.example_record(number, image))
    named = [source.normalise(record).image_path for record in writer.records]
    writer.fixture.planted[str(named[-1])] = (str(named[1]), "re-encoded")
    path = root / source.annotation_dirs[0] / source.annotation_files[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in writer.records))
    elif path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(writer.records), path)
    else:
        path.write_text(json.dumps(writer.records, ensure_ascii=False, indent=1))
    return writer.fixture
