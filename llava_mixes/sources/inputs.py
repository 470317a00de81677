"""What a build read, recorded next to its Arrow files, and the check that tells when a cached build is stale.

A plain build records every file it depended on, one row each:
- `annotation`: each annotation file `Source.locate_files` returned (so a file added to a folder read whole
  counts too): path, size, mtime_ns, ctime_ns, and a SHA-256 when the file is at most `HASH_LIMIT` bytes;
- `image`: each image file checked through `ImageIndex`: path, size, mtime_ns, ctime_ns (a chmod, or a rewrite
  that restores the mtime, still moves the ctime);
- `absent`: each path `ImageResolver` looked for and did not find (other extensions and prefixes included),
  so that restoring a missing image is noticed;
- `unreadable`: each image that failed with an I/O error, with its errno; it is opened again at every check,
  and the build is stale unless that fails with the same errno.

The record is an Arrow file (`INPUTS_FILE`) and a small JSON (`INPUTS_META`) holding its SHA-256; these are the
dynamic inputs of a plain build's steps (`building.steps`), found while it runs. The check costs one `stat` per
recorded file; a file is hashed only when it is small enough to have a recorded hash and its stat changed, and then
a touch alone does not make it stale.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from llava_mixes.store import write_atomic

INPUTS_FILE = "llava_mixes_inputs.arrow"
INPUTS_META = "llava_mixes_inputs.json"
PART_SUFFIX = ".inputs.arrow"
RECORD_FORMAT = 1
HASH_LIMIT = 64 << 20
"""Annotation files up to this size (64 MiB) are hashed; larger ones are compared by size, mtime and ctime."""
ANNOTATION = "annotation"
IMAGE = "image"
ABSENT = "absent"
UNREADABLE = "unreadable"
SCHEMA = pa.schema(
    [
        ("kind", pa.string()),
        ("path", pa.string()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("ctime_ns", pa.int64()),
        ("sha256", pa.string()),
        ("errno", pa.int32()),
        ("detail", pa.string()),
    ]
)
_FLUSH_ROWS = 65536
_STAT_CHUNK = 4096
_STAT_THREADS = 8


def sha256_of(path: str | Path) -> str:
    """The SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class InputLog:
    """The inputs one build read, in the order met; rows are kept as compact Arrow batches."""

    def __init__(self) -> None:
        self._columns: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
        self._batches: list[pa.RecordBatch] = []

    def _add(
        self,
        kind: str,
        path: str,
        stat: os.stat_result | None,
        sha256: str | None = None,
        errno: int | None = None,
        detail: str | None = None,
    ) -> None:
        columns = self._columns
        columns["kind"].append(kind)
        columns["path"].append(path)
        columns["size"].append(None if stat is None else stat.st_size)
        columns["mtime_ns"].append(None if stat is None else stat.st_mtime_ns)
        columns["ctime_ns"].append(None if stat is None else stat.st_ctime_ns)
        columns["sha256"].append(sha256)
        columns["errno"].append(errno)
        columns["detail"].append(detail)
        if len(columns["kind"]) >= _FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._columns["kind"]:
            self._batches.append(pa.RecordBatch.from_pydict(self._columns, schema=SCHEMA))
            self._columns = {name: [] for name in SCHEMA.names}

    def annotations(self, paths: Iterable[Path]) -> None:
        """Record annotation files (stat first, then the hash of a small one), before they are read."""
        for path in paths:
            absolute = os.path.abspath(path)
            stat = os.stat(absolute)
            sha256 = sha256_of(absolute) if stat.st_size <= HASH_LIMIT else None
            self._add(ANNOTATION, absolute, stat, sha256)

    def image(self, path: str, stat: os.stat_result) -> None:
        """Record an image file as it was when it was checked."""
        self._add(IMAGE, path, stat)

    def absent(self, path: str) -> None:
        """Record a path that was looked for and not found."""
        self._add(ABSENT, path, None)

    def unreadable(self, path: str, errno: int | None, detail: str) -> None:
        """Record an image that failed with an I/O error: its errno and the error as text."""
        self._add(UNREADABLE, path, None, errno=errno, detail=detail)

    def table(self) -> pa.Table:
        self._flush()
        return pa.Table.from_batches(self._batches, schema=SCHEMA)

    def save(self, path: Path) -> None:
        """Write this log as an Arrow file, atomically (a part of a build's record)."""
        write_atomic(path, _ipc_bytes(self.table()))


def _ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, SCHEMA) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _read_table(path: Path) -> pa.Table:
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all()


def write_record(folder: Path, parts: Iterable[Path]) -> str:
    """Merge the part logs of a plain build into its record under `folder`; return the record's digest."""
    tables = [_read_table(part) for part in parts]
    data = _ipc_bytes(pa.concat_tables(tables) if tables else SCHEMA.empty_table())
    digest = hashlib.sha256(data).hexdigest()
    write_atomic(folder / INPUTS_FILE, data)
    _write_meta(folder, {"rows": sum(table.num_rows for table in tables), "sha256": digest})
    return digest


