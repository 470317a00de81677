"""Bounded readers of benchmark files, which are untrusted input: question files (JSON Lines naming pictures),
MMBench-style TSVs (base64 pictures, short cells naming another row's `index`) and `save_to_disk` records.

Each reader holds at most one line (`MAX_QUESTION_LINE_BYTES`, `MAX_TSV_LINE_BYTES`) or record
(`MAX_RECORD_BYTES`) in memory beyond what it returns, and turns every bad line or cell into a problem that
names the file, the line or row and why; a file that cannot be read as a whole is one `ConfigError`.
"""

from __future__ import annotations

import base64
import binascii
import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from llava_mixes.errors import ConfigError, PathEscapeError
from llava_mixes.paths import contained

MAX_QUESTION_LINE_BYTES = 1 << 20
"""Longest question record read; LLaVA's take a few hundred bytes."""
MAX_TSV_LINE_BYTES = 64 << 20
"""Longest TSV line (and cell) read; MMBench's longest, a base64 picture, takes about 1 MB."""
MAX_RECORD_BYTES = 16 << 20
"""Largest `state.json` or `dataset_dict.json` of a saved dataset read."""
MAX_BACK_REFERENCE = 64
"""Longest TSV `image` cell read as another row's `index` rather than as base64."""


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _lines(handle: IO[bytes], limit: int) -> Iterator[tuple[int, int, bytes | None]]:
    """`(line number, byte offset, line)` of a binary file; `line` is None for a line longer than `limit`,
    whose bytes are skipped without being held."""
    number = offset = 0
    while line := handle.readline(limit + 1):
        number += 1
        start = offset
        offset += len(line)
        if len(line) > limit and not line.endswith(b"\n"):
            while (rest := handle.readline(1 << 20)) and not rest.endswith(b"\n"):
                offset += len(rest)
            offset += len(rest)
            yield number, start, None
        else:
            yield number, start, line


def _picture_names(record: Any) -> list[str] | None:
    """The pictures a question record names in `image` (none when it has none); None when `image` is not a name
    or a list of names."""
    value = record.get("image") if isinstance(record, dict) else None
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) and item for item in value):
        return value
    return None


def question_names(file: Path) -> tuple[list[str], list[str]]:
    """The picture names the records of a question file (JSON Lines) give in `image`, in order; and one problem
    per line that could not be read (not UTF-8, not JSON, too long, `image` not a name), naming the line."""
    names: list[str] = []
    problems: list[str] = []
    with open(file, "rb") as handle:
        for number, offset, line in _lines(handle, MAX_QUESTION_LINE_BYTES):
            where = f"{file.name} line {number}"
            if line is None:
                problems.append(f"{where}: longer than {MAX_QUESTION_LINE_BYTES:,} bytes")
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as error:
                problems.append(f"{where}: not UTF-8 (byte {offset + error.start} of the file)")
                continue
            text = text.lstrip("\ufeff") if number == 1 else text
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except (ValueError, RecursionError) as error:
                problems.append(f"{where}: not JSON ({_short(str(error), 80)})")
                continue
            found = _picture_names(record)
            if found is None:
                problems.append(f"{where}: 'image' is not a file name")
            else:
                names.extend(found)
    return names, problems


def _tsv_lines(handle: IO[bytes], file: Path) -> Iterator[str]:
    for number, offset, line in _lines(handle, MAX_TSV_LINE_BYTES):
        if line is None:
            raise ConfigError(f"{file}: line {number} is longer than {MAX_TSV_LINE_BYTES:,} bytes; not an MMBench TSV")
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ConfigError(
                f"{file} is not UTF-8 text: byte {offset + error.start} (line {number}) cannot be decoded"
            ) from None
        yield text.lstrip("\ufeff") if number == 1 else text


