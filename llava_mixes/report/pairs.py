"""Near-duplicate pairs to look at: each image with its most similar earlier image, in score bands from the
lowest shown threshold up to byte-identical files, a fixed pseudo-random few per group and band.

Each image of a pair says whether it is kept at each shown threshold under the config's scope; pairs of
images from different groups (found by the global pass) are labelled under the global scope.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import datasets
import numpy as np

from llava_mixes import schema
from llava_mixes.vectors import checked_norms

if TYPE_CHECKING:
    from llava_mixes.report.analysis import DistinctImages, ScopeDecisions

CROSS_GROUP = "(across groups)"
IDENTICAL = "identical files"
SAMPLE_SEED = 0x5EED


@dataclass(frozen=True)
class Band:
    """A score band of the gallery: cosine in [low, high) (the top band includes 1), or byte-identical files."""

    label: str
    low: float
    high: float


def score_bands(lowest: float) -> list[Band]:
    """Bands of 0.05 from `lowest` up to 0.95, then 0.95-0.99, 0.99-1 and byte-identical files."""
    edges = [lowest, *(round(step * 0.05, 2) for step in range(1, 20) if step * 0.05 > lowest + 1e-9)]
    edges += [edge for edge in (0.99,) if edge > lowest] + [1.0]
    bands = [Band(f"{low:.2f}–{high:.2f}", low, high) for low, high in itertools.pairwise(edges)]
    return [*bands, Band(IDENTICAL, 1.0, 1.0)]


@dataclass(frozen=True)
class PairImage:
    """One image of a pair: its path and group, the first row using it (index and id), how many rows use it,
    and whether it is kept at each shown threshold."""

    path: str
    group: str
    row: int
    id: str
    rows: int
    kept: tuple[bool, ...]


@dataclass(frozen=True)
class Pair:
    """An image (`later`) and its most similar earlier image, in its group or, for `CROSS_GROUP`, in another."""

    section: str
    band: str
    similarity: float
    scope: str
    earlier: PairImage
    later: PairImage


@dataclass
class PairSample:
    """The pairs shown, and how many pairs each section has in each band."""

    pairs: list[Pair]
    counts: dict[str, dict[str, int]]


def _keys(values: np.ndarray) -> np.ndarray:
    """A fixed pseudo-random key per value (splitmix64): the pairs shown are those with the smallest keys."""
    mixed = values.astype(np.uint64) + np.uint64(SAMPLE_SEED * 0x9E3779B97F4A7C15 % 2**64)
    mixed = (mixed ^ (mixed >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    mixed = (mixed ^ (mixed >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return mixed ^ (mixed >> np.uint64(31))


_CHUNK = 8192  # pairs whose vectors are made float64 at a time


def _candidates(
    images: DistinctImages, decisions: ScopeDecisions, norms: np.ndarray, bands: list[Band], cross_group: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(later path, earlier path, cosine, band index) of every image whose best earlier match reaches the
    lowest band, and of every byte-identical copy (across groups only, for `cross_group`)."""
    result = decisions.result
    items = np.flatnonzero(result.match_similarity >= bands[0].low - 1e-3)
    later, earlier = decisions.item_path[items], decisions.item_path[result.match[items]]
    first, second = images.path_vector[later], images.path_vector[earlier]
    dots = np.empty(len(items), dtype=np.float64)
    # In chunks: float64 copies of every matched pair's vectors took 16 KB per image at once.
    for start in range(0, len(items), _CHUNK):
        part = slice(start, start + _CHUNK)
        left = images.vectors[first[part]].astype(np.float64)
        dots[part] = np.einsum("ij,ij->i", left, images.vectors[second[part]].astype(np.float64))
    cosines = dots / (norms[first] * norms[second])
    reached = cosines >= bands[0].low
    edges = np.asarray([band.low for band in bands[:-1]])
    band_index = np.clip(np.searchsorted(edges, cosines[reached], side="right") - 1, 0, len(bands) - 2)
    copies = np.asarray(decisions.followers, dtype=np.int64).reshape(-1, 2)
    if cross_group:
        copies = copies[images.path_group[copies[:, 0]] != images.path_group[copies[:, 1]]]
    return (
        np.concatenate([later[reached], copies[:, 0]]),
        np.concatenate([earlier[reached], copies[:, 1]]),
        np.concatenate([cosines[reached], np.ones(len(copies))]),
        np.concatenate([band_index, np.full(len(copies), len(bands) - 1)]),
    )


def sample_pairs(
    images: DistinctImages,
    decisions: dict[str, ScopeDecisions],
    scope: str,
    shown: tuple[float, ...],
    bands: list[Band],
    dataset: datasets.Dataset,
    per_band: int,
) -> PairSample:
    """Up to `per_band` pairs per group (and across groups, when a global pass ran) per band, the same ones on
    every run; `dataset` gives the row ids."""
    norms = checked_norms(images.vectors)
    chosen: list[tuple[str, str, str, int, int, float]] = []
    counts: dict[str, Counter[str]] = {}
    sections = [("group", False)] + ([("global", True)] if "global" in decisions else [])
    for pass_scope, cross_group in sections:
        later, earlier, cosines, band_index = _candidates(images, decisions[pass_scope], norms, bands, cross_group)
        names = np.zeros(len(later), dtype=np.int32) if cross_group else images.path_group[later]
        keys = _keys(later)
        for name, band in sorted(set(zip(names.tolist(), band_index.tolist(), strict=True))):
            section = CROSS_GROUP if cross_group else images.groups[name]
            members = np.flatnonzero((names == name) & (band_index == band))
            counts.setdefault(section, Counter())[bands[band].label] = len(members)
            label_scope = "global" if cross_group else scope
            for at in members[np.argsort(keys[members], kind="stable")[:per_band]]:
                chosen.append((section, bands[band].label, label_scope, int(later[at]), int(earlier[at]), cosines[at]))
    rows = sorted({int(images.path_row[path]) for *_, later, earlier, _ in chosen for path in (later, earlier)})
    ids = dict(zip(rows, dataset.select_columns([schema.ID]).select(rows)[schema.ID], strict=True)) if rows else {}

    def image(path: int, label_scope: str) -> PairImage:
        kept = tuple(bool(decisions[label_scope].path_kept(np.asarray([path]), value)[0]) for value in shown)
        row = int(images.path_row[path])
        group = images.groups[images.path_group[path]]
        return PairImage(images.paths[path], group, row, str(ids[row]), int(images.path_rows[path]), kept)

    pairs = [
        Pair(
            section, band, round(float(cosine), 4), label_scope, image(earlier, label_scope), image(later, label_scope)
        )
        for section, band, label_scope, later, earlier, cosine in chosen
    ]
    return PairSample(pairs, {section: dict(counter) for section, counter in counts.items()})
