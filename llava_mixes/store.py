"""An append-only keyed record store kept as Arrow IPC shard files, safe for concurrent writers.

Every flush writes one new shard under a temporary name, fsyncs it and renames it into place under a name
that carries the CRC-32 of its bytes, so a reader sees a shard whole or not at all, and a killed writer
leaves at most a temporary file behind (ignored, and removed once it is a day old). Writers in several
processes never share a file. When two shards hold the same key, the one whose name sorts first (the older
one) wins, so a lookup's answer never changes once made.

Every shard is verified when it is loaded. One whose bytes do not match its checksum, or that is not a
readable Arrow file, is set aside into `corrupt/` (kept for inspection), logged as a WARNING and recorded
as a `CacheRepair`; the store goes on without it, so whatever it held is computed again. A shard written
before checksums existed is adopted when it passes a full structural validation, then renamed to carry its
checksum. Records that the store's `row_check` refuses (e.g. a vector that is not finite) are left out of
the index, as if never stored. A write that fails (disk full, read-only folder) raises `CacheWriteError`
naming the folder and the OS reason, and leaves no temporary file behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from llava_mixes.errors import CacheWriteError

logger = logging.getLogger(__name__)


def default_cache_root() -> Path:
    """Where image checks and embeddings are cached: `$LLAVA_MIXES_CACHE`, else `~/.cache/llava_mixes`."""
    if os.environ.get("LLAVA_MIXES_CACHE"):
        return Path(os.environ["LLAVA_MIXES_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "llava_mixes"


SHARD_SUFFIX = ".arrow"
TEMP_PREFIX = ".tmp-"
META_FILE = "store.json"
SET_ASIDE_DIR = "corrupt"
CHECKSUM_TAG = ".crc32-"
STALE_TEMP_SECONDS = 24 * 3600
READ_CHUNK = 16 << 20
_CHECKSUMMED = re.compile(re.escape(CHECKSUM_TAG) + r"([0-9a-f]{8})" + re.escape(SHARD_SUFFIX) + "$")

RowCheck = Callable[[pa.Table], tuple[np.ndarray, str]]
"""Given a shard's table: a boolean mask of the records that must not be used, and what is wrong with them."""


@dataclass(frozen=True)
class CacheRepair:
    """A cache shard found damaged on read: the file, what is wrong with it, and what was done about it."""

    file: str
    reason: str
    action: str


_repairs: list[CacheRepair] = []


def repairs_mark() -> int:
    """A position in this process's log of cache repairs, for `repairs_since`."""
    return len(_repairs)


def repairs_since(mark: int) -> list[CacheRepair]:
    """The cache repairs this process made since `mark` (from `repairs_mark`)."""
    return list(_repairs[mark:])


