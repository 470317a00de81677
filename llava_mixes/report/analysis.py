"""What deduplication does to a dataset, at every threshold: the sweep table, each image's nearest-neighbour
similarity, and sampled near-duplicate pairs in score bands, from cached embeddings and one `sweep_pass`
per scope (see `llava_mixes.dedup.sweep`). The keep decisions are exact at every threshold; nearest neighbours
are looked for down to `nearest_from` (lower ones are counted as below it) and pairs down to the lowest shown
threshold, which lets the sweep skip the pairs that could change neither (most pairs across groups).

Images are visited as `deduplicate` visits them: distinct paths in order of first appearance; per scope
(an `image_group`, or everything for `global`), byte-identical files (same SHA-256) are one item judged at
its first path, and the other paths follow it. Memory: the embeddings (float16, one per distinct file),
for the scope being swept a float16 copy of its vectors and their float32 unit vectors, a few numbers per image
and the pairs shown.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import datasets
import numpy as np
from datasets.utils import tqdm as hf_tqdm

from llava_mixes import schema
from llava_mixes.dedup.deduplicate import SCOPES
from llava_mixes.dedup.sweep import GRID, PassResult, sweep_pass, sweep_thresholds
from llava_mixes.embedding.cache import EmbeddingCache, EmbeddingError
from llava_mixes.errors import ConfigError, unknown_choice
from llava_mixes.report.cross import (
    DEFAULT_SAMPLE,
    CrossGroup,
    check_cross_group,
    in_share,
    measure_recall,
    sample_found,
)
from llava_mixes.report.pairs import Band, Pair, sample_pairs, score_bands
from llava_mixes.schema import NO_GROUP

logger = logging.getLogger(__name__)


@dataclass
class DistinctImages:
    """Every distinct image path of a dataset, in order of first appearance, and one vector per distinct file."""

    paths: list[str]
    groups: list[str]
    path_group: np.ndarray
    path_vector: np.ndarray
    path_row: np.ndarray
    path_rows: np.ndarray
    vectors: np.ndarray
    text_rows: int = 0


def scan_images(dataset: datasets.Dataset, cache: EmbeddingCache, chunk: int = 65536) -> DistinctImages:
    """Read paths, groups and content hashes of `dataset` in Arrow batches, and the cached vector of each file."""
    path_index: dict[str, int] = {}
    group_index: dict[str, int] = {}
    sha_index: dict[str, int] = {}
    path_group: list[int] = []
    path_vector: list[int] = []
    path_row: list[int] = []
    path_rows: list[int] = []
    text_rows = 0
    columns = dataset.select_columns([schema.IMAGE_PATH, schema.IMAGE_SHA256, schema.IMAGE_GROUP])
    row = 0
    for table in columns.with_format("arrow").iter(batch_size=8192):
        paths = table.column(schema.IMAGE_PATH).to_pylist()
        hashes = table.column(schema.IMAGE_SHA256).to_pylist()
        groups = table.column(schema.IMAGE_GROUP).to_pylist()
        for path, sha, group in zip(paths, hashes, groups, strict=True):
            if path is None:
                text_rows += 1
            elif path in path_index:
                path_rows[path_index[path]] += 1
            else:
                path_index[path] = len(path_group)
                path_group.append(group_index.setdefault(NO_GROUP if group is None else group, len(group_index)))
                path_vector.append(sha_index.setdefault(sha, len(sha_index)))
                path_row.append(row)
                path_rows.append(1)
            row += 1
    keys = list(sha_index)
    vectors = np.zeros((len(keys), cache.dim), dtype=np.float16)
    for start in range(0, len(keys), chunk):
        part, errors = cache.vectors(keys[start : start + chunk])
        failed = [keys[start + at] for at, error in enumerate(errors) if error is not None]
        if failed:
            raise EmbeddingError(f"{len(failed)} images have no embedding (first hashes: {failed[:3]})")
        vectors[start : start + len(part)] = part
    return DistinctImages(
        list(path_index),
        list(group_index),
        np.asarray(path_group, dtype=np.int32),
        np.asarray(path_vector, dtype=np.int64),
        np.asarray(path_row, dtype=np.int64),
        np.asarray(path_rows, dtype=np.int64),
        vectors,
        text_rows,
    )


@dataclass
class ScopeDecisions:
    """One scope's items (each the first path of a distinct file in its scope) and their pass result.

    `path_item[p]` is the item judged at path p, or -1 where p follows an earlier byte-identical path;
    `followers` pairs each such path with the path it follows.
    """

    scope: str
    item_path: np.ndarray
    result: PassResult
    path_item: np.ndarray
    followers: list[tuple[int, int]]

    def path_kept(self, paths: np.ndarray, threshold: float) -> np.ndarray:
        """Which of `paths` are kept at `threshold`."""
        items = self.path_item[paths]
        return (items >= 0) & self.result.kept(threshold)[np.maximum(items, 0)]


def _items(images: DistinctImages, paths: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The first path of each distinct file among `paths` (in order), and every other path with its first."""
    _, first, inverse = np.unique(images.path_vector[paths], return_index=True, return_inverse=True)
    order = np.sort(first)
    followers = [
        (int(path), int(paths[first[content]]))
        for path, content in zip(paths, inverse, strict=True)
        if paths[first[content]] != path
    ]
    return paths[order], followers


