"""An append-only keyed record store kept as Arrow IPC shard files, safe for concurrent writers.

Every flush writes one new shard under a temporary name, fsyncs it and renames it into place, so a
reader sees a shard whole or not at all, and a killed writer leaves at most a temporary file behind
(ignored, and removed once it is a day old). Writers in several processes never share a file. When two
shards hold the same key, the one whose name sorts first (the older one) wins, so a lookup's answer
never changes once made.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

logger = logging.getLogger(__name__)

SHARD_SUFFIX = ".arrow"
TEMP_PREFIX = ".tmp-"
META_FILE = "store.json"
STALE_TEMP_SECONDS = 24 * 3600


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex}-{path.name}")
    with temp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)


class ShardStore:
    """Records with a string key column, in shards under one directory (see the module docstring)."""

    def __init__(self, directory: Path, schema: pa.Schema, key_column: str = "key") -> None:
        self.directory = Path(directory)
        self.schema = schema
        self.key_column = key_column
        self.directory.mkdir(parents=True, exist_ok=True)
        self._shards: list[pa.Table] = []
        self._shard_names: set[str] = set()
        self._index: dict[str, tuple[int, int]] = {}
        self._remove_stale_temporaries()
        self.refresh()

    def _remove_stale_temporaries(self) -> None:
        cutoff = time.time() - STALE_TEMP_SECONDS
        for temp in self.directory.glob(f"{TEMP_PREFIX}*"):
            try:
                if temp.stat().st_mtime < cutoff:
                    temp.unlink()
            except FileNotFoundError:
                continue

    def write_meta(self, meta: Mapping[str, Any]) -> None:
        """Record what the store holds (e.g. the embedder's identity) once, next to the shards."""
        path = self.directory / META_FILE
        if not path.exists():
            write_atomic(path, json.dumps(dict(meta), indent=2, sort_keys=True).encode())

    def refresh(self) -> int:
        """Load shards written since the last refresh (by any process); return how many were new."""
        names = sorted(p.name for p in self.directory.glob(f"*{SHARD_SUFFIX}") if not p.name.startswith("."))
        added = 0
        for name in names:
            if name in self._shard_names:
                continue
            self._shard_names.add(name)
            try:
                table = pa.ipc.open_file(pa.memory_map(str(self.directory / name))).read_all()
            except (pa.ArrowInvalid, OSError) as error:
                logger.warning("ignoring unreadable store shard %s: %s", self.directory / name, error)
                continue
            if not table.schema.equals(self.schema):
                logger.warning("ignoring store shard %s: its schema differs from this store's", name)
                continue
            self._add_table(table)
            added += 1
        return added

    def _add_table(self, table: pa.Table) -> None:
        shard = len(self._shards)
        self._shards.append(table)
        for row, key in enumerate(table.column(self.key_column).to_pylist()):
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

    def writer(self, flush_rows: int = 4096) -> StoreWriter:
        """A buffered writer; use it as a context manager so its last rows are flushed."""
        return StoreWriter(self, flush_rows)

    def commit(self, table: pa.Table) -> Path:
        """Write `table` as one new shard, atomically, and make its keys visible to this process."""
        table = table.cast(self.schema)
        name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}{SHARD_SUFFIX}"
        path = self.directory / name
        temp = self.directory / f"{TEMP_PREFIX}{name}"
        with pa.OSFile(str(temp), "wb") as sink, pa.ipc.new_file(sink, self.schema) as ipc_writer:
            ipc_writer.write_table(table)
        with temp.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, path)
        self._shard_names.add(name)
        self._add_table(pa.ipc.open_file(pa.memory_map(str(path))).read_all())
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
