"""`export`: stream a built (or published) config's `train` rows into one training tool's file, in bounded memory.

Rows are read as Arrow batches (one picture's bytes in memory at a time), turned into the format's records,
checked, and written to a temporary file in the output folder that is renamed into place only when every row is
written (removed on any failure), so a file there is always a whole export. A row is skipped, counted by reason
in the result and logged, when its picture cannot be used (see `exporters.pictures`), when its `<image>` tags do
not match its pictures, when it has no turns, a turn without text or a role outside `human`/`gpt`, when a value
cannot be written as JSON, or when it is a row dedup removed: rows read = rows written + rows skipped.

The output folder is checked and locked (`llava_mixes.outputs`): a file there is overwritten only when an
export wrote it and it is unchanged since, and nothing is written inside the folders the export reads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import datasets
from datasets.utils import tqdm

from llava_mixes import schema
from llava_mixes.errors import CacheWriteError, ConfigError, unknown_choice
from llava_mixes.exporters.formats import (
    FORMATS,
    ROLES,
    Format,
    image_tags,
    llamafactory_entry,
    record_images,
    record_texts,
)
from llava_mixes.exporters.pictures import ExportError, Missing, Pictures
from llava_mixes.outputs import FILE_MODE, TEMP_PREFIX, OutputFolder, output_folder, write_json_atomic
from llava_mixes.paths import check_file_name, is_inside

logger = logging.getLogger(__name__)

BATCH_ROWS = 1000
CHUNK_BYTES = 256 << 20
"""Rows are placed in chunks of at most `BATCH_ROWS` rows and about this many bytes of pictures, whose pictures
are decoded ahead on threads (see `Pictures.check_ahead`)."""
DECODE_THREADS = min(8, os.cpu_count() or 1)
DATASET_INFO = "dataset_info.json"
REMOVED_BY_DEDUP = "removed_by_dedup"
IMAGE_TAG_MISMATCH = "image_tag_mismatch"
UNWRITABLE_VALUE = "unwritable_value"
EXAMPLES_PER_REASON = 20
STRING_COLUMNS = (schema.ID, schema.SOURCE_ID, schema.IMAGE_PATH, schema.IMAGE_SHA256, schema.DUPLICATE_OF)

__all__ = ["ExportError", "ExportResult", "export"]


@dataclass
class ExportResult:
    """What one export wrote, and what it skipped: `rows_read == rows + sum(skipped.values())`."""

    format: str
    data_file: Path
    rows: int
    image_rows: int
    image_root: Path | None
    """The folder relative picture paths start from (`--image_folder` for LLaVA, `media_dir` for LLaMA-Factory);
    None for absolute paths (ms-swift)."""
    images_written: int
    skipped: Counter = field(default_factory=Counter)
    """reason -> rows skipped for it."""
    skipped_examples: dict[str, list[str]] = field(default_factory=dict)
    """reason -> the first few row ids (with detail) skipped for it."""
    dataset_info: Path | None = None
    """LLaMA-Factory's `dataset_info.json`, for the `llamafactory` format."""
    name: str = ""
    rows_read: int = 0

    def usage(self) -> str:
        """How to train on the file, as the consuming tool's arguments."""
        if self.format == "llava":
            return f"--data_path {self.data_file} --image_folder {self.image_root}"
        if self.format == "llamafactory":
            lines = [f"dataset_dir: {self.data_file.parent}", f"dataset: {self.name}"]
            if self.image_root is not None and self.image_root != self.data_file.parent:
                lines.append(f"media_dir: {self.image_root}")
            return "\n".join(lines)
        if self.format == "swift":
            return f"--dataset {self.data_file}"
        return f"{self.data_file} (image paths relative to {self.image_root})"

    def summary(self) -> str:
        """One line: rows written of rows read, pictures written, and rows skipped by reason."""
        skipped = sum(self.skipped.values())
        reasons = ", ".join(f"{reason}: {count:,}" for reason, count in sorted(self.skipped.items()))
        return (
            f"{self.name}: wrote {self.rows:,} of {self.rows_read:,} rows ({self.image_rows:,} with a picture; "
            f"{self.images_written:,} picture files written) to {self.data_file}; skipped {skipped:,} rows"
            + (f" ({reasons})" if reasons else "")
        )


