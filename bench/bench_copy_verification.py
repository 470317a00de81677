"""Copy detection in two stages on the generated copy benchmark (`llava_mixes.playground.copies`): photos, text
pages, charts, tables, diagrams, slides, UI screenshots and book covers, each with same-template look-alikes,
and planted copies (re-encodes at quality 40-90, resizes to 50-90%, crops of up to 10% per side, brightness and
contrast within 15%, grey, and all at once).

Per kind it prints:
- the candidate stage: for each `gradients` threshold, the recall of planted copies (cosine at or above it) and
  the share of pairs of distinct pictures that become candidates (unrelated pairs, and look-alike pairs);
  with `--screen`, the same for `gradients` AND the layout screen of `layout_screen.py` at each of its thresholds;
- both stages at the default candidate threshold: for each `agree_share`, the recall of planted copies (all, and
  crops alone) and the wrong flags: the share of distinct pictures confirmed as a copy of another distinct
  picture of its kind. Every candidate pair of two distinct pictures of one kind is verified, so those are exact
  for this benchmark; of the candidate pairs of two kinds (`gradients` cannot tell a page from a table or a
  screen), `--cross-sample` drawn at random are verified and the confirmed ones counted;
- with `--embedder PATH` (a TorchScript copy model such as SSCD's `sscd_disc_mixup.torchscript.pt`, where its
  weights are present), the same tables with that model's vectors proposing the candidates at its own candidate
  threshold, so its wrong flags on documents are measured through the same verification;
- the cost: CPU seconds per verified pair (decoding included; `verify_pairs` over all candidate pairs, as many
  threads as cores), and the verification time extrapolated to the 665K mix's image groups (copy dedup within
  each group), from the measured candidate rates of the kind that fills the group.

usage: python bench/bench_copy_verification.py [--seed 11] [--singles 140] [--sibling-pairs 20] [--copies 8]
       [--cross-sample 4000] [--thresholds 0.6 0.65 0.7 0.75 0.8] [--shares 0.8 0.85 0.9 0.95]
       [--screen 0.8 0.85 0.9] [--embedder gradients|MODEL.pt] [--results]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import io
import os
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from layout_screen import LayoutScreen, edge_map
from machine_info import host, show_and_append
from PIL import Image

from llava_mixes.decontam.candidates import SECONDS_PER_PAIR
from llava_mixes.embedding.copy import GradientsEmbedder
from llava_mixes.embedding.embedders import Embedder, resolve_embedder
from llava_mixes.embedding.preprocess import to_8bit
from llava_mixes.embedding.verify import CopyVerifier, Verdict, VerifierSettings
from llava_mixes.embedding.verify_runs import PictureSource, verify_pairs
from llava_mixes.playground.copies import KINDS, CopyBenchmark, copy_benchmark

RESULTS = Path(__file__).with_name("RESULTS.md")
GROUPS_665K = {
    "coco": (88_500, "photo"),
    "gqa": (72_000, "photo"),
    "ocr_vqa": (80_000, "cover"),
    "textvqa": (22_000, "photo"),
    "vg": (86_000, "photo"),
}
"""The 665K mix's image groups (distinct pictures, from the seed study) and the benchmark kind that fills each."""
DEFAULT = GradientsEmbedder.candidate_threshold
"""The candidate threshold of the embedder measured (`gradients` unless `--embedder` names another)."""
LABEL = "`gradients`"
BATCH = 32


def embed_all(model: Embedder, items: list[bytes], cores: int) -> np.ndarray:
    """The unit vectors of `items` by `model`: prepared on `cores` threads, embedded `BATCH` at a time."""
    with ThreadPoolExecutor(cores) as pool:
        prepared = list(pool.map(model.prepare, items))
    parts = [model.embed(np.stack(prepared[start : start + BATCH])) for start in range(0, len(prepared), BATCH)]
    vectors = np.concatenate(parts).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def grey_square(data: bytes, side: int = 256) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        if image.format == "JPEG":
            image.draft("L", (side, side))
        return np.asarray(to_8bit(image, "L").resize((side, side), Image.Resampling.BOX), dtype=np.float32)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def decided(verdict: Verdict, share: float, settings: VerifierSettings) -> bool:
    """The verdict at another `agree_share` (the other settings as they were)."""
    return verdict.problem is None and verdict.windows >= settings.min_windows and verdict.agreement >= share