def _run_scope(
    images: DistinctImages,
    scope: str,
    thresholds: tuple[float, ...],
    block_size: int,
    floor: float,
    paths: np.ndarray | None = None,
) -> ScopeDecisions:
    """Run `sweep_pass` over `scope`: each group on its own, or everything (or only `paths`, ascending) with
    cross-group matches (matches and nearest neighbours looked for down to `floor`)."""
    path_item = np.full(len(images.paths), -1, dtype=np.int64)
    if scope == "global":
        parts = [np.arange(len(images.paths)) if paths is None else paths]
    else:
        order = np.argsort(images.path_group, kind="stable")
        parts = np.split(order, np.flatnonzero(np.diff(images.path_group[order])) + 1) if len(order) else [order]
    split = [_items(images, paths) for paths in parts]
    results = []
    offset = 0
    with hf_tqdm(total=sum(len(items) for items, _ in split), unit="img", desc=f"Sweep ({scope} scope)") as bar:
        for items, _ in split:
            done = offset

            def advance(count: int, start: int = offset) -> None:
                nonlocal done
                bar.update(start + count - done)
                done = start + count

            result = sweep_pass(
                images.vectors[images.path_vector[items]],
                thresholds,
                groups=images.path_group[items] if scope == "global" else None,
                want_nearest=scope != "global",
                block_size=block_size,
                progress=advance,
                floor=floor,
            )
            path_item[items] = np.arange(offset, offset + len(items))
            result.match[result.match >= 0] += offset
            results.append(result)
            offset += len(items)
    joined = PassResult(
        thresholds,
        np.concatenate([result.keep_bits for result in results]),
        np.concatenate([result.nearest for result in results]),
        np.concatenate([result.match for result in results]),
        np.concatenate([result.match_similarity for result in results]),
        floor,
    )
    item_paths = [items for items, _ in split]
    followers = [pair for _, part in split for pair in part]
    return ScopeDecisions(scope, np.concatenate(item_paths), joined, path_item, followers)


@dataclass(frozen=True)
class SweepTable:
    """Distinct images, and images and rows kept, per group at each threshold under one scope."""

    scope: str
    thresholds: tuple[float, ...]
    groups: tuple[str, ...]
    images: tuple[int, ...]
    kept_images: tuple[tuple[int, ...], ...]
    kept_rows: tuple[tuple[int, ...], ...]

    def kept_at(self, threshold: float) -> dict[str, int]:
        """Kept images per group at one of `thresholds`."""
        return dict(zip(self.groups, self.kept_images[self.thresholds.index(threshold)], strict=True))


def _table(images: DistinctImages, decisions: ScopeDecisions) -> SweepTable:
    groups = images.path_group[decisions.item_path]
    rows = images.path_rows[decisions.item_path]
    count = len(images.groups)
    kept_images, kept_rows = [], []
    for threshold in decisions.result.thresholds:
        kept = decisions.result.kept(threshold)
        kept_images.append(tuple(np.bincount(groups[kept], minlength=count).tolist()))
        kept_rows.append(tuple(np.bincount(groups[kept], weights=rows[kept], minlength=count).astype(int).tolist()))
    return SweepTable(
        decisions.scope,
        decisions.result.thresholds,
        tuple(images.groups),
        tuple(np.bincount(images.path_group, minlength=count).tolist()),
        tuple(kept_images),
        tuple(kept_rows),
    )