def _check_column_types(dataset: datasets.Dataset) -> None:
    """Refuse a dataset whose columns that export reads do not have this schema's types (a published copy's
    Parquet metadata can declare anything)."""
    features = dataset.features
    for column in STRING_COLUMNS:
        feature = features.get(column)
        if feature is not None and not (
            isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")
        ):
            raise ConfigError(f"column {column!r} has type {feature}; the llava_mixes schema's is string")
    expected = schema.ROW_FEATURES[schema.CONVERSATIONS]
    if features[schema.CONVERSATIONS] != expected:
        raise ConfigError(
            f"column {schema.CONVERSATIONS!r} has type {features[schema.CONVERSATIONS]}; the llava_mixes schema's "
            f"is {expected}"
        )
    image = features.get(schema.IMAGE)
    if image is not None and not isinstance(image, datasets.Image):
        raise ConfigError(f"column {schema.IMAGE!r} has type {image}; the llava_mixes schema's is Image()")


def _train(dataset: datasets.Dataset | datasets.DatasetDict) -> datasets.Dataset:
    if isinstance(dataset, datasets.DatasetDict):
        if schema.TRAIN_SPLIT not in dataset:
            raise ConfigError(f"the DatasetDict has splits {list(dataset)}; export needs {schema.TRAIN_SPLIT!r}")
        dataset = dataset[schema.TRAIN_SPLIT]
    if not isinstance(dataset, datasets.Dataset):
        raise ConfigError(f"dataset={type(dataset).__name__} is not allowed; pass a datasets.Dataset or DatasetDict")
    if dataset.split is not None and str(dataset.split) == schema.REMOVED_SPLIT:
        raise ConfigError(f"the {schema.REMOVED_SPLIT!r} split holds rows dedup removed; export the train split")
    missing = {schema.ID, schema.SOURCE_ID, schema.CONVERSATIONS} - set(dataset.column_names)
    if missing:
        raise ConfigError(f"the dataset lacks columns {sorted(missing)}: it is not in the llava_mixes schema")
    _check_column_types(dataset)
    return dataset


def _skip_reason(row: dict[str, Any]) -> tuple[str, str] | None:
    """Why the row must not be exported, before its picture is looked at; None when it may be."""
    if row.get(schema.DUPLICATE_OF) is not None:
        return REMOVED_BY_DEDUP, f"duplicate of {row[schema.DUPLICATE_OF]!r}"
    turns = row[schema.CONVERSATIONS] or []
    if not turns:
        return schema.EMPTY_CONVERSATION, "no turns"
    roles = {turn["from"] for turn in turns}
    if not roles <= set(ROLES):
        return schema.BAD_ROLE, f"roles {sorted(map(str, roles - set(ROLES)))}; allowed {list(ROLES)}"
    if any(not isinstance(turn["value"], str) for turn in turns):
        return schema.EMPTY_TURN, "a turn holds no text"
    image = row.get(schema.IMAGE) or {}
    named = (image.get("bytes"), image.get("path"), row.get(schema.IMAGE_PATH))
    pictures = int(any(value is not None for value in named))
    tags = image_tags([turn["value"] for turn in turns])
    if tags != pictures:
        return IMAGE_TAG_MISMATCH, f"{tags} <image> tags, {pictures} pictures"
    return None


class _Writer:
    """The open temporary data file: writes serialised records as one JSON list or as JSON Lines, and hashes
    what it writes."""

    def __init__(self, handle: TextIO, json_list: bool) -> None:
        self.handle = handle
        self.json_list = json_list
        self.first = True
        self.digest = hashlib.sha256()
        if json_list:
            self._put("[")

    def _put(self, text: str) -> None:
        self.handle.write(text)
        self.digest.update(text.encode("utf-8"))

    def write(self, records: list[str]) -> None:
        if not records:
            return
        if self.json_list:
            body = ", ".join(records)
            self._put(body if self.first else ", " + body)
        else:
            self._put("".join(record + "\n" for record in records))
        self.first = False

    def close(self) -> None:
        if self.json_list:
            self._put("]\n")


