"""Dedup search: time and peak memory of `greedy_keep_first` against baselines measured in the same run.

Data (1024-d, float16; see `llava_mixes.playground.synthetic`): `isotropic` clustered vectors at threshold 0.8 (the
worst case for pruning) and `clip-like` anisotropic vectors at threshold 0.9 (calibrated on the seed
study); about a quarter of the items are removed in both. Each method runs in a fresh process; peak
memory is that process's peak RSS minus its RSS once the vectors are loaded. Baselines:
- `imagededup`: its own search code on the same vectors (`get_cosine_similarity`, its per-row threshold
  loop and `get_files_to_remove`, i.e. `CNN.find_duplicates_to_remove` minus the encoder), where its
  N x N float16 matrix fits in memory. Install it with `make bench-deps`.
- `brute force`: the full N x N float32 similarity matrix, then the same rule row by row; where it fits.
- the ceiling: in the search's own process, just after it, the best-of-three rate of torch float32, torch
  bfloat16 and NumPy float32 products on the search's tile shape; the search's counted work (pairs scored x 2 x
  d, pruned tiles left out) over its wall time, as a fraction of the best of those rates, and the share of
  the wall time spent outside the products.
- exactness: an independent check of the result: no kept pair (i < j) reaches the threshold, and every
  removed item's `duplicate_of` is its most similar earlier kept item at or above the threshold (float32
  blocks, float64 re-check near the threshold). These properties define the result, so 0 means exact.

With `--device cuda` the search scores on the GPU (bfloat16 tiles, float64 re-check); results up to
200,000 vectors are compared with the host search's, row for row.

usage: python bench/bench_dedup_search.py [--sizes 20000 100000] [--data isotropic clip-like]
                                          [--device cuda] [--results bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
from machine_info import host, matmul_ceiling, peak_rss_bytes, roofline_line

from llava_mixes.playground.synthetic import clip_like_vectors, clustered_vectors

MEMORY_LIMIT_BYTES = 12 * 2**30
DATA = {"isotropic": (clustered_vectors, 0.8), "clip-like": (clip_like_vectors, 0.9)}


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def brute_force(vectors: np.ndarray, threshold: float) -> np.ndarray:
    unit = vectors.astype(np.float32)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    scores = unit @ unit.T
    kept = np.zeros(len(unit), dtype=bool)
    for item in range(len(unit)):
        kept[item] = not (scores[item, :item][kept[:item]] >= threshold).any()
    return kept


def imagededup_search(vectors: np.ndarray, threshold: float) -> np.ndarray:
    """imagededup's CNN search on given encodings, through its own functions (module docstring)."""
    root = Path(importlib.util.find_spec("imagededup").submodule_search_locations[0])
    for name in ("imagededup", "imagededup.utils", "imagededup.handlers", "imagededup.handlers.search"):
        module = types.ModuleType(name)  # skip the package inits, which import its torchvision models
        module.__path__ = [str(root.joinpath(*name.split(".")[1:]))]
        sys.modules[name] = module
    from imagededup.handlers.search.retrieval import get_cosine_similarity
    from imagededup.utils.general_utils import get_files_to_remove

    ids = np.array([f"image{index:07d}" for index in range(len(vectors))])
    scores = get_cosine_similarity(vectors.astype(np.float32), False, num_workers=os.cpu_count() or 1)
    np.fill_diagonal(scores, 2.0)
    duplicates = {ids[row]: list(ids[(line >= threshold) & (line < 2)]) for row, line in enumerate(scores)}
    removed = set(get_files_to_remove(duplicates))
    return np.array([identifier not in removed for identifier in ids])


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
        scores = np.where(kept_ids[None, :] < rows[:, None], scores, -2.0)
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
    duplicate_of, work = None, None
    if method == "greedy":
        from llava_mixes.dedup import search

        sizes = {"block_size": 8192, "tile_size": 262144} if device else {}
        result = search.greedy_keep_first(vectors, threshold, device=device, **sizes)
        kept, duplicate_of, work = result.kept, result.duplicate_of, result.work
    elif method == "brute-force":
        kept = brute_force(vectors, threshold)
    elif method == "imagededup":
        kept = imagededup_search(vectors, threshold)
    else:
        raise ValueError(method)
    out = {"seconds": time.perf_counter() - start, "kept": int(kept.sum())}
    out["peak_bytes"] = peak_rss_bytes() - baseline
    if work is not None and not device:
        wide = work.precision == "bfloat16"
        shape = (search.CPU_BFLOAT16_BLOCK, search.CPU_BFLOAT16_TILE) if wide else (1024, 16384)
        ceiling = matmul_ceiling(*shape, vectors.shape[1])
        out["roofline"] = roofline_line(work, out["seconds"], ceiling)
        out["ceiling"] = f"tile {shape[0]} x {shape[1]} x {vectors.shape[1]}: " + ", ".join(
            f"{name} {rate / 1e9:.0f}" for name, rate in ceiling.items() if name != "best"
        )
    if device:
        import torch

        out["gpu_peak_bytes"] = torch.cuda.max_memory_allocated()
    np.save(f"{path}.{method}.kept.npy", kept)
    if duplicate_of is not None:
        np.save(f"{path}.{method}.dup.npy", duplicate_of)
    return out


def run(method: str, path: str, threshold: float, device: str | None = None) -> dict[str, object]:
    command = [sys.executable, __file__, "--worker", method, "--vectors", path, "--threshold", str(threshold)]
    command += ["--device", device] if device else []
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def machine() -> str:
    return f"{host()}, numpy {np.__version__}"


def gib(count: float) -> str:
    return f"{count / 2**30:.2f} GiB"


