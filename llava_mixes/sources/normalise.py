"""The shared normalisation pipeline: raw records of one source to Arrow tables in the common schema.

Records stream in batches; each batch's images (files, or bytes carried by the records) are resolved
and checked through the image index, and the rows that pass come out as one table. A row that fails is
rejected with a reason: under `on_bad_records="skip"` it is listed in the report, under `"error"` the
build stops at it. An image carried as bytes gets the `image_path` `<id>/<name the release stored>` (or
just `<id>`), which is unique, so that dedup and the statistics treat it like a file.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
from datasets.builder import Key
from datasets.utils import tqdm as hf_tqdm

from llava_mixes import schema
from llava_mixes.errors import BadRecordError, RecordRejected
from llava_mixes.schema import Rejection
from llava_mixes.sources.base import Source, SourceRow
from llava_mixes.sources.conversation import check_text
from llava_mixes.sources.images import ImageCheck, ImageIndex, ImageResolver, contained_path
from llava_mixes.sources.inputs import PART_SUFFIX, InputLog
from llava_mixes.store import write_atomic

logger = logging.getLogger(__name__)

# Exceptions a source's `normalise` may raise on records of an unexpected shape.
SHAPE_ERRORS = (KeyError, TypeError, AttributeError, ValueError, IndexError)


_Pending = tuple[int, SourceRow, str | None, str | None, str | None]
"""A row that passed `_prepare`: its index, the row, its image path and group, and its resolved file."""


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
        self._groups: dict[str, str] = {}
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

    def _normalise(self, raw: Any) -> SourceRow | RecordRejected:
        """The source's row for one raw record, or why it is rejected."""
        try:
            if isinstance(raw, tuple) and raw and raw[0] == "malformed":
                return RecordRejected(schema.MALFORMED_RECORD, raw[1])
            try:
                return self.source.normalise(raw)
            except SHAPE_ERRORS as error:
                return RecordRejected(schema.MALFORMED_RECORD, f"{type(error).__name__}: {error}")
        except RecordRejected as error:
            return error

    def _prepare(
        self, row_index: int, raw: Any, outcome: SourceRow | RecordRejected, text_checked: bool
    ) -> _Pending | None:
        """The pending row of a normalised record (its image resolved), or None when it is rejected;
        `text_checked`: whether its strings are already known to be storable."""
        row = None
        try:
            if isinstance(outcome, RecordRejected):
                raise outcome
            row = outcome
            if not text_checked and not _storable_text(row):
                check_text(_text_fields(row))
            if row.image_bytes is not None:
                own_id = row_id(self.source, row_index)
                image_path = f"{own_id}/{row.image_path}" if row.image_path else own_id
                return row_index, row, image_path, row.image_group or self.source.image_group(image_path), None
            if row.image_path is None:
                return row_index, row, None, None, None
            found, resolved = self.resolver.resolve_first((row.image_path, *row.image_alternatives))
            group = row.image_group or self._groups.get(found)
            if group is None:
                group = self._groups[found] = self.source.image_group(found)
            return row_index, row, found, group, resolved
        except RecordRejected as error:
            self._reject(row_index, raw, row, self._group_of_rejected(raw, row, error), error)
            return None

    def _group_of_rejected(self, raw: Any, row: SourceRow | None, error: RecordRejected) -> str | None:
        """The group a rejected row's image would have had, so rejections are counted per group."""
        if row is not None and row.image_group is not None:
            return row.image_group if (row.image_path or row.image_bytes) is not None else None
        own = self.source.group_of_raw(raw) if row is None else None
        if own is not None:
            return own
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

    def _checks(self, pending: list[_Pending]) -> tuple[dict[str, ImageCheck], dict[str, ImageCheck]]:
        """The image checks of the pending rows: files by resolved path, carried bytes by image path."""
        files = self.index.check_many((item[4] for item in pending if item[4] is not None), self.inputs)
        carried = ((item[2], item[1].image_bytes) for item in pending if item[1].image_bytes is not None)
        return files, self.index.check_blobs((path, data) for path, data in carried if path is not None)

    def _table(self, batch: list[tuple[int, Any]]) -> pa.Table:
        rejected_before = len(self.result.rejected)
        outcomes = [self._normalise(raw) for _, raw in batch]
        text_checked = _storable_texts([row for row in outcomes if isinstance(row, SourceRow)])
        prepare = self._prepare
        pending = [
            item
            for (index, raw), outcome in zip(batch, outcomes, strict=True)
            if (item := prepare(index, raw, outcome, text_checked)) is not None
        ]
        files, blobs = self._checks(pending)
        columns: dict[str, list[Any]] = {name: [] for name in self.arrow_schema.names}
        ids, source_ids, groups = columns[schema.ID], columns[schema.SOURCE_ID], columns[schema.IMAGE_GROUP]
        paths, images, hashes = columns[schema.IMAGE_PATH], columns[schema.IMAGE], columns[schema.IMAGE_SHA256]
        turns, languages, tasks = columns[schema.CONVERSATIONS], columns[schema.LANGUAGE], columns[schema.TASK]
        extras = [(columns[name], name) for name in self.extra_columns]
        name, language = self.source.name, self.source.language
        for row_index, row, image_path, image_group, resolved in pending:
            if resolved is not None:
                check: ImageCheck | None = files[resolved]
            elif row.image_bytes is not None and image_path is not None:
                check = blobs[image_path]
            else:
                check = None
            if check is not None and check.error is not None:
                where = str(resolved) if resolved is not None else f"image bytes of {image_path}"
                error = RecordRejected(check.error or schema.UNDECODABLE_IMAGE, check.detail or where)
                self._reject(row_index, None, row, image_group, error)
                continue
            if resolved is not None:
                images.append({"path": resolved, "bytes": None})
            elif row.image_bytes is not None:
                images.append({"path": None, "bytes": row.image_bytes})
            else:
                images.append(None)
            ids.append(f"{name}-{row_index:07d}")
            source_ids.append(row.source_id)
            groups.append(image_group)
            paths.append(image_path)
            hashes.append(None if check is None else check.sha256)
            turns.append(row.conversations)
            languages.append(row.language or language)
            tasks.append(row.task)
            for values, extra in extras:
                values.append(row.extra.get(extra))
        self._stop_at_first_rejection(rejected_before)
        self.result.rows_out += len(ids)
        columns[schema.SOURCE] = [name] * len(ids)
        arrays = [pa.array(columns[field.name], type=field.type) for field in self.arrow_schema]
        return pa.Table.from_arrays(arrays, schema=self.arrow_schema)

    def tables(
        self, on_bytes: Callable[[int], None] | None = None, files: list[Path] | None = None
    ) -> Iterator[pa.Table]:
        """Yield the normalised rows in source order, one table per batch of input records.

        `files`: the source's annotation files, if already located (see `Source.locate_files`).
        """
        files = files if files is not None else self.source.locate_files(self.data_dir)
        records = self.source.iter_records(files, on_bytes)
        while True:
            with _collector_paused():
                batch = list(itertools.islice(records, self.source.batch_rows))
                if not batch:
                    break
                self.result.rows_in += len(batch)
                table = self._table(batch)
                del batch  # freed before the collector is back on, so that it does not scan them
            yield table
        if self.result.rejected:
            logger.warning(
                "%s: rejected %d of %d rows (see the build report)",
                self.source.name,
                len(self.result.rejected),
                self.result.rows_in,
            )


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused (if it was on) for the length of the block.

    A batch keeps thousands of young objects alive at once (records, turns, rows), so the collector would
    run every few hundred allocations and move them all into older generations to scan again, about a third
    of the time of normalising small rows. Records hold no cycles; whatever cycles a batch leaves behind
    are collected once the collector is back on.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _storable(text: str | None) -> str | None:
    """`text` with any lone surrogate written as its escape (`\\ud800`), so that the report can hold it."""
    if text is None or text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _storable_text(row: SourceRow) -> bool:
    """Whether every string of the row can be stored as UTF-8 (one check over all of them joined)."""
    texts = [turn["value"] for turn in row.conversations]
    texts += [row.source_id, row.image_path, row.language, row.task, row.image_group, *row.image_alternatives]
    texts += list(row.extra.values())
    joined = "".join([text for text in texts if type(text) is str])
    if joined.isascii():
        return True
    try:
        joined.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _storable_texts(rows: list[SourceRow]) -> bool:
    """Whether every string of all of `rows` can be stored as UTF-8 (one check over a batch; where it fails,
    `_storable_text` finds the rows)."""
    texts = [turn["value"] for row in rows for turn in row.conversations]
    for values in (
        [row.source_id for row in rows],
        [row.image_path for row in rows],
        [row.language for row in rows],
        [row.task for row in rows],
        [row.image_group for row in rows],
        [text for row in rows for text in row.image_alternatives],
        [text for row in rows for text in row.extra.values()],
    ):
        texts += [text for text in values if type(text) is str]
    try:
        joined = "".join(texts)
    except TypeError:
        return False
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
    yield "data_source", row.image_group
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
            write_part(report_dir / f"{source.config_name}.json", normaliser.result)
            inputs.save(report_dir / f"{source.config_name}{PART_SUFFIX}")


def write_part(path: Path, result: SourceResult) -> None:
    """Save what normalising one source gave besides its rows (rows in, rejections), for the build's report."""
    data = {
        "rows_in": result.rows_in,
        "rows_out": result.rows_out,
        "rejected": [asdict(item) for item in result.rejected],
    }
    write_atomic(path, json.dumps(data, ensure_ascii=False).encode())


def read_part(path: Path) -> SourceResult:
    """What `write_part` saved at `path`."""
    data = json.loads(Path(path).read_bytes())
    return SourceResult(data["rows_in"], data["rows_out"], [Rejection(**item) for item in data["rejected"]])
