"""A named benchmark set as references: every entry located (`benchmark_repos.locate`), read, and recorded.

A named entry that cannot be had (not in the mirror nor the Hub cache, offline; a shard that does not read; a
column that holds no pictures; a split with no picture) is a loss the user would not expect: loading stops with
`BenchmarksMissingError`, which names each such entry, why, and the `hf download` command that fetches it into a
mirror. To go on without some, name the entries wanted one by one (`SET/ENTRY`). What was read is recorded per
entry (where from, the revision, the files, the pictures and a SHA-256 over their contents), and goes into the
build report's decontamination record and the card.

A benchmark can hold more picture bytes than memory (VQAv2's test split is about 70 GB): given a `store` folder
(decontamination passes `<content cache>/benchmark-pictures`), each distinct picture is written there once, by its
SHA-256 (atomically; a file there whose content does not match its name is written again), and only its path is
kept; the embedding cache and the copy verifier check each picture they read against that SHA-256.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llava_mixes.decontam.benchmark_repos import Located, Unreadable, entry_pictures, fetch_command, locate
from llava_mixes.decontam.benchmark_sets import BenchmarkEntry, BenchmarkSet
from llava_mixes.errors import ConfigError
from llava_mixes.store import write_atomic

logger = logging.getLogger(__name__)
_SHOWN = 5


class BenchmarksMissingError(ConfigError):
    """Named benchmarks that could not be read; the message names each, why, and how to fetch it."""


@dataclass
class NamedRead:
    """One named benchmark, read: its name in the tables (`SET/ENTRY`), its distinct pictures as (id, SHA-256,
    file in the store or None, bytes where there is no store), the rows left out (`id (why)`) and the record of
    what was read."""

    benchmark: str
    pictures: list[tuple[str, str, Path | None, bytes | None]]
    missing: list[str]
    record: dict[str, Any]


def benchmark_name(named: BenchmarkSet, entry: BenchmarkEntry) -> str:
    """How an entry is named in the tables and in `matched_reference`: `SET/ENTRY`."""
    return f"{named.name}/{entry.name}"


def _refuse(named: BenchmarkSet, lost: list[tuple[BenchmarkEntry, str]], mirror: Path | None) -> None:
    if not lost:
        return
    lines = [f"{benchmark_name(named, entry)} ({entry.repo_config}): {why}" for entry, why in lost]
    fetch = [fetch_command(entry, mirror) for entry, _ in lost]
    have = [entry.name for entry in named.entries if entry not in {item for item, _ in lost}]
    keep = f"; or name only the benchmarks you have, e.g. {named.name}/{have[0]}" if have else ""
    raise BenchmarksMissingError(
        f"{len(lost)} of the benchmarks named cannot be read: {' | '.join(lines)}. Fetch them online (the Hub "
        f"cache), or into a mirror folder (mirror=DIR, --benchmark-mirror DIR or $LLAVA_MIXES_BENCHMARK_MIRROR): "
        f"{' && '.join(fetch)}{keep}"
    )


def locate_named(named: BenchmarkSet, entries: Sequence[BenchmarkEntry], mirror: Path | None) -> list[Located]:
    """Every entry located; `BenchmarksMissingError` naming each that is not."""
    found, lost = [], []
    for entry in entries:
        result = locate(entry, mirror)
        if isinstance(result, str):
            lost.append((entry, result))
        else:
            found.append(result)
    _refuse(named, lost, mirror)
    return found


def read_named(
    named: BenchmarkSet, entries: Sequence[BenchmarkEntry], mirror: Path | None, store: Path | None = None
) -> list[NamedRead]:
    """Every entry read, each picture content once per entry (kept in `store` where given, else in memory);
    `BenchmarksMissingError` naming each entry that is missing, does not read, or holds no picture."""
    reads, lost = [], []
    for found in locate_named(named, entries, mirror):
        try:
            reads.append(_read(named, found, store))
        except Unreadable as error:
            lost.append((found.entry, str(error)))
    for read, entry in [(read, read.record["entry"]) for read in reads]:
        if not read.pictures:
            lost.append((entry, f"no picture in the split(s) {list(entry.splits)}"))
    _refuse(named, lost, mirror)
    for read in reads:
        read.record.pop("entry")
    return reads


def stored_picture(store: Path, sha256: str, data: bytes) -> Path:
    """The file of `store` that holds `data` (named by its SHA-256), written unless one with that content is
    already there."""
    path = store / sha256[:2] / f"{sha256}.bin"
    try:
        with open(path, "rb") as handle:
            if hashlib.sha256(handle.read()).hexdigest() == sha256:
                return path
    except OSError:
        pass
    write_atomic(path, data)
    return path


def _read(named: BenchmarkSet, found: Located, store: Path | None) -> NamedRead:
    entry = found.entry
    pictures: dict[str, tuple[str, str, Path | None, bytes | None]] = {}
    missing = list(found.notes)
    for label, data, why in entry_pictures(found):
        if data is not None:
            sha = hashlib.sha256(data).hexdigest()
            if sha not in pictures:
                kept = (
                    (label, sha, None, data) if store is None else (label, sha, stored_picture(store, sha, data), None)
                )
                pictures[sha] = kept
        elif why:
            missing.append(f"{label} ({why})")
    content = hashlib.sha256("\n".join(sorted(pictures)).encode()).hexdigest()
    record = {
        "entry": entry,
        "benchmark": benchmark_name(named, entry),
        "set": named.name,
        "set_sha256": named.digest,
        "repo": entry.repo,
        "config": entry.config,
        "splits": list(entry.splits),
        "columns": list(entry.columns),
        "read_from": found.where,
        "revision": found.revision,
        "files": len(found.inputs()),
        "pictures": len(pictures),
        "pictures_sha256": content,
    }
    logger.info("%s: %d pictures from the %s", record["benchmark"], len(pictures), found.where)
    return NamedRead(record["benchmark"], list(pictures.values()), missing, record)


def stat_key(path: Path) -> str:
    """What a fingerprint records of one file read: its size, mtime, ctime and inode, or why it cannot be read."""
    try:
        stat = os.stat(path)
    except OSError as error:
        return f"unreadable {error.errno}"
    return f"{stat.st_size}\t{stat.st_mtime_ns}\t{stat.st_ctime_ns}\t{stat.st_ino}"


def fingerprint_lines(named: BenchmarkSet, entries: Sequence[BenchmarkEntry], mirror: Path | None) -> Iterator[str]:
    """What reading the entries depends on: the list file's digest, each entry's fields, where it is read from
    and at which revision, and every file it reads (path, size, times, inode); `BenchmarksMissingError` where an
    entry cannot be located."""
    yield f"set={named.name}\t{named.digest}\n"
    for found in locate_named(named, entries, mirror):
        yield f"entry={found.entry!r}\t{found.where}\t{found.revision}\n"
        for path in found.inputs():
            yield f"{path}\t{stat_key(path)}\n"
        for note in found.notes:
            yield f"missing\t{note}\n"
