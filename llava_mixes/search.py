"""Exact greedy keep-first near-duplicate search over unit vectors, without an N x N matrix.

The rule: visit items in order; an item is removed when its cosine similarity to an item already kept
is >= the threshold, else it is kept. A removed item's `duplicate_of` is the kept item it is most
similar to (the earliest on a tie).

Items are processed in blocks. A block is compared with the kept items in float32 tiles (memory
`block_size x tile_size`), then resolved in order against the block's own earlier kept items. Every
float32 score within `tolerance` of the threshold is recomputed in float64 from the input vectors, and
only that exact cosine decides, so the result does not depend on the block size, the tile size or the
BLAS library's summation order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# float32 dot products of unit vectors in d <= 4096 are within d * 2**-24 < 3e-4 of exact.
FLOAT32_TOLERANCE = 3e-4


@dataclass(frozen=True)
class KeepResult:
    """Per item: whether it is kept, and for removed items the kept item it duplicates and the cosine."""

    kept: np.ndarray
    duplicate_of: np.ndarray
    similarity: np.ndarray


def _exact_cosines(vectors: np.ndarray, norms: np.ndarray, item: int, others: np.ndarray) -> np.ndarray:
    dots = vectors[others].astype(np.float64) @ vectors[item].astype(np.float64)
    return dots / (norms[others] * norms[item])


def greedy_keep_first(
    vectors: np.ndarray,
    threshold: float,
    block_size: int = 1024,
    tile_size: int = 16384,
    tolerance: float = FLOAT32_TOLERANCE,
) -> KeepResult:
    """Apply the keep-first rule (module docstring) to `vectors` (n x d, any float dtype) in order."""
    n, dim = vectors.shape
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
    norms[norms == 0] = 1.0
    kept = np.zeros(n, dtype=bool)
    duplicate_of = np.full(n, -1, dtype=np.int64)
    similarity = np.full(n, np.nan, dtype=np.float32)
    kept_vectors = np.empty((min(n, block_size), dim), dtype=np.float32)
    kept_ids = np.empty(min(n, block_size), dtype=np.int64)
    kept_count = 0
    cutoff = threshold - tolerance

    for start in range(0, n, block_size):
        stop = min(start + block_size, n)
        block = (vectors[start:stop].astype(np.float32) / norms[start:stop, None].astype(np.float32)).astype(
            np.float32
        )
        candidates: list[list[np.ndarray]] = [[] for _ in range(stop - start)]
        for tile_start in range(0, kept_count, tile_size):
            tile_stop = min(tile_start + tile_size, kept_count)
            scores = block @ kept_vectors[tile_start:tile_stop].T
            rows, cols = np.nonzero(scores >= cutoff)
            if rows.size:
                ids = kept_ids[tile_start + cols]
                bounds = np.searchsorted(rows, np.arange(stop - start + 1))
                for row in np.unique(rows).tolist():
                    candidates[row].append(ids[bounds[row] : bounds[row + 1]])
        inner = block @ block.T
        block_kept: list[int] = []
        for offset in range(stop - start):
            item = start + offset
            near = [*candidates[offset], np.empty(0, dtype=np.int64)]
            if block_kept:
                earlier = np.asarray(block_kept, dtype=np.int64)
                near.append(earlier[inner[offset, earlier - start] >= cutoff])
            others = np.concatenate(near)
            if others.size:
                exact = _exact_cosines(vectors, norms, item, others)
                hits = exact >= threshold
                if hits.any():
                    best = np.flatnonzero(exact == exact[hits].max())
                    winner = others[best].min()
                    duplicate_of[item] = winner
                    similarity[item] = np.float32(exact[others == winner][0])
                    continue
            kept[item] = True
            block_kept.append(item)
        if block_kept:
            if kept_count + len(block_kept) > len(kept_ids):
                capacity = max(len(kept_ids) * 2, kept_count + len(block_kept))
                kept_vectors = np.resize(kept_vectors, (min(capacity, n), dim))
                kept_ids = np.resize(kept_ids, min(capacity, n))
            rows = np.asarray(block_kept, dtype=np.int64)
            kept_vectors[kept_count : kept_count + len(rows)] = block[rows - start]
            kept_ids[kept_count : kept_count + len(rows)] = rows
            kept_count += len(rows)
    return KeepResult(kept, duplicate_of, similarity)


def brute_force_keep_first(vectors: np.ndarray, threshold: float) -> KeepResult:
    """The same rule, one item at a time in float64: the reference `greedy_keep_first` must equal."""
    n = len(vectors)
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
    norms[norms == 0] = 1.0
    kept = np.zeros(n, dtype=bool)
    duplicate_of = np.full(n, -1, dtype=np.int64)
    similarity = np.full(n, np.nan, dtype=np.float32)
    kept_so_far: list[int] = []
    for item in range(n):
        if kept_so_far:
            others = np.asarray(kept_so_far, dtype=np.int64)
            exact = _exact_cosines(vectors, norms, item, others)
            if exact.max() >= threshold:
                winner = others[np.flatnonzero(exact == exact.max()).min()]
                duplicate_of[item] = winner
                similarity[item] = np.float32(exact.max())
                continue
        kept[item] = True
        kept_so_far.append(item)
    return KeepResult(kept, duplicate_of, similarity)
