"""How much the pictures of several sources overlap, pair by pair, for a mix that lists them in order.

Every distinct picture (SHA-256 of its bytes) of every source is embedded once, through the content-keyed
embedding cache (so a second run embeds nothing), and searched against every other with the exact blocked
`range_search` (float32 tiles, float64 re-check). For sources `a` and `b`:

- `exact[a][b]`: distinct pictures present in both, byte for byte (the diagonal: each source's distinct pictures);
- `near[a][b]`: distinct pictures of `a` with a copy among `b`'s: at cosine >= the threshold, confirmed by
  verification for a copy embedder (`decontam.copies`; a byte copy always
  counts, embedded or not; so `near >= exact`; the diagonal: each source's distinct pictures);
- `rows_lost[b][a]` for `a` listed before `b`: rows of `b` whose picture has such a match among `a`'s pictures;
  `rows_lost_total[b]`: rows of `b` whose picture has a match in any earlier source, which is what a mix with
  cross-source dedup where earlier sources win takes from `b` because of the sources before it.

A picture that could not be embedded is compared byte for byte only, and counted in `not_embedded`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from llava_mixes import schema
from llava_mixes.decontam.candidates import CandidateBudget, CandidateTally, candidate_pairs
from llava_mixes.decontam.copies import confirm, picture_source, verification_record
from llava_mixes.decontam.decontaminate import copy_search
from llava_mixes.decontam.search import Matches, range_search
from llava_mixes.embedding.embedders import Embedder
from llava_mixes.embedding.transform import fill_cache
from llava_mixes.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_EMBEDDER = "gradients"
"""Sources share copies of pictures (re-encoded, resized), so overlap defaults to a copy embedder."""


@dataclass
class Overlap:
    """The overlap of `sources` (in mix order) at `threshold` with `embedder` (see the module docstring).
    Matrices are lists of rows indexed like `sources`; `rows_lost[b][a]` is 0 unless `a` comes before `b`."""

    sources: list[str]
    threshold: float
    embedder: dict[str, Any]
    rows: list[int]
    images: list[int]
    exact: list[list[int]]
    near: list[list[int]]
    rows_lost: list[list[int]]
    rows_lost_total: list[int]
    not_embedded: int = 0
    embedded: int = 0
    cached: int = 0
    verification: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """Everything, as JSON-serialisable values."""
        return asdict(self)


def _source_images(dataset: datasets.Dataset) -> dict[str, int]:
    """Each distinct picture's SHA-256 in `dataset` -> the rows that carry it (rows without a picture left out)."""
    if schema.IMAGE_SHA256 not in dataset.column_names:
        raise ConfigError(f"overlap needs the column {schema.IMAGE_SHA256!r}; the dataset has {dataset.column_names}")
    counts: dict[str, int] = {}
    for table in dataset.select_columns([schema.IMAGE_SHA256]).with_format("arrow").iter(batch_size=65536):
        for sha in table.column(schema.IMAGE_SHA256).to_pylist():
            if sha is not None:
                counts[sha] = counts.get(sha, 0) + 1
    return counts


