"""Streaming readers for annotation files: one JSON array, JSON Lines, or Parquet.

Records are streamed (ijson; Parquet in record batches), so a 1 GB file never sits in memory as Python
objects. No record may nest deeper than `json_guard.MAX_DEPTH` or take more than
`json_guard.MAX_RECORD_BYTES` of text: such a record is one rejected row (checked on the bytes, before
any object is built; see `json_guard`), and the read goes on. A syntax error in a JSON array stops the
read with the file, line, column and byte offset (for bytes that are not UTF-8, the first such byte); a
bad line in JSON Lines is one rejected record, because the lines around it still parse. A Parquet file
that cannot be read (Arrow bounds its nesting itself), or whose row group is over `MAX_ROW_GROUP_BYTES`, stops
the read with the file and the error; Parquet is read one record batch at a time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import ijson
import pyarrow as pa
import pyarrow.parquet as pq

from llava_mixes.errors import MalformedSourceError
from llava_mixes.sources import json_guard
from llava_mixes.sources.json_guard import GuardedArray

_YAJL_MIN_INDENT = 10
_YAJL_CARET_COLUMN = 40
_YAJL_SPACE = b" \t\r\n\x0b\x0c"
_PARQUET_BATCH_ROWS = 256
MAX_ROW_GROUP_BYTES = 2 << 30
"""Largest uncompressed Parquet row group read: Arrow holds a whole row group in memory while reading it, and real
releases write at most a few hundred MB per row group (the Hub's viewer refuses larger ones)."""
BadLine = tuple[str, str]
Reader = Callable[[Path, Callable[[int], None] | None], Iterator[tuple[int, Any]]]


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


def _first_invalid_utf8(reader: GuardedArray) -> int | None:
    """The stream position of the first byte of the window that is not UTF-8, if any.

    Every byte handed to yajl before its last piece was accepted, so the first invalid one is the one
    yajl stopped at. A character cut by the window's start, or one the window's end cuts short, is no error.
    """
    window = reader.window
    skip = 0
    while skip < min(3, len(window)) and 0x80 <= window[skip] < 0xC0:
        skip += 1
    try:
        window[skip:].decode("utf-8")
    except UnicodeDecodeError as error:
        if error.reason == "unexpected end of data":
            return None
        return reader.handed - len(window) + skip + error.start
    return None


def _error_offset(message: bytes, reader: GuardedArray) -> int:
    """The file offset of the byte yajl stopped at.

    For bytes that are not UTF-8, the first such byte yajl was handed. Otherwise the context lines of
    yajl's message: up to 30 bytes either side of the error, line breaks shown as spaces, the error at
    column 40 under the caret of the next line; that column is the byte after the offending token, so the
    offset returned is the token's last byte. Else the bytes read.
    """
    if b"invalid bytes in UTF8" in message:
        position = _first_invalid_utf8(reader)
        if position is not None:
            return reader.file_offset(position)
    lines = message.split(b"\n")
    if len(lines) >= 3 and lines[2].find(b"^") == _YAJL_CARET_COLUMN and len(lines[1]) > _YAJL_CARET_COLUMN:
        left = lines[1][_YAJL_MIN_INDENT:_YAJL_CARET_COLUMN].lstrip(b" ")
        right = lines[1][_YAJL_CARET_COLUMN:]
        window = reader.window.translate(bytes.maketrans(b"\n\r", b"  "))
        found = window.rfind(left + right)
        if found >= 0:
            return reader.file_offset(max(reader.handed - len(window) + found + len(left) - 1, 0))
    return reader.offset


def _skip_bom_and_check_array(handle: IO[bytes], path: Path) -> int:
    """Leave the handle at the start of the JSON text, insist that the text is an array, return the start."""
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
    return start


def _reparsed(text: bytes, parsed: Any) -> Any:
    """A record holding a lone surrogate escape, parsed by Python's `json`, which keeps the surrogate (yajl
    writes `?`); the row check then rejects it. If `json` refuses it, yajl's reading stands."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return parsed


def _last_token_byte(path: Path) -> bytes:
    """The file's last byte that is not JSON whitespace (yajl's, vertical tab and form feed included), or b""."""
    with path.open("rb") as handle:
        end = handle.seek(0, os.SEEK_END)
        while end > 0:
            start = max(0, end - (1 << 16))
            handle.seek(start)
            text = handle.read(end - start).rstrip(_YAJL_SPACE)
            if text:
                return text[-1:]
            end = start
    return b""


def iter_json_array(path: Path, on_bytes: Callable[[int], None] | None = None) -> Iterator[tuple[int, Any]]:
    """Yield `(index, record)` for each element of the JSON array in `path`; a record over a limit of
    `json_guard` yields a `("malformed", detail)` tuple instead."""
    with path.open("rb") as raw:
        reader = GuardedArray(raw, _skip_bom_and_check_array(raw, path), on_bytes)
        index = -1
        try:
            for index, record in enumerate(ijson.items(reader, "item", use_float=True)):
                if index in reader.rejected:
                    yield index, ("malformed", reader.rejected.pop(index))
                elif index in reader.reparse:
                    yield index, _reparsed(reader.reparse.pop(index), record)
                else:
                    yield index, record
        except (ijson.JSONError, UnicodeDecodeError) as error:
            if isinstance(error, UnicodeDecodeError):  # yajl passes encoded surrogates that Python refuses
                message = b"invalid bytes in UTF8 string: " + str(error).encode()
            else:
                argument = error.args[0] if error.args else b""
                message = argument if isinstance(argument, bytes) else str(argument).encode("utf-8", "replace")
            offset = _error_offset(message, reader)
            line, column = _line_and_column(path, offset)
            reason = message.split(b"\n", 1)[0].decode("utf-8", "replace")
            hint = ""
            if b"UTF8" in message:
                hint = " (the file is not UTF-8: convert it, e.g. with iconv, and build again)"
            elif b"overflow" in message:
                hint = " (a number beyond 64-bit range, which the streaming parser cannot hold: write it as a string)"
            raise MalformedSourceError(
                f"{path}: malformed JSON at line {line}, column {column} (byte {offset}), "
                f"after {index + 1} complete records: {reason}{hint}"
            ) from error
        if _last_token_byte(path) != b"]":
            # yajl ends without an error on a string left open after the array (`[1]"`): Python's json refuses it.
            raise MalformedSourceError(
                f"{path}: malformed JSON: text after the array's closing bracket, after {index + 1} complete records"
            )


def _json_line(line: bytes, number: int, path: Path) -> Any | BadLine:
    """One JSON Lines record, or `("malformed", detail)` for a line that is not JSON or nests too deep."""
    opens = line.count(b"[") + line.count(b"{")
    if opens > json_guard.MAX_DEPTH and (depth := json_guard.max_depth(line)) > json_guard.MAX_DEPTH:
        return (
            "malformed",
            f"{path}: line {number} nests {depth} levels deep; records are read up to {json_guard.MAX_DEPTH} levels",
        )
    try:
        # UTF-8 only, as in a JSON array: json.loads would take bytes as UTF-16 or with encoded surrogates.
        return json.loads(line.decode("utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        return ("malformed", f"{path}: line {number} is not JSON: {error}")


def iter_json_lines(path: Path, on_bytes: Callable[[int], None] | None = None) -> Iterator[tuple[int, Any | BadLine]]:
    """Yield `(line_index, record)` (blank lines are not counted); a line that does not parse, nests deeper than
    `json_guard.MAX_DEPTH` or is longer than `json_guard.MAX_RECORD_BYTES` yields a `("malformed", detail)`
    tuple, whose detail names the line's number in the file."""
    limit = json_guard.MAX_RECORD_BYTES
    with path.open("rb") as handle:
        index = 0
        number = 0
        while raw_line := handle.readline(limit + 1):
            number += 1
            if on_bytes is not None:
                on_bytes(len(raw_line))
            if len(raw_line) > limit and not raw_line.endswith(b"\n"):
                while (rest := handle.readline(1 << 20)) and not rest.endswith(b"\n"):
                    if on_bytes is not None:
                        on_bytes(len(rest))
                if on_bytes is not None and rest:
                    on_bytes(len(rest))
                yield index, ("malformed", f"{path}: line {number} is longer than the {limit:,}-byte limit")
                index += 1
                continue
            if not raw_line.strip():
                continue
            yield index, _json_line(raw_line, number, path)
            index += 1


