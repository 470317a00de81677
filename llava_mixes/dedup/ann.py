"""Approximate near-duplicate search for very large scopes, only when asked (`dedup_search="ivf"`).

An inverted file, scanned with matrix products: faiss k-means (spherical, trained on an evenly spaced
sample) cuts the unit vectors into cells; each vector is stored in its nearest cell and probes its
`probes` nearest cells; for each cell, one float32 matrix product of the vectors probing it against the
vectors stored in it finds every pair within `threshold - FLOAT32_TOLERANCE`. Each candidate pair is then
decided by its exact float64 cosine, and the keep-first rule runs over the candidate pairs in order, with
the exact search's tie rules. The only difference from the exact search: a pair is missed when neither
vector probes the other's cell (`bench/bench_dedup_global.py` measures that recall). With `probes` equal
to the number of cells it is the exact search. Needs `pip install llava_mixes[ann]` (faiss-cpu).
"""

from __future__ import annotations

import logging

import numpy as np

from llava_mixes.dedup.search import FLOAT32_TOLERANCE, KeepResult
from llava_mixes.vectors import checked_norms, exact_cosines

logger = logging.getLogger(__name__)

CHUNK = 65536


def _faiss():
    try:
        import faiss
    except ImportError as error:
        raise ImportError("dedup_search='ivf' needs faiss: pip install 'llava_mixes[ann]'") from error
    return faiss


def _unit(vectors: np.ndarray, norms: np.ndarray, rows: slice | np.ndarray) -> np.ndarray:
    return (vectors[rows].astype(np.float64) / norms[rows, None]).astype(np.float32)


def assign_cells(vectors: np.ndarray, norms: np.ndarray, cells: int, probes: int, seed: int = 0) -> np.ndarray:
    """For each vector, its `probes` nearest k-means cells (an `(n, probes)` array of cell ids)."""
    faiss = _faiss()
    n, dim = vectors.shape
    picked = np.linspace(0, n - 1, min(n, 64 * cells)).astype(np.int64)
    kmeans = faiss.Kmeans(dim, cells, niter=12, spherical=True, seed=seed, verbose=False)
    kmeans.train(_unit(vectors, norms, picked))
    quantizer = faiss.IndexFlatIP(dim)
    quantizer.add(kmeans.centroids)
    assigned = np.empty((n, probes), dtype=np.int64)
    for start in range(0, n, CHUNK):
        _, assigned[start : start + CHUNK] = quantizer.search(
            _unit(vectors, norms, slice(start, start + CHUNK)), probes
        )
    return assigned


def _by_cell(cells: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Item ids grouped by cell (`cells` is an `(n, k)` array of cell ids), and each cell's bounds."""
    flat = cells.reshape(-1)
    order = np.argsort(flat, kind="stable")
    return order // cells.shape[1], np.searchsorted(flat[order], np.arange(count + 1))


def candidate_pairs(vectors: np.ndarray, norms: np.ndarray, cutoff: float, assigned: np.ndarray) -> np.ndarray:
    """Distinct pairs `(later, earlier)` whose float32 score is >= cutoff, where one vector probes the
    cell the other is stored in (`assigned[:, 0]`); sorted by the later item."""
    n = len(vectors)
    count = int(assigned.max()) + 1
    stored, stored_bounds = _by_cell(assigned[:, :1], count)
    probing, probing_bounds = _by_cell(assigned, count)
    found = []
    for cell in range(count):
        members = stored[stored_bounds[cell] : stored_bounds[cell + 1]]
        queries = probing[probing_bounds[cell] : probing_bounds[cell + 1]]
        if not len(members) or not len(queries):
            continue
        rows, cols = np.nonzero(_unit(vectors, norms, queries) @ _unit(vectors, norms, members).T >= cutoff)
        first, second = queries[rows], members[cols]
        distinct = first != second
        found.append(np.maximum(first, second)[distinct] * n + np.minimum(first, second)[distinct])
    keys = np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)
    return np.stack([keys // n, keys % n], axis=1)


def keep_first_over_pairs(vectors: np.ndarray, norms: np.ndarray, pairs: np.ndarray, threshold: float) -> KeepResult:
    """The keep-first rule where only `pairs` (`(later, earlier)`, sorted by later) can be duplicates."""
    n = len(vectors)
    limits = np.searchsorted(pairs[:, 0], np.arange(n + 1))
    kept = np.zeros(n, dtype=bool)
    duplicate_of = np.full(n, -1, dtype=np.int64)
    similarity = np.full(n, np.nan, dtype=np.float32)
    for item in range(n):
        others = pairs[limits[item] : limits[item + 1], 1]
        others = others[kept[others]]
        if others.size:
            exact = exact_cosines(vectors, norms, item, others)
            hits = exact >= threshold
            if hits.any():
                winner = others[np.flatnonzero(exact == exact[hits].max())].min()
                duplicate_of[item] = winner
                similarity[item] = np.float32(exact[others == winner][0])
                continue
        kept[item] = True
    return KeepResult(kept, duplicate_of, similarity)


def approximate_keep_first(
    vectors: np.ndarray, threshold: float, cells: int | None = None, probes: int = 16
) -> KeepResult:
    """The keep-first rule over the candidate pairs of an inverted file (module docstring)."""
    norms = checked_norms(vectors)
    cells = cells or int(np.clip(len(vectors) // 1000, 1, 4096))
    assigned = assign_cells(vectors, norms, cells, min(probes, cells))
    pairs = candidate_pairs(vectors, norms, threshold - FLOAT32_TOLERANCE, assigned)
    result = keep_first_over_pairs(vectors, norms, pairs, threshold)
    logger.info(
        "approximate search: %d candidate pairs, %d of %d kept", len(pairs), int(result.kept.sum()), len(vectors)
    )
    return result