def _write_meta(folder: Path, fields: dict[str, Any]) -> None:
    meta = {"format": RECORD_FORMAT, **fields}
    write_atomic(folder / INPUTS_META, json.dumps(meta, indent=2, sort_keys=True).encode())


def read_meta(folder: Path) -> dict[str, Any] | None:
    """The JSON half of a build's record, or None when it is absent, unreadable or of another format."""
    try:
        meta = json.loads((folder / INPUTS_META).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("format") != RECORD_FORMAT:
        return None
    return meta


def _changed(stat: os.stat_result, size: int, mtime_ns: int, ctime_ns: int) -> bool:
    return (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns) != (size, mtime_ns, ctime_ns)


def _annotation_reason(row: dict[str, Any]) -> str | None:
    path = row["path"]
    try:
        stat = os.stat(path)
        if not _changed(stat, row["size"], row["mtime_ns"], row["ctime_ns"]):
            return None
        if stat.st_size != row["size"]:
            return f"annotation file {path} changed size ({row['size']} -> {stat.st_size} bytes)"
        if row["sha256"] is None:
            return f"annotation file {path} was modified (its mtime or ctime moved)"
        if sha256_of(path) == row["sha256"]:
            return None
    except OSError as error:
        return f"annotation file {path} cannot be read ({error.strerror})"
    return f"annotation file {path} changed content (SHA-256)"


def _image_chunk_reason(rows: list[tuple[str, int, int, int]]) -> str | None:
    for path, size, mtime_ns, ctime_ns in rows:
        try:
            stat = os.stat(path)
        except OSError:
            return f"image {path} is gone"
        if _changed(stat, size, mtime_ns, ctime_ns):
            return f"image {path} changed"
    return None


def _image_reason(paths: list[str], sizes: list[int], mtimes: list[int], ctimes: list[int]) -> str | None:
    """The first recorded image whose stat differs now; stat calls run on a few threads (they release the GIL,
    which matters most on network file systems)."""
    rows = list(zip(paths, sizes, mtimes, ctimes, strict=True))
    chunks = [rows[start : start + _STAT_CHUNK] for start in range(0, len(rows), _STAT_CHUNK)]
    with ThreadPoolExecutor(min(_STAT_THREADS, os.cpu_count() or 1)) as pool:
        for reason in pool.map(_image_chunk_reason, chunks):
            if reason is not None:
                pool.shutdown(cancel_futures=True)
                return reason
    return None


def _unreadable_reason(path: str, errno: int | None, detail: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as error:
        if error.errno == errno and errno is not None:
            return None
        return f"image {path}, unreadable at the last build ({detail}), now fails otherwise ({error})"
    return f"image {path}, unreadable at the last build ({detail}), can be read now"


def stale_reason(folder: Path, annotation_files: list[Path]) -> str | None:
    """Why the plain build under `folder` no longer matches the disk (the first difference found), or None.

    `annotation_files`: what `Source.locate_files` returns now, for every source of the config, in order.
    """
    meta = read_meta(folder)
    if meta is None or not isinstance(meta.get("sha256"), str):
        return "it has no record of its inputs"
    try:
        data = (folder / INPUTS_FILE).read_bytes()
    except OSError as error:
        return f"its record of inputs cannot be read ({error.strerror})"
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        return f"its record of inputs {folder / INPUTS_FILE} does not match its checksum"
    table = pa.ipc.open_file(pa.py_buffer(data)).read_all()
    kinds = table.column("kind").to_pylist()
    annotations = table.filter(pc.equal(table.column("kind"), ANNOTATION)).to_pylist()
    now = [os.path.abspath(path) for path in annotation_files]
    if [row["path"] for row in annotations] != now:
        return f"its annotation files are now {now}, not {[row['path'] for row in annotations]}"
    for row in annotations:
        reason = _annotation_reason(row)
        if reason is not None:
            return reason
    return _file_reason(table, kinds)


def _file_reason(table: pa.Table, kinds: list[str]) -> str | None:
    """Why the image, absent and unreadable rows no longer match the disk, or None."""
    names = ("path", "size", "mtime_ns", "ctime_ns", "errno", "detail")
    columns = {name: table.column(name).to_pylist() for name in names}
    images = [index for index, kind in enumerate(kinds) if kind == IMAGE]
    reason = _image_reason(*([columns[name][index] for index in images] for name in names[:4]))
    if reason is not None:
        return reason
    for index, kind in enumerate(kinds):
        path = columns["path"][index]
        if kind == ABSENT and os.path.isfile(path):
            return f"image {path}, missing at the last build, is there now"
        if kind == UNREADABLE:
            reason = _unreadable_reason(path, columns["errno"][index], columns["detail"][index])
            if reason is not None:
                return reason
    return None