def source_overlap(
    sources: Mapping[str, datasets.Dataset],
    threshold: float | None = None,
    embedder: str | Embedder = DEFAULT_EMBEDDER,
    *,
    cache_dir: str | Path | None = None,
    device: str | None = None,
    batch_size: int = 64,
    num_workers: int | None = None,
    block_size: int = 1024,
    tile_size: int = 16384,
    max_candidate_pairs: int | None = None,
) -> Overlap:
    """The pairwise overlap of `sources` (name -> rows with `image` and `image_sha256`, in mix order); see the
    module docstring. `threshold=None` is the embedder's copy threshold. Where verification confirms the
    candidates, only pairs that can change the answer (pictures of different sources) are candidates, and more
    than `max_candidate_pairs` of them (None: `CandidateBudget.of`) raise `TooManyCandidatesError` first."""
    names = list(sources)
    if len(names) < 2:
        raise ConfigError(f"overlap compares at least two sources; got {names}")
    search = copy_search(embedder, threshold, device, cache_dir)
    model, devices, threshold, root = search.model, search.devices, search.threshold, search.cache_root

    per_source = [_source_images(sources[name]) for name in names]
    hashes = sorted(set().union(*per_source))
    index = {sha: position for position, sha in enumerate(hashes)}
    count = len(names)
    member = np.zeros((len(hashes), count), dtype=bool)
    rows_of = np.zeros((len(hashes), count), dtype=np.int64)
    for source, images in enumerate(per_source):
        positions = np.fromiter((index[sha] for sha in images), dtype=np.int64, count=len(images))
        member[positions, source] = True
        rows_of[positions, source] = np.fromiter(images.values(), dtype=np.int64, count=len(images))

    embedded = cached = 0
    for name in names:
        cache, stats = fill_cache(sources[name], model, root, batch_size, num_workers, devices, keep_failures=True)
        embedded += stats.embedded
        cached += stats.cached
    vectors, errors = cache.vectors(hashes)
    usable = np.flatnonzero([error is None for error in errors])
    logger.info("overlap of %s: %d distinct pictures, %d embedded", names, len(hashes), len(usable))
    verification = None
    if search.verifier is None:
        found = range_search(vectors[usable], vectors[usable], threshold, block_size=block_size, tile_size=tile_size)
    else:
        budget, tally = CandidateBudget.of(max_candidate_pairs), CandidateTally()
        labels = ["+".join(np.asarray(names)[member[position]].tolist()) for position in usable.tolist()]
        sets = member[usable]

        def new_sources(query: np.ndarray, reference: np.ndarray) -> np.ndarray:
            """Pairs where one picture is in a source the other is not in: only those can change the answer."""
            return (sets[query] != sets[reference]).any(axis=1)

        found = candidate_pairs(
            vectors[usable],
            vectors[usable],
            threshold,
            labels,
            labels,
            budget,
            tally,
            earlier_only=True,
            wanted=new_sources,
        )
        budget.check(tally, f"cosine >= {threshold}", "threshold= in source_overlap(), or --threshold")
        keys = [hashes[position] for position in usable.tolist()]
        source = picture_source(*(sources[name] for name in names))
        found, verified = confirm(found, keys, keys, search.verifier, source, num_workers)
        verification = verification_record(search.verifier, threshold, verified)
        found = Matches(
            np.concatenate([found.query, found.reference]),
            np.concatenate([found.reference, found.query]),
            np.concatenate([found.similarity, found.similarity]),
        )
    identity = np.arange(len(hashes), dtype=np.int64)
    left = np.concatenate([usable[found.query], identity])
    right = np.concatenate([usable[found.reference], identity])

    # matches[p, s]: picture p has a picture of source s at or above the threshold (itself included).
    matches = np.zeros_like(member)
    for source in range(count):
        hit = member[right, source]
        matches[np.unique(left[hit]), source] = True
    exact = member.T.astype(np.int64) @ member.astype(np.int64)
    near = member.T.astype(np.int64) @ matches.astype(np.int64)
    rows_lost = np.zeros((count, count), dtype=np.int64)
    totals = []
    for later in range(count):
        for earlier in range(later):
            rows_lost[later, earlier] = int(rows_of[matches[:, earlier], later].sum())
        earlier_hit = matches[:, :later].any(axis=1)
        totals.append(int(rows_of[earlier_hit, later].sum()))
    return Overlap(
        sources=names,
        threshold=threshold,
        embedder=model.identity(),
        rows=[len(sources[name]) for name in names],
        images=[len(images) for images in per_source],
        exact=exact.tolist(),
        near=near.tolist(),
        rows_lost=rows_lost.tolist(),
        rows_lost_total=totals,
        not_embedded=len(hashes) - len(usable),
        embedded=embedded,
        cached=cached,
        verification=verification,
    )


def format_overlap(overlap: Overlap) -> str:
    """A plain-text table: one line per ordered pair of sources, then the rows each source loses in mix order."""
    width = max(len(name) for name in overlap.sources)
    head = f"{'source':{width}s}  {'other':{width}s}  {'same bytes':>10s}  {'near':>8s}  {'rows lost':>9s}"
    lines = [head, "-" * len(head)]
    for a, name in enumerate(overlap.sources):
        for b, other in enumerate(overlap.sources):
            if a == b:
                continue
            lost = f"{overlap.rows_lost[a][b]:9,d}" if b < a else f"{'-':>9s}"
            lines.append(
                f"{name:{width}s}  {other:{width}s}  {overlap.exact[a][b]:10,d}  {overlap.near[a][b]:8,d}  {lost}"
            )
    lines.append("")
    lines.append(f"{'source':{width}s}  {'rows':>8s}  {'pictures':>8s}  {'rows lost to earlier sources':>28s}")
    for a, name in enumerate(overlap.sources):
        lines.append(
            f"{name:{width}s}  {overlap.rows[a]:8,d}  {overlap.images[a]:8,d}  {overlap.rows_lost_total[a]:28,d}"
        )
    return "\n".join(lines)
