"""Exact threshold search of query vectors against reference vectors, blocked, in bounded memory.

Queries are taken in blocks and references in tiles; each block x tile product is computed in float32
(memory `block_size x tile_size` scores), every score within `FLOAT32_TOLERANCE` of the threshold is
recomputed in float64 from the input vectors, and only that exact cosine decides: the same float64 re-check
as dedup's search, so the pairs found do not depend on the block or tile size or the BLAS library.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from llava_mixes.dedup.search import FLOAT32_TOLERANCE
from llava_mixes.vectors import checked_norms

RECHECK_CHUNK = 65536
"""Candidate pairs re-checked in float64 at once (bounds the memory of the re-check)."""


@dataclass(frozen=True)
class Matches:
    """Every (query, reference) pair whose exact cosine is >= the threshold, sorted by query then reference."""

    query: np.ndarray
    reference: np.ndarray
    similarity: np.ndarray

    def best(self, n_queries: int) -> tuple[np.ndarray, np.ndarray]:
        """Per query, the reference it matches most closely (the lowest index on a tie; -1 for none) and
        that cosine (NaN for none)."""
        best = np.full(n_queries, -1, dtype=np.int64)
        score = np.full(n_queries, np.nan, dtype=np.float64)
        # Visit pairs from the weakest to the strongest, lowest reference last on a tie, so the last write wins.
        order = np.lexsort((-self.reference, self.similarity))
        best[self.query[order]] = self.reference[order]
        score[self.query[order]] = self.similarity[order]
        return best, score


def _unit(vectors: np.ndarray, norms: np.ndarray) -> np.ndarray:
    return (vectors.astype(np.float32) / norms[:, None].astype(np.float32)).astype(np.float32)


def range_search(
    queries: np.ndarray,
    references: np.ndarray,
    threshold: float,
    block_size: int = 1024,
    tile_size: int = 16384,
    progress: Callable[[int], None] | None = None,
) -> Matches:
    """Every pair of a query (n x d) and a reference (m x d) with float64 cosine >= `threshold`.

    Vectors may be any float dtype and need not be unit length; a NaN, infinite or zero vector raises
    `BadEmbeddingError` naming its index. `progress(done)` is called after each block of queries."""
    if queries.shape[1:] != references.shape[1:]:
        raise ValueError(f"queries have shape {queries.shape} and references {references.shape}: dimensions differ")
    query_norms = checked_norms(queries)
    reference_norms = checked_norms(references)
    cutoff = threshold - FLOAT32_TOLERANCE
    found_query: list[np.ndarray] = []
    found_reference: list[np.ndarray] = []
    reference_tiles = [
        _unit(references[start : start + tile_size], reference_norms[start : start + tile_size])
        for start in range(0, len(references), tile_size)
    ]
    for start in range(0, len(queries), block_size):
        stop = min(start + block_size, len(queries))
        block = _unit(queries[start:stop], query_norms[start:stop])
        for tile_index, tile in enumerate(reference_tiles):
            rows, cols = np.nonzero(block @ tile.T >= cutoff)
            if rows.size:
                found_query.append(rows + start)
                found_reference.append(cols + tile_index * tile_size)
        if progress is not None:
            progress(stop)
    query = np.concatenate(found_query) if found_query else np.empty(0, dtype=np.int64)
    reference = np.concatenate(found_reference) if found_reference else np.empty(0, dtype=np.int64)
    similarity = np.empty(len(query), dtype=np.float64)
    for start in range(0, len(query), RECHECK_CHUNK):
        pairs = slice(start, start + RECHECK_CHUNK)
        dots = np.einsum(
            "ij,ij->i",
            queries[query[pairs]].astype(np.float64),
            references[reference[pairs]].astype(np.float64),
        )
        similarity[pairs] = dots / (query_norms[query[pairs]] * reference_norms[reference[pairs]])
    hit = similarity >= threshold
    order = np.lexsort((reference[hit], query[hit]))
    return Matches(query[hit][order].astype(np.int64), reference[hit][order].astype(np.int64), similarity[hit][order])
