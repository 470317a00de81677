"""Dedup search: time and peak memory of `greedy_keep_first` against baselines measured in the same run.

Data: clustered unit vectors (1024-d), about a quarter of them within the threshold of an earlier one.
Each method runs in a fresh process; peak memory is the process's peak RSS minus its RSS once the vectors
are loaded. Baselines:
- `dense`: the full N x N float32 similarity matrix, then the same greedy rule row by row (the imagededup
  approach); skipped where the matrix would not fit in memory.
- `verify`: an independent exactness check of the greedy result: every kept pair (i < j) is below the
  threshold, and every removed item's `duplicate_of` is its most similar earlier kept item and at or above
  the threshold (float32 blocks, float64 re-check near the threshold). These properties define the result.

With `--device cuda` the search scores on the GPU (bfloat16 tiles, float64 re-check), and the result at
sizes up to 200,000 is compared with the host search's, row for row.

usage: python bench/bench_dedup_search.py [--sizes 20000 100000] [--threshold 0.8] [--device cuda]
                                          [--results bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DIM = 1024
MEMORY_LIMIT_BYTES = 12 * 2**30


def clustered_vectors(n: int, seed: int = 0) -> np.ndarray:
    """n unit vectors: 3n/4 random cluster centres, each item a centre plus noise (cos ~0.92 within)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((int(n * 0.75), DIM), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    members = np.concatenate([np.arange(len(centres)), rng.integers(0, len(centres), n - len(centres))])
    rng.shuffle(members)
    noise = rng.standard_normal((n, DIM), dtype=np.float32) * (0.3 / np.sqrt(DIM))
    points = centres[members] + noise
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float16)


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def dense_keep_first(vectors: np.ndarray, threshold: float) -> np.ndarray:
    unit = vectors.astype(np.float32)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    scores = unit @ unit.T
    kept = np.zeros(len(unit), dtype=bool)
    for item in range(len(unit)):
        kept[item] = not (scores[item, :item][kept[:item]] >= threshold).any()
    return kept


def verify(vectors: np.ndarray, threshold: float, kept: np.ndarray, duplicate_of: np.ndarray) -> int:
    """Count violations of the properties that define the greedy result (module docstring)."""
    unit64 = vectors.astype(np.float64)
    unit64 /= np.linalg.norm(unit64, axis=1, keepdims=True)
    unit = unit64.astype(np.float32)
    kept_ids = np.flatnonzero(kept)
    violations = 0
    for start in range(0, len(vectors), 2048):
        rows = np.arange(start, min(start + 2048, len(vectors)))
        scores = unit[rows] @ unit[kept_ids].T
        earlier = kept_ids[None, :] < rows[:, None]
        scores = np.where(earlier, scores, -2.0)
        for offset, item in enumerate(rows):
            near = np.flatnonzero(scores[offset] >= threshold - 3e-4)
            exact = unit64[kept_ids[near]] @ unit64[item] if near.size else np.zeros(0)
            hits = near[exact >= threshold]
            if kept[item]:
                violations += int(hits.size > 0)
            else:
                best = kept_ids[hits[np.argmax(exact[exact >= threshold])]] if hits.size else -1
                violations += int(best != duplicate_of[item])
    return violations


def worker(method: str, path: str, threshold: float, device: str | None) -> dict[str, object]:
    vectors = np.load(path)
    baseline = rss_bytes()
    start = time.perf_counter()
    if method == "greedy":
        from llava_mixes.search import greedy_keep_first

        sizes = {"block_size": 8192, "tile_size": 262144} if device else {}
        result = greedy_keep_first(vectors, threshold, device=device, **sizes)
        kept, duplicate_of = result.kept, result.duplicate_of
    elif method == "dense":
        kept, duplicate_of = dense_keep_first(vectors, threshold), None
    else:
        raise ValueError(method)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline
    out = {"seconds": seconds, "peak_bytes": peak, "kept": int(kept.sum())}
    if device:
        import torch

        out["gpu_peak_bytes"] = torch.cuda.max_memory_allocated()
    np.save(path + f".{method}.kept.npy", kept)
    if duplicate_of is not None:
        np.save(path + f".{method}.dup.npy", duplicate_of)
    return out