def rate_text(hits: int, pairs: int) -> str:
    """A share of pairs, or an upper bound where none was hit."""
    return f"{hits / pairs:.1e}" if hits else f"< {1 / max(pairs, 1):.0e}"


class Measured:
    """The benchmark, its vectors and every pair's cosine, and the verdicts once `verify` ran."""

    def __init__(self, bench: CopyBenchmark, cores: int, model: Embedder) -> None:
        self.bench = bench
        self.vectors = embed_all(model, [p.data for p in bench.pictures], cores)
        self.copy_vectors = embed_all(model, [c.data for c in bench.copies], cores)
        self.kinds = np.array([p.kind for p in bench.pictures])
        self.families = np.array([p.family for p in bench.pictures])
        self.originals = np.array([c.original for c in bench.copies])
        self.transformations = np.array([c.transformation for c in bench.copies])
        self.copy_cosine = np.einsum("ij,ij->i", self.vectors[self.originals], self.copy_vectors)
        self.cosine = self.vectors @ self.vectors.T
        upper = np.triu_indices(len(self.vectors), 1)
        self.pairs = np.stack(upper, axis=1)
        self.pair_cosine = self.cosine[upper]
        self.same_kind = self.kinds[upper[0]] == self.kinds[upper[1]]
        self.look_alike = self.families[upper[0]] == self.families[upper[1]]
        self.verdicts: dict[tuple[int, int], Verdict] = {}
        self.copy_verdicts: list[Verdict] = []
        self.cost: dict[str, float] = {}
        self.cross_candidates = 0

    def kind_pairs(self, kind: str) -> np.ndarray:
        return self.same_kind & (self.kinds[self.pairs[:, 0]] == kind)

    def verify(self, threshold: float, cores: int, cross_sample: int) -> None:
        """Verify every pair of distinct pictures of one kind at cosine >= `threshold`, `cross_sample` such pairs
        of two kinds, and every (original, copy) pair; time it."""
        data = [p.data for p in self.bench.pictures] + [c.data for c in self.bench.copies]
        keys = [hashlib.sha256(item).hexdigest() for item in data]
        source = PictureSource({key: (lambda item=item: item) for key, item in zip(keys, data, strict=True)})
        candidate = self.pair_cosine >= threshold - 1e-6
        across = np.flatnonzero(candidate & ~self.same_kind)
        self.cross_candidates = len(across)
        sample = np.random.default_rng(0).choice(across, min(cross_sample, len(across)), replace=False)
        chosen = self.pairs[np.sort(np.concatenate([np.flatnonzero(candidate & self.same_kind), sample]))]
        distinct = [(keys[a], keys[b]) for a, b in chosen.tolist()]
        offset = len(self.bench.pictures)
        copies = [(keys[original], keys[offset + index]) for index, original in enumerate(self.originals.tolist())]
        verifier = CopyVerifier()
        began_wall, began_cpu = time.perf_counter(), cpu_seconds()
        verdicts, stats = verify_pairs(verifier, distinct + copies, source, workers=cores)
        wall, cpu = time.perf_counter() - began_wall, cpu_seconds() - began_cpu
        self.verdicts = dict(zip(map(tuple, chosen.tolist()), verdicts[: len(distinct)], strict=True))
        self.copy_verdicts = verdicts[len(distinct) :]
        self.cost = {"pairs": stats.pairs, "pictures": stats.pictures, "wall": wall, "cpu": cpu}


def candidate_rows(measured: Measured, thresholds: list[float]) -> list[str]:
    rows = [
        "| kind | " + " | ".join(f"{LABEL} >= {t:.2f}: recall / unrelated / look-alike" for t in thresholds) + " |",
        "| --- |" + " ---: |" * len(thresholds),
    ]
    for kind in KINDS:
        mine = measured.kind_pairs(kind)
        copies = measured.kinds[measured.originals] == kind
        cells = []
        for threshold in thresholds:
            hit = measured.pair_cosine >= threshold - 1e-6
            unrelated, alike = mine & ~measured.look_alike, mine & measured.look_alike
            recall = float(np.mean(measured.copy_cosine[copies] >= threshold - 1e-6))
            cells.append(
                f"{recall:.3f} / {rate_text(int((hit & unrelated).sum()), int(unrelated.sum()))} / "
                f"{(hit & alike).sum() / max(alike.sum(), 1):.2f}"
            )
        rows.append(f"| {kind} | " + " | ".join(cells) + " |")
    across = ~measured.same_kind
    rows.append(
        "| (pairs of two kinds) | "
        + " | ".join(
            rate_text(int((across & (measured.pair_cosine >= t - 1e-6)).sum()), int(across.sum())) for t in thresholds
        )
        + " |"
    )
    return rows


