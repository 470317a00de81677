from __future__ import annotations

import numpy as np
import pytest

from llava_mixes.dedup.search import brute_force_keep_first, greedy_keep_first
from llava_mixes.dedup.sweep import GRID, sweep_pass, sweep_thresholds
from llava_mixes.errors import ConfigError


def clustered(n: int, dim: int, seed: int, spread: float = 0.4) -> np.ndarray:
    """Unit vectors around n // 8 centres, float16-rounded like cached embeddings, with exact copies at the end."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n // 8, dim))
    points = centres[rng.integers(0, len(centres), n)] + spread * rng.normal(size=(n, dim))
    points = np.concatenate([points, points[: n // 20]])
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float16).astype(np.float32)


@pytest.mark.parametrize(("seed", "spread"), [(0, 0.4), (1, 0.25), (2, 0.6)])
def test_every_threshold_equals_greedy_keep_first(seed: int, spread: float) -> None:
    vectors = clustered(400, 16, seed, spread)
    thresholds = sweep_thresholds([0.7, 0.8, 0.9, 0.333])
    result = sweep_pass(vectors, thresholds, block_size=48, tile_size=70, workers=3)
    single = sweep_pass(vectors, thresholds, block_size=48, tile_size=70, workers=1)
    for name in ("keep_bits", "nearest", "match", "match_similarity"):
        assert np.array_equal(getattr(result, name), getattr(single, name)), name
    for threshold in thresholds:
        assert np.array_equal(result.kept(threshold), greedy_keep_first(vectors, threshold).kept), threshold
    assert 0 < result.kept(0.5).sum() < result.kept(1.0).sum() <= len(vectors)


def test_threshold_one_matches_on_exact_copies() -> None:
    vectors = clustered(160, 24, 3)
    result = sweep_pass(vectors, GRID, block_size=32, tile_size=50)
    assert np.array_equal(result.kept(1.0), brute_force_keep_first(vectors, 1.0).kept)


def test_counts_follow_the_rule_even_where_it_is_not_monotone() -> None:
    """Keep-first can keep fewer images at a higher threshold: B survives at 0.9 and removes C and D."""
    a, b = [np.cos(0.55), 0, np.sin(0.55)], [1, 0, 0]
    c, d = [np.cos(0.45), np.sin(0.45), 0], [np.cos(0.45), -np.sin(0.45), 0]
    vectors = np.asarray([a, b, c, d], dtype=np.float32)
    result = sweep_pass(vectors, GRID)
    assert result.kept(0.8).tolist() == [True, False, True, True]
    assert result.kept(0.9).tolist() == [True, True, False, False]


def test_nearest_neighbours_and_matches() -> None:
    vectors = clustered(300, 12, 4)
    groups = np.arange(len(vectors)) % 3
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    plain = sweep_pass(vectors, GRID, block_size=40, tile_size=64)
    assert np.allclose(plain.nearest, scores.max(axis=1), atol=1e-3)
    assert np.allclose(plain.match_similarity[1:], np.tril(scores, -1)[1:].max(axis=1, initial=-np.inf), atol=1e-3)
    across = sweep_pass(vectors, GRID, groups=groups, want_nearest=False, block_size=40, tile_size=64)
    for item in (1, 57, 299, 314):
        others = [j for j in range(item) if groups[j] != groups[item]]
        assert groups[across.match[item]] != groups[item]
        assert across.match_similarity[item] == pytest.approx(scores[item, others].max(), abs=1e-3)
    assert across.match[0] == -1


def test_thresholds_are_checked() -> None:
    assert sweep_thresholds([0.7, 0.85]) == tuple(sorted({*GRID, 0.85}))
    with pytest.raises(ConfigError, match=r"1\.5"):
        sweep_thresholds([1.5])
    with pytest.raises(ConfigError, match="at most 13"):
        sweep_thresholds([0.5 + step / 1000 + 0.0005 for step in range(20)])
