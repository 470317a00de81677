"""Where the exact search's time goes on isotropic vectors, where low-rank pruning cannot help.

Measured in one run, on the same vectors as `bench_dedup_search.py` (isotropic, threshold 0.8):
- the search as it runs by default (`greedy_keep_first`, host: torch bfloat16 where this CPU runs it at
  least 1.5 times as fast as NumPy float32, else NumPy float32), and the NumPy float32 search forced;
- each one's matrix products replayed alone in its own block and tile sizes (for every block, the block
  against every item kept before it; kept counts from the search's result), so the difference is
  everything that is not a matrix product (thresholding, candidate lists, float64 re-checks, the
  in-block resolution);
- the GEMM rates of both precisions on one search tile.
usage: python bench/profile_dedup_search.py [--size 100000] [--results bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import numpy as np
from machine_info import host

from llava_mixes.dedup import search
from llava_mixes.playground.synthetic import clustered_vectors
from llava_mixes.vectors import checked_norms

THRESHOLD = 0.8
BLOCK = 1024
TILE = 16384


def replay_products(unit: np.ndarray, kept: np.ndarray, block: int, tile: int, bfloat16: bool) -> tuple[float, float]:
    """Seconds and flops of a search's matrix products alone (module docstring)."""
    import torch

    kept_vectors = torch.from_numpy(unit[kept])
    all_vectors = torch.from_numpy(unit)
    if bfloat16:
        kept_vectors, all_vectors = kept_vectors.bfloat16(), all_vectors.bfloat16()
    kept_before = np.concatenate([[0], np.cumsum(kept)])
    seconds, flops = 0.0, 0.0
    for start in range(0, len(unit), block):
        rows = all_vectors[start : start + block]
        count = int(kept_before[start])
        began = time.perf_counter()
        for tile_start in range(0, count, tile):
            torch.matmul(rows, kept_vectors[tile_start : min(tile_start + tile, count)].T)
        torch.matmul(rows, rows.T)
        seconds += time.perf_counter() - began
        flops += 2.0 * len(rows) * (count + len(rows)) * unit.shape[1]
    return seconds, flops


def timed_search(vectors: np.ndarray, allow_bfloat16: bool) -> tuple[float, np.ndarray]:
    original = search.CPU_BFLOAT16_MIN_ITEMS
    search.CPU_BFLOAT16_MIN_ITEMS = original if allow_bfloat16 else len(vectors) + 1
    try:
        start = time.perf_counter()
        result = search.greedy_keep_first(vectors, THRESHOLD)
        return time.perf_counter() - start, result.kept
    finally:
        search.CPU_BFLOAT16_MIN_ITEMS = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--results", default=str(Path(__file__).with_name("RESULTS.md")))
    args = parser.parse_args()

    vectors = clustered_vectors(args.size)
    norms = checked_norms(vectors)
    pruned = search.LowRankBound.fit(vectors, norms, THRESHOLD - search._HostScorer.tolerance) is not None
    speedup = search.cpu_bfloat16_speedup()
    default_seconds, kept = timed_search(vectors, allow_bfloat16=True)
    float32_seconds, float32_kept = timed_search(vectors, allow_bfloat16=False)
    unit = (vectors.astype(np.float32) / norms[:, None].astype(np.float32)).astype(np.float32)
    fast_bfloat16 = speedup >= search.CPU_BFLOAT16_MIN_SPEEDUP
    uses_bfloat16 = not pruned and args.size >= search.CPU_BFLOAT16_MIN_ITEMS and fast_bfloat16
    default_shape = (search.CPU_BFLOAT16_BLOCK, search.CPU_BFLOAT16_TILE) if uses_bfloat16 else (BLOCK, TILE)
    default_products, flops = replay_products(unit, kept, *default_shape, uses_bfloat16)
    fp32_products, _ = replay_products(unit, kept, BLOCK, TILE, False)

    default = "torch bfloat16" if uses_bfloat16 else "NumPy float32"
    lines = [
        f"\n### Profile of the exact search on isotropic vectors, {datetime.date.today()}: "
        f"`python bench/profile_dedup_search.py --size {args.size}`",
        f"Machine: {host()}, numpy {np.__version__}. "
        f"{args.size:,} x 1024 clustered vectors, threshold {THRESHOLD}, {int((~kept).sum()):,} removed; "
        f"low-rank bound engaged: {pruned}; torch bfloat16 / NumPy float32 matmul speed on this CPU: "
        f"{speedup:.1f}x; same kept set both ways: {bool((kept == float32_kept).all())}. "
        f"Products: {flops / 1e12:.2f} TFLOP either way.",
        "",
        "| search | end to end | its matrix products alone | share in products | rest |",
        "| --- | --- | --- | --- | --- |",
        f"| default ({default}, blocks {default_shape[0]} x tiles {default_shape[1]}) "
        f"| {default_seconds:.1f} s | {default_products:.1f} s | {default_products / default_seconds:.0%} "
        f"| {default_seconds - default_products:.1f} s |",
        f"| NumPy float32 forced (blocks {BLOCK} x tiles {TILE}) | {float32_seconds:.1f} s | {fp32_products:.1f} s "
        f"| {fp32_products / float32_seconds:.0%} | {float32_seconds - fp32_products:.1f} s |",
    ]
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    with open(args.results, "a") as handle:
        handle.write(text)


if __name__ == "__main__":
    main()