@dataclass
class DedupAnalysis:
    """The report's content: sweep tables per scope, nearest-neighbour similarities per group (those below
    `nearest_from` raised to it), sampled pairs."""

    config_name: str
    embedder: dict[str, Any]
    scope: str
    shown: tuple[float, ...]
    images: DistinctImages
    decisions: dict[str, ScopeDecisions]
    tables: dict[str, SweepTable]
    nearest: dict[str, np.ndarray]
    bands: list[Band]
    pairs: list[Pair] = field(default_factory=list)
    pair_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    nearest_from: float = GRID[0]
    cross_group: CrossGroup = field(default_factory=lambda: CrossGroup("skip"))

    @property
    def table(self) -> SweepTable:
        """The sweep under the config's own scope."""
        return self.tables[self.scope]

    def kept_paths(self, threshold: float, scope: str | None = None) -> set[str]:
        """The image paths kept at `threshold` under `scope` (default: the config's)."""
        decisions = self.decisions[scope or self.scope]
        paths = np.arange(len(self.images.paths))
        return {self.images.paths[path] for path in np.flatnonzero(decisions.path_kept(paths, threshold))}

    def to_json(self) -> dict[str, Any]:
        """Tables, nearest-neighbour quantiles and pairs, for `sweep.json` and dataset cards."""
        quantiles = (0.05, 0.25, 0.5, 0.75, 0.95)
        return {
            "config": self.config_name,
            "embedder": self.embedder,
            "scope": self.scope,
            "thresholds": list(self.shown),
            "sweeps": {scope: asdict(table) for scope, table in self.tables.items()},
            "nearest_from": self.nearest_from,
            "nearest_below_from": {
                group: int(np.count_nonzero(values <= self.nearest_from)) for group, values in self.nearest.items()
            },
            "nearest_quantiles": {
                group: dict(zip(map(str, quantiles), np.quantile(values, quantiles).round(4).tolist(), strict=True))
                for group, values in self.nearest.items()
                if len(values)
            },
            "pair_counts": self.pair_counts,
            "cross_group": {**asdict(self.cross_group), "recall": self.cross_group.recall},
            "pairs": [asdict(pair) for pair in self.pairs],
        }


def analyse(
    dataset: datasets.Dataset,
    cache: EmbeddingCache,
    config_name: str,
    shown: Sequence[float] = (0.7, 0.8, 0.9),
    scope: str = "group",
    cross_group: bool | str = "exact",
    per_band: int = 3,
    block_size: int = 1024,
    nearest_from: float = GRID[0],
    cross_group_sample: float = DEFAULT_SAMPLE,
) -> DedupAnalysis:
    """Everything the report shows about deduplicating `dataset` (embeddings already in `cache`).

    The sweep runs per group, and globally too under `scope="global"` or as `cross_group` says (`exact`, `sample`
    on a `cross_group_sample` share of the images with its recall measured, or `skip`: see `report.cross`), which
    finds the duplicates across groups. `shown` are the thresholds the pairs are labelled at. Nearest-neighbour
    similarities are exact from `nearest_from` up; lower ones count as `nearest_from`.
    """
    mode = check_cross_group(cross_group, cross_group_sample)
    if scope == "global" and mode == "sample":
        raise ConfigError("cross_group='sample' is not allowed for scope='global': its table is the config's own")
    if scope not in SCOPES:
        raise unknown_choice("scope", scope, SCOPES)
    if not shown:
        raise ConfigError("give at least one threshold to show")
    if isinstance(per_band, bool) or not isinstance(per_band, int) or per_band < 0:
        raise ConfigError(f"pairs per band={per_band!r} is not allowed; it must be a whole number >= 0")
    if isinstance(nearest_from, bool) or not isinstance(nearest_from, (int, float)) or not 0 <= nearest_from <= 1:
        raise ConfigError(f"nearest_from={nearest_from!r} is not allowed; it must be a number in [0, 1]")
    thresholds = sweep_thresholds(shown)
    lowest_shown = min(float(value) for value in shown)
    images = scan_images(dataset, cache)
    logger.info("%d distinct image paths, %d distinct files", len(images.paths), len(images.vectors))
    floor = min(float(nearest_from), lowest_shown)
    decisions = {"group": _run_scope(images, "group", thresholds, block_size, floor)}
    crossing = CrossGroup("exact" if scope == "global" else mode)
    if crossing.mode == "exact":
        decisions["global"] = _run_scope(images, "global", thresholds, block_size, lowest_shown)
    elif crossing.mode == "sample":
        decisions["global"], crossing = _sampled_pass(images, thresholds, block_size, lowest_shown, cross_group_sample)
    nearest_items = np.maximum(decisions["group"].result.nearest, np.float32(nearest_from))
    copied = [first for _, first in decisions["group"].followers]
    nearest_items[decisions["group"].path_item[np.asarray(copied, dtype=np.int64)]] = 1.0
    item_groups = images.path_group[decisions["group"].item_path]
    # A byte-identical copy's nearest neighbour is its original: similarity 1.
    copy_groups = images.path_group[np.asarray([path for path, _ in decisions["group"].followers], dtype=np.int64)]
    shown = tuple(sorted({float(value) for value in shown}))
    bands = score_bands(shown[0])
    sample = sample_pairs(images, decisions, scope, shown, bands, dataset, per_band)
    return DedupAnalysis(
        config_name=config_name,
        embedder=dict(cache.embedder.identity()),
        scope=scope,
        shown=shown,
        images=images,
        decisions=decisions,
        tables={
            name: _table(images, scope_decisions)
            for name, scope_decisions in decisions.items()
            if name == "group" or crossing.mode == "exact"
        },
        nearest={
            name: np.concatenate([nearest_items[item_groups == index], np.ones(int((copy_groups == index).sum()))])
            for index, name in enumerate(images.groups)
        },
        bands=bands,
        pairs=sample.pairs,
        pair_counts=sample.counts,
        nearest_from=float(nearest_from),
        cross_group=crossing,
    )


