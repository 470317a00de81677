"""`export`: stream a built config's `train` rows into one training tool's file, in bounded memory.

Rows are read as Arrow batches (pictures are never decoded), turned into the format's records, checked, and
written to a temporary file in the output folder that is renamed into place only when every row is written
(removed on any failure). A row is skipped, counted by reason in the result and logged, when its picture
cannot be found, when its `<image>` tags do not match its pictures, when a turn has a role outside
`human`/`gpt`, or when it is a row dedup removed.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import datasets
from datasets.utils import tqdm

from llava_mixes import schema
from llava_mixes.errors import ConfigError, LlavaMixesError
from llava_mixes.exporters.formats import (
    FORMATS,
    ROLES,
    Format,
    image_tags,
    llamafactory_entry,
    record_images,
    record_texts,
)
from llava_mixes.exporters.pictures import FILE_MODE, Missing, Pictures

logger = logging.getLogger(__name__)

BATCH_ROWS = 1000
DATASET_INFO = "dataset_info.json"
REMOVED_BY_DEDUP = "removed_by_dedup"
IMAGE_TAG_MISMATCH = "image_tag_mismatch"
EXAMPLES_PER_REASON = 20


class ExportError(LlavaMixesError):
    """An export could not be written; the message says which file and why."""


@dataclass
class ExportResult:
    """What one export wrote."""

    format: str
    data_file: Path
    rows: int
    image_rows: int
    image_root: Path | None
    """The folder relative picture paths start from (`--image_folder` for LLaVA); None for absolute paths."""
    images_written: int
    skipped: Counter = field(default_factory=Counter)
    """reason -> rows skipped for it."""
    skipped_examples: dict[str, list[str]] = field(default_factory=dict)
    """reason -> the first few row ids (with detail) skipped for it."""
    dataset_info: Path | None = None
    """LLaMA-Factory's `dataset_info.json`, for the `llamafactory` format."""
    name: str = ""

    def usage(self) -> str:
        """How to train on the file, as the consuming tool's arguments."""
        if self.format == "llava":
            return f"--data_path {self.data_file} --image_folder {self.image_root}"
        if self.format == "llamafactory":
            return f"dataset_dir: {self.data_file.parent}\ndataset: {self.name}"
        if self.format == "swift":
            return f"--dataset {self.data_file}"
        return f"{self.data_file} (image paths relative to {self.image_root})"


def _train(dataset: datasets.Dataset | datasets.DatasetDict) -> datasets.Dataset:
    if isinstance(dataset, datasets.DatasetDict):
        if schema.TRAIN_SPLIT not in dataset:
            raise ConfigError(f"the DatasetDict has splits {list(dataset)}; export needs {schema.TRAIN_SPLIT!r}")
        return dataset[schema.TRAIN_SPLIT]
    if not isinstance(dataset, datasets.Dataset):
        raise ConfigError(f"dataset={type(dataset).__name__} is not allowed; pass a datasets.Dataset or DatasetDict")
    if dataset.split is not None and str(dataset.split) == schema.REMOVED_SPLIT:
        raise ConfigError(f"the {schema.REMOVED_SPLIT!r} split holds rows dedup removed; export the train split")
    missing = {schema.ID, schema.SOURCE_ID, schema.CONVERSATIONS} - set(dataset.column_names)
    if missing:
        raise ConfigError(f"the dataset lacks columns {sorted(missing)}: it is not in the llava_mixes schema")
    return dataset


def _skip_reason(row: dict[str, Any]) -> tuple[str, str] | None:
    """Why the row must not be exported, before its picture is looked at; None when it may be."""
    if row.get(schema.DUPLICATE_OF) is not None:
        return REMOVED_BY_DEDUP, f"duplicate of {row[schema.DUPLICATE_OF]!r}"
    turns = row[schema.CONVERSATIONS] or []
    roles = {turn["from"] for turn in turns}
    if not turns or not roles <= set(ROLES):
        return schema.BAD_ROLE, f"roles {sorted(map(str, roles - set(ROLES)))}; allowed {list(ROLES)}"
    image = row.get(schema.IMAGE) or {}
    named = (image.get("bytes"), image.get("path"), row.get(schema.IMAGE_PATH))
    pictures = int(any(value is not None for value in named))
    tags = image_tags([turn["value"] or "" for turn in turns])
    if tags != pictures:
        return IMAGE_TAG_MISMATCH, f"{tags} <image> tags, {pictures} pictures"
    return None


