"""The shared normalisation pipeline: raw records of one source to Arrow tables in the common schema.

Records stream in batches; each batch's images are resolved and checked through the image index, and
the rows that pass come out as one table. A row that fails is rejected with a reason: under
`on_bad_records="skip"` it is listed in the report, under `"error"` the build stops at it.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from llava_mixes import schema
from llava_mixes.errors import BadRecordError, RecordRejected
from llava_mixes.images import ImageIndex, ImageResolver, contained_path
from llava_mixes.report import Rejection
from llava_mixes.sources import Source, SourceRow

logger = logging.getLogger(__name__)

BATCH_ROWS = 4096
# Exceptions a source's `normalise` may raise on records of an unexpected shape.
SHAPE_ERRORS = (KeyError, TypeError, AttributeError, ValueError, IndexError)


@dataclass
class _Pending:
    row_index: int
    row: SourceRow
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

    def __init__(self, source: Source, data_dir: Path, index: ImageIndex, on_bad_records: str) -> None:
        self.source = source
        self.data_dir = Path(data_dir)
        self.index = index
        self.resolver = ImageResolver(self.data_dir, source.image_prefixes)
        self.on_bad_records = on_bad_records
        self.result = SourceResult()

    def _reject(
        self, row_index: int, raw: Any, row: SourceRow | None, group: str | None, error: RecordRejected
    ) -> None:
        source_id = row.source_id if row is not None else _raw_id(raw)
        image_path = row.image_path if row is not None else _raw_image(raw)
        rejection = Rejection(self.source.name, row_index, source_id, group, image_path, error.reason, error.detail)
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
            if row.image_path is None:
                return _Pending(row_index, row, None, None)
            group = self.source.image_group(row.image_path)
            resolved = self.resolver.resolve(row.image_path)
            return _Pending(row_index, row, group, resolved)
        except RecordRejected as error:
            self._reject(row_index, raw, row, self._group_of_rejected(raw, row, error), error)
            return None

    def _group_of_rejected(self, raw: Any, row: SourceRow | None, error: RecordRejected) -> str | None:
        """The group a rejected row's image would have had, so rejections are counted per group."""
        path = row.image_path if row is not None else _raw_image(raw)
        if path is None or error.reason == schema.PATH_ESCAPES_DATA_DIR:
            return None
        try:
            contained_path(self.data_dir, path)
        except RecordRejected:
            return None
        return self.source.image_group(path)

    def _table(self, batch: list[tuple[int, Any]], raw_of: dict[int, Any]) -> pa.Table:
        rejected_before = len(self.result.rejected)
        pending = [item for item in (self._prepare(index, raw) for index, raw in batch) if item is not None]
        checks = self.index.check_many(item.resolved for item in pending if item.resolved is not None)
        rows = []
        for item in pending:
            check = checks[item.resolved] if item.resolved is not None else None
            if check is not None and not check.ok:
                error = RecordRejected(check.error or schema.UNDECODABLE_IMAGE, check.detail or str(item.resolved))
                self._reject(item.row_index, raw_of[item.row_index], item.row, item.image_group, error)
                continue
            rows.append(
                {
                    schema.ID: row_id(self.source, item.row_index),
                    schema.SOURCE_ID: item.row.source_id,
                    schema.SOURCE: self.source.name,
                    schema.IMAGE_GROUP: item.image_group,
                    schema.IMAGE_PATH: item.row.image_path,
                    schema.IMAGE: None if item.resolved is None else {"path": item.resolved, "bytes": None},
                    schema.IMAGE_SHA256: None if check is None else check.sha256,
                    schema.CONVERSATIONS: item.row.conversations,
                    schema.LANGUAGE: item.row.language or self.source.language,
                    schema.TASK: item.row.task,
                }
            )
        self._stop_at_first_rejection(rejected_before)
        self.result.rows_out += len(rows)
        return pa.Table.from_pylist(rows, schema=schema.ROW_ARROW_SCHEMA)

    def tables(self, on_bytes: Callable[[int], None] | None = None) -> Iterator[pa.Table]:
        """Yield the normalised rows in source order, one table per batch of input records."""
        files = self.source.locate_files(self.data_dir)
        records = self.source.iter_records(files, on_bytes)
        while batch := list(itertools.islice(records, BATCH_ROWS)):
            self.result.rows_in += len(batch)
            yield self._table(batch, dict(batch))
        if self.result.rejected:
            logger.warning(
                "%s: rejected %d of %d rows (see the build report)",
                self.source.name,
                len(self.result.rejected),
                self.result.rows_in,
            )


def _raw_id(raw: Any) -> str | None:
    value = raw.get("id") if isinstance(raw, dict) else None
    return None if value is None else str(value)


def _raw_image(raw: Any) -> str | None:
    value = raw.get("image") if isinstance(raw, dict) else None
    return value if isinstance(value, str) else None
