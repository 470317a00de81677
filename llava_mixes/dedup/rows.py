"""Exact duplicate rows: rows whose picture content (SHA-256) and whitespace-normalised conversation text are
the same. The 665K file repeats some records, and mixes repeat rows across sources; the first row is kept."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import datasets

from llava_mixes import schema

DUPLICATE_ROW = "duplicate_row"
"""Why a row leaves a build as an exact copy of an earlier row."""


def row_key(image_sha256: str | None, conversations: list[dict[str, str]] | None) -> str:
    """The identity of a row's content: its picture's hash and each turn's role and text, runs of whitespace
    made one space and the ends stripped."""
    turns = [[turn.get("from"), " ".join(str(turn.get("value") or "").split())] for turn in conversations or []]
    return hashlib.sha256(json.dumps([image_sha256, turns], ensure_ascii=False).encode()).hexdigest()


def _keys(dataset: datasets.Dataset) -> Iterator[str]:
    columns = dataset.select_columns([schema.IMAGE_SHA256, schema.CONVERSATIONS]).with_format("arrow")
    for table in columns.iter(batch_size=16384):
        hashes = table.column(schema.IMAGE_SHA256).to_pylist()
        conversations = table.column(schema.CONVERSATIONS).to_pylist()
        yield from (row_key(sha, turns) for sha, turns in zip(hashes, conversations, strict=True))


def duplicate_rows(dataset: datasets.Dataset) -> dict[int, int]:
    """Row index -> index of the first row with the same content (see `row_key`), for every later copy."""
    first: dict[str, int] = {}
    copies: dict[int, int] = {}
    for row, key in enumerate(_keys(dataset)):
        kept = first.setdefault(key, row)
        if kept != row:
            copies[row] = kept
    return copies
