"""JPEG thumbnails of a dataset's pictures, for the report page and the dataset card's pairs."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import datasets
from PIL import Image

from llava_mixes import schema

logger = logging.getLogger(__name__)

THUMBNAIL_SIZE = 176


def _jpeg(image: dict | None, size: int) -> bytes:
    data = (image or {}).get("bytes") or Path((image or {})["path"]).read_bytes()
    with Image.open(io.BytesIO(data)) as opened:
        picture = opened.convert("RGB")
    picture.thumbnail((size, size))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=82)
    return buffer.getvalue()


def thumbnails(dataset: datasets.Dataset, rows: list[int], size: int = THUMBNAIL_SIZE) -> dict[int, bytes | None]:
    """JPEG thumbnails of the images in `rows` of `dataset` (None where one cannot be read)."""
    readable = dataset.select_columns([schema.IMAGE]).cast_column(schema.IMAGE, datasets.Image(decode=False))
    found: dict[int, bytes | None] = {}
    for row, record in zip(rows, readable.select(rows), strict=True):
        try:
            found[row] = _jpeg(record[schema.IMAGE], size)
        except (OSError, KeyError, TypeError, ValueError) as error:
            logger.warning("no thumbnail for row %d: %s", row, error)
            found[row] = None
    return found
