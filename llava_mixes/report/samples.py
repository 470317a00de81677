"""Sampled exports for spreadsheets: every Nth row of each split (as in the seed study, N = 500), with its id,
group, path and conversation text, as one `sample.xlsx` (a sheet per config split) and one CSV per split."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import datasets

from llava_mixes import schema
from llava_mixes.errors import ConfigError
from llava_mixes.extras import require
from llava_mixes.store import write_atomic

XLSX_FILE = "sample.xlsx"
SHEET_NAME_LIMIT = 31
CELL_LIMIT = 32767
COLUMNS = ("row", schema.ID, schema.IMAGE_GROUP, schema.IMAGE_PATH, schema.SOURCE, "conversation")
DEDUP_COLUMNS = (schema.DUPLICATE_OF, schema.SIMILARITY)
# Characters Excel cannot store (XML 1.0 forbids them); openpyxl refuses cells that hold them.
_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


@dataclass(frozen=True)
class Sheet:
    """One split to sample: its sheet title, CSV file name and rows."""

    title: str
    csv_name: str
    dataset: datasets.Dataset


def sheet_title(config: str, split: str, taken: set[str]) -> str:
    """`config split`, without the characters Excel forbids, the config cut (`~`) to fit 31 characters,
    numbered if `taken` has it already."""
    name = re.sub(r"[\[\]:*?/\\]", "-", config)
    number = 1
    while True:
        tail = f" {split}" + (f" {number}" if number > 1 else "")
        room = SHEET_NAME_LIMIT - len(tail)
        title = (name if len(name) <= room else name[: room - 1] + "~") + tail
        if title not in taken:
            return title
        number += 1


def conversation_text(turns: list[dict[str, str]] | None) -> str:
    """The turns as `from: value` lines."""
    return "\n".join(f"{turn['from']}: {turn['value']}" for turn in turns or [])


def sampled_rows(dataset: datasets.Dataset, every: int) -> Iterator[list[object]]:
    """Rows 0, every, 2*every, ... as lists of `columns(dataset)` values."""
    indices = list(range(0, len(dataset), every))
    wanted = [column for column in columns(dataset) if column not in ("row", "conversation")]
    picked = dataset.select_columns([*wanted, schema.CONVERSATIONS]).select(indices)
    for index, record in zip(indices, picked, strict=True):
        values: list[object] = [index]
        for column in columns(dataset)[1:]:
            values.append(
                conversation_text(record[schema.CONVERSATIONS]) if column == "conversation" else record[column]
            )
        yield values


def columns(dataset: datasets.Dataset) -> tuple[str, ...]:
    """The exported columns: `COLUMNS`, plus `duplicate_of` and `similarity` for a deduplicated split."""
    return COLUMNS + tuple(column for column in DEDUP_COLUMNS if column in dataset.column_names)


def _cell(value: object) -> object:
    if isinstance(value, str):
        value = _ILLEGAL.sub("", value)
        return value if len(value) <= CELL_LIMIT else value[: CELL_LIMIT - 1] + "…"
    return value


def write_samples(out: Path, sheets: list[Sheet], every: int) -> list[Path]:
    """Write `sample.xlsx` and one CSV per sheet under `out` (atomically); returns the paths written."""
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ConfigError(f"every={every!r} is not allowed; it must be a whole number >= 1")
    openpyxl = require("openpyxl")
    workbook = openpyxl.Workbook(write_only=True)
    written = []
    for sheet in sheets:
        worksheet = workbook.create_sheet(sheet.title)
        header = list(columns(sheet.dataset))
        worksheet.append(header)
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(header)
        for values in sampled_rows(sheet.dataset, every):
            worksheet.append([_cell(value) for value in values])
            writer.writerow(values)
        write_atomic(out / sheet.csv_name, text.getvalue().encode())
        written.append(out / sheet.csv_name)
    buffer = io.BytesIO()
    workbook.save(buffer)
    write_atomic(out / XLSX_FILE, buffer.getvalue())
    return [out / XLSX_FILE, *written]
