"""Reading a Hub release with the pictures inside: our build of `llava-next-779k` against
`datasets.load_dataset("parquet", data_files=...)` on the same files, in the same run.

The files: `--rows` rows in LLaVA-NeXT-Data's layout (`LLaVA-NeXT-Data/data/train-XXXXX-of-YYYYY.parquet`,
`--shard-rows` rows per file, 100 rows per row group as `datasets` writes pictures), features `id`,
`conversations`, `data_source` (one of 20 names) and `image` (`{bytes, path}`). Every picture is a distinct small
JPEG (a 32x24 picture with the row number in a JPEG comment: distinct bytes, so the content-keyed image check cache
never answers for another row, at the price of one encode).

Each side runs in a fresh process with empty caches, one after the other:
- `ours`: `load_dataset("llava_mixes", "llava-next-779k", data_dir=...)`: reading, normalisation, every picture
  hashed and decoded (the image check), the Arrow files and the build report written;
- `ours-normalise`: the same reading and normalisation (`SourceNormaliser.tables()`, image checks included) with
  the tables dropped instead of written; then `ours-normalise, checks cached`: the same again in the same process,
  every picture's check now answered by the content-keyed index (a rebuild, or another config of the same pictures);
- `datasets`: `load_dataset("parquet", data_files=<the shards>)`: reading and the Arrow files written.
Time is wall time after the imports. Memory: the process's peak RSS (`VmHWM`), everything included, and the peak of
its anonymous RSS (`RssAnon`, sampled every 20 ms), which leaves out file-backed pages: the memory-mapped Parquet
and Arrow files, whose pages hold the pictures. The pictures' bytes the process holds itself are bounded by the
batches in flight (the reader's record batch and the normaliser's batch, 256 rows each), reported below; the goal
(<= 3 GB without the pictures' bytes) is read on the anonymous peak, which still counts those in-flight bytes.

usage: python bench/bench_hub_stream.py [--rows N] [--shard-rows N] [--folder DIR] [--results bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from machine_info import host, peak_rss_bytes, worker_result
from PIL import Image

RELEASE = "LLaVA-NeXT-Data"
ROW_GROUP_ROWS = 100
SOURCES = [f"source_{number}" for number in range(20)]
TURN = pa.struct([("from", pa.string()), ("value", pa.string())])
IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
SCHEMA = pa.schema(
    [("id", pa.string()), ("conversations", pa.list_(TURN)), ("data_source", pa.string()), ("image", IMAGE)]
)


def base_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (120, 60, 200)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def distinct(jpeg: bytes, number: int) -> bytes:
    """`jpeg` with a comment segment naming `number` after its start marker: other bytes, the same picture."""
    text = f"row {number}".encode()
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text + jpeg[2:]


def write_release(folder: Path, rows: int, shard_rows: int) -> list[Path]:
    """The release's shards under `folder` (see the module docstring)."""
    jpeg = base_jpeg()
    shards = (rows + shard_rows - 1) // shard_rows
    paths = []
    for shard in range(shards):
        path = folder / RELEASE / "data" / f"train-{shard:05d}-of-{shards:05d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        with pq.ParquetWriter(path, SCHEMA) as writer:
            start, stop = shard * shard_rows, min(rows, (shard + 1) * shard_rows)
            for low in range(start, stop, 10_000):
                numbers = range(low, min(stop, low + 10_000))
                batch = {
                    "id": [f"next_{n}" for n in numbers],
                    "conversations": [
                        [
                            {"from": "human", "value": f"<image>\nWhat is shown in picture {n}?"},
                            {"from": "gpt", "value": f"A purple field, picture {n}, with nothing else in it."},
                        ]
                        for n in numbers
                    ],
                    "data_source": [SOURCES[n % len(SOURCES)] for n in numbers],
                    "image": [{"bytes": distinct(jpeg, n), "path": f"{n}.jpg"} for n in numbers],
                }
                writer.write_table(pa.Table.from_pydict(batch, schema=SCHEMA), row_group_size=ROW_GROUP_ROWS)
        paths.append(path)
    return paths