def run(method: str, path: str, threshold: float, device: str | None = None) -> dict[str, object]:
    command = [sys.executable, __file__, "--worker", method, "--data", path, "--threshold", str(threshold)]
    command += ["--device", device] if device else []
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def device_runs(args: argparse.Namespace) -> None:
    """GPU search at each size, compared with the host search where that finishes in reasonable time."""
    import torch

    lines = []
    with tempfile.TemporaryDirectory() as folder:
        for n in args.sizes:
            path = os.path.join(folder, f"v{n}.npy")
            np.save(path, clustered_vectors(n))
            gpu = run("greedy", path, args.threshold, args.device)
            gpu_kept, gpu_dup = np.load(path + ".greedy.kept.npy"), np.load(path + ".greedy.dup.npy")
            if n <= 200_000:
                host = run("greedy", path, args.threshold)
                same = bool(
                    (np.load(path + ".greedy.kept.npy") == gpu_kept).all()
                    and (np.load(path + ".greedy.dup.npy") == gpu_dup).all()
                )
                host_cell = f"{host['seconds']:.1f} s; same kept set and duplicate_of: {same}"
                ratio = f"{host['seconds'] / gpu['seconds']:.1f}x"
            else:
                host_cell, ratio = "not run (hours on the host)", "n/a"
            removed = n - gpu["kept"]
            lines.append(
                f"| {n:,} | {removed:,} ({removed / n:.0%}) | {gpu['seconds']:.1f} s "
                f"| {gpu['gpu_peak_bytes'] / 2**30:.1f} GiB | {host_cell} | {ratio} |"
            )
            sys.stdout.write(lines[-1] + "\n")
            sys.stdout.flush()
    sizes = " ".join(map(str, args.sizes))
    header = [
        f"\n### Dedup search on {torch.cuda.get_device_name(0)}, {datetime.date.today()}: "
        f"`python bench/bench_dedup_search.py --device {args.device} --sizes {sizes} --threshold {args.threshold}`",
        f"Host: {machine()}. Vectors: clustered, 1024-d, float16; one scope (global). GPU: bfloat16 tiles of "
        "8,192 x 262,144, float32 accumulation, float64 re-check within 5e-3 of the threshold.",
        "",
        "| vectors | removed | GPU search | GPU peak memory | host search (NumPy, same machine) | GPU vs host |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    with open(args.results, "a") as handle:
        handle.write("\n".join(header + lines) + "\n")


def machine() -> str:
    with open("/proc/cpuinfo") as handle:
        cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "?")
    return f"{platform.machine()} {cpu}, {os.cpu_count()} cores, numpy {np.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20000, 100000])
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--results", default=str(Path(__file__).with_name("RESULTS.md")))
    parser.add_argument("--device", help="a torch device (cuda) to score on; default: NumPy on the host")
    parser.add_argument("--worker")
    parser.add_argument("--data")
    args = parser.parse_args()
    if args.worker:
        sys.stdout.write(json.dumps(worker(args.worker, args.data, args.threshold, args.device)) + "\n")
        return
    if args.device:
        device_runs(args)
        return
    lines = []
    with tempfile.TemporaryDirectory() as folder:
        for n in args.sizes:
            path = os.path.join(folder, f"v{n}.npy")
            vectors = clustered_vectors(n)
            np.save(path, vectors)
            ours = run("greedy", path, args.threshold)
            kept, duplicate_of = np.load(path + ".greedy.kept.npy"), np.load(path + ".greedy.dup.npy")
            start = time.perf_counter()
            violations = verify(vectors, args.threshold, kept, duplicate_of)
            verify_seconds = time.perf_counter() - start
            if n * n * 4 <= MEMORY_LIMIT_BYTES:
                dense = run("dense", path, args.threshold)
                same = bool((np.load(path + ".dense.kept.npy") == kept).all())
                dense_gib = dense["peak_bytes"] / 2**30
                dense_cell = f"{dense['seconds']:.1f} s, {dense_gib:.2f} GiB, same kept set: {same}"
                memory_ratio = dense["peak_bytes"] / max(ours["peak_bytes"], 1)
                ratio = f"{dense['seconds'] / ours['seconds']:.2f}x faster, {memory_ratio:.1f}x less memory"
            else:
                dense_cell = f"skipped: the N x N matrix needs {n * n * 4 / 2**30:.0f} GiB"
                ratio = "n/a"
            removed = n - ours["kept"]
            ours_cells = f"{ours['seconds']:.1f} s | {ours['peak_bytes'] / 2**30:.2f} GiB"
            lines.append(
                f"| {n:,} | {removed:,} ({removed / n:.0%}) | {ours_cells} "
                f"| {dense_cell} | {ratio} | {violations} violations ({verify_seconds:.0f} s) |"
            )
            sys.stdout.write(lines[-1] + "\n")
    sizes = " ".join(map(str, args.sizes))
    command = f"python bench/bench_dedup_search.py --sizes {sizes} --threshold {args.threshold}"
    header = [
        f"\n### Dedup search, {datetime.date.today()}: `{command}`",
        f"Machine: {machine()}. Vectors: clustered, 1024-d, float16; threshold {args.threshold}; one group.",
        "",
        "| vectors | removed | greedy (ours) | peak memory above vectors | dense N x N baseline | ours vs dense "
        "| exactness check |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    with open(args.results, "a") as handle:
        handle.write("\n".join(header + lines) + "\n")


if __name__ == "__main__":
    main()
