"""Exact duplicate rows: rows whose picture content (SHA-256) and whitespace-normalised conversation text are
the same. The 665K file repeats some records, and mixes repeat rows across sources; the first row is kept.

Whitespace is what Python's `str.split()` splits on (`WHITESPACE`): runs of it become one space and the ends
are stripped. The keys are built in Arrow compute, a batch at a time, as an unambiguous encoding of the row
(every part prefixed with its presence and length), then hashed with SHA-256 per row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import datasets
import pyarrow as pa
import pyarrow.compute as pc

from llava_mixes import schema

DUPLICATE_ROW = "duplicate_row"
"""Why a row leaves a build as an exact copy of an earlier row."""

WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)
"""The characters `str.isspace()` holds true for (Python 3.11, Unicode 14)."""


def _class(characters: str) -> str:
    return "[" + "".join(f"\\x{{{ord(char):x}}}" for char in characters) + "]"


# What must change for the runs to become single spaces: a run of two or more, or one that is not a space.
# (Replacing every run, single spaces included, took 4x as long.)
_CHANGING = f"{_class(WHITESPACE)}{{2,}}|{_class(WHITESPACE.replace(' ', ''))}"


def _text(value: str) -> pa.Scalar:
    return pa.scalar(value, pa.large_string())


def normalise_text(values: pa.Array) -> pa.Array:
    """Each string with its runs of whitespace made one space and its ends stripped (nulls become "")."""
    values = pc.fill_null(values.cast(pa.large_string()), _text(""))
    return pc.utf8_trim(pc.replace_substring_regex(values, _CHANGING, " "), " ")


def _field(values: pa.Array) -> pa.Array:
    """`values` as unambiguous parts: `-` for null, else `+<length in bytes>:<value>`."""
    values = values.cast(pa.large_string())
    lengths = pc.cast(pc.binary_length(values), pa.large_string())
    encoded = pc.binary_join_element_wise(_text("+"), lengths, _text(":"), values, _text(""))
    return pc.fill_null(encoded, _text("-"))


def row_keys(table: pa.Table) -> list[bytes]:
    """The identity of each row of `table` (with `image_sha256` and `conversations` columns): the SHA-256 of its
    picture's hash and each turn's role and normalised text."""
    conversations = table.column(schema.CONVERSATIONS).combine_chunks()
    # The turns behind this (maybe sliced) array, null lists included, re-based to offset 0.
    offsets = pc.cast(conversations.offsets, pa.int64())
    first, last = offsets[0].as_py(), offsets[-1].as_py()
    turns = conversations.values.slice(first, last - first)
    roles = _field(turns.field("from"))
    texts = _field(normalise_text(turns.field("value")))
    encoded_turns = pc.binary_join_element_wise(roles, texts, _text(""))
    per_row = pa.LargeListArray.from_arrays(pc.subtract(offsets, first), encoded_turns)
    # A null conversation list keys like an empty one: no turns.
    joined = pc.if_else(pc.is_null(conversations), _text(""), pc.binary_join(per_row, _text("")))
    counts = pc.cast(pc.fill_null(pc.list_value_length(conversations), 0), pa.large_string())
    pictures = _field(table.column(schema.IMAGE_SHA256).combine_chunks())
    keys = pc.binary_join_element_wise(pictures, counts, _text("|"), joined, _text(""))
    return [hashlib.sha256(key).digest() for key in pc.cast(keys, pa.large_binary()).to_pylist()]


def _keys(dataset: datasets.Dataset) -> Iterator[bytes]:
    columns = dataset.select_columns([schema.IMAGE_SHA256, schema.CONVERSATIONS]).with_format("arrow")
    for table in columns.iter(batch_size=16384):
        yield from row_keys(table)


def duplicate_rows(dataset: datasets.Dataset) -> dict[int, int]:
    """Row index -> index of the first row with the same content (see `row_keys`), for every later copy."""
    first: dict[bytes, int] = {}
    copies: dict[int, int] = {}
    for row, key in enumerate(_keys(dataset)):
        kept = first.setdefault(key, row)
        if kept != row:
            copies[row] = kept
    return copies
