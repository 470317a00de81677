"""Decontamination search: time and peak memory of `decontam.range_search` (training vectors against benchmark
reference vectors, exact, blocked, float64 re-check) against faiss `IndexFlatIP.range_search` on the same
vectors in the same run, and whether both find the same (training, reference) pairs.

Data (1024-d, float16 unit vectors): `--references` random reference vectors; `--train` training vectors, of which
`--planted` (a fraction) are noisy copies of references (cosine about 0.93), the rest random. faiss gets the
unit vectors in float32 and a radius `threshold - 3e-4`; its pairs are then re-checked in float64 at the threshold,
as ours are, so the two pair sets must be identical. Each method runs in a fresh process; peak memory is that
process's peak RSS minus its RSS once the vectors are loaded.

usage: python bench/bench_decontam.py [--train 400000] [--references 50000] [--threshold 0.9]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine_info import host, peak_rss_bytes

DIM = 1024


def make_vectors(folder: Path, n_train: int, n_refs: int, planted: float, seed: int = 0) -> None:
    """Write `train.npy` and `refs.npy` (float16 unit vectors) under `folder`."""
    rng = np.random.default_rng(seed)
    refs = rng.standard_normal((n_refs, DIM), dtype=np.float32)
    refs /= np.linalg.norm(refs, axis=1, keepdims=True)
    np.save(folder / "refs.npy", refs.astype(np.float16))
    train = np.lib.format.open_memmap(folder / "train.npy", mode="w+", dtype=np.float16, shape=(n_train, DIM))
    copies = rng.random(n_train) < planted
    for start in range(0, n_train, 50000):
        stop = min(start + 50000, n_train)
        block = rng.standard_normal((stop - start, DIM), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        mask = copies[start:stop]
        picks = rng.integers(0, n_refs, int(mask.sum()))
        noisy = refs[picks] + rng.standard_normal((len(picks), DIM), dtype=np.float32) * (0.4 / np.sqrt(DIM))
        block[mask] = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
        train[start:stop] = block
    train.flush()


def run_method(method: str, folder: Path, threshold: float) -> dict[str, object]:
    """In this process: load the vectors, search, write the pairs, return time and peak memory."""
    import faiss

    from llava_mixes.decontam import range_search

    train, refs = np.load(folder / "train.npy"), np.load(folder / "refs.npy")
    loaded = peak_rss_bytes()
    start = time.perf_counter()
    if method == "llava_mixes":
        found = range_search(train, refs, threshold)
        query, reference = found.query, found.reference
    else:
        index = faiss.IndexFlatIP(DIM)
        index.add(refs.astype(np.float32))
        queries, references = [], []
        for block_start in range(0, len(train), 16384):
            block = train[block_start : block_start + 16384].astype(np.float32)
            lims, _, labels = index.range_search(block, threshold - 3e-4)
            rows = np.repeat(np.arange(len(block)), np.diff(lims).astype(np.int64)) + block_start
            queries.append(rows)
            references.append(labels.astype(np.int64))
        query, reference = np.concatenate(queries), np.concatenate(references)
        exact = np.einsum("ij,ij->i", train[query].astype(np.float64), refs[reference].astype(np.float64))
        norms = np.linalg.norm(train[query].astype(np.float64), axis=1) * np.linalg.norm(
            refs[reference].astype(np.float64), axis=1
        )
        keep = exact / norms >= threshold
        query, reference = query[keep], reference[keep]
    seconds = time.perf_counter() - start
    order = np.lexsort((reference, query))
    np.save(folder / f"{method}.pairs.npy", np.stack([query[order], reference[order]]).astype(np.int64))
    return {"seconds": seconds, "peak_mib": (peak_rss_bytes() - loaded) / 2**20, "pairs": len(query)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=400000)
    parser.add_argument("--references", type=int, default=50000)
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--planted", type=float, default=0.02)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.method:
        result = run_method(args.method, Path(args.folder), args.threshold)
        sys.stdout.write(json.dumps(result) + "\n")
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_vectors(folder, args.train, args.references, args.planted)
        sys.stdout.write(f"{host()}\n{args.train:,} training x {args.references:,} reference vectors, {DIM}-d, ")
        sys.stdout.write(f"threshold {args.threshold}\n")
        results = {}
        for method in ("faiss", "llava_mixes"):
            command = [
                sys.executable,
                __file__,
                "--method",
                method,
                "--folder",
                tmp,
                "--threshold",
                str(args.threshold),
            ]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"{method} failed:\n{done.stderr}")
            output = done.stdout
            results[method] = json.loads(output.strip().splitlines()[-1])
        base = results["faiss"]
        for method, result in results.items():
            sys.stdout.write(
                f"{method:12s} {result['seconds']:8.1f} s ({result['seconds'] / base['seconds']:.2f}x faiss)  "
                f"peak +{result['peak_mib']:8.0f} MiB ({result['peak_mib'] / max(base['peak_mib'], 1):.2f}x faiss)  "
                f"{result['pairs']:,} pairs\n"
            )
        same = np.array_equal(np.load(folder / "faiss.pairs.npy"), np.load(folder / "llava_mixes.pairs.npy"))
        sys.stdout.write(f"identical matches: {same}\n")


if __name__ == "__main__":
    main()
