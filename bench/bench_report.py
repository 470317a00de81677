"""The report's analysis against the config's dedup search, on the same cached vectors, in one run.

Data: `--images` synthetic CLIP-like 1024-d vectors (`clip_like_vectors`) over the 665K mix's six image groups
in its proportions (coco, gqa, ocr_vqa, textvqa, VG_100K, VG_100K_2), each group's mean direction turned away
from the others' (book covers, photos and scenes differ), 0.2% of the images byte-identical copies of an image
of another group (same SHA-256, another path) and 0.2% near copies across groups. One row per image, saved as
a Dataset and memory-mapped; the vectors go into a real `EmbeddingCache` (keyed by the rows' SHA-256).

Measured in one process: (a) `deduplicate(dataset, 0.8, "group", embeddings=cache)`: the whole call and its
search (`greedy_keep_first`, with its `KeepResult.work`), and the search at 0.9, the highest shown threshold;
(b) `analyse` (what `llava-mixes report` runs: the group sweep and the cross-group pass) and the report's figures
and `sweep.json` from it. The gallery's thumbnails and the row samples are not part of it (there are no image
files). The check: the report's kept images at 0.8 equal `deduplicate`'s.

With `--cross-group-modes`, instead: `analyse` on the same data with the cross-group pass skipped, sampled
(`--cross-group-sample`) and exact, in one process, `--rounds` times in turn: each call's time, the medians, the
cross-group part's (over `skip`'s) and what the pass says (the sample's measured recall).

usage: python bench/bench_report.py [--images 50000] [--results [bench/RESULTS.md]] [--profile] [--memory]
       [--cross-group-modes [--cross-group-sample 0.3]]
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import functools
import importlib
import io
import json
import multiprocessing
import os
import pstats
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
from machine_info import host, matmul_ceiling, peak_rss_bytes, roofline_line

from llava_mixes import schema
from llava_mixes.dedup.search import KeepResult, SearchWork
from llava_mixes.dedup.sweep import sweep_pass
from llava_mixes.embedding.cache import EmbeddingCache, vector_table
from llava_mixes.embedding.embedders import ThumbnailEmbedder
from llava_mixes.playground.synthetic import clip_like_vectors
from llava_mixes.report import analysis as report_analysis
from llava_mixes.report.plots import nearest_png, sweep_png

api = importlib.import_module("llava_mixes.dedup.deduplicate")  # the module: the package exports its function
GROUPS = {"coco": 0.547, "gqa": 0.108, "ocr_vqa": 0.120, "textvqa": 0.033, "VG_100K": 0.130, "VG_100K_2": 0.062}
THRESHOLD = 0.8
TURN = 0.65  # radians each group's mean direction is turned, each towards its own direction
COPIES = 0.002
HIGHEST = 0.9
"""The highest threshold the report shows: the sweep decides it too, and the dedup search there (more images kept,
so more to compare) is what deciding that one threshold alone costs."""


SPREAD = 1.0
"""`clip_like_vectors`' latent spread here: 0.75 (its default, calibrated at 0.9 alone) keeps 2% at 0.8 where the
seed study's 665K tables keep 6-38% per group (coco 17.8%); 1.0 keeps 17.8% at 0.8 and 78% at 0.9 at 40K in one
group, 12.1% and 77% at 90K (the study's coco: 17.8% and 74%)."""


def grouped_vectors(n: int, seed: int = 0, spread: float = SPREAD) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectors (float16), a group index per image, and the images that are byte copies (-1 elsewhere)."""
    rng = np.random.default_rng(seed)
    vectors = clip_like_vectors(n, seed=seed, spread=spread)
    share = np.asarray(list(GROUPS.values()))
    labels = rng.choice(len(share), n, p=share / share.sum())
    mean = vectors[:4096].astype(np.float64).mean(axis=0)
    mean /= np.linalg.norm(mean)
    turns = rng.standard_normal((len(share), vectors.shape[1]))
    turns -= np.outer(turns @ mean, mean)
    turns /= np.linalg.norm(turns, axis=1, keepdims=True)
    for start in range(0, n, 65536):
        part = vectors[start : start + 65536].astype(np.float64)
        along = part @ mean
        part += (
            np.outer(along, mean) * (np.cos(TURN) - 1)
            + along[:, None] * np.sin(TURN) * turns[labels[start:][: len(part)]]
        )
        vectors[start : start + len(part)] = part / np.linalg.norm(part, axis=1, keepdims=True)
    copy_of = np.full(n, -1, dtype=np.int64)
    late = rng.choice(np.arange(n // 2, n), int(2 * COPIES * n), replace=False)
    for item in late:
        earlier = int(rng.integers(0, item))
        if labels[earlier] == labels[item]:
            continue
        if len(copy_of[copy_of >= 0]) < COPIES * n:
            copy_of[item] = earlier
            vectors[item] = vectors[earlier]
        else:
            nudge = vectors[earlier].astype(np.float64) + rng.standard_normal(vectors.shape[1]) * 0.01
            vectors[item] = nudge / np.linalg.norm(nudge)
    for item in np.flatnonzero(copy_of >= 0):  # a copy of a later-made copy copies that one's original
        while copy_of[copy_of[item]] >= 0:
            copy_of[item] = copy_of[copy_of[item]]
        vectors[item] = vectors[copy_of[item]]
    return vectors, labels, copy_of


def write_inputs(root: Path, n: int, spread: float = SPREAD) -> tuple[datasets.Dataset, EmbeddingCache, int]:
    """The Dataset on disk and the filled cache; returns how many byte copies were planted."""
    vectors, labels, copy_of = grouped_vectors(n, spread=spread)
    names = list(GROUPS)
    hashes = [f"{index:064x}" for index in range(n)]
    hashes = [hashes[copy_of[index]] if copy_of[index] >= 0 else hashes[index] for index in range(n)]
    table = pa.table(
        {
            schema.ID: [f"row{index:07d}" for index in range(n)],
            schema.IMAGE_PATH: [f"{names[group]}/{index:07d}.jpg" for index, group in enumerate(labels)],
            schema.IMAGE_SHA256: hashes,
            schema.IMAGE_GROUP: [names[group] for group in labels],
        }
    )
    datasets.Dataset(table).save_to_disk(str(root / "rows"))
    cache = EmbeddingCache(root / "content", ThumbnailEmbedder(32))
    distinct = np.flatnonzero(copy_of < 0)
    for start in range(0, len(distinct), 65536):
        part = distinct[start : start + 65536]
        cache.store.commit(vector_table([hashes[index] for index in part], vectors[part], [None] * len(part)))
    return datasets.load_from_disk(str(root / "rows")), cache, int((copy_of >= 0).sum())


def timed_dedup(
    dataset: datasets.Dataset, cache: EmbeddingCache, threshold: float = THRESHOLD
) -> tuple[float, float, SearchWork, int]:
    """Seconds of the whole `deduplicate()` call at `threshold` and of its searches, their summed work, and the
    kept rows."""
    spent = {"seconds": 0.0}
    work = SearchWork()
    original = api.greedy_keep_first

    def timed(*args: object, **kwargs: object) -> KeepResult:
        began = time.perf_counter()
        result = original(*args, **kwargs)
        spent["seconds"] += time.perf_counter() - began
        for name in ("scored_pairs", "bounded_pairs", "product_seconds", "bound_seconds", "rechecked_pairs"):
            setattr(work, name, getattr(work, name) + getattr(result.work, name))
        work.dim, work.precision, work.rank = result.work.dim, result.work.precision, max(work.rank, result.work.rank)
        return result

    api.greedy_keep_first = timed
    try:
        began = time.perf_counter()
        splits = api.deduplicate(dataset, threshold, "group", device=None, embeddings=cache)
        return time.perf_counter() - began, spent["seconds"], work, splits[schema.TRAIN_SPLIT].num_rows
    finally:
        api.greedy_keep_first = original


def full_analysis(
    dataset: datasets.Dataset, cache: EmbeddingCache, pruned: report_analysis.DedupAnalysis
) -> tuple[float, bool]:
    """Seconds of `analyse` with the sweep's pruning off (every pair scored, as before it had one), and whether
    its tables and pairs equal the pruned analysis's."""
    original = report_analysis.sweep_pass
    report_analysis.sweep_pass = functools.partial(sweep_pass, prune=False)
    try:
        began = time.perf_counter()
        full = report_analysis.analyse(dataset, cache, "bench", per_band=3)
        seconds = time.perf_counter() - began
    finally:
        report_analysis.sweep_pass = original
    same = full.tables == pruned.tables and [
        (pair.earlier.path, pair.later.path, pair.band) for pair in full.pairs
    ] == [(pair.earlier.path, pair.later.path, pair.band) for pair in pruned.pairs]
    return seconds, same


def analyse_alone(root: str) -> tuple[float, int]:
    """In a fresh process: `analyse` on the rows and cache under `root`; its seconds and the process's peak
    memory (imports, the memory-mapped rows and the analysis, nothing else)."""
    dataset = datasets.load_from_disk(str(Path(root) / "rows"))
    cache = EmbeddingCache(Path(root) / "content", ThumbnailEmbedder(32))
    datasets.disable_progress_bars()
    began = time.perf_counter()
    report_analysis.analyse(dataset, cache, "bench", per_band=3)
    return time.perf_counter() - began, peak_rss_bytes()


def run(n: int, profile: bool, full: bool, memory: bool, spread: float = SPREAD) -> tuple[str, list[str]]:
    """One size: the results row and the notes under it."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        began = time.perf_counter()
        dataset, cache, copies = write_inputs(root, n, spread)
        sys.stdout.write(f"{n:,} images ({copies} byte copies) written in {time.perf_counter() - began:.0f} s\n")
        sys.stdout.flush()
        call, search_seconds, work, kept_rows = timed_dedup(dataset, cache)
        sys.stdout.write(f"dedup: call {call:.1f} s, search {search_seconds:.1f} s\n")
        _, highest_seconds, _, _ = timed_dedup(dataset, cache, HIGHEST)
        sys.stdout.write(f"dedup at {HIGHEST}: search {highest_seconds:.1f} s\n")
        sys.stdout.flush()
        profiler = cProfile.Profile() if profile else None
        passes: dict[str, float] = {}
        original = report_analysis._run_scope

        def timed_scope(images: object, scope: str, *args: object) -> report_analysis.ScopeDecisions:
            scope_began = time.perf_counter()
            decisions = original(images, scope, *args)
            passes[scope] = time.perf_counter() - scope_began
            return decisions

        report_analysis._run_scope = timed_scope
        began = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        try:
            analysis = report_analysis.analyse(dataset, cache, "bench", per_band=3)
        finally:
            report_analysis._run_scope = original
        analysed = time.perf_counter() - began
        if profiler is not None:
            profiler.disable()
        figures = [sweep_png(analysis.tables, analysis.scope, analysis.shown)]
        figures.append(nearest_png(analysis.nearest, analysis.shown, analysis.nearest_from))
        summary = json.dumps(analysis.to_json())
        whole = time.perf_counter() - began
        same = sum(analysis.table.kept_at(THRESHOLD).values()) == kept_rows
        sys.stdout.write(f"report: analyse {analysed:.1f} s, with figures and json {whole:.1f} s; same kept: {same}\n")
        unpruned = full_analysis(dataset, cache, analysis) if full else None
        alone = None
        if memory:
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                alone = pool.submit(analyse_alone, str(root)).result()
    ceiling = matmul_ceiling(1024, 16384, 1024)
    row = (
        f"| {n:,} | {copies} | {search_seconds:.1f} s (call {call:.1f} s) | {analysed:.1f} s | {whole:.1f} s "
        f"| **{analysed / search_seconds:.2f}x** | {highest_seconds:.1f} s | {analysed / highest_seconds:.2f}x "
        f"| {passes['group']:.1f} s + {passes['global']:.1f} s "
        f"| {kept_rows:,} | {peak_rss_bytes() / 2**30:.1f} GiB | {same} |"
    )
    rates = ", ".join(f"{name} {rate / 1e9:.0f}" for name, rate in ceiling.items() if name != "best")
    notes = [
        f"- dedup search, {n:,}: {roofline_line(work, search_seconds, ceiling)}. Ceiling (GFLOP/s), tile 1024 x "
        f"16384 x 1024: {rates}. sweep.json: {len(summary) / 1e3:.0f} kB."
    ]
    if unpruned is not None:
        notes.append(
            f"- the same `analyse` with the sweep's pruning off (every pair scored): {unpruned[0]:.1f} s, "
            f"{unpruned[0] / analysed:.2f}x the pruned one; same tables and pairs: {unpruned[1]}."
        )
    if alone is not None:
        notes.append(
            f"- `analyse` alone in a fresh process (`--memory`): {alone[0]:.1f} s, peak memory "
            f"{alone[1] / 2**30:.1f} GiB (imports, the memory-mapped rows and the analysis)."
        )
    if profiler is not None:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(14)
        notes.append("```\n" + text.getvalue().strip() + "\n```")
    return row, notes


def cross_group_modes(n: int, share: float, spread: float, rounds: int) -> list[str]:
    """`analyse` at each `--cross-group` mode on one set of inputs, `rounds` times in turn: a table row per mode
    with each round's time, the median and the cross-group part's median over `skip`'s."""
    modes = ("skip", "sample", "exact")
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    said: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as folder:
        dataset, cache, _ = write_inputs(Path(folder), n, spread)
        for _ in range(rounds):
            for mode in modes:
                began = time.perf_counter()
                analysis = report_analysis.analyse(
                    dataset, cache, "bench", per_band=3, cross_group=mode, cross_group_sample=share
                )
                times[mode].append(time.perf_counter() - began)
                said[mode] = analysis.cross_group.describe()
    rows = [
        "| `--cross-group` | `analyse`, each round | median | the cross-group part (over `skip`'s median) "
        "| what it says |",
        "| --- | --- | --- | --- | --- |",
    ]
    skipped = statistics.median(times["skip"])
    for mode in modes:
        median = statistics.median(times[mode])
        part = "-" if mode == "skip" else f"{median - skipped:.1f} s"
        label = f"sample (share {share:g})" if mode == "sample" else mode
        each = ", ".join(f"{seconds:.1f}" for seconds in times[mode])
        rows.append(f"| {label} | {each} s | {median:.1f} s | {part} | {said[mode]} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50000)
    parser.add_argument("--profile", action="store_true", help="run `analyse` under cProfile and print its top")
    parser.add_argument("--full", action="store_true", help="also time `analyse` with the sweep's pruning off")
    parser.add_argument(
        "--memory", action="store_true", help="also run `analyse` alone in a fresh process for its peak memory"
    )
    parser.add_argument(
        "--spread", type=float, default=SPREAD, help="latent spread of the vectors (earlier runs: 0.75)"
    )
    parser.add_argument(
        "--results", nargs="?", const=str(Path(__file__).with_name("RESULTS.md")), help="append a section here"
    )
    parser.add_argument("--cross-group-modes", action="store_true", help="time `analyse` at each --cross-group mode")
    parser.add_argument("--cross-group-sample", type=float, default=0.3, help="the share the sampled pass sees")
    parser.add_argument("--rounds", type=int, default=3, help="with --cross-group-modes: rounds of the three calls")
    args = parser.parse_args()
    datasets.disable_progress_bars()
    if args.cross_group_modes:
        command = f"python bench/bench_report.py --images {args.images} --cross-group-modes --rounds {args.rounds}"
        text = [
            f"\n### The cross-group pass's three modes, {datetime.date.today()}: `{command} "
            f"--cross-group-sample {args.cross_group_sample:g} --spread {args.spread:g}`",
            f"Machine: {host()}, numpy {np.__version__}; load average {os.getloadavg()[0]:.1f} at the end. The "
            "report's `analyse` at its defaults on this bench's CLIP-like vectors, the three calls in one process in "
            "this order, round after round:",
            "",
            *cross_group_modes(args.images, args.cross_group_sample, args.spread, args.rounds),
        ]
        sys.stdout.write("\n".join(text) + "\n")
        if args.results:
            with open(args.results, "a") as handle:
                handle.write("\n".join(text) + "\n")
        return
    row, notes = run(args.images, args.profile, args.full, args.memory, args.spread)
    flags = (" --profile" if args.profile else "") + (" --full" if args.full else "")
    flags += (" --memory" if args.memory else "") + f" --spread {args.spread:g}"
    text = [
        f"\n### `llava-mixes report`'s analysis against the dedup search, {datetime.date.today()}: "
        f"`python bench/bench_report.py --images {args.images}{flags}`",
        f"Machine: {host()}, numpy {np.__version__}. CLIP-like 1024-d vectors (spread {args.spread:g}) over the 665K "
        "mix's six groups "
        "(each turned its own way), byte and near copies across groups, one row per image, through a real "
        "`EmbeddingCache`; dedup at 0.8, group scope; the report at its defaults (thresholds 0.7 0.8 0.9, "
        "cross-group pass on, nearest neighbours from 0.5).",
        "",
        "| images | byte copies | dedup search | report `analyse` | with figures and sweep.json | analyse / search "
        f"| dedup search at {HIGHEST} | analyse / search at {HIGHEST} "
        "| sweep: group pass + cross-group pass | kept at 0.8 | peak memory (process) | same kept at 0.8 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        row,
        "",
        *notes,
    ]
    sys.stdout.write("\n".join(text) + "\n")
    if args.results:
        with open(args.results, "a") as handle:
            handle.write("\n".join(text) + "\n")


if __name__ == "__main__":
    main()
