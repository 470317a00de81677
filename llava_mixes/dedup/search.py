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

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from llava_mixes.dedup.speed import cpu_bfloat16_speedup
from llava_mixes.devices import blas_threads
from llava_mixes.vectors import checked_norms, exact_cosines

# float32 dot products of unit vectors in d <= 4096 are within d * 2**-24 < 3e-4 of exact.
FLOAT32_TOLERANCE = 3e-4
# The host search switches to torch bfloat16 (where the CPU runs it fast) from this many items in a scope,
# on blocks and tiles at least this large (its speed needs large products; scores take 2 bytes each).
CPU_BFLOAT16_MIN_ITEMS = 16384
CPU_BFLOAT16_MIN_SPEEDUP = 1.5
CPU_BFLOAT16_BLOCK = 2048
CPU_BFLOAT16_TILE = 65536


@dataclass
class SearchWork:
    """What one search did, for measuring it against the machine: `scored_pairs` pairs scored at full
    dimension `dim` in `precision` (the pruned tiles' pairs left out), `bounded_pairs` pairs scored on the
    `rank`-dimensional low-rank bound only, the wall seconds inside those two kinds of products, and how many
    pairs were re-checked in float64. It never changes a decision."""

    dim: int = 0
    precision: str = "float32"
    rank: int = 0
    scored_pairs: int = 0
    bounded_pairs: int = 0
    product_seconds: float = 0.0
    bound_seconds: float = 0.0
    rechecked_pairs: int = 0

    @property
    def flops(self) -> float:
        """The full-dimension products' floating-point operations: scored pairs x 2 x dim."""
        return 2.0 * self.scored_pairs * self.dim


@dataclass(frozen=True)
class KeepResult:
    """Per item: whether it is kept, and for removed items the kept item it duplicates and the cosine;
    `work` says what the search did to decide (empty where no search counted it)."""

    kept: np.ndarray
    duplicate_of: np.ndarray
    similarity: np.ndarray
    work: SearchWork = field(default_factory=SearchWork, compare=False)


