"""Global-scope dedup of 1M x 1024 vectors: the exact search's memory and projected time, and the
approximate (`ivf`) search's time and recall, against the exact search on a 100K subsample, same run.

- baseline: the exact search over the first `--subsample` vectors, run to the end.
- exact, full size: run under a time budget (`--exact-seconds`) while its peak memory is polled; the
  total time is projected from its progress (each block costs time in proportion to the kept items
  before it, so time grows as the square of the items done: a least-squares fit of t = a*m + b*m^2).
- approximate, full size: `llava_mixes.dedup.ann` (faiss k-means cells, 16 query-side probes), run to the end.
  Recall: for `--recall-queries` random items, every pair with an exact cosine >= threshold against all
  other items, and the share of them among the candidate pairs the approximate search found. Agreement:
  the approximate search on the subsample against the exact one, decision by decision.
Peak memory is the child process's peak RSS minus its RSS once the vectors (float16) are loaded.

usage: python bench/bench_dedup_global.py [--size 1000000] [--data isotropic] [--exact-seconds 600]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine_info import host

from llava_mixes.playground.synthetic import clip_like_vectors, clustered_vectors

DATA = {"isotropic": (clustered_vectors, 0.8), "clip-like": (clip_like_vectors, 0.9)}


def status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(field))


def child(mode: str, path: str, threshold: float, rows: int) -> None:
    """Runs in a subprocess: prints `loaded <rss>`, progress lines, then a JSON result."""
    vectors = np.load(path, mmap_mode="r")[:rows]
    vectors = np.ascontiguousarray(vectors)
    sys.stdout.write(f"loaded {status_kib(os.getpid(), 'VmRSS:')}\n")
    sys.stdout.flush()
    start = time.perf_counter()
    if mode == "exact":
        from llava_mixes.dedup.search import greedy_keep_first

        def progress(done: int) -> None:
            sys.stdout.write(f"progress {done} {time.perf_counter() - start:.3f}\n")
            sys.stdout.flush()

        result = greedy_keep_first(vectors, threshold, progress=progress)
        np.save(f"{path}.exact{rows}.npy", result.kept)
    else:
        from llava_mixes.dedup.ann import assign_cells, candidate_pairs, keep_first_over_pairs
        from llava_mixes.dedup.search import FLOAT32_TOLERANCE
        from llava_mixes.vectors import checked_norms

        norms = checked_norms(vectors)
        assigned = assign_cells(vectors, norms, int(np.clip(rows // 1000, 1, 4096)), 16)
        pairs = candidate_pairs(vectors, norms, threshold - FLOAT32_TOLERANCE, assigned)
        result = keep_first_over_pairs(vectors, norms, pairs, threshold)
        np.save(f"{path}.ivf{rows}.pairs.npy", pairs)
        np.save(f"{path}.ivf{rows}.npy", result.kept)
    seconds = time.perf_counter() - start
    sys.stdout.write(json.dumps({"seconds": seconds, "kept": int(result.kept.sum())}) + "\n")


def run(mode: str, path: str, threshold: float, rows: int, budget: float | None = None) -> dict[str, object]:
    command = [sys.executable, __file__, "--child", mode, "--vectors", path, "--threshold", str(threshold)]
    log = Path(f"{path}.{mode}{rows}.log")
    with log.open("w") as output:
        process = subprocess.Popen([*command, "--rows", str(rows)], stdout=output)
        started, peak_kib = time.perf_counter(), 0
        while process.poll() is None:
            peak_kib = max(peak_kib, status_kib(process.pid, "VmHWM:"))
            if budget is not None and time.perf_counter() - started > budget:
                process.kill()
            time.sleep(0.5)
    lines = log.read_text().splitlines()
    loaded_kib = next(int(line.split()[1]) for line in lines if line.startswith("loaded"))
    progress = [tuple(float(value) for value in line.split()[1:]) for line in lines if line.startswith("progress")]
    result = next((json.loads(line) for line in lines if line.startswith("{")), None)
    return {"result": result, "progress": progress, "peak_bytes": (peak_kib - loaded_kib) * 1024}


def projected_seconds(progress: list[tuple[float, float]], total: int) -> float:
    done = np.array([point[0] for point in progress])
    seconds = np.array([point[1] for point in progress])
    (linear, square), *_ = np.linalg.lstsq(np.stack([done, done**2], axis=1), seconds, rcond=None)
    return float(linear * total + square * total**2)


def recall(vectors: np.ndarray, threshold: float, pairs: np.ndarray, queries: int) -> tuple[float, int]:
    n = len(vectors)
    found = set((pairs[:, 0] * n + pairs[:, 1]).tolist())
    picked = np.random.default_rng(7).choice(n, queries, replace=False)
    unit_queries = vectors[picked].astype(np.float32)
    unit_queries /= np.linalg.norm(unit_queries, axis=1, keepdims=True)
    hits = total = 0
    for start in range(0, n, 65536):
        block = vectors[start : start + 65536].astype(np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        rows, cols = np.nonzero(unit_queries @ block.T >= threshold)
        for query, other in zip(picked[rows], cols + start, strict=True):
            if query != other:
                total += 1
                hits += (max(query, other) * n + min(query, other)) in found
    return hits / max(total, 1), total


def gib(count: float) -> str:
    return f"{count / 2**30:.2f} GiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--subsample", type=int, default=100_000)
    parser.add_argument("--data", choices=sorted(DATA), default="isotropic")
    parser.add_argument("--exact-seconds", type=float, default=600)
    parser.add_argument("--recall-queries", type=int, default=2000)
    parser.add_argument("--results", default=str(Path(__file__).with_name("RESULTS.md")))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--vectors", help=argparse.SUPPRESS)
    parser.add_argument("--threshold", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.vectors, args.threshold, args.rows)
        return
    make, threshold = DATA[args.data]
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "vectors.npy")
        np.save(path, make(args.size))
        baseline = run("exact", path, threshold, args.subsample)
        partial = run("exact", path, threshold, args.size, budget=args.exact_seconds)
        approximate = run("ivf", path, threshold, args.size)
        small_approximate = run("ivf", path, threshold, args.subsample)
        vectors = np.load(path, mmap_mode="r")
        found, pairs = recall(vectors, threshold, np.load(f"{path}.ivf{args.size}.pairs.npy"), args.recall_queries)
        agreement = (np.load(f"{path}.ivf{args.subsample}.npy") == np.load(f"{path}.exact{args.subsample}.npy")).mean()
    done = int(partial["progress"][-1][0]) if partial["progress"] else 0
    projection = projected_seconds(partial["progress"], args.size) if len(partial["progress"]) > 2 else float("nan")
    removed = args.size - approximate["result"]["kept"]
    if partial["result"] is not None:
        exact_time, exact_peak = f"{partial['result']['seconds']:.0f} s (ran to the end)", "peak"
    else:
        exact_time = f"projected {projection / 3600:.1f} h ({done:,} items in {args.exact_seconds:.0f} s)"
        exact_peak = f"peak in the first {args.exact_seconds:.0f} s"
    lines = [
        f"| exact, {args.subsample:,} subsample (baseline) | {baseline['result']['seconds']:.0f} s | "
        f"{gib(baseline['peak_bytes'])} | {args.subsample - baseline['result']['kept']:,} removed |",
        f"| exact, {args.size:,} | {exact_time} | {gib(partial['peak_bytes'])} ({exact_peak}) "
        "| exact by construction |",
        f"| approximate (`ivf`), {args.size:,} | {approximate['result']['seconds'] / 60:.1f} min | "
        f"{gib(approximate['peak_bytes'])} | {removed:,} removed; recall {found:.4f} of {pairs:,} pairs >= "
        f"{threshold}; on the subsample ({small_approximate['result']['seconds']:.0f} s) {agreement:.4f} of "
        "decisions equal the exact search's |",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    header = [
        f"\n### Global dedup of {args.size:,} vectors, {datetime.date.today()}: `python bench/bench_dedup_global.py "
        f"--size {args.size} --data {args.data} --exact-seconds {args.exact_seconds:.0f}`",
        f"Machine: {host()}. Data: {args.data} (threshold {threshold}), 1024-d float16, one scope.",
        "",
        "| search | time | peak memory above the vectors | result |",
        "| --- | --- | --- | --- |",
    ]
    with open(args.results, "a") as handle:
        handle.write("\n".join(header + lines) + "\n")


if __name__ == "__main__":
    main()