def iter_parquet(path: Path, on_bytes: Callable[[int], None] | None = None) -> Iterator[tuple[int, Any]]:
    """Yield `(row_index, record)` for each row of a Parquet file; a struct column comes as a dict."""
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError, UnicodeDecodeError) as error:
        raise MalformedSourceError(f"{path}: not a readable Parquet file: {error}") from error
    for group in range(parquet.metadata.num_row_groups):
        size = parquet.metadata.row_group(group).total_byte_size
        if size > MAX_ROW_GROUP_BYTES:
            raise MalformedSourceError(
                f"{path}: row group {group} holds {size:,} bytes uncompressed, over the {MAX_ROW_GROUP_BYTES:,}-byte "
                "limit of one read; rewrite the file with smaller row groups (e.g. pyarrow's row_group_size)"
            )
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
    except (pa.ArrowException, OSError, UnicodeDecodeError) as error:  # text that is not UTF-8: a damaged file
        raise MalformedSourceError(f"{path}: Parquet read failed after {index} rows: {error}") from error


def reader_for(path: Path) -> Reader:
    """The reader of an annotation file, by its name: `.jsonl` JSON Lines, `.parquet` Parquet, else a JSON array."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return iter_json_lines
    if suffix == ".parquet":
        return iter_parquet
    return iter_json_array