class LowRankBound:
    """An exact upper bound on cosines from a few principal directions: for unit vectors split into a
    projection p on an orthonormal basis and a residual of norm r, <q, x> <= <p_q, p_x> + r_q * r_x.
    Any basis makes it a true bound; principal directions make it tight when the vectors are anisotropic
    (as ViT class embeddings are). Computed in float32 with `SLACK` for its rounding."""

    RANK = 64
    SLACK = 1e-4

    def __init__(self, basis: np.ndarray) -> None:
        self.basis = basis

    @classmethod
    def fit(cls, vectors: np.ndarray, norms: np.ndarray, cutoff: float, sample: int = 2048) -> LowRankBound | None:
        """The bound from an evenly spaced sample, or None when it would prune under 90% of sample pairs."""
        n, dim = vectors.shape
        if n < 2 * sample or dim <= 2 * cls.RANK:
            return None
        picked = np.linspace(0, n - 1, sample).astype(np.int64)
        rows = vectors[picked].astype(np.float64) / norms[picked, None]
        # The leading principal directions by subspace iteration (a full d x d eigh cost 1.4 s at d=1024 on a
        # 2-core EPYC); the basis is orthonormal to float64 precision, which is all the bound's truth needs.
        # On one BLAS thread: threaded, each 1024 x 96 QR took 0.2-1.7 s on a busy 2-core machine, 4 ms alone.
        with blas_threads(1):
            wider = np.linalg.qr(rows.T @ np.random.default_rng(0).standard_normal((sample, cls.RANK + 32)))[0]
            for _ in range(3):
                wider = np.linalg.qr(rows.T @ (rows @ wider))[0]
            _, rotation = np.linalg.eigh(wider.T @ (rows.T @ (rows @ wider)))
            bound = cls(wider @ rotation[:, -cls.RANK :])
            projected, residual = bound.project(rows.astype(np.float32))
        upper = projected @ projected.T + residual[:, None] * residual[None, :]
        return bound if np.count_nonzero(upper >= cutoff - cls.SLACK) < 0.1 * upper.size else None

    def project(self, unit_block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Projections (float32) and residual norms (float32, rounded up) of unit vectors."""
        block = unit_block.astype(np.float64)
        projected = block @ self.basis
        energy = np.einsum("ij,ij->i", block, block) - np.einsum("ij,ij->i", projected, projected)
        residual = np.sqrt(np.clip(energy, 0.0, None)) * (1 + 1e-6) + 1e-6
        return projected.astype(np.float32), residual.astype(np.float32)


class _HostScorer:
    """Kept vectors in float32 host memory, scored with BLAS in tiles of `tile_size` kept items; with a
    `LowRankBound`, only the pairs the bound cannot rule out are passed on, unless a tile prunes poorly."""

    tolerance = FLOAT32_TOLERANCE
    DENSE_FRACTION = 0.02

    def __init__(self, n: int, dim: int, tile_size: int, bound: LowRankBound | None = None) -> None:
        self.tile_size = tile_size
        self.bound = bound
        rank = bound.basis.shape[1] if bound is not None else 0
        # Room for every item at once: untouched pages take no memory, and nothing is copied as items are kept.
        self.vectors = np.empty((n, dim), dtype=np.float32)
        self.projected = np.empty((n, rank), dtype=np.float32)
        self.residual = np.empty(n, dtype=np.float32)
        self.ids = np.empty(n, dtype=np.int64)
        self.count = 0
        self.work = SearchWork(dim=dim, precision="float32", rank=rank)

    def _product(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """`left @ right.T` at full dimension, counted in `work`."""
        began = time.perf_counter()
        scores = left @ right.T
        self.work.product_seconds += time.perf_counter() - began
        self.work.scored_pairs += len(left) * len(right)
        return scores

    def _bound_product(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """`left @ right.T` on the low-rank projections, counted in `work`."""
        began = time.perf_counter()
        scores = left @ right.T
        self.work.bound_seconds += time.perf_counter() - began
        self.work.bounded_pairs += len(left) * len(right)
        return scores

    def candidates(self, block: np.ndarray, cutoff: float) -> list[list[np.ndarray]]:
        """Per block row, the ids of kept items that may score >= cutoff."""
        found: list[list[np.ndarray]] = [[] for _ in range(len(block))]
        projected, residual = self.bound.project(block) if self.bound is not None else (None, None)
        for tile_start in range(0, self.count, self.tile_size):
            tile = slice(tile_start, min(tile_start + self.tile_size, self.count))
            if projected is not None:
                upper = self._bound_product(projected, self.projected[tile])
                upper += residual[:, None] * self.residual[None, tile]
                possible = upper >= cutoff - LowRankBound.SLACK
                if np.count_nonzero(possible) <= self.DENSE_FRACTION * possible.size:
                    rows, cols = np.nonzero(possible)
                    _group_by_row(found, rows, self.ids[tile_start + cols])
                    continue
            rows, cols = np.nonzero(self._product(block, self.vectors[tile]) >= cutoff)
            _group_by_row(found, rows, self.ids[tile_start + cols])
        return found

    def inner(self, block: np.ndarray, cutoff: float) -> np.ndarray:
        """Which pairs of block rows may score >= cutoff (a boolean matrix)."""
        if self.bound is not None:
            projected, residual = self.bound.project(block)
            upper = self._bound_product(projected, projected) + residual[:, None] * residual[None, :]
            return upper >= cutoff - LowRankBound.SLACK
        return self._product(block, block) >= cutoff

    def add(self, block: np.ndarray, rows: np.ndarray, ids: np.ndarray) -> None:
        added = slice(self.count, self.count + len(rows))
        self.vectors[added] = block[rows]
        if self.bound is not None:
            self.projected[added], self.residual[added] = self.bound.project(block[rows])
        self.ids[added] = ids
        self.count += len(rows)


class _TorchScorer:
    """Kept vectors on a torch device (a GPU, or a CPU with fast bfloat16) in bfloat16, scored in tiles."""

    # bf16 rounds each coordinate by at most 2**-9 relative, so a dot product of unit vectors moves by at
    # most 2 * 2**-9 + 2**-18 (Cauchy-Schwarz); the product is accumulated in float32 and rounded to bf16
    # (2**-9 relative, on a score <= 1): 6e-3 in all, and 8e-3 bounds it with margin.
    tolerance = 8e-3

    def __init__(self, n: int, dim: int, tile_size: int, device: str) -> None:
        import torch

        self.torch = torch
        self.device = device
        self.tile_size = tile_size
        self.vectors = torch.empty((n, dim), dtype=torch.bfloat16, device=device)
        self.ids = np.empty(n, dtype=np.int64)
        self.count = 0
        self.work = SearchWork(dim=dim, precision="bfloat16")

    def _on_device(self, block: np.ndarray) -> object:
        return self.torch.from_numpy(block).to(self.device).to(self.torch.bfloat16)

    def _product(self, left: object, right: object) -> object:
        """`left @ right.T` in bfloat16, counted in `work` (on a GPU the time is that of queueing it)."""
        began = time.perf_counter()
        scores = self.torch.matmul(left, right.T)
        self.work.product_seconds += time.perf_counter() - began
        self.work.scored_pairs += len(left) * len(right)
        return scores

    def candidates(self, block: np.ndarray, cutoff: float) -> list[list[np.ndarray]]:
        found: list[list[np.ndarray]] = [[] for _ in range(len(block))]
        queries = self._on_device(block)
        floor = bfloat16_floor(cutoff)
        for tile_start in range(0, self.count, self.tile_size):
            tile_stop = min(tile_start + self.tile_size, self.count)
            scores = self._product(queries, self.vectors[tile_start:tile_stop])
            pairs = (scores >= floor).nonzero().cpu().numpy()
            _group_by_row(found, pairs[:, 0], self.ids[tile_start + pairs[:, 1]])
        return found

    def inner(self, block: np.ndarray, cutoff: float) -> np.ndarray:
        queries = self._on_device(block)
        return (self._product(queries, queries) >= bfloat16_floor(cutoff)).cpu().numpy()

    def add(self, block: np.ndarray, rows: np.ndarray, ids: np.ndarray) -> None:
        self.vectors[self.count : self.count + len(rows)] = self._on_device(np.ascontiguousarray(block[rows]))
        self.ids[self.count : self.count + len(rows)] = ids
        self.count += len(rows)


def bfloat16_floor(value: float) -> float:
    """The largest bfloat16 number <= `value`, so that comparing bfloat16 scores with it is exact and a
    score the float32 cutoff admits is never lost to the comparison's rounding."""
    bits = int(np.array(value, dtype=np.float32).view(np.uint32))
    truncated = bits & 0xFFFF0000
    if value < 0 and truncated != bits:
        truncated += 0x10000
    return float(np.array(truncated, dtype=np.uint32).view(np.float32))


def _group_by_row(found: list[list[np.ndarray]], rows: np.ndarray, ids: np.ndarray) -> None:
    """Append `ids` to `found[row]`, for `rows` sorted ascending (as `nonzero` returns them)."""
    if not rows.size:
        return
    bounds = np.searchsorted(rows, np.arange(len(found) + 1))
    for row in np.unique(rows).tolist():
        found[row].append(ids[bounds[row] : bounds[row + 1]])


def greedy_keep_first(
    vectors: np.ndarray,
    threshold: float,
    block_size: int = 1024,
    tile_size: int = 16384,
    device: str | None = None,
    prune: bool = True,
    progress: Callable[[int], None] | None = None,
) -> KeepResult:
    """Apply the keep-first rule (module docstring) to `vectors` (n x d, any float dtype) in order.

    `device=None` scores on this host's CPU: NumPy in float32, pruning with a `LowRankBound` where a
    sample shows it pays (`prune=False` never does); where it does not and the scope has at least
    `CPU_BFLOAT16_MIN_ITEMS` items, torch in bfloat16 when this CPU runs it at least
    `CPU_BFLOAT16_MIN_SPEEDUP` times as fast (`cpu_bfloat16_speedup`), on blocks and tiles of at least
    `CPU_BFLOAT16_BLOCK` x `CPU_BFLOAT16_TILE`.
    A torch device (`"cuda"`, `"cpu"`) always scores with torch in bfloat16. bfloat16 scores get a wider
    re-check band, so the result is the same either way. `progress(done)` is called after each block
    with the number of items decided so far. A vector with a NaN or infinite coordinate, or a zero vector,
    raises `BadEmbeddingError` naming its index: it has no cosine to compare. The result's `work` counts
    the pairs scored and the time inside the products (`SearchWork`).
    """
    n, dim = vectors.shape
    norms = checked_norms(vectors)
    kept = np.zeros(n, dtype=bool)
    duplicate_of = np.full(n, -1, dtype=np.int64)
    similarity = np.full(n, np.nan, dtype=np.float32)
    scorer: _HostScorer | _TorchScorer
    if device is None:
        bound = LowRankBound.fit(vectors, norms, threshold - _HostScorer.tolerance) if prune else None
        if bound is None and n >= CPU_BFLOAT16_MIN_ITEMS and cpu_bfloat16_speedup() >= CPU_BFLOAT16_MIN_SPEEDUP:
            block_size, tile_size = max(block_size, CPU_BFLOAT16_BLOCK), max(tile_size, CPU_BFLOAT16_TILE)
            scorer = _TorchScorer(n, dim, tile_size, "cpu")
        else:
            scorer = _HostScorer(n, dim, tile_size, bound)
    else:
        scorer = _TorchScorer(n, dim, tile_size, device)
    cutoff = threshold - scorer.tolerance

    for start in range(0, n, block_size):
        stop = min(start + block_size, n)
        block = (vectors[start:stop].astype(np.float32) / norms[start:stop, None].astype(np.float32)).astype(
            np.float32
        )
        candidates = scorer.candidates(block, cutoff)
        possible = scorer.inner(block, cutoff)
        block_kept = np.empty(stop - start, dtype=np.int64)
        kept_in_block = 0
        for offset in range(stop - start):
            item = start + offset
            earlier = block_kept[:kept_in_block]
            others = np.concatenate([*candidates[offset], earlier[possible[offset, earlier]] + start])
            if others.size:
                scorer.work.rechecked_pairs += others.size
                exact = exact_cosines(vectors, norms, item, others)
                hits = exact >= threshold
                if hits.any():
                    best = np.flatnonzero(exact == exact[hits].max())
                    winner = others[best].min()
                    duplicate_of[item] = winner
                    similarity[item] = np.float32(exact[others == winner][0])
                    continue
            kept[item] = True
            block_kept[kept_in_block] = offset
            kept_in_block += 1
        if kept_in_block:
            offsets = block_kept[:kept_in_block]
            scorer.add(block, offsets, offsets + start)
        if progress is not None:
            progress(stop)
    return KeepResult(kept, duplicate_of, similarity, scorer.work)


def brute_force_keep_first(vectors: np.ndarray, threshold: float) -> KeepResult:
    """The same rule, one item at a time in float64: the reference `greedy_keep_first` must equal."""
    n = len(vectors)
    norms = checked_norms(vectors)
    kept = np.zeros(n, dtype=bool)
    duplicate_of = np.full(n, -1, dtype=np.int64)
    similarity = np.full(n, np.nan, dtype=np.float32)
    kept_so_far: list[int] = []
    for item in range(n):
        if kept_so_far:
            others = np.asarray(kept_so_far, dtype=np.int64)
            exact = exact_cosines(vectors, norms, item, others)
            if exact.max() >= threshold:
                winner = others[np.flatnonzero(exact == exact.max()).min()]
                duplicate_of[item] = winner
                similarity[item] = np.float32(exact.max())
                continue
        kept[item] = True
        kept_so_far.append(item)
    return KeepResult(kept, duplicate_of, similarity)
