"""Where the exact search's time goes outside its products: `greedy_keep_first` under cProfile, with its own
work counters (`SearchWork`) and the matrix-product ceiling measured in the same process.

Data as in `bench_dedup_search.py`: `isotropic` (threshold 0.8) or `clip-like` (threshold 0.9), 1024-d float16.
Prints the counters, the ceiling, and the functions with the most time of their own.

usage: python bench/profile_search_rest.py [--data clip-like] [--size 20000] [--top 12] [--results bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import io
import pstats
import sys
import time
from pathlib import Path

from bench_dedup_search import DATA
from machine_info import host, matmul_ceiling, roofline_line

from llava_mixes.dedup import search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=sorted(DATA), default="clip-like")
    parser.add_argument("--size", type=int, default=20000)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--results", default=str(Path(__file__).with_name("RESULTS.md")))
    args = parser.parse_args()
    make, threshold = DATA[args.data]
    vectors = make(args.size)
    profile = cProfile.Profile()
    began = time.perf_counter()
    profile.enable()
    result = search.greedy_keep_first(vectors, threshold)
    profile.disable()
    seconds = time.perf_counter() - began
    wide = result.work.precision == "bfloat16"
    shape = (search.CPU_BFLOAT16_BLOCK, search.CPU_BFLOAT16_TILE) if wide else (1024, 16384)
    ceiling = matmul_ceiling(*shape, vectors.shape[1])
    listing = io.StringIO()
    stats = pstats.Stats(profile, stream=listing).sort_stats("tottime")
    rows = []
    for (filename, line, name), (_, calls, own, cumulative, _) in sorted(
        stats.stats.items(), key=lambda item: -item[1][2]
    )[: args.top]:
        where = f"{Path(filename).name}:{line}({name})" if line else name
        rows.append(f"| `{where}` | {calls:,} | {own:.2f} | {cumulative:.2f} |")
    text = [
        f"\n### The search outside its products, {args.data}, {datetime.date.today()}: "
        f"`python bench/profile_search_rest.py --data {args.data} --size {args.size}`",
        f"Machine: {host()}. {args.size:,} x 1024, threshold {threshold}, {int((~result.kept).sum()):,} removed; "
        f"{seconds:.1f} s under cProfile. {roofline_line(result.work, seconds, ceiling)}; "
        f"{result.work.rechecked_pairs:,} pairs re-checked in float64.",
        "",
        "| function | calls | own seconds | cumulative seconds |",
        "| --- | --- | --- | --- |",
        *rows,
    ]
    sys.stdout.write("\n".join(text) + "\n")
    with open(args.results, "a") as handle:
        handle.write("\n".join(text) + "\n")


if __name__ == "__main__":
    main()
