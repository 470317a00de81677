"""The near-duplicate defaults of the weight-free embedders (issue 23, item 11): what a dedup at threshold t removes.

On the copy benchmark (`llava_mixes.playground.copies`: photos, text pages, charts, tables, diagrams, slides, UI
screenshots and book covers, each with same-template look-alikes, and planted copies: re-encodes, resizes, crops,
brightness, contrast, grey, all at once), each kind is one image group: its distinct pictures first, then its
planted copies. For each embedder (`thumbnail`, `gradients`) and each threshold t, the library's own dedup runs over
those rows, scope `group`, as a build runs it:
- one stage: `dedup.deduplicate` (every pair at cosine >= t is a duplicate, keep-first against kept pictures);
- two stages: `decontam.copies.copy_deduplicate` (pairs at cosine >= t are candidates, removed only once
  `embedding.verify` confirms them), as a recipe's copy dedup runs.

Per kind it prints the **false-removal rate** (the share of distinct pictures the dedup removes) and the **recall**
(the share of planted copies it removes), and the candidate pairs verification had to judge (its cost, at about
25 ms of CPU a pair). Verdicts do not depend on t, so each pair is verified once per embedder and seed and
remembered across the sweep (`RememberingVerifier`); the dedup itself runs anew at every t.

Seeds: the verifier was tuned on seeds 3, 5, 11 and 23 of the copy benchmark; seed 31 was held out
(bench/RESULTS.md, "Copy detection in two stages"). Run both: `--seeds 11 31`.

usage: python bench/bench_near_duplicate_defaults.py [--seeds 11 31] [--singles 40] [--sibling-pairs 5] [--copies 2]
       [--embedders thumbnail gradients] [--thresholds 0.7 0.75 0.8 0.85 0.9 0.95 0.98] [--results]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import logging
import os
import sys
import time
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import datasets
import numpy as np
from machine_info import host, show_and_append

from llava_mixes import schema
from llava_mixes.decontam.candidates import CandidateBudget
from llava_mixes.decontam.copies import copy_deduplicate
from llava_mixes.dedup.deduplicate import deduplicate
from llava_mixes.embedding.embedders import Embedder, resolve_embedder
from llava_mixes.embedding.verify import CopyVerifier, Prepared, Verdict
from llava_mixes.playground.copies import KINDS, CopyBenchmark, copy_benchmark

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")
BATCH = 32


class DictVectors:
    """A `dedup.deduplicate.VectorSource` over a dict SHA-256 -> unit vector."""

    def __init__(self, vectors: dict[str, np.ndarray], name: str) -> None:
        self.vectors_of, self.name = vectors, name

    def missing(self, keys: Sequence[str]) -> list[str]:
        return [key for key in keys if key not in self.vectors_of]

    def vectors(self, keys: list[str]) -> tuple[np.ndarray, list[str | None]]:
        return np.stack([self.vectors_of[key] for key in keys]), [None] * len(keys)

    def key(self) -> str:
        return self.name


class RememberingVerifier(CopyVerifier):
    """The default verifier, remembering each pair's verdict by the pictures' SHA-256 (verdicts do not depend on the
    dedup threshold, so a sweep verifies each pair once)."""

    def __init__(self) -> None:
        super().__init__()
        self.sha_of: dict[int, str] = {}
        self.verdicts: dict[tuple[str, str], Verdict] = {}
        self.judged = 0

    def prepare(self, data: bytes) -> Prepared:
        prepared = super().prepare(data)
        self.sha_of[id(prepared)] = hashlib.sha256(data).hexdigest()
        weakref.finalize(prepared, self.sha_of.pop, id(prepared), None)
        return prepared

    def verify(self, a: Prepared, b: Prepared) -> Verdict:
        pair = tuple(sorted((self.sha_of[id(a)], self.sha_of[id(b)])))
        if pair not in self.verdicts:
            self.verdicts[pair] = super().verify(a, b)
            self.judged += 1
        return self.verdicts[pair]


def embed_all(model: Embedder, items: list[bytes], cores: int) -> np.ndarray:
    with ThreadPoolExecutor(cores) as pool:
        prepared = list(pool.map(model.prepare, items))
    parts = [model.embed(np.stack(prepared[start : start + BATCH])) for start in range(0, len(prepared), BATCH)]
    return np.concatenate(parts).astype(np.float32)


def benchmark_rows(bench: CopyBenchmark) -> tuple[datasets.Dataset, list[str | None]]:
    """One row per picture, each kind an image group: its distinct pictures, then its planted copies; and per row
    the path of the original a planted copy was made from (None for a distinct picture)."""
    rows: dict[str, list[object]] = {
        schema.ID: [],
        schema.IMAGE: [],
        schema.IMAGE_PATH: [],
        schema.IMAGE_SHA256: [],
        schema.IMAGE_GROUP: [],
    }
    originals: list[str | None] = []
    for kind in KINDS:
        members = [(index, p.data, None) for index, p in enumerate(bench.pictures) if p.kind == kind]
        copies = [
            (index, c.data, f"{kind}/picture-{c.original}")
            for index, c in enumerate(bench.copies)
            if bench.pictures[c.original].kind == kind
        ]
        for label, items in (("picture", members), ("copy", copies)):
            for index, data, original in items:
                path = f"{kind}/{label}-{index}"
                rows[schema.ID].append(path)
                rows[schema.IMAGE].append({"bytes": data, "path": None})
                rows[schema.IMAGE_PATH].append(path)
                rows[schema.IMAGE_SHA256].append(hashlib.sha256(data).hexdigest())
                rows[schema.IMAGE_GROUP].append(kind)
                originals.append(original)
    features = datasets.Features(
        {
            schema.ID: datasets.Value("string"),
            schema.IMAGE: datasets.Image(decode=False),
            schema.IMAGE_PATH: datasets.Value("string"),
            schema.IMAGE_SHA256: datasets.Value("string"),
            schema.IMAGE_GROUP: datasets.Value("string"),
        }
    )
    return datasets.Dataset.from_dict(rows, features=features), originals


def rates(
    rows: datasets.Dataset, originals: list[str | None], splits: datasets.DatasetDict
) -> dict[str, tuple[float, float]]:
    """Per kind: (share of distinct pictures removed, share of planted copies removed as a duplicate of the picture
    their original is kept as: the original itself, or the picture the original was removed as a duplicate of)."""
    removed = splits[schema.REMOVED_SPLIT]
    duplicate_of = dict(zip(removed[schema.IMAGE_PATH], removed[schema.DUPLICATE_OF], strict=True))
    paths, kinds = rows[schema.IMAGE_PATH], np.array(rows[schema.IMAGE_GROUP])
    planted = np.array([original is not None for original in originals])
    gone = np.array([path in duplicate_of for path in paths])
    found = np.array(
        [
            original is not None and duplicate_of.get(path) == duplicate_of.get(original, original)
            for path, original in zip(paths, originals, strict=True)
        ]
    )
    out = {}
    for kind in KINDS:
        mine = kinds == kind
        out[kind] = (float(gone[mine & ~planted].mean()), float(found[mine & planted].mean()))
    return out


def measure(
    bench: CopyBenchmark, embedder: str, thresholds: list[float], cores: int
) -> dict[tuple[str, float], dict[str, tuple[float, float]] | int]:
    """Per (stage, t): the per-kind rates; per ("pairs", t): the candidate pairs verification judged."""
    rows, originals = benchmark_rows(bench)
    model = resolve_embedder(embedder)
    data = [item["bytes"] for item in rows.cast_column(schema.IMAGE, datasets.Image(decode=False))[schema.IMAGE]]
    vectors = embed_all(model, data, cores)
    vectors_of = dict(zip(rows[schema.IMAGE_SHA256], vectors, strict=True))
    source = DictVectors(vectors_of, model.key())
    verifier = RememberingVerifier()
    budget = CandidateBudget(max_pairs=10**9)
    results: dict[tuple[str, float], dict[str, tuple[float, float]] | int] = {}
    for threshold in sorted(thresholds):
        one = deduplicate(rows, threshold, "group", embeddings=source, device="cpu")
        results[("one stage", threshold)] = rates(rows, originals, one)
        two, stats = copy_deduplicate(rows, vectors_of, threshold, "group", verifier, cores, budget)
        results[("two stages", threshold)] = rates(rows, originals, two)
        results[("pairs", threshold)] = stats.pairs
    return results


def table(
    stage: str, per_seed: dict[int, dict[tuple[str, float], object]], thresholds: list[float], embedder: str
) -> list[str]:
    seeds = sorted(per_seed)
    label = "/".join(str(seed) for seed in seeds)
    rows = [
        f"| `{embedder}`, {stage}: kind | "
        + " | ".join(f">= {t:.2f}: false removal / recall (seeds {label})" for t in thresholds)
        + " |",
        "| --- |" + " ---: |" * len(thresholds),
    ]
    for kind in KINDS:
        cells = []
        for t in thresholds:
            parts = [per_seed[seed][(stage, t)][kind] for seed in seeds]  # type: ignore[index]
            false = " / ".join(f"{part[0]:.0%}" for part in parts)
            recall = " / ".join(f"{part[1]:.2f}" for part in parts)
            cells.append(f"{false} — {recall}")
        rows.append(f"| {kind} | " + " | ".join(cells) + " |")
    if stage == "two stages":
        pairs = [" / ".join(f"{per_seed[seed][('pairs', t)]:,}" for seed in seeds) for t in thresholds]
        rows.append("| (candidate pairs verified) | " + " | ".join(pairs) + " |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 31])
    parser.add_argument("--singles", type=int, default=40)
    parser.add_argument("--sibling-pairs", type=int, default=5)
    parser.add_argument("--copies", type=int, default=2, help="planted copies per kind and transformation")
    parser.add_argument("--embedders", nargs="+", default=["thumbnail", "gradients"])
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.98])
    parser.add_argument("--results", nargs="?", const=RESULTS, default=None, help="append the tables here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    datasets.disable_progress_bars()
    cores = os.cpu_count() or 1
    began = time.perf_counter()
    benches = {
        seed: copy_benchmark(
            singles=args.singles, sibling_pairs=args.sibling_pairs, copies_per_transformation=args.copies, seed=seed
        )
        for seed in args.seeds
    }
    made = time.perf_counter() - began
    measured = {
        embedder: {seed: measure(bench, embedder, args.thresholds, cores) for seed, bench in benches.items()}
        for embedder in args.embedders
    }
    spent = time.perf_counter() - began - made
    first = benches[args.seeds[0]]
    per_kind = len(first.pictures) // len(KINDS)
    command = " ".join(["python bench/bench_near_duplicate_defaults.py", *sys.argv[1:]])
    block = [
        f"\n### Near-duplicate defaults of the weight-free embedders, {datetime.date.today()}: `{command}`",
        f"Machine: {host()}. Per kind and seed: {per_kind} distinct pictures ({args.singles} unrelated, "
        f"{args.sibling_pairs} look-alike pairs), {len(first.copies) // len(KINDS)} planted copies; generated in "
        f"{made:.0f} s, measured in {spent:.0f} s. Each cell: the share of distinct pictures removed, then the "
        "share of planted copies removed, per seed.",
    ]
    for embedder, per_seed in measured.items():
        for stage in ("one stage", "two stages"):
            block += ["", *table(stage, per_seed, args.thresholds, embedder)]  # type: ignore[arg-type]
    show_and_append(block, args.results)


if __name__ == "__main__":
    main()