def baseline_cell(name: str, path: str, threshold: float, ours: dict[str, float], kept: np.ndarray, fits: bool) -> str:
    if not fits:
        return "does not fit: N x N matrix"
    if name == "imagededup" and importlib.util.find_spec("imagededup") is None:
        return "not installed (make bench-deps)"
    other = run(name, path, threshold)
    same = bool((np.load(f"{path}.{name}.kept.npy") == kept).all())
    speed = other["seconds"] / ours["seconds"]
    return f"{other['seconds']:.1f} s, {gib(other['peak_bytes'])}; same kept set: {same}; ours {speed:.1f}x faster"


def host_runs(args: argparse.Namespace) -> None:
    lines, notes = [], []
    with tempfile.TemporaryDirectory() as folder:
        for data in args.data:
            make, threshold = DATA[data]
            for n in args.sizes:
                path = os.path.join(folder, f"{data}-{n}.npy")
                vectors = make(n)
                np.save(path, vectors)
                ours = run("greedy", path, threshold)
                kept, duplicate_of = np.load(f"{path}.greedy.kept.npy"), np.load(f"{path}.greedy.dup.npy")
                start = time.perf_counter()
                violations = verify(vectors, threshold, kept, duplicate_of)
                check = f"{violations} violations ({time.perf_counter() - start:.0f} s)"
                matrix_fits = n * n * 4 <= MEMORY_LIMIT_BYTES
                imagededup = baseline_cell("imagededup", path, threshold, ours, kept, matrix_fits)
                brute = baseline_cell("brute-force", path, threshold, ours, kept, matrix_fits)
                removed = n - ours["kept"]
                lines.append(
                    f"| {data} ({threshold}) | {n:,} | {removed:,} ({removed / n:.0%}) | {ours['seconds']:.1f} s "
                    f"| {gib(ours['peak_bytes'])} | {imagededup} | {brute} | {check} |"
                )
                sys.stdout.write(lines[-1] + "\n")
                notes.append(f"- {data}, {n:,}: {ours['roofline']}. Ceiling (GFLOP/s), {ours['ceiling']}.")
                sys.stdout.write(notes[-1] + "\n")
                sys.stdout.flush()
    header = [
        f"\n### Dedup search, {datetime.date.today()}: `python bench/bench_dedup_search.py --sizes "
        f"{' '.join(map(str, args.sizes))} --data {' '.join(args.data)}`",
        f"Machine: {machine()}. 1024-d float16 vectors, one scope.",
        "",
        "| data (threshold) | vectors | removed | greedy search (ours) | ours: peak memory above the vectors "
        "| imagededup | brute force (N x N) | exactness check |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    roofline = ["", "The search against this machine's matrix-product ceiling, measured in the search's own process:"]
    with open(args.results, "a") as handle:
        handle.write("\n".join(header + lines + roofline + notes) + "\n")


def device_runs(args: argparse.Namespace) -> None:
    """GPU search at each size, compared with the host search where that finishes in reasonable time."""
    import torch

    lines = []
    with tempfile.TemporaryDirectory() as folder:
        for data in args.data:
            make, threshold = DATA[data]
            for n in args.sizes:
                path = os.path.join(folder, f"{data}-{n}.npy")
                np.save(path, make(n))
                gpu = run("greedy", path, threshold, args.device)
                gpu_kept, gpu_dup = np.load(f"{path}.greedy.kept.npy"), np.load(f"{path}.greedy.dup.npy")
                host_cell, ratio = "not run (hours on the host)", "n/a"
                if n <= 200_000:
                    host = run("greedy", path, threshold)
                    same = bool(
                        (np.load(f"{path}.greedy.kept.npy") == gpu_kept).all()
                        and (np.load(f"{path}.greedy.dup.npy") == gpu_dup).all()
                    )
                    host_cell = f"{host['seconds']:.1f} s; same kept set and duplicate_of: {same}"
                    ratio = f"{host['seconds'] / gpu['seconds']:.1f}x"
                removed = n - gpu["kept"]
                lines.append(
                    f"| {data} ({threshold}) | {n:,} | {removed:,} ({removed / n:.0%}) | {gpu['seconds']:.1f} s "
                    f"| {gib(gpu['gpu_peak_bytes'])} | {host_cell} | {ratio} |"
                )
                sys.stdout.write(lines[-1] + "\n")
                sys.stdout.flush()
    header = [
        f"\n### Dedup search on {torch.cuda.get_device_name(0)}, {datetime.date.today()}: "
        f"`python bench/bench_dedup_search.py --device {args.device} --sizes {' '.join(map(str, args.sizes))} "
        f"--data {' '.join(args.data)}`",
        f"Host: {machine()}. GPU: bfloat16 tiles of 8,192 x 262,144, float64 re-check within 5e-3.",
        "",
        "| data (threshold) | vectors | removed | GPU search | GPU peak memory | host search | GPU vs host |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    with open(args.results, "a") as handle:
        handle.write("\n".join(header + lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20000, 100000])
    parser.add_argument("--data", nargs="+", choices=sorted(DATA), default=["isotropic", "clip-like"])
    parser.add_argument("--results", default=str(Path(__file__).with_name("RESULTS.md")))
    parser.add_argument("--device", help="a torch device (cuda) to score on; default: NumPy on the host")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--vectors", help=argparse.SUPPRESS)
    parser.add_argument("--threshold", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        sys.stdout.write(json.dumps(worker(args.worker, args.vectors, args.threshold, args.device)) + "\n")
    elif args.device:
        device_runs(args)
    else:
        host_runs(args)


if __name__ == "__main__":
    main()