def _sampled_pass(
    images: DistinctImages, thresholds: tuple[float, ...], block_size: int, lowest_shown: float, share: float
) -> tuple[ScopeDecisions, CrossGroup]:
    """The global pass over the contents in `share` (`cross.in_share`), and its recall at `lowest_shown`."""
    paths = np.flatnonzero(in_share(images.path_vector, share))
    decisions = _run_scope(images, "global", thresholds, block_size, lowest_shown, paths)
    every, _ = _items(images, np.arange(len(images.paths)))
    vectors = images.vectors[images.path_vector[every]]
    groups = images.path_group[every]
    sampled = np.flatnonzero(decisions.path_item[every] >= 0)
    found = sample_found(vectors, sampled, decisions.result.match, lowest_shown)
    queries, matched, hits = measure_recall(vectors, groups, sampled, found, lowest_shown)
    crossing = CrossGroup("sample", share, len(sampled), lowest_shown, queries, matched, hits, len(every))
    logger.info("%s", crossing.describe())
    return decisions, crossing


@dataclass(frozen=True)
class CardSummary:
    """What a dataset card shows of the report: a Markdown table of kept images at the thresholds `shown`, and a few
    pairs; plain data, so that publishing a card needs none of the analysis."""

    markdown: str
    pairs: list[Pair]
    shown: tuple[float, ...]


def card_summary(analysis: DedupAnalysis, pairs: int = 4) -> CardSummary:
    """Kept images per group at the shown thresholds (Markdown), and up to `pairs` pairs from distinct bands,
    highest first (their images: `gallery.thumbnails(dataset, [pair.earlier.row, pair.later.row])`)."""
    table = analysis.table
    header = ["group", "images", *(f"kept at {value:g}" for value in analysis.shown)]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    kept = [table.kept_at(value) for value in analysis.shown]
    for column, group in enumerate(table.groups):
        cells = [group, f"{table.images[column]:,}", *(f"{at[group]:,}" for at in kept)]
        lines.append("| " + " | ".join(cells) + " |")
    totals = [f"{sum(table.images):,}", *(f"{sum(at.values()):,}" for at in kept)]
    lines.append("| " + " | ".join(["total", *totals]) + " |")
    order = {band.label: index for index, band in enumerate(analysis.bands)}
    picked: list[Pair] = []
    for pair in sorted(analysis.pairs, key=lambda pair: -order[pair.band]):
        if len(picked) < pairs and all(pair.band != other.band for other in picked):
            picked.append(pair)
    return CardSummary("\n".join(lines), picked, analysis.shown)