class _Writer:
    """The open temporary data file: writes records as one JSON list or as JSON Lines."""

    def __init__(self, handle: TextIO, json_list: bool) -> None:
        self.handle = handle
        self.json_list = json_list
        self.first = True
        if json_list:
            handle.write("[")

    def write(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        if self.json_list:
            body = json.dumps(records)[1:-1]
            self.handle.write(body if self.first else ", " + body)
        else:
            self.handle.write("".join(json.dumps(record) + "\n" for record in records))
        self.first = False

    def close(self) -> None:
        if self.json_list:
            self.handle.write("]\n")


def _atomic_json(path: Path, value: Any) -> None:
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(value, file, indent=2)
            file.write("\n")
        os.chmod(temp, FILE_MODE)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _register_llamafactory(out: Path, name: str, file_name: str) -> Path:
    """Add or replace `name` in `out/dataset_info.json`, keeping every other entry."""
    path = out / DATASET_INFO
    info: dict[str, Any] = {}
    if path.exists():
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ExportError(f"{path} exists but cannot be read as JSON ({error}); fix or remove it") from error
        if not isinstance(info, dict):
            raise ExportError(f"{path} holds a {type(info).__name__}, not an object of datasets; fix or remove it")
    info[name] = llamafactory_entry(file_name)
    _atomic_json(path, info)
    return path


def export(
    dataset: datasets.Dataset | datasets.DatasetDict,
    format: str,
    out: str | Path,
    *,
    image_folder: str | Path | None = None,
    images_dir: str | Path | None = None,
    name: str | None = None,
    progress: bool = True,
) -> ExportResult:
    """Write `dataset`'s train rows in `format` (`llava`, `llamafactory`, `swift`, `jsonl`) into folder `out`.

    The file is `out/<name><suffix>`, `name` defaulting to the config name. Pictures that are files under
    `image_folder` (the `data_dir` the config was built from) are referenced there; pictures held as bytes are
    written under `images_dir` (default `out/images`); with `images_dir` and no `image_folder`, every picture
    is copied there. `llava` and `jsonl` paths are relative to `image_folder` (else `images_dir`): LLaVA's
    `--image_folder`; `llamafactory` paths are relative to `out` (its `dataset_dir`); `swift` paths are
    absolute. `llamafactory` also adds `name` to `out/dataset_info.json`.
    """
    if format not in FORMATS:
        raise ConfigError(f"format={format!r} is not allowed; choose one of {list(FORMATS)}")
    fmt: Format = FORMATS[format]
    train = _train(dataset)
    name = name or train.info.config_name or schema.TRAIN_SPLIT
    if not name or "/" in name or os.sep in name or name.startswith("."):
        raise ConfigError(f"name={name!r} is not allowed; give a file name without a folder")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pictures = Pictures(image_folder, images_dir, out / "images")
    target = out / f"{name}{fmt.suffix}"
    result = ExportResult(format, target, 0, 0, None, 0, name=name)
    handle, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=out)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            writer = _Writer(file, fmt.json_list)
            _write_rows(train, fmt, pictures, writer, result, str(out.resolve()), progress)
            writer.close()
        os.chmod(temp, FILE_MODE)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    result.images_written = pictures.written
    result.image_root = None if fmt.paths == "absolute" else Path(out if fmt.paths == "out" else pictures.root)
    if format == "llamafactory":
        result.dataset_info = _register_llamafactory(out, name, target.name)
    for reason, count in result.skipped.items():
        examples = result.skipped_examples[reason]
        logger.warning("export %s: skipped %d rows (%s), e.g. %s", name, count, reason, examples)
    return result


def _skip(result: ExportResult, row: dict[str, Any], reason: str, detail: str) -> None:
    result.skipped[reason] += 1
    examples = result.skipped_examples.setdefault(reason, [])
    if len(examples) < EXAMPLES_PER_REASON:
        examples.append(f"{row.get(schema.ID)}: {detail}")


def _write_rows(
    train: datasets.Dataset,
    fmt: Format,
    pictures: Pictures,
    writer: _Writer,
    result: ExportResult,
    out: str,
    progress: bool,
) -> None:
    needed = {schema.ID, schema.SOURCE_ID, schema.IMAGE, schema.IMAGE_PATH, schema.IMAGE_SHA256}
    needed |= {schema.CONVERSATIONS, schema.DUPLICATE_OF}
    # Only the columns the records use are read (every one but `embedding` for `jsonl`).
    columns = [c for c in train.column_names if (c != schema.EMBEDDING if fmt.name == "jsonl" else c in needed)]
    bar = tqdm(total=len(train), unit=" rows", desc=f"Exporting {result.name} ({fmt.name})", disable=not progress)
    with bar:
        for batch in train.select_columns(columns).with_format("arrow").iter(batch_size=BATCH_ROWS):
            records = []
            for row in batch.to_pylist():
                reason = _skip_reason(row)
                picture = pictures.place(row) if reason is None else None
                if isinstance(picture, Missing):
                    reason = (picture.reason, picture.detail)
                if reason is not None:
                    _skip(result, row, *reason)
                    continue
                path = fmt.image_path(picture, pictures.root, out) if picture is not None else None
                record = fmt.record(row, path)
                tags, images = image_tags(record_texts(fmt, record)), len(record_images(fmt, record))
                if tags != images:
                    raise ExportError(f"row {row[schema.ID]!r} would have {tags} <image> tags and {images} pictures")
                records.append(record)
                result.image_rows += images > 0
            writer.write(records)
            result.rows += len(records)
            bar.update(batch.num_rows)