class AnonymousPeak:
    """The peak of this process's anonymous resident memory (`RssAnon`), sampled every 20 ms in a thread: the
    resident size without file-backed pages, such as the memory-mapped Arrow files whose pages hold pictures."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            with open("/proc/self/status") as handle:
                value = next(int(line.split()[1]) * 1024 for line in handle if line.startswith("RssAnon:"))
            self.peak = max(self.peak, value)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_side(side: str, folder: Path, work: Path) -> dict[str, float]:
    """One side, in this (fresh) process."""
    import datasets

    import llava_mixes  # noqa: F401 - registers the builder

    os.environ["LLAVA_MIXES_CACHE"] = str(work / "content_cache")
    shards = sorted(str(path) for path in (folder / RELEASE / "data").glob("*.parquet"))
    sampler = AnonymousPeak()
    started = time.perf_counter()
    if side == "ours":
        built = datasets.load_dataset("llava_mixes", "llava-next-779k", data_dir=str(folder), cache_dir=str(work))
        rows = len(built["train"])
    elif side == "ours-normalise":
        from llava_mixes.builders import SOURCES as REGISTRY
        from llava_mixes.sources.images import ImageIndex
        from llava_mixes.sources.normalise import SourceNormaliser

        source, index = REGISTRY["llava-next-779k"](), ImageIndex(work / "content_cache")
        rows = sum(table.num_rows for table in SourceNormaliser(source, folder, index, "skip").tables())
        first = time.perf_counter() - started
        again = time.perf_counter()
        sum(table.num_rows for table in SourceNormaliser(source, folder, index, "skip").tables())
        again = time.perf_counter() - again
        return {"rows": rows, "seconds": first, "again": again, "peak_rss": peak_rss_bytes(), "anon": sampler.stop()}
    else:
        rows = len(datasets.load_dataset("parquet", data_files=shards, split="train", cache_dir=str(work)))
    seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": seconds, "peak_rss": peak_rss_bytes(), "anon": sampler.stop()}


def measure(side: str, folder: Path) -> dict[str, float]:
    with tempfile.TemporaryDirectory(dir=folder) as work:
        return worker_result(__file__, ["--side", side, "--folder", str(folder), "--work", work], offline=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--shard-rows", type=int, default=50_000)
    parser.add_argument("--folder", help="where the release is written (default: a temporary folder)")
    parser.add_argument("--results", help="append the table to this Markdown file")
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(run_side(args.side, Path(args.folder), Path(args.work))))
        return
    with tempfile.TemporaryDirectory(dir=args.folder) as scratch:
        folder = Path(scratch)
        began = time.perf_counter()
        paths = write_release(folder, args.rows, args.shard_rows)
        size = sum(path.stat().st_size for path in paths)
        written = time.perf_counter() - began
        results = {side: measure(side, folder) for side in ("datasets", "ours", "ours-normalise")}
    picture = len(distinct(base_jpeg(), args.rows))
    base = results["datasets"]
    lines = [
        f"### Hub-layout Parquet, pictures inside: `python bench/bench_hub_stream.py --rows {args.rows} "
        f"--shard-rows {args.shard_rows}`",
        f"Machine: {host()}, Python {sys.version.split()[0]}, {datetime.date.today()}; {len(paths)} shards, "
        f"{size / 1e6:,.0f} MB ({picture} B per picture), written in {written:.0f} s.",
        "",
        "| side | rows | time | time / datasets | peak RSS | peak anonymous RSS |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    again = results["ours-normalise"]
    for side, result in [*results.items(), ("ours-normalise, checks cached", {**again, "seconds": again["again"]})]:
        ratio = result["seconds"] / base["seconds"]
        lines.append(
            f"| {side} | {result['rows']:,} | {result['seconds']:.1f} s | {ratio:.2f}x | "
            f"{result['peak_rss'] / 2**30:.2f} GiB | {result['anon'] / 2**30:.2f} GiB |"
        )
    lines.append("")
    lines.append(f"Picture bytes in flight: at most 2 x 256 x {picture} B = {2 * 256 * picture / 1e6:.2f} MB.")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.results:
        with open(args.results, "a") as handle:
            handle.write("\n" + text)


if __name__ == "__main__":
    main()