def screen_rows(measured: Measured, thresholds: list[float], cores: int) -> list[str]:
    """Candidates of the embedder at its default AND the layout screen at each threshold."""
    screen = LayoutScreen()
    with ThreadPoolExecutor(cores) as pool:
        maps = np.stack(list(pool.map(lambda p: edge_map(grey_square(p.data)), measured.bench.pictures)))
        copy_maps = np.stack(list(pool.map(lambda c: edge_map(grey_square(c.data)), measured.bench.copies)))
    copy_scores = screen.pair_scores(maps[measured.originals], copy_maps)
    rows = [
        "| kind | " + " | ".join(f"AND screen >= {t:.2f}: recall / unrelated" for t in thresholds) + " |",
        "| --- |" + " ---: |" * len(thresholds),
    ]
    began = time.perf_counter()
    per_kind = {}
    for kind in KINDS:
        members = np.flatnonzero(measured.kinds == kind)
        scores = screen.scores(maps[members], maps[members])
        upper = np.triu_indices(len(members), 1)
        per_kind[kind] = (
            scores[upper],
            measured.cosine[np.ix_(members, members)][upper],
            measured.families[members][upper[0]] != measured.families[members][upper[1]],
        )
    seconds = time.perf_counter() - began
    for kind in KINDS:
        scores, cosine, unrelated = per_kind[kind]
        copies = measured.kinds[measured.originals] == kind
        cells = []
        for threshold in thresholds:
            recall = np.mean((copy_scores[copies] >= threshold) & (measured.copy_cosine[copies] >= DEFAULT - 1e-6))
            hit = (scores >= threshold) & (cosine >= DEFAULT - 1e-6) & unrelated
            cells.append(f"{recall:.3f} / {rate_text(int(hit.sum()), int(unrelated.sum()))}")
        rows.append(f"| {kind} | " + " | ".join(cells) + " |")
    pairs = sum(len(values[0]) for values in per_kind.values())
    rows.append("")
    rows.append(
        f"Screen: {screen.hypotheses} hypotheses of {screen.side}x{screen.side}; scoring {pairs:,} pairs took "
        f"{seconds:.1f} s ({seconds / pairs * 1e6:.0f} us a pair, both directions, {cores} threads)."
    )
    return rows


def two_stage_rows(measured: Measured, shares: list[float]) -> list[str]:
    settings = VerifierSettings()
    header = "| kind | agree_share | recall, all copies | recall, crops | wrong flags | look-alike pairs confirmed |"
    rows = [header, "| --- | ---: | ---: | ---: | ---: | ---: |"]
    candidate = measured.copy_cosine >= DEFAULT - 1e-6
    crops = np.isin(measured.transformations, ["crop", "combined"])
    for kind in KINDS:
        copies = measured.kinds[measured.originals] == kind
        members = int((measured.kinds == kind).sum())
        for share in shares:
            found = np.array([decided(v, share, settings) for v in measured.copy_verdicts]) & candidate
            flagged: set[int] = set()
            alike = confirmed_alike = 0
            for (a, b), verdict in measured.verdicts.items():
                if measured.kinds[a] != kind or measured.kinds[b] != kind:
                    continue
                same_family = measured.families[a] == measured.families[b]
                alike += int(same_family)
                if decided(verdict, share, settings):
                    flagged.update((a, b))
                    confirmed_alike += int(same_family)
            mark = " (default)" if share == settings.agree_share else ""
            rows.append(
                f"| {kind} | {share:.2f}{mark} | {found[copies].mean():.3f} ({found[copies].sum()}/{copies.sum()}) | "
                f"{found[copies & crops].mean():.3f} | {len(flagged) / members:.2%} ({len(flagged)}/{members}) | "
                f"{confirmed_alike}/{alike} |"
            )
    across = [v for (a, b), v in measured.verdicts.items() if measured.kinds[a] != measured.kinds[b]]
    rows += [
        "",
        f"Pairs of two kinds: {measured.cross_candidates:,} are candidates; {len(across):,} of them verified, "
        + ", ".join(f"{sum(decided(v, share, settings) for v in across)} confirmed at {share:.2f}" for share in shares)
        + ".",
    ]
    return rows


