"""The pruned sweep against the full one: the same keep bits at every threshold, and the same nearest
neighbours and matches wherever they reach the floor."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llava_mixes.dedup import sweep
from llava_mixes.dedup.search import LowRankBound, greedy_keep_first
from llava_mixes.dedup.sweep import PassResult, sweep_pass, sweep_thresholds
from llava_mixes.playground.synthetic import clip_like_vectors
from llava_mixes.vectors import checked_norms


def anisotropic(n: int, seed: int, groups: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """CLIP-like 64-d vectors, one offset per group, float16-rounded, with byte copies and near-threshold
    pairs (an earlier vector nudged to cosine 0.8 +- 1e-7) appended, and a group per item."""
    rng = np.random.default_rng(seed)
    vectors = clip_like_vectors(n, seed=seed, dim=64, latent=10).astype(np.float64)
    labels = rng.integers(0, groups, n)
    offsets = rng.normal(size=(groups, 64)) * 0.6
    vectors = vectors + offsets[labels]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    copies = rng.integers(0, n, n // 25)
    nudged = []
    for item in rng.integers(0, n, n // 25):
        side = rng.normal(size=64)
        side -= (side @ vectors[item]) * vectors[item]
        side /= np.linalg.norm(side)
        angle = np.arccos(0.8 + rng.choice([-1e-7, 0.0, 1e-7]))
        nudged.append(np.cos(angle) * vectors[item] + np.sin(angle) * side)
    everything = np.concatenate([vectors, vectors[copies], np.asarray(nudged)]).astype(np.float16).astype(np.float32)
    order = np.concatenate([np.arange(n), rng.permutation(np.arange(n, len(everything))) % len(everything)])
    return everything[order], np.concatenate([labels, labels[copies], rng.integers(0, groups, n // 25)])[order]


def principal_bound(vectors: np.ndarray, rank: int) -> LowRankBound:
    """A `LowRankBound` on the `rank` leading principal directions of `vectors`."""
    units = vectors / checked_norms(vectors)[:, None]
    _, _, right = np.linalg.svd(units.astype(np.float64), full_matrices=False)
    return LowRankBound(right[:rank].T)


def assert_same(pruned: PassResult, full: PassResult, vectors: np.ndarray, floor: float) -> None:
    """Keep bits equal; nearest and match equal where the full pass's reach the floor (ties by the exact
    cosine: float32 rounding may order two equally similar items either way)."""
    assert np.array_equal(pruned.keep_bits, full.keep_bits)
    reached = full.nearest >= floor + 1e-3
    assert np.allclose(pruned.nearest[reached], full.nearest[reached], atol=1e-5)
    assert (pruned.nearest <= full.nearest + 1e-5).all()
    reached = full.match_similarity >= floor + 1e-3
    assert np.allclose(pruned.match_similarity[reached], full.match_similarity[reached], atol=1e-5)
    units = vectors.astype(np.float64) / np.linalg.norm(vectors.astype(np.float64), axis=1, keepdims=True)
    items = np.flatnonzero(reached & (pruned.match != full.match))
    exact = np.einsum("ij,ij->i", units[items], units[pruned.match[items]])
    assert np.allclose(exact, np.einsum("ij,ij->i", units[items], units[full.match[items]]), atol=1e-6)


@pytest.mark.parametrize("dense_fraction", [0.0, 0.05, 1.0])
@pytest.mark.parametrize(("groups", "floor"), [(1, -np.inf), (1, 0.7), (3, 0.5), (3, -np.inf)])
def test_pruned_pass_equals_the_full_pass(
    monkeypatch: pytest.MonkeyPatch, dense_fraction: float, groups: int, floor: float
) -> None:
    vectors, labels = anisotropic(700, seed=groups, groups=groups)
    thresholds = sweep_thresholds([0.8, 0.85, 0.9, 0.95])
    bound = principal_bound(vectors, 12)
    monkeypatch.setattr(sweep, "DENSE_FRACTION", dense_fraction)
    for group_labels, nearest in ((None, True), (labels if groups > 1 else None, False)):
        settings = {"groups": group_labels, "want_nearest": nearest, "block_size": 64, "tile_size": 96}
        full = sweep_pass(vectors, thresholds, prune=False, **settings)
        pruned = sweep_pass(vectors, thresholds, floor=floor, bound=bound, workers=3, **settings)
        assert_same(pruned, full, vectors, floor)
    for threshold in (0.8, 0.95):
        assert np.array_equal(pruned.kept(threshold), greedy_keep_first(vectors, threshold).kept)


def test_pruning_skips_most_pairs_and_keeps_the_floor() -> None:
    vectors, _ = anisotropic(3000, seed=7)
    bound = principal_bound(vectors, 12)
    thresholds = sweep_thresholds([0.8])
    scored: list[int] = []
    original = sweep._Pass.sparse_tile

    def counting(self: sweep._Pass, block: np.ndarray, tile_start: int, *rest: np.ndarray) -> sweep._Tile:
        scored.append(len(rest[1]))
        return original(self, block, tile_start, *rest)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sweep._Pass, "sparse_tile", counting)
        pruned = sweep_pass(vectors, thresholds, floor=0.6, bound=bound, block_size=256, tile_size=512)
    full = sweep_pass(vectors, thresholds, prune=False, block_size=256, tile_size=512)
    assert scored and sum(scored) < 0.1 * len(vectors) ** 2 / 2
    assert_same(pruned, full, vectors, 0.6)
    assert pruned.floor == 0.6 and full.floor == -np.inf


@pytest.mark.parametrize("crowded", [1e-9, 32, 1e9])
def test_crowded_columns_and_gathered_pairs_score_alike(monkeypatch: pytest.MonkeyPatch, crowded: float) -> None:
    # 1e-9: every pair gathered one by one; 1e9: every column with a pair scored against the whole block.
    vectors, labels = anisotropic(900, seed=11, groups=2)
    thresholds = sweep_thresholds([0.7, 0.8, 0.9])
    bound = principal_bound(vectors, 12)
    monkeypatch.setattr(sweep, "_CROWDED", crowded)
    monkeypatch.setattr(sweep, "DENSE_FRACTION", 1e9)
    for group_labels, nearest, floor in ((None, True, 0.5), (labels, False, 0.7)):
        settings = {"groups": group_labels, "want_nearest": nearest, "block_size": 128, "tile_size": 160}
        full = sweep_pass(vectors, thresholds, prune=False, **settings)
        pruned = sweep_pass(vectors, thresholds, floor=floor, bound=bound, workers=2, **settings)
        assert_same(pruned, full, vectors, floor)


def _units(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    vectors = rng.standard_normal((count, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


@settings(max_examples=20)
@given(seed=st.integers(0, 2**32 - 1))
def test_the_best_bound_pairs_floor_lies_under_its_cosine(seed: int) -> None:
    """Random unit vectors in 16-d and a random rank-4 basis (residuals near 0.87): each row's pair with the
    highest bound scores at least `_best_floor` (with `1 * r * widest` about a third of the rows fall below)."""
    rng = np.random.default_rng(seed)
    rows, columns = _units(rng, 4000, 16), _units(rng, 200, 16)
    bound = LowRankBound(np.linalg.qr(rng.standard_normal((16, 4)))[0])
    row_low, column_low = (np.concatenate([p, r[:, None]], axis=1) for p, r in map(bound.project, (rows, columns)))
    upper = row_low @ column_low.T
    best = upper.argmax(axis=1)
    cosines = np.einsum("ij,ij->i", rows, columns[best])
    floor = sweep._best_floor(upper.max(axis=1), row_low[:, -1], column_low[:, -1])
    assert np.count_nonzero(cosines < floor) == 0
    # The other side: each column's best row, as `bounded` uses it for nearest neighbours.
    best_rows = upper.argmax(axis=0)
    cosines = np.einsum("ij,ij->i", columns, rows[best_rows])
    assert (cosines >= sweep._best_floor(upper.max(axis=0), column_low[:, -1], row_low[:, -1])).all()


def misleading_trio(inside: tuple[int, int], outside: int) -> list[np.ndarray]:
    """Four unit vectors in 16-d against the basis e0..e3: a decoy whose residual points against the query's
    (bound 1.0, cosine 0.28), the query's real nearest neighbour inside the basis (bound = cosine = 0.45), a
    near copy of it (so that its own nearest neighbour is high), and the query, with a 0.6 residual."""
    first, second = np.eye(16)[list(inside)]
    residual = np.eye(16)[outside]
    near = 0.5625 * first + np.sqrt(1 - 0.5625**2) * second
    copy = 0.995 * near + np.sqrt(1 - 0.995**2) * second
    return [0.8 * first - 0.6 * residual, near, copy / np.linalg.norm(copy), 0.8 * first + 0.6 * residual]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nearest_neighbours_behind_a_bound_with_large_residuals(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    """The decoy's bound is the tile's highest, but its cosine is 0.72 below it (2 x 0.6 x 0.6): a floor that
    left out the factor 2 would rule out the real nearest neighbour, whose bound is 0.45."""
    rotation = np.linalg.qr(np.random.default_rng(seed).standard_normal((16, 16)))[0]
    vectors = (np.array(misleading_trio((0, 1), 4) + misleading_trio((2, 3), 5)) @ rotation).astype(np.float32)
    bound = LowRankBound(rotation[:4].T)
    monkeypatch.setattr(sweep, "DENSE_FRACTION", 1e9)  # every tile through the bound
    options = {"want_nearest": True, "block_size": 1, "tile_size": 4, "workers": 1}
    full = sweep_pass(vectors, sweep.GRID, prune=False, **options)
    pruned = sweep_pass(vectors, sweep.GRID, bound=bound, **options)
    queries = [3, 7]
    assert np.allclose(full.nearest[queries], 0.45, atol=1e-6) and full.match[queries].tolist() == [1, 5]
    assert_same(pruned, full, vectors, -np.inf)
    assert pruned.match[queries].tolist() == [1, 5]
