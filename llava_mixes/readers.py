"""Streaming readers for annotation files: one JSON array, JSON Lines, or Parquet.

Records are streamed (ijson; Parquet in record batches), so a 1 GB file never sits in memory as Python
objects. A syntax error in a JSON array stops the read with the file, line, column and byte offset; a bad
line in JSON Lines is one rejected record, because the lines around it still parse. A Parquet file that
cannot be read stops the read with the file and the error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import ijson
import pyarrow as pa
import pyarrow.parquet as pq

from llava_mixes.errors import MalformedSourceError

_WINDOW_BYTES = 1 << 17
_YAJL_MIN_INDENT = 10
_YAJL_CARET_COLUMN = 40
_PARQUET_BATCH_ROWS = 256
BadLine = tuple[str, str]
Reader = Callable[[Path, Callable[[int], None] | None], Iterator[tuple[int, Any]]]


class _TrackingReader:
    """A binary file wrapper that counts bytes read and keeps the most recent ones for error positions."""

    def __init__(self, handle: IO[bytes], on_bytes: Callable[[int], None] | None) -> None:
        self._handle = handle
        self._on_bytes = on_bytes
        self.offset = 0
        self.window = b""

    def read(self, size: int = -1) -> bytes:
        chunk = self._handle.read(size)
        self.offset += len(chunk)
        self.window = (self.window + chunk)[-_WINDOW_BYTES:]
        if self._on_bytes is not None and chunk:
            self._on_bytes(len(chunk))
        return chunk


def _line_and_column(path: Path, offset: int) -> tuple[int, int]:
    """1-based line and column of a byte offset, counted by streaming the file."""
    line, last_newline, seen = 1, -1, 0
    with path.open("rb") as handle:
        while seen < offset:
            chunk = handle.read(min(1 << 20, offset - seen))
            if not chunk:
                break
            line += chunk.count(b"\n")
            newline_at = chunk.rfind(b"\n")
            if newline_at >= 0:
                last_newline = seen + newline_at
            seen += len(chunk)
    return line, offset - last_newline


def _error_offset(message: str, reader: _TrackingReader) -> int:
    """Find the byte offset yajl points at, from the context lines of its message; else the bytes read.

    yajl prints up to 30 bytes either side of the error with line breaks shown as spaces, and puts the
    error at column 40, under the caret of the next line; that column is the byte after the offending
    token, so the offset returned is the token's last byte.
    """
    lines = message.split("\n")
    if len(lines) >= 3 and lines[2].find("^") == _YAJL_CARET_COLUMN and len(lines[1]) > _YAJL_CARET_COLUMN:
        left = lines[1][_YAJL_MIN_INDENT:_YAJL_CARET_COLUMN].lstrip(" ").encode("utf-8", errors="ignore")
        right = lines[1][_YAJL_CARET_COLUMN:].encode("utf-8", errors="ignore")
        window = reader.window.translate(bytes.maketrans(b"\n\r", b"  "))
        found = window.rfind(left + right)
        if found >= 0:
            return max(reader.offset - len(window) + found + len(left) - 1, 0)
    return reader.offset


def _skip_bom_and_check_array(handle: IO[bytes], path: Path) -> None:
    """Leave the handle at the start of the JSON text and insist that the text is an array."""
    head = handle.read(4096)
    start = 3 if head.startswith(b"\xef\xbb\xbf") else 0
    stripped = head[start:].lstrip()
    if not stripped:
        raise MalformedSourceError(f"{path}: the file is empty; expected a JSON array of records")
    if not stripped.startswith(b"["):
        raise MalformedSourceError(
            f"{path}: expected a JSON array of records, but the file starts with {stripped[:20]!r}"
        )
    handle.seek(start)


def iter_json_array(path: Path, on_bytes: Callable[[int], None] | None = None) -> Iterator[tuple[int, Any]]:
    """Yield `(index, record)` for each element of the JSON array in `path`."""
    with path.open("rb") as raw:
        _skip_bom_and_check_array(raw, path)
        reader = _TrackingReader(raw, on_bytes)
        index = -1
        try:
            for index, record in enumerate(ijson.items(reader, "item", use_float=True)):
                yield index, record
        except ijson.JSONError as error:
            message = str(error)
            offset = _error_offset(message, reader)
            line, column = _line_and_column(path, offset)
            reason = message.split("\n", 1)[0]
            raise MalformedSourceError(
                f"{path}: malformed JSON at line {line}, column {column} (byte {offset}), "
                f"after {index + 1} complete records: {reason}"
            ) from error


def iter_json_lines(path: Path, on_bytes: Callable[[int], None] | None = None) -> Iterator[tuple[int, Any | BadLine]]:
    """Yield `(line_index, record)`; a line that does not parse yields a `("malformed", detail)` tuple."""
    with path.open("rb") as handle:
        index = 0
        for raw_line in handle:
            if on_bytes is not None:
                on_bytes(len(raw_line))
            if not raw_line.strip():
                continue
            try:
                yield index, json.loads(raw_line)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                yield index, ("malformed", f"{path}: line {index + 1} is not JSON: {error}")
            index += 1


def iter_parquet(path: Path, on_bytes: Callable[[int], None] | None = None) -> Iterator[tuple[int, Any]]:
    """Yield `(row_index, record)` for each row of a Parquet file; a struct column comes as a dict."""
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as error:
        raise MalformedSourceError(f"{path}: not a readable Parquet file: {error}") from error
    total_rows = max(parquet.metadata.num_rows, 1)
    size = path.stat().st_size
    index = 0
    try:
        for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS):
            for record in batch.to_pylist():
                yield index, record
                index += 1
            if on_bytes is not None:
                on_bytes(size * batch.num_rows // total_rows)
    except (pa.ArrowException, OSError) as error:
        raise MalformedSourceError(f"{path}: Parquet read failed after {index} rows: {error}") from error


def reader_for(path: Path) -> Reader:
    """The reader of an annotation file, by its name: `.jsonl` JSON Lines, `.parquet` Parquet, else a JSON array."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return iter_json_lines
    if suffix == ".parquet":
        return iter_parquet
    return iter_json_array