def _register_llamafactory(folder: OutputFolder, name: str, entry: dict[str, Any], *, write: bool) -> Path:
    """Check (and with `write`, add or replace) `name` in `out/dataset_info.json`, keeping every other entry; an
    entry of that name that llava-mixes did not write is refused."""
    path = folder.path / DATASET_INFO
    info: dict[str, Any] = {}
    if os.path.lexists(path):
        if path.is_symlink():
            raise ExportError(f"{path} is a symbolic link; export replaces the file, so point --out where it leads")
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ExportError(f"{path} exists but cannot be read as JSON ({error}); fix or remove it") from error
        if not isinstance(info, dict):
            raise ExportError(f"{path} holds a {type(info).__name__}, not an object of datasets; fix or remove it")
    folder.claim_entry(DATASET_INFO, name, info.get(name))
    if write:
        info[name] = entry
        write_json_atomic(path, info)
        folder.entry_written(DATASET_INFO, name, entry)
    return path


def export(
    dataset: datasets.Dataset | datasets.DatasetDict,
    format: str,
    out: str | Path,
    *,
    image_folder: str | Path | None = None,
    images_dir: str | Path | None = None,
    files_from: str | Path | None = None,
    untrusted: bool = False,
    name: str | None = None,
    progress: bool = True,
) -> ExportResult:
    """Write `dataset`'s train rows in `format` (`llava`, `llamafactory`, `swift`, `jsonl`) into folder `out`.

    The file is `out/<name><suffix>`, `name` defaulting to the config name. Pictures that are files under
    `image_folder` (the `data_dir` the config was built from) are referenced there; pictures held as bytes are
    written under `images_dir` (default `out/images`); with `images_dir` and no `image_folder`, the files under
    `files_from` (the `data_dir`) are copied there. `untrusted=True` for rows read from a published copy:
    `files_from` is then the copy's folder (None for a Hub copy), and every picture is checked (see
    `exporters.pictures`). `llava` and `jsonl` paths are relative to `image_folder` (else `images_dir`), LLaVA's
    `--image_folder`; `llamafactory` paths are relative to `out` (its `dataset_dir`) when the pictures lie there,
    else to `image_folder`, which is then its `media_dir`; a picture outside that folder, and every `swift`
    path, is absolute. `llamafactory` also adds `name` to `out/dataset_info.json`. Nothing is written inside
    `image_folder` or `files_from`, and no file in `out` that llava-mixes did not write is overwritten.
    """
    if format not in FORMATS:
        raise unknown_choice("format", format, FORMATS)
    fmt: Format = FORMATS[format]
    train = _train(dataset)
    name = check_file_name(name or train.info.config_name or schema.TRAIN_SPLIT, "name")
    inputs = {"image_folder": image_folder, "files_from": files_from}
    out_path = output_folder(out, "out", inputs)
    images = images_dir if images_dir is not None else out_path / "images"
    images_path = output_folder(images, "images_dir", inputs, nested_inputs=False)
    copy_files = images_dir is not None and image_folder is None
    with OutputFolder(out_path, "out") as folder:
        pictures = Pictures(
            image_folder,
            images_path,
            files_from=files_from,
            untrusted=untrusted,
            copy_files=copy_files,
            stores_pictures=schema.IMAGE in train.column_names,
        )
        target = folder.claim(f"{name}{fmt.suffix}")
        entry = llamafactory_entry(target.name)
        if format == "llamafactory":
            _register_llamafactory(folder, name, entry, write=False)
        result = ExportResult(format, target, 0, 0, None, 0, name=name)
        root = Path(pictures.root)
        base = None if fmt.paths == "absolute" else root
        if fmt.paths == "media" and is_inside(out_path, root.resolve()):
            base = out_path
        result.image_root = base
        sha = _write_data_file(train, fmt, pictures, result, target, base, progress)
        folder.written(target.name, sha)
        result.images_written = pictures.written
        if format == "llamafactory":
            result.dataset_info = _register_llamafactory(folder, name, entry, write=True)
    for reason, count in result.skipped.items():
        examples = result.skipped_examples[reason]
        logger.warning("export %s: skipped %d rows (%s), e.g. %s", name, count, reason, examples)
    return result


