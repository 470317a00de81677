"""The shared normalisation pipeline: raw records of one source to Arrow tables in the common schema.

Records stream in batches; each batch's images (files, or bytes carried by the records) are resolved
and checked through the image index, and the rows that pass come out as one table. A row that fails is
rejected with a reason: under `on_bad_records="skip"` it is listed in the report, under `"error"` the
build stops at it. An image carried as bytes gets the `image_path` `<id>/<name the release stored>` (or
just `<id>`), which is unique, so that dedup and the statistics treat it like a file.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
from datasets.builder import Key
from datasets.utils import tqdm as hf_tqdm

from llava_mixes import schema
from llava_mixes.build_report import BuildReport, Rejection
from llava_mixes.errors import BadRecordError, RecordRejected
from llava_mixes.sources.base import Source, SourceRow
from llava_mixes.sources.conversation import check_text
from llava_mixes.sources.images import ImageCheck, ImageIndex, ImageResolver, contained_path
from llava_mixes.sources.inputs import PART_SUFFIX, InputLog

logger = logging.getLogger(__name__)

# Exceptions a source's `normalise` may raise on records of an unexpected shape.
SHAPE_ERRORS = (KeyError, TypeError, AttributeError, ValueError, IndexError)


@dataclass
class _Pending:
    row_index: int
    row: SourceRow
    image_path: str | None
    image_group: str | None
    resolved: str | None


@dataclass
class SourceResult:
    """What normalising one source produced besides its rows."""

    rows_in: int = 0
    rows_out: int = 0
    rejected: list[Rejection] = field(default_factory=list)


def row_id(source: Source, row_index: int) -> str:
    """The `id` column: unique within a config and stable while the source file is unchanged."""
    return f"{source.name}-{row_index:07d}"


class SourceNormaliser:
    """Normalises one source under `data_dir` (see the module docstring)."""

    def __init__(
        self,
        source: Source,
        data_dir: Path,
        index: ImageIndex,
        on_bad_records: str,
        features: datasets.Features | None = None,
        inputs: InputLog | None = None,
    ) -> None:
        """`features`: the config's row features (the row schema plus every source's extra columns);
        `inputs`: where every image file looked at, or looked for in vain, is logged (see `sources.inputs`)."""
        self.source = source
        self.data_dir = Path(data_dir)
        self.index = index
        self.inputs = inputs
        self.resolver = ImageResolver(self.data_dir, source.image_prefixes, inputs)
        self.on_bad_records = on_bad_records
        self.features = features if features is not None else schema.row_features(source.extra_features)
        self.arrow_schema = self.features.arrow_schema
        self.extra_columns = [name for name in self.features if name not in schema.ROW_FEATURES]
        self.result = SourceResult()

    def _reject(
        self, row_index: int, raw: Any, row: SourceRow | None, group: str | None, error: RecordRejected
    ) -> None:
        source_id = row.source_id if row is not None else self.source.raw_source_id(raw)
        image_path = row.image_path if row is not None else self.source.raw_image_path(raw)
        source_id, image_path, detail = (_storable(text) for text in (source_id, image_path, error.detail))
        rejection = Rejection(self.source.name, row_index, source_id, group, image_path, error.reason, detail)
        self.result.rejected.append(rejection)

    def _stop_at_first_rejection(self, rejected_before: int) -> None:
        """Under `on_bad_records="error"`, raise for this batch's earliest rejected row, if any."""
        if self.on_bad_records != "error" or len(self.result.rejected) == rejected_before:
            return
        first = min(self.result.rejected[rejected_before:], key=lambda rejection: rejection.row_index)
        raise BadRecordError(
            f"{self.source.name} row {first.row_index} (id {first.source_id!r}) rejected: {first.reason}: "
            f"{first.detail}. Pass on_bad_records='skip' to reject such rows and list them in the build report."
        )

    def _prepare(self, row_index: int, raw: Any) -> _Pending | None:
        row = None
        try:
            if isinstance(raw, tuple) and raw and raw[0] == "malformed":
                raise RecordRejected(schema.MALFORMED_RECORD, raw[1])
            try:
                row = self.source.normalise(raw)
            except SHAPE_ERRORS as error:
                raise RecordRejected(schema.MALFORMED_RECORD, f"{type(error).__name__}: {error}") from error
            if not _storable_text(row):
                check_text(_text_fields(row))
            if row.image_bytes is not None:
                own_id = row_id(self.source, row_index)
                image_path = f"{own_id}/{row.image_path}" if row.image_path else own_id
                return _Pending(row_index, row, image_path, self.source.image_group(image_path), None)
            if row.image_path is None:
                return _Pending(row_index, row, None, None, None)
            names = (row.image_path, *row.image_alternatives)
            found, resolved = self.resolver.resolve_first(names)
            return _Pending(row_index, row, found, self.source.image_group(found), resolved)
        except RecordRejected as error:
            self._reject(row_index, raw, row, self._group_of_rejected(raw, row, error), error)
            return None

    def _group_of_rejected(self, raw: Any, row: SourceRow | None, error: RecordRejected) -> str | None:
        """The group a rejected row's image would have had, so rejections are counted per group."""
        single = self.source.single_image_group
        if single is not None:
            has_image = (row.image_path or row.image_bytes) is not None if row is not None else _raw_has_image(raw)
            return single if has_image else None
        path = row.image_path if row is not None else self.source.raw_image_path(raw)
        if path is None or error.reason == schema.PATH_ESCAPES_DATA_DIR:
            return None
        try:
            contained_path(self.data_dir, path)
        except RecordRejected:
            return None
        return self.source.image_group(path)

    def _checks(self, pending: list[_Pending]) -> dict[int, ImageCheck]:
        """The image check of every pending image row, by row index: files by path, bytes by content."""
        carried = [item for item in pending if item.row.image_bytes is not None and item.image_path is not None]
        files = self.index.check_many((item.resolved for item in pending if item.resolved is not None), self.inputs)
        blobs = self.index.check_blobs((item.image_path, item.row.image_bytes) for item in carried)
        checks = {item.row_index: files[item.resolved] for item in pending if item.resolved is not None}
        checks.update((item.row_index, blobs[item.image_path]) for item in carried)
        return checks

    def _table(self, batch: list[tuple[int, Any]], raw_of: dict[int, Any]) -> pa.Table:
        rejected_before = len(self.result.rejected)
        pending = [item for item in (self._prepare(index, raw) for index, raw in batch) if item is not None]
        checks = self._checks(pending)
        rows = []
        for item in pending:
            check = checks.get(item.row_index)
            if check is not None and not check.ok:
                where = str(item.resolved) if item.resolved is not None else f"image bytes of {item.image_path}"
                error = RecordRejected(check.error or schema.UNDECODABLE_IMAGE, check.detail or where)
                self._reject(item.row_index, raw_of[item.row_index], item.row, item.image_group, error)
                continue
            if item.resolved is not None:
                image = {"path": item.resolved, "bytes": None}
            elif item.row.image_bytes is not None:
                image = {"path": None, "bytes": item.row.image_bytes}
            else:
                image = None
            row = {
                schema.ID: row_id(self.source, item.row_index),
                schema.SOURCE_ID: item.row.source_id,
                schema.SOURCE: self.source.name,
                schema.IMAGE_GROUP: item.image_group,
                schema.IMAGE_PATH: item.image_path,
                schema.IMAGE: image,
                schema.IMAGE_SHA256: None if check is None else check.sha256,
                schema.CONVERSATIONS: item.row.conversations,
                schema.LANGUAGE: item.row.language or self.source.language,
                schema.TASK: item.row.task,
            }
            row.update({name: item.row.extra.get(name) for name in self.extra_columns})
            rows.append(row)
        self._stop_at_first_rejection(rejected_before)
        self.result.rows_out += len(rows)
        return pa.Table.from_pylist(rows, schema=self.arrow_schema)

    def tables(
        self, on_bytes: Callable[[int], None] | None = None, files: list[Path] | None = None
    ) -> Iterator[pa.Table]:
        """Yield the normalised rows in source order, one table per batch of input records.

        `files`: the source's annotation files, if already located (see `Source.locate_files`).
        """
        files = files if files is not None else self.source.locate_files(self.data_dir)
        records = self.source.iter_records(files, on_bytes)
        while batch := list(itertools.islice(records, self.source.batch_rows)):
            self.result.rows_in += len(batch)
            yield self._table(batch, dict(batch))
        if self.result.rejected:
            logger.warning(
                "%s: rejected %d of %d rows (see the build report)",
                self.source.name,
                len(self.result.rejected),
                self.result.rows_in,
            )