def _tsv_cells(file: Path) -> tuple[list[tuple[str, str]], set[str]]:
    """Per data row of a TSV, its `index` (the row number where there is no such column) and `image` cell."""
    cells: list[tuple[str, str]] = []
    previous = csv.field_size_limit(MAX_TSV_LINE_BYTES)
    try:
        with open(file, "rb") as handle:
            reader = csv.reader(_tsv_lines(handle, file), delimiter="\t")
            try:
                header = next(reader, None)
                if header is None or "image" not in header:
                    raise ConfigError(
                        f"{file} has no 'image' column; its columns are {_short(str(header))}: give an MMBench-style "
                        "TSV (index and image columns)"
                    )
                image = header.index("image")
                index = header.index("index") if "index" in header else None
                for number, row in enumerate(reader):
                    key = row[index] if index is not None and index < len(row) else str(number)
                    cells.append((key, row[image] if image < len(row) else ""))
            except csv.Error as error:
                raise ConfigError(f"{file}: line {reader.line_num} is not TSV: {_short(str(error))}") from None
    finally:
        csv.field_size_limit(previous)
    return cells, {key for key, _ in cells}


def tsv_pictures(file: Path) -> tuple[list[tuple[str, bytes]], list[str]]:
    """The pictures of an MMBench-style TSV as `(index, bytes)`, one per row that has one; and per row without
    a picture, `name:index` and why (empty, not base64, or a reference to a row that has none: itself, a
    cycle, or no such row). A short cell that is another row's `index` stands for that row's picture."""
    cells, indices = _tsv_cells(file)
    pictures: dict[str, bytes] = {}
    links: dict[str, str] = {}
    problems: list[str] = []
    done: set[str] = set()
    for key, cell in cells:
        if key in done:  # a repeated index: its first row counts
            continue
        done.add(key)
        if len(cell) <= MAX_BACK_REFERENCE and cell.strip() in indices:
            links[key] = cell.strip()
            continue
        try:
            data = base64.b64decode(cell, validate=True)
        except (binascii.Error, ValueError):
            problems.append(f"{file.name}:{_short(key, 40)} (not base64)")
            continue
        if data:
            pictures[key] = data
        else:
            problems.append(f"{file.name}:{_short(key, 40)} (empty)")
    found = list(pictures.items())
    for key, first in links.items():
        seen, target = {key}, first
        while target in links and target not in seen:
            seen.add(target)
            target = links[target]
        if target in pictures:
            found.append((key, pictures[target]))
        elif first == key:
            problems.append(f"{file.name}:{_short(key, 40)} (refers to itself)")
        else:
            why = "refers in a cycle" if target in seen else "refers to a row with no picture"
            problems.append(f"{file.name}:{_short(key, 40)} ({why})")
    return found, problems


def _json_record(folder: Path, name: str) -> Any:
    path = contained(folder, name, f"saved dataset record {name}")
    with open(path, "rb") as handle:
        data = handle.read(MAX_RECORD_BYTES + 1)
    if len(data) > MAX_RECORD_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_RECORD_BYTES:,} bytes; not a save_to_disk record")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as error:
        raise ConfigError(f"{path} is not JSON: {_short(str(error))}") from None


def check_saved_folder(folder: Path) -> None:
    """Refuse (`ConfigError`, `PathEscapeError`) a `save_to_disk` folder whose records name a split or a data
    file outside it, before `datasets` reads any of them."""
    if os.path.lexists(folder / "dataset_dict.json"):
        record = _json_record(folder, "dataset_dict.json")
        splits = record.get("splits") if isinstance(record, dict) else None
        if not isinstance(splits, list) or not all(isinstance(split, str) and split for split in splits):
            raise ConfigError(f"{folder / 'dataset_dict.json'}: 'splits' is not a list of split names")
        for split in splits:
            check_saved_folder(contained(folder, split, "saved split"))
        return
    record = _json_record(folder, "state.json")
    files = record.get("_data_files") if isinstance(record, dict) else None
    if not isinstance(files, list) or not all(isinstance(item, dict) for item in files):
        raise ConfigError(f"{folder / 'state.json'}: '_data_files' is not a list of files")
    for item in files:
        name = item.get("filename")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{folder / 'state.json'}: a data file has no file name")
        contained(folder, name, "saved data file")


def contained_picture(roots: list[Path], written: str) -> Path:
    """`written` (a picture path stored in an untrusted dataset) resolved inside one of `roots`; else
    `PathEscapeError` naming the last refusal."""
    refusal: PathEscapeError | None = None
    for root in roots:
        try:
            return contained(root, written, "stored picture path")
        except PathEscapeError as error:
            refusal = error
    raise refusal or PathEscapeError(f"stored picture path {written!r}: no folder to read it from", written)
