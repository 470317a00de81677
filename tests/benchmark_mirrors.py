"""Hub benchmark repos in their real layouts, written by the tests: Parquet shards with an `Image` column of bytes
(`data/<split>-NNNNN-of-NNNNN.parquet`, or `<config>/<split>-...` for a named config), a README whose `configs:`
names them, laid out as a mirror folder (`owner/name/`, as `hf download --local-dir` writes it) or as the Hub
cache (`datasets--owner--name/` with blobs, snapshots and refs, as `huggingface_hub` writes it)."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from llava_mixes.decontam.benchmark_sets import BenchmarkEntry, shipped_sets

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
REVISION = "0123456789abcdef0123456789abcdef01234567"


def parquet_bytes(pictures: Sequence[bytes | None], column: str = "image", many: bool = False) -> bytes:
    """One Parquet shard: `question_id`, `question` and `column` (an Image, or a list of Images where `many`)."""
    if many:
        values = [[{"bytes": data, "path": None}] if data is not None else [] for data in pictures]
        kind: pa.DataType = pa.list_(IMAGE)
    else:
        values = [{"bytes": data, "path": None} if data is not None else None for data in pictures]
        kind = IMAGE
    table = pa.table(
        {
            "question_id": pa.array(list(range(len(pictures))), pa.int64()),
            "question": pa.array([f"q{number}" for number in range(len(pictures))]),
            column: pa.array(values, kind),
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def parquet_table(**columns: Sequence[bytes | None]) -> bytes:
    """One Parquet shard with `question_id` and an Image column per keyword (None: a row without a picture)."""
    rows = len(next(iter(columns.values())))
    arrays = {"question_id": pa.array(list(range(rows)), pa.int64())}
    for name, pictures in columns.items():
        arrays[name] = pa.array([{"bytes": data, "path": None} if data else None for data in pictures], IMAGE)
    sink = io.BytesIO()
    pq.write_table(pa.table(arrays), sink)
    return sink.getvalue()


def readme(entry: BenchmarkEntry) -> str:
    """A dataset card whose `configs:` names each split's files as `push_to_hub` writes them."""
    folder = entry.config or "data"
    lines = ["---", "configs:", f"- config_name: {entry.config or 'default'}", "  data_files:"]
    for split in entry.splits:
        lines += [f"  - split: {split}", f"    path: {folder}/{split}-*"]
    return "\n".join([*lines, "---", "", f"# {entry.repo}", ""])


def repo_files(
    entry: BenchmarkEntry, pictures: Mapping[str, Sequence[bytes | None]], *, with_readme: bool = True
) -> dict[str, bytes]:
    """The files of `entry`'s repo: per split one shard of `pictures[split]` in the entry's first column."""
    folder = entry.config or "data"
    many = entry.repo == "lmms-lab/SEED-Bench"
    files = {
        f"{folder}/{split}-00000-of-00001.parquet": parquet_bytes(pictures[split], entry.columns[0], many)
        for split in entry.splits
    }
    if with_readme:
        files["README.md"] = readme(entry).encode()
    return files


def write_mirror_repo(mirror: Path, repo: str, files: Mapping[str, bytes]) -> Path:
    """`files` written under `mirror/repo/`, as `hf download --local-dir` does (with its `.cache` folder)."""
    folder = mirror / repo
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    (folder / ".cache" / "huggingface").mkdir(parents=True, exist_ok=True)
    return folder


def write_cached_repo(hub_cache: Path, repo: str, files: Mapping[str, bytes], revision: str = REVISION) -> Path:
    """`files` written into a Hub cache folder as `huggingface_hub` does: blobs by hash, a snapshot of relative
    links to them (a file already there is kept), and `refs/main`; returns the snapshot folder."""
    folder = hub_cache / f"datasets--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / revision
    for name, data in files.items():
        blob = folder / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not os.path.lexists(link):
            os.symlink(os.path.relpath(blob, link.parent), link)
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(revision)
    return snapshot


def entry(reference: str) -> BenchmarkEntry:
    """The shipped entry `SET/NAME`."""
    set_name, _, name = reference.partition("/")
    return shipped_sets()[set_name].entry(name)


def mirror_set(mirror: Path, set_name: str, picture: object) -> dict[str, list[bytes]]:
    """Every entry of the set `set_name` written into `mirror`, each split holding two distinct pictures
    (`picture(seed)` makes one); returns the pictures per `SET/NAME`."""
    written: dict[str, list[bytes]] = {}
    seed = 100
    for item in shipped_sets()[set_name].entries:
        pictures = {}
        for split in item.splits:
            pictures[split] = [picture(seed), picture(seed + 1)]  # type: ignore[operator]
            seed += 2
        write_mirror_repo(mirror, item.repo, repo_files(item, pictures))
        written[f"{set_name}/{item.name}"] = [data for split in item.splits for data in pictures[split]]
    return written
