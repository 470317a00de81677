"""`thumbnail` embedding from JPEG files against a bare decode loop over the same files, same run.

Files: photo-like 640x480 JPEGs (`llava_mixes.playground.synthetic.photo_jpeg`, ~110 KB). Baseline: read and fully
decode each file with PIL, in as many threads as there are cores. Ours: `engines.embed_in_process` with
the `thumbnail` embedder and as many decode threads: read, SHA-256 check, decode (JPEG at reduced
scale), thumbnail, float16 vectors committed to the embedding cache. CPU use is (user + system CPU
time) / wall time, so 2.0 means both cores of a 2-core machine busy.

usage: python bench/bench_embed_thumbnail.py [--images 4000] [--results bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from machine_info import host
from PIL import Image

from llava_mixes.embedding.cache import EmbeddingCache, ImageRef
from llava_mixes.embedding.embedders import ThumbnailEmbedder
from llava_mixes.embedding.engines import embed_in_process
from llava_mixes.playground.synthetic import photo_jpeg


def timed(work: Callable[[], object]) -> tuple[float, float]:
    """Wall seconds and CPU use (CPU seconds per wall second) of `work()`."""
    before, start = os.times(), time.perf_counter()
    work()
    after, wall = os.times(), time.perf_counter() - start
    cpu = (after.user - before.user) + (after.system - before.system)
    return wall, cpu / wall


def bare_decode(paths: list[Path], threads: int) -> None:
    def decode(path: Path) -> None:
        with Image.open(path) as image:
            image.load()

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(decode, paths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--results", default=str(Path(__file__).with_name("RESULTS.md")))
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as scratch:
        paths = []
        for index in range(args.images):
            paths.append(Path(scratch) / f"{index:06d}.jpg")
            paths[-1].write_bytes(photo_jpeg(index))
        refs = [ImageRef(hashlib.sha256(p.read_bytes()).hexdigest(), str(p), i) for i, p in enumerate(paths)]
        cache = EmbeddingCache(Path(scratch) / "cache", ThumbnailEmbedder())
        bare_seconds, bare_cpu = timed(lambda: bare_decode(paths, cores))
        ours_seconds, ours_cpu = timed(lambda: embed_in_process(cache, refs, None, 256, cores))
    bare_rate, ours_rate = args.images / bare_seconds, args.images / ours_seconds
    line = (
        f"| {args.images:,} | {bare_rate:,.0f} img/s (CPU use {bare_cpu:.1f}) | {ours_rate:,.0f} img/s "
        f"(CPU use {ours_cpu:.1f}) | {ours_rate / bare_rate:.0%} |"
    )
    sys.stdout.write(line + "\n")
    header = [
        f"\n### `thumbnail` embedding from JPEG files, {datetime.date.today()}: "
        f"`python bench/bench_embed_thumbnail.py --images {args.images}`",
        f"Machine: {host()}; {cores} threads on both sides; 640x480 JPEGs.",
        "",
        "| images | bare decode loop | thumbnail embedding into the cache | ours / bare decode |",
        "| --- | --- | --- | --- |",
    ]
    with open(args.results, "a") as handle:
        handle.write("\n".join([*header, line]) + "\n")


if __name__ == "__main__":
    main()