def _storable(text: str | None) -> str | None:
    """`text` with any lone surrogate written as its escape (`\\ud800`), so that the report can hold it."""
    if text is None or text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _storable_text(row: SourceRow) -> bool:
    """Whether every string of the row can be stored as UTF-8 (one check over all of them joined)."""
    texts = [turn["value"] for turn in row.conversations]
    others = (row.source_id, row.image_path, row.language, row.task, *row.image_alternatives, *row.extra.values())
    texts.extend(text for text in others if type(text) is str)
    joined = "".join(texts)
    if joined.isascii():
        return True
    try:
        joined.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text_fields(row: SourceRow) -> Iterator[tuple[str, Any]]:
    """Every string of a row, named as the rejection detail names it."""
    yield "id", row.source_id
    yield "image", row.image_path
    yield from (("image", alternative) for alternative in row.image_alternatives)
    for position, turn in enumerate(row.conversations):
        yield f"turn {position} ({turn['from']})", turn["value"]
    yield "language", row.language
    yield "task", row.task
    yield from row.extra.items()


def _raw_has_image(raw: Any) -> bool:
    return isinstance(raw, dict) and any(raw.get(key) is not None for key in ("image", "images"))


def normalise_sources(
    sources: list[Source],
    data_dir: Path,
    index: ImageIndex,
    on_bad_records: str,
    features: datasets.Features,
    report_dir: Path | None,
    version: str,
    named_files: dict[str, list[Path]] | None = None,
) -> Iterator[tuple[Key, pa.Table]]:
    """The rows of every source in order, as the builder's `(key, table)` pairs; with `report_dir`, each
    source's part report (rows in, rejections) and record of inputs are saved there once it is read.
    `named_files`: the annotation files the user named for some sources (`data_files`), read instead of the
    files the source looks for."""
    for shard, source in enumerate(sources):
        files = (named_files or {}).get(source.config_name) or source.locate_files(data_dir)
        inputs = InputLog()
        inputs.annotations(files)
        normaliser = SourceNormaliser(source, data_dir, index, on_bad_records, features, inputs)
        total = sum(path.stat().st_size for path in files)
        with hf_tqdm(total=total, unit="B", unit_scale=True, desc=f"Normalising {source.name}") as progress:
            for batch, table in enumerate(normaliser.tables(progress.update, files)):
                yield Key(shard, batch), table
        if report_dir is not None:
            part = BuildReport(source.config_name, version, [source.config_name], normaliser.result.rows_in)
            part.rejected = normaliser.result.rejected
            part.save(report_dir / f"{source.config_name}.json")
            inputs.save(report_dir / f"{source.config_name}{PART_SUFFIX}")
