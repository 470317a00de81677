"""The public API's tax: `deduplicate()` on a Dataset carrying an `embedding` column against the search alone.

For each size, in one process: 1024-d isotropic clustered vectors (threshold 0.8, about a quarter removed,
the low-rank bound does not engage; see `llava_mixes.playground.synthetic`) are written as a Dataset on
disk (one row per image, one image group, the `embedding` column float32) and loaded memory-mapped, as a
built config is. Then:
- `search alone`: `greedy_keep_first` on the same vectors already in a NumPy array;
- `deduplicate()`: the whole call (column to NumPy, the decisions, the `train` and `removed` splits and
  their statistics), with the search it runs inside timed on its own;
- the matrix-product ceiling of this machine on the search's tile shape (`machine_info.matmul_ceiling`).
The tax is (deduplicate - its own search) / its own search; the goal is <= 20%.
With `--imagededup` (20K only: its N x N matrix) the same vectors go through imagededup's search
(`bench_dedup_search.imagededup_search`) and a brute-force N x N float32 search, in the same process.

usage: python bench/bench_dedup_api.py [--sizes 20000 100000] [--imagededup] [--results bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
from bench_dedup_search import brute_force, imagededup_search
from machine_info import host, matmul_ceiling, roofline_line

from llava_mixes import schema
from llava_mixes.dedup import search
from llava_mixes.playground.synthetic import clustered_vectors

THRESHOLD = 0.8
api = importlib.import_module("llava_mixes.dedup.deduplicate")  # the module: the package exports its function


def write_dataset(vectors: np.ndarray, folder: str) -> datasets.Dataset:
    """One row per image in one group, the vectors as the float32 `embedding` column, saved and memory-mapped."""
    n, dim = vectors.shape
    flat = pa.array(vectors.astype(np.float32).reshape(-1))
    table = pa.table(
        {
            schema.ID: [f"row{index:07d}" for index in range(n)],
            schema.IMAGE_PATH: [f"images/{index:07d}.jpg" for index in range(n)],
            schema.IMAGE_SHA256: [f"{index:064x}" for index in range(n)],
            schema.IMAGE_GROUP: ["coco"] * n,
            schema.EMBEDDING: pa.FixedSizeListArray.from_arrays(flat, dim),
        }
    )
    datasets.Dataset(table).save_to_disk(folder)
    return datasets.load_from_disk(folder)


def timed_api(dataset: datasets.Dataset) -> tuple[float, float, datasets.DatasetDict]:
    """Seconds of the whole `deduplicate()` call and of the search inside it."""
    inner = {"seconds": 0.0}
    original = api.greedy_keep_first

    def timed(*args: object, **kwargs: object) -> search.KeepResult:
        began = time.perf_counter()
        result = original(*args, **kwargs)
        inner["seconds"] += time.perf_counter() - began
        return result

    api.greedy_keep_first = timed
    try:
        began = time.perf_counter()
        splits = api.deduplicate(dataset, THRESHOLD, device=None)
        return time.perf_counter() - began, inner["seconds"], splits
    finally:
        api.greedy_keep_first = original


def one_size(n: int, with_imagededup: bool) -> tuple[str, str]:
    vectors = clustered_vectors(n)
    with tempfile.TemporaryDirectory() as folder:
        dataset = write_dataset(vectors, folder)
        began = time.perf_counter()
        alone = search.greedy_keep_first(vectors, THRESHOLD)
        alone_seconds = time.perf_counter() - began
        api_seconds, inner_seconds, splits = timed_api(dataset)
        kept_rows = np.zeros(n, dtype=bool)
        kept_rows[[int(row_id[3:]) for row_id in splits[schema.TRAIN_SPLIT][schema.ID]]] = True
    same = bool((kept_rows == alone.kept).all())
    wide = alone.work.precision == "bfloat16"
    shape = (search.CPU_BFLOAT16_BLOCK, search.CPU_BFLOAT16_TILE) if wide else (1024, 16384)
    ceiling = matmul_ceiling(*shape, vectors.shape[1])
    tax = (api_seconds - inner_seconds) / inner_seconds
    cells = [
        f"{n:,}",
        f"{n - int(alone.kept.sum()):,}",
        f"{alone_seconds:.1f} s",
        f"{api_seconds:.1f} s (its search {inner_seconds:.1f} s)",
        f"**{tax:.0%}**",
        f"{api_seconds / alone_seconds - 1:.0%}",
        str(same),
    ]
    if with_imagededup:
        if importlib.util.find_spec("imagededup") is None:
            cells.append("not installed (make bench-deps)")
        else:
            began = time.perf_counter()
            theirs = imagededup_search(vectors, THRESHOLD)
            theirs_seconds = time.perf_counter() - began
            brute = brute_force(vectors, THRESHOLD)
            cells.append(
                f"{theirs_seconds:.1f} s: ours (whole call) {theirs_seconds / api_seconds:.1f}x faster; "
                f"kept set equal to brute force (N x N float32): ours {bool((kept_rows == brute).all())}, "
                f"imagededup {bool((theirs == brute).all())}"
            )
    else:
        cells.append("not run")
    note = f"- {n:,}: search alone: {roofline_line(alone.work, alone_seconds, ceiling)}"
    return "| " + " | ".join(cells) + " |", note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20000, 100000])
    parser.add_argument("--imagededup", action="store_true", help="also run imagededup's search at sizes <= 20000")
    parser.add_argument("--results", default=str(Path(__file__).with_name("RESULTS.md")))
    args = parser.parse_args()
    datasets.disable_progress_bars()
    lines, notes = [], []
    for n in args.sizes:
        line, note = one_size(n, args.imagededup and n <= 20000)
        lines.append(line)
        notes.append(note)
        sys.stdout.write(line + "\n" + note + "\n")
        sys.stdout.flush()
    flags = " --imagededup" if args.imagededup else ""
    text = [
        f"\n### `deduplicate()` on an `embedding` column against the search alone, {datetime.date.today()}: "
        f"`python bench/bench_dedup_api.py --sizes {' '.join(map(str, args.sizes))}{flags}`",
        f"Machine: {host()}, numpy {np.__version__}. Isotropic clustered 1024-d vectors, threshold {THRESHOLD}, "
        "one group, a Dataset on disk (memory-mapped).",
        "",
        "| rows | removed | search alone | `deduplicate()` | API tax (call - its search) / its search "
        "| call / search alone - 1 | same kept set | imagededup's search, same vectors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *lines,
        "",
        "The search alone against this machine's matrix-product ceiling, measured in the same process:",
        *notes,
    ]
    with open(args.results, "a") as handle:
        handle.write("\n".join(text) + "\n")


if __name__ == "__main__":
    main()
