"""Copy detection on a seeded playground: recall per transformation and false removals of `thumbnail` and
`gradients` at several thresholds, and their speed against a bare decode loop over the same files.

Playground (`copy_playground.py`): `--singles` unrelated photo-like scenes and `--sibling-pairs` pairs of
look-alike scenes (same palette, horizon and coarse layout; new texture, shapes and grain), all distinct
pictures; then `--copies` planted copies per transformation (re-encode at quality 50-95, resize 50-150%,
crop 2-10% per side, brightness or contrast x0.8-1.2, grey), each of a different distinct picture.

- recall: the share of planted (original, copy) pairs whose cosine is at or above the threshold.
- distinct removed: keep-first dedup (the package's rule) over the distinct pictures alone, in order; the
  share it removes. Every one of them is a false removal, since no distinct picture copies another.
- speed: read and fully decode each file with PIL in as many threads as there are cores (the baseline),
  against `engines.embed_in_process` into a fresh embedding cache with as many decode threads (read,
  SHA-256 check, decode, embed, commit). Rounds alternate between the three; the median of each is shown.

usage: python bench/bench_copy_detection.py [--seed 0] [--singles 400] [--sibling-pairs 100] [--copies 50]
       [--thresholds 0.7 0.75 0.8 0.85 0.9 0.95] [--rounds 3] [--results [bench/RESULTS.md]]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from bench_embed_thumbnail import bare_decode
from copy_playground import TRANSFORMATIONS, Copy, playground
from machine_info import host, show_and_append

from llava_mixes.embedding.cache import EmbeddingCache, ImageRef
from llava_mixes.embedding.copy import GradientsEmbedder
from llava_mixes.embedding.embedders import Embedder, ThumbnailEmbedder
from llava_mixes.embedding.engines import embed_in_process

RESULTS = Path(__file__).with_name("RESULTS.md")


def embedders() -> dict[str, Embedder]:
    return {"thumbnail": ThumbnailEmbedder(), "gradients": GradientsEmbedder()}


def keep_first_removed(vectors: np.ndarray, threshold: float) -> int:
    """How many vectors keep-first dedup removes: each one scoring `threshold` or more with a kept earlier one."""
    similarity = vectors @ vectors.T
    kept = np.zeros(len(vectors), dtype=bool)
    for index in range(len(vectors)):
        kept[index] = not bool((similarity[index, :index][kept[:index]] >= threshold).any())
    return int((~kept).sum())


def look_alike_row(name: str, distinct: np.ndarray, families: list[int]) -> str:
    """The cosine of the look-alike pairs (two distinct pictures of one family): median, 90th percentile, max."""
    pairs = [index for index in range(1, len(families)) if families[index] == families[index - 1]]
    scores = np.einsum("ij,ij->i", distinct[pairs], distinct[[index - 1 for index in pairs]])
    median, high = np.median(scores), np.percentile(scores, 90)
    return f"| `{name}` | {len(pairs)} | {median:.2f} | {high:.2f} | {scores.max():.2f} |"


def accuracy_rows(
    name: str, embedder: Embedder, pictures: list[bytes], copies: list[Copy], thresholds: list[float]
) -> tuple[list[str], np.ndarray]:
    """One table row per threshold (recall per transformation, over all copies, and distinct removed), and
    the vectors of the distinct pictures."""
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        distinct = np.stack(list(pool.map(embedder.prepare, pictures)))
        copied = np.stack(list(pool.map(embedder.prepare, [copy.data for copy in copies])))
    pair_scores = np.einsum("ij,ij->i", distinct[[copy.original for copy in copies]], copied)
    kinds = np.array([copy.transformation for copy in copies])
    rows = []
    for threshold in thresholds:
        found = pair_scores >= threshold - 1e-6
        per_kind = [f"{found[kinds == kind].mean():.2f}" for kind in TRANSFORMATIONS]
        removed = keep_first_removed(distinct, threshold - 1e-6)
        rows.append(
            f"| `{name}` | {threshold:.2f} | {' | '.join(per_kind)} | **{found.mean():.3f}** "
            f"({int(found.sum())}/{len(found)}) | **{removed / len(distinct):.1%}** ({removed}/{len(distinct)}) |"
        )
    return rows, distinct


def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def speed_rows(files: list[bytes], rounds: int) -> list[str]:
    """The median rate of the bare decode loop and of each embedder into a fresh cache, same files, same run."""
    cores = os.cpu_count() or 1
    seconds: dict[str, list[float]] = {"bare decode": []}
    with tempfile.TemporaryDirectory() as scratch:
        paths = []
        for index, data in enumerate(files):
            paths.append(Path(scratch) / f"{index:06d}.jpg")
            paths[-1].write_bytes(data)
        refs = [ImageRef(hashlib.sha256(p.read_bytes()).hexdigest(), str(p), i) for i, p in enumerate(paths)]
        for round_index in range(rounds):
            seconds["bare decode"].append(timed(lambda: bare_decode(paths, cores)))
            for name, embedder in embedders().items():
                cache = EmbeddingCache(Path(scratch) / f"cache-{round_index}", embedder)
                seconds.setdefault(name, []).append(timed(lambda c=cache: embed_in_process(c, refs, None, 256, cores)))
    rates = {name: len(files) / statistics.median(values) for name, values in seconds.items()}
    bare = rates["bare decode"]
    return [f"| {name} | {rate:,.0f} img/s | {rate / bare:.0%} |" for name, rate in rates.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--singles", type=int, default=400)
    parser.add_argument("--sibling-pairs", type=int, default=100)
    parser.add_argument("--copies", type=int, default=50, help="planted copies per transformation")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.7, 0.75, 0.8, 0.85, 0.9, 0.95])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--results", nargs="?", const=str(RESULTS), default=None, help="append the tables here")
    args = parser.parse_args()
    pictures, families, copies = playground(args.singles, args.sibling_pairs, args.copies, args.seed)
    accuracy = [
        "| embedder | threshold | " + " | ".join(TRANSFORMATIONS) + " | recall, all copies | distinct removed |",
        "| --- | ---: |" + " ---: |" * len(TRANSFORMATIONS) + " ---: | ---: |",
    ]
    look_alike = [
        "| embedder | look-alike pairs | median cosine | 90th percentile | max |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, embedder in embedders().items():
        rows, distinct = accuracy_rows(name, embedder, pictures, copies, args.thresholds)
        accuracy += rows
        look_alike.append(look_alike_row(name, distinct, families))
    speed = [
        "| decode loop or embedder | rate | / bare decode |",
        "| --- | ---: | ---: |",
        *speed_rows(pictures + [copy.data for copy in copies], args.rounds),
    ]
    command = " ".join(["python bench/bench_copy_detection.py", *sys.argv[1:]])
    block = [
        f"\n### Copy detection on the seeded playground, {datetime.date.today()}: `{command}`",
        f"Machine: {host()}; {os.cpu_count()} threads on every side. {len(pictures)} distinct pictures "
        f"({args.singles} unrelated, {args.sibling_pairs} look-alike pairs), {len(copies)} planted copies; "
        "the transformation columns are recall.",
        "",
        *accuracy,
        "",
        "Look-alike pairs (two distinct pictures of one kind of shot), the hardest distinct pictures to keep apart:",
        "",
        *look_alike,
        "",
        f"Speed over the same {len(pictures) + len(copies)} files, median of {args.rounds} rounds:",
        "",
        *speed,
    ]
    show_and_append(block, args.results)


if __name__ == "__main__":
    main()