def cost_rows(measured: Measured, cores: int) -> list[str]:
    cost = measured.cost
    per_pair = cost["cpu"] / max(cost["pairs"], 1)
    rows = [
        f"Verification: {cost['pairs']:,} pairs ({cost['pictures']:,} pictures decoded) in {cost['wall']:.0f} s on "
        f"{cores} threads, {cost['cpu']:.0f} CPU-s: **{per_pair * 1000:.1f} ms of CPU a pair**, decoding included "
        f"(`decontam.candidates.SECONDS_PER_PAIR` assumes {SECONDS_PER_PAIR * 1000:.0f} ms).",
        "",
        "| 665K group | distinct pictures | kind | candidate rate | candidate pairs | verification, CPU-hours |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    total_pairs = total_hours = 0.0
    for group, (pictures, kind) in GROUPS_665K.items():
        mine = measured.kind_pairs(kind) & ~measured.look_alike
        hits = int((mine & (measured.pair_cosine >= DEFAULT - 1e-6)).sum())
        rate = max(hits, 1) / int(mine.sum())
        pairs = pictures * (pictures - 1) / 2 * rate
        hours = pairs * per_pair / 3600
        bound = "< " if hits == 0 else ""
        total_pairs, total_hours = total_pairs + pairs, total_hours + hours
        rows.append(
            f"| {group} | {pictures:,} | {kind} | {bound}{rate:.1e} | {bound}{pairs:,.0f} | {bound}{hours:,.1f} |"
        )
    rows.append(f"| all | 348,500 | | | {total_pairs:,.0f} | {total_hours:,.0f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--singles", type=int, default=140)
    parser.add_argument("--sibling-pairs", type=int, default=20)
    parser.add_argument("--copies", type=int, default=8, help="planted copies per kind and transformation")
    parser.add_argument("--cross-sample", type=int, default=4000, help="candidate pairs of two kinds verified")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.6, 0.65, 0.7, 0.75, 0.8])
    parser.add_argument("--shares", type=float, nargs="+", default=[0.8, 0.85, 0.9, 0.95])
    parser.add_argument("--screen", type=float, nargs="*", default=None, help="also measure the layout screen")
    parser.add_argument("--embedder", default="gradients", help="gradients, or a TorchScript copy model (.pt)")
    parser.add_argument("--results", nargs="?", const=str(RESULTS), default=None, help="append the tables here")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    global DEFAULT, LABEL
    model = resolve_embedder(args.embedder)
    if not hasattr(model, "candidate_threshold"):
        parser.error(f"--embedder {args.embedder!r} has no candidate threshold: give gradients or a TorchScript file")
    DEFAULT, LABEL = float(model.candidate_threshold), f"`{args.embedder}`"
    began = time.perf_counter()
    bench = copy_benchmark(
        singles=args.singles, sibling_pairs=args.sibling_pairs, copies_per_transformation=args.copies, seed=args.seed
    )
    measured = Measured(bench, cores, model)
    made = time.perf_counter() - began
    measured.verify(DEFAULT, cores, args.cross_sample)
    command = " ".join(["python bench/bench_copy_verification.py", *sys.argv[1:]])
    per_kind = len(bench.pictures) // len(KINDS)
    block = [
        f"\n### Copy detection in two stages on the copy benchmark, {datetime.date.today()}: `{command}`",
        f"Machine: {host()}. Per kind: {per_kind} distinct pictures ({args.singles} unrelated, {args.sibling_pairs} "
        f"look-alike pairs), {len(bench.copies) // len(KINDS)} planted copies; generated in {made:.0f} s.",
        "",
        "Candidate stage (recall of planted copies / share of unrelated pairs of distinct pictures of the kind that "
        "are candidates / share of look-alike pairs that are):",
        "",
        *candidate_rows(measured, args.thresholds),
        "",
        f"Both stages, candidates at {LABEL} >= {DEFAULT:.2f} (the default), each confirmed by verification:",
        "",
        *two_stage_rows(measured, args.shares),
        "",
        *cost_rows(measured, cores),
    ]
    if args.screen is not None:
        block += [
            "",
            f"A second screen (`bench/layout_screen.py`, not in the package) ANDed with {LABEL} >= {DEFAULT:.2f}:",
            "",
            *screen_rows(measured, args.screen or [0.8, 0.85, 0.9], cores),
        ]
    show_and_append(block, args.results)


if __name__ == "__main__":
    main()
