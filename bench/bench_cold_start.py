"""Cold start: `deduplicate()` called once in a fresh process, against imagededup's search in a fresh process.

The parent writes 20K x 1024 isotropic clustered vectors (threshold 0.8, a quarter removed; the low-rank bound
does not engage, so the search runs its products at full dimension) as a Dataset on disk, one row per image, as
`bench_dedup_api.py` does. Then, round after round, it starts fresh Python processes, one per variant:
- `deduplicate (first on this machine)`: the content cache root is empty, so the bfloat16 speed probe runs;
- `deduplicate (probe remembered)`: the probe's record from an earlier process is read instead;
- `deduplicate, no BLAS limit`: as the last, with `devices.blas_threads` made a no-op (NumPy's BLAS keeps its
  threads during the low-rank bound's fit: the code before this issue);
- `imagededup`: its search on the same vectors (`bench_dedup_search.imagededup_search`).
Each child times its own call (imports excluded, listed apart) and reports it; the table gives the median over
rounds and each variant over imagededup's median. Goal (issue 25): the cold call <= 1/5 of imagededup's search.

usage: python bench/bench_cold_start.py [--size 20000] [--rounds 3] [--results bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
THRESHOLD = 0.8
VARIANTS = ("first", "remembered", "no-blas-limit", "imagededup")
LABELS = {
    "first": "`deduplicate()`, first on this machine (probe measured)",
    "remembered": "`deduplicate()`, probe remembered",
    "no-blas-limit": "`deduplicate()`, probe remembered, no BLAS thread limit (before)",
    "imagededup": "imagededup's search",
}


def child(variant: str, folder: str) -> None:
    """Run one variant in this (fresh) process and print one JSON line."""
    began = time.perf_counter()
    sys.path.insert(0, str(HERE))
    if variant == "imagededup":
        from bench_dedup_search import imagededup_search

        vectors = np.load(Path(folder) / "vectors.npy")
        imported = time.perf_counter() - began
        start = time.perf_counter()
        kept = imagededup_search(vectors, THRESHOLD)
        seconds = time.perf_counter() - start
        print(json.dumps({"seconds": seconds, "imports": imported, "removed": int((~kept).sum())}))
        return
    import datasets

    from llava_mixes.dedup import deduplicate, search

    if variant == "no-blas-limit":
        search.blas_threads = lambda limit: contextlib.nullcontext()
    datasets.disable_progress_bars()
    dataset = datasets.load_from_disk(str(Path(folder) / "dataset"))
    imported = time.perf_counter() - began
    start = time.perf_counter()
    splits = deduplicate(dataset, THRESHOLD, device=None)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "imports": imported, "removed": len(splits["removed"])}))


def run_child(variant: str, folder: str, cache_root: str) -> dict[str, float]:
    environment = {**os.environ, "LLAVA_MIXES_CACHE": cache_root, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, __file__, "--child", variant, "--folder", folder]
    began = time.perf_counter()
    done = subprocess.run(command, env=environment, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process"] = time.perf_counter() - began
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--results", default=str(HERE / "RESULTS.md"))
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.folder)
        return
    from bench_dedup_api import write_dataset
    from machine_info import host

    from llava_mixes.playground.synthetic import clustered_vectors

    with tempfile.TemporaryDirectory() as folder:
        vectors = clustered_vectors(args.size)
        np.save(Path(folder) / "vectors.npy", vectors)
        write_dataset(vectors, str(Path(folder) / "dataset"))
        cache_root = str(Path(folder) / "content_cache")
        times: dict[str, list[dict[str, float]]] = {variant: [] for variant in VARIANTS}
        for round_number in range(args.rounds):
            for variant in VARIANTS:
                if variant == "first":
                    shutil.rmtree(cache_root, ignore_errors=True)
                result = run_child(variant, folder, cache_root)
                times[variant].append(result)
                sys.stdout.write(f"round {round_number + 1} {variant}: {json.dumps(result)}\n")
                sys.stdout.flush()
    load = os.getloadavg()
    theirs = statistics.median(result["seconds"] for result in times["imagededup"])
    rows = []
    for variant in VARIANTS:
        seconds = [result["seconds"] for result in times[variant]]
        middle = statistics.median(seconds)
        imports = statistics.median(result["imports"] for result in times[variant])
        cells = [
            LABELS[variant],
            ", ".join(f"{value:.1f}" for value in seconds),
            f"{middle:.1f} s",
            f"{imports:.1f} s",
            f"{times[variant][0]['removed']:,}",
            "1" if variant == "imagededup" else f"**1/{theirs / middle:.1f}**",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    text = [
        f"\n### Cold start: `deduplicate()` once in a fresh process, {datetime.date.today()}: "
        f"`python bench/bench_cold_start.py --size {args.size} --rounds {args.rounds}`",
        f"Machine: {host()}, numpy {np.__version__}; load average after the run {load[0]:.1f} / {load[1]:.1f} / "
        f"{load[2]:.1f}. {args.size:,} x 1024 isotropic clustered vectors, threshold {THRESHOLD}, one group, a "
        "Dataset on disk; every call in its own fresh process, variants interleaved round by round.",
        "",
        "| variant | each round (s) | median | imports before the call | removed | median / imagededup's |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows,
    ]
    sys.stdout.write("\n".join(text) + "\n")
    with open(args.results, "a") as handle:
        handle.write("\n".join(text) + "\n")


if __name__ == "__main__":
    main()