def write_failure(folder: Path, error: OSError) -> CacheWriteError:
    """The `CacheWriteError` for a failed write under `folder`."""
    reason = os.strerror(error.errno) if error.errno else str(error)
    if error.filename and str(error.filename) != str(folder):
        reason = f"{error.filename}: {reason}"
    return CacheWriteError(
        f"cannot write to the folder {folder} ({reason}). Free some space there or make it writable, or choose "
        "another folder (content_cache_dir / LLAVA_MIXES_CACHE for image checks and embeddings, cache_dir / "
        "HF_DATASETS_CACHE for datasets)"
    )


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename; raise `CacheWriteError` if it fails."""
    temp = path.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex}-{path.name}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with temp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)
        raise write_failure(path.parent, error) from error


def crc32_of(data: Any) -> int:
    """The CRC-32 of a bytes-like object, read in chunks."""
    view = memoryview(data).cast("B")
    crc = 0
    for start in range(0, len(view), READ_CHUNK):
        crc = zlib.crc32(view[start : start + READ_CHUNK], crc)
    return crc


def file_crc32(path: Path) -> int:
    """The CRC-32 of a file's bytes."""
    crc = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(READ_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc


class ShardStore:
    """Records with a string key column, in shards under one directory (see the module docstring)."""

    def __init__(
        self, directory: Path, schema: pa.Schema, key_column: str = "key", row_check: RowCheck | None = None
    ) -> None:
        self.directory = Path(directory)
        self.schema = schema
        self.key_column = key_column
        self.row_check = row_check
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise write_failure(self.directory, error) from error
        self._shards: list[pa.Table] = []
        self._shard_names: set[str] = set()
        self._index: dict[str, tuple[int, int]] = {}
        self.repairs: list[CacheRepair] = []
        self._remove_stale_temporaries()
        self.refresh()

    def _remove_stale_temporaries(self) -> None:
        cutoff = time.time() - STALE_TEMP_SECONDS
        for temp in self.directory.glob(f"{TEMP_PREFIX}*"):
            with contextlib.suppress(OSError):
                if temp.stat().st_mtime < cutoff:
                    temp.unlink()

    def write_meta(self, meta: Mapping[str, Any]) -> None:
        """Record what the store holds (e.g. the embedder's identity) once, next to the shards."""
        path = self.directory / META_FILE
        if not path.exists():
            write_atomic(path, json.dumps(dict(meta), indent=2, sort_keys=True).encode())

    def refresh(self) -> int:
        """Load shards written since the last refresh (by any process); return how many were new."""
        names = sorted(p.name for p in self.directory.glob(f"*{SHARD_SUFFIX}") if not p.name.startswith("."))
        return sum(self._load(name) for name in names if name not in self._shard_names)

    def _load(self, name: str) -> bool:
        """Verify one shard and index its records; set it aside if it is damaged. Whether it was added."""
        path = self.directory / name
        self._shard_names.add(name)
        try:
            size = path.stat().st_size
            buffer = pa.memory_map(str(path)).read_buffer() if size else pa.py_buffer(b"")
        except FileNotFoundError:
            # Renamed or compacted away by another process: its successor is listed by the next refresh.
            self._shard_names.discard(name)
            return False
        except OSError as error:
            # Unreadable now (permissions, I/O): nothing that follows from its bytes, so it is tried again next time.
            logger.warning("cannot read the cache shard %s (%s): going on without it for now", path, error)
            self._shard_names.discard(name)
            return False
        checksum = _CHECKSUMMED.search(name)
        if checksum is not None and f"{crc32_of(buffer):08x}" != checksum.group(1):
            self._set_aside(name, f"its {size:,} bytes do not match the checksum in its name (damaged or truncated)")
            return False
        try:
            table = pa.ipc.open_file(buffer).read_all()
            if checksum is None:
                table.validate(full=True)
        except (pa.ArrowException, ValueError) as error:
            self._set_aside(name, f"not a valid Arrow file: {error}")
            return False
        if not table.schema.equals(self.schema):
            logger.warning("ignoring store shard %s: its schema differs from this store's", path)
            return False
        refused = None
        if self.row_check is not None:
            refused, problem = self.row_check(table)
            if refused.any():
                count = int(refused.sum())
                logger.warning("%d records of %s hold %s: they are left out and computed again", count, path, problem)
                self._record(CacheRepair(str(path), f"{count} records hold {problem}", "records left out"))
        self._add_table(table, refused)
        if checksum is None:
            self._adopt(name, buffer)
        return True

    def _adopt(self, name: str, buffer: pa.Buffer) -> None:
        """Give a shard written before checksums existed its checksum, where the folder is writable."""
        stem = name[: -len(SHARD_SUFFIX)]
        adopted = f"{stem}{CHECKSUM_TAG}{crc32_of(buffer):08x}{SHARD_SUFFIX}"
        try:
            os.replace(self.directory / name, self.directory / adopted)
        except OSError as error:
            logger.debug("kept %s without a checksum: %s", self.directory / name, error)
            return
        self._shard_names.add(adopted)

    def _set_aside(self, name: str, reason: str) -> None:
        """Move a damaged shard into `corrupt/` (or leave it, if that fails), log it and record the repair."""
        path = self.directory / name
        target = self.directory / SET_ASIDE_DIR / name
        try:
            target.parent.mkdir(exist_ok=True)
            os.replace(path, target)
            action = f"set aside as {target}"
        except FileNotFoundError:
            action = "already set aside by another process"
        except OSError as error:
            action = f"ignored (could not be moved: {error})"
        logger.warning("cache shard %s is damaged: %s; %s, and what it held is computed again", path, reason, action)
        self._record(CacheRepair(str(path), reason, action))

    def _record(self, repair: CacheRepair) -> None:
        self.repairs.append(repair)
        _repairs.append(repair)

    def _add_table(self, table: pa.Table, refused: np.ndarray | None = None) -> None:
        shard = len(self._shards)
        self._shards.append(table)
        for row, key in enumerate(table.column(self.key_column).to_pylist()):
            if refused is None or not refused[row]:
                self._index.setdefault(key, (shard, row))

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def missing(self, keys: Iterable[str]) -> list[str]:
        """The keys not in the store, in the order given, each once."""
        return [key for key in dict.fromkeys(keys) if key not in self._index]

    def take(self, keys: Sequence[str], columns: Sequence[str] | None = None) -> pa.Table:
        """The records of `keys` (only `columns`, when given), in that order; every key must be present."""
        locations = [self._index[key] for key in keys]
        by_shard: dict[int, list[int]] = {}
        for position, (shard, _) in enumerate(locations):
            by_shard.setdefault(shard, []).append(position)
        if not by_shard:
            empty = self.schema.empty_table()
            return empty.select(list(columns)) if columns is not None else empty
        pieces, order = [], []
        for shard, positions in by_shard.items():
            rows = pa.array([locations[position][1] for position in positions], type=pa.int64())
            table = self._shards[shard]
            pieces.append((table.select(list(columns)) if columns is not None else table).take(rows))
            order.extend(positions)
        gathered = pa.concat_tables(pieces)
        inverse = np.empty(len(order), dtype=np.int64)
        inverse[np.asarray(order, dtype=np.int64)] = np.arange(len(order))
        return gathered.take(pa.array(inverse))

    def gather(self, keys: Sequence[str], column: str) -> np.ndarray:
        """The fixed-size-list `column` of `keys` (every key present) as one `(len(keys), list size)` NumPy
        array, in that order, copied row by row from each shard's memory-mapped values: two Arrow takes of the
        column cost twice as much. Falls back to `take` where a shard holds a null list."""
        kind = self.schema.field(column).type
        values = np.empty((len(keys), kind.list_size), dtype=kind.value_type.to_pandas_dtype())
        locations = np.array([self._index[key] for key in keys], dtype=np.int64).reshape(-1, 2)
        order = np.argsort(locations[:, 0], kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(locations[order, 0]) != 0]) if len(order) else order
        for positions in np.split(order, starts[1:]) if len(order) else []:
            shard_column = self._shards[int(locations[positions[0], 0])].column(column)
            if shard_column.null_count:
                return (
                    self.take(keys, [column])
                    .column(column)
                    .combine_chunks()
                    .flatten()
                    .to_numpy(zero_copy_only=False)
                    .reshape(len(keys), kind.list_size)
                )
            rows = locations[positions, 1]
            bounds = np.cumsum([0, *(len(chunk) for chunk in shard_column.chunks)])
            chunk_of = np.searchsorted(bounds, rows, side="right") - 1
            for index in np.unique(chunk_of):
                chunk = shard_column.chunks[int(index)].flatten().to_numpy(zero_copy_only=False)
                here = chunk_of == index
                values[positions[here]] = chunk.reshape(-1, kind.list_size)[rows[here] - bounds[index]]
        return values

    def writer(self, flush_rows: int = 4096) -> StoreWriter:
        """A buffered writer; use it as a context manager so its last rows are flushed."""
        return StoreWriter(self, flush_rows)

    def commit(self, table: pa.Table) -> Path:
        """Write `table` as one new shard, atomically, and make its keys visible to this process."""
        table = table.cast(self.schema)
        stem = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        temp = self.directory / f"{TEMP_PREFIX}{stem}{SHARD_SUFFIX}"
        try:
            with pa.OSFile(str(temp), "wb") as sink, pa.ipc.new_file(sink, self.schema) as ipc_writer:
                ipc_writer.write_table(table)
            with temp.open("rb+") as handle:
                os.fsync(handle.fileno())
            path = self.directory / f"{stem}{CHECKSUM_TAG}{file_crc32(temp):08x}{SHARD_SUFFIX}"
            os.replace(temp, path)
        except OSError as error:
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)
            raise write_failure(self.directory, error) from error
        self._load(path.name)
        return path

    def compact(self) -> int:
        """Merge all shards into one (first-wins per key); return how many shards were merged."""
        self.refresh()
        old = sorted(self._shard_names)
        if len(old) < 2:
            return 0
        keys = list(self._index)
        merged = self.take(keys)
        self.commit(merged)
        for name in old:
            (self.directory / name).unlink(missing_ok=True)
        self._shards, self._shard_names, self._index = [], set(), {}
        self.refresh()
        return len(old)


class StoreWriter:
    """Buffers records and commits them to a `ShardStore` every `flush_rows` records and on exit."""

    def __init__(self, store: ShardStore, flush_rows: int) -> None:
        self._store = store
        self._flush_rows = flush_rows
        self._rows: list[dict[str, Any]] = []
        self._tables: list[pa.Table] = []
        self._buffered = 0
        self.rows_written = 0

    def add(self, row: Mapping[str, Any]) -> None:
        """Buffer one record given as a dict."""
        self._rows.append(dict(row))
        self._count(1)

    def add_table(self, table: pa.Table) -> None:
        """Buffer many records given as a table with the store's columns."""
        self._tables.append(table.cast(self._store.schema))
        self._count(table.num_rows)

    def _count(self, rows: int) -> None:
        self._buffered += rows
        if self._buffered >= self._flush_rows:
            self.flush()

    def flush(self) -> None:
        """Commit everything buffered as one shard."""
        if not self._buffered:
            return
        tables = self._tables + ([pa.Table.from_pylist(self._rows, schema=self._store.schema)] if self._rows else [])
        self._store.commit(pa.concat_tables(tables))
        self.rows_written += self._buffered
        self._rows, self._tables, self._buffered = [], [], 0

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.flush()