def _write_data_file(
    train: datasets.Dataset,
    fmt: Format,
    pictures: Pictures,
    result: ExportResult,
    target: Path,
    base: Path | None,
    progress: bool,
) -> str:
    """Write the records to a temporary file beside `target` and rename it into place; its SHA-256."""
    handle, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            writer = _Writer(file, fmt.json_list)
            _write_rows(train, fmt, pictures, writer, result, base, progress)
            writer.close()
        os.chmod(temp, FILE_MODE)
        os.replace(temp, target)
    except OSError as error:
        Path(temp).unlink(missing_ok=True)
        raise CacheWriteError(
            f"cannot write {target}: {os.strerror(error.errno) if error.errno else error}. Free some space there, or "
            "choose another out"
        ) from error
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return writer.digest.hexdigest()


def _skip(result: ExportResult, row: dict[str, Any], reason: str, detail: str) -> None:
    result.skipped[reason] += 1
    examples = result.skipped_examples.setdefault(reason, [])
    if len(examples) < EXAMPLES_PER_REASON:
        examples.append(f"{row.get(schema.ID)}: {detail}")


def _chunks(batch: Any, columns: list[str]) -> Iterator[list[dict[str, Any]]]:
    """The batch's rows as dicts, in chunks holding about `CHUNK_BYTES` of pictures at most: each picture's bytes
    are taken from Arrow only when its chunk is reached."""
    plain = [column for column in columns if column != schema.IMAGE]
    rows = batch.select(plain).to_pylist()
    images = batch.column(schema.IMAGE) if schema.IMAGE in columns else None
    chunk: list[dict[str, Any]] = []
    size = 0
    for index, row in enumerate(rows):
        if images is not None:
            row[schema.IMAGE] = images[index].as_py()
            size += len((row[schema.IMAGE] or {}).get("bytes") or b"")
        chunk.append(row)
        if size >= CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _write_rows(
    train: datasets.Dataset,
    fmt: Format,
    pictures: Pictures,
    writer: _Writer,
    result: ExportResult,
    base: Path | None,
    progress: bool,
) -> None:
    needed = {schema.ID, schema.SOURCE_ID, schema.IMAGE, schema.IMAGE_PATH, schema.IMAGE_SHA256}
    needed |= {schema.CONVERSATIONS, schema.DUPLICATE_OF}
    # Only the columns the records use are read (every one but `embedding` for `jsonl`).
    columns = [c for c in train.column_names if (c != schema.EMBEDDING if fmt.name == "jsonl" else c in needed)]
    folder = str(base) if base is not None else None
    bar = tqdm(total=len(train), unit=" rows", desc=f"Exporting {result.name} ({fmt.name})", disable=not progress)
    with bar, ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="llava_mixes-export") as pool:
        for batch in train.select_columns(columns).with_format("arrow").iter(batch_size=BATCH_ROWS):
            for chunk in _chunks(batch, columns):
                pictures.check_ahead(chunk, pool)
                writer.write([record for row in chunk if (record := _record(row, fmt, pictures, result, folder))])
            bar.update(batch.num_rows)


def _record(row: dict[str, Any], fmt: Format, pictures: Pictures, result: ExportResult, folder: str | None) -> str:
    """The row's record, serialised, its picture placed; "" (counted under its reason) when the row is skipped."""
    result.rows_read += 1
    reason = _skip_reason(row)
    picture = pictures.place(row) if reason is None else None
    if isinstance(picture, Missing):
        reason = (picture.reason, picture.detail)
    if reason is not None:
        _skip(result, row, *reason)
        return ""
    path = fmt.image_path(picture, folder) if picture is not None else None
    record = fmt.record(row, path)
    tags, images = image_tags(record_texts(fmt, record)), len(record_images(fmt, record))
    if tags != images:
        raise ExportError(f"row {row[schema.ID]!r} would have {tags} <image> tags and {images} pictures")
    try:
        serialised = json.dumps(record, allow_nan=False)
    except (TypeError, ValueError) as error:
        _skip(result, row, UNWRITABLE_VALUE, f"not writable as JSON: {error}")
        return ""
    result.rows += 1
    result.image_rows += images > 0
    return serialised
