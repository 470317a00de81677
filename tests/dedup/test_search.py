from __future__ import annotations

import numpy as np
import pytest

from llava_mixes.dedup import search, speed
from llava_mixes.dedup.search import LowRankBound, bfloat16_floor, brute_force_keep_first, greedy_keep_first
from llava_mixes.playground.synthetic import clip_like_vectors


def clustered(n: int, dim: int, clusters: int, spread: float, seed: int, dtype: type = np.float16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    points = centres[rng.integers(0, clusters, n)] + spread * rng.normal(size=(n, dim))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(dtype)


def assert_same(actual, expected) -> None:
    assert np.array_equal(actual.kept, expected.kept)
    assert np.array_equal(actual.duplicate_of, expected.duplicate_of)
    assert np.array_equal(actual.similarity, expected.similarity, equal_nan=True)


@pytest.mark.parametrize(
    ("seed", "threshold", "dim", "spread"),
    [(0, 0.7, 32, 0.35), (1, 0.8, 64, 0.35), (2, 0.9, 16, 0.35), (3, 0.95, 128, 0.02)],
)
@pytest.mark.parametrize(("block_size", "tile_size"), [(1, 1), (7, 13), (64, 50), (1024, 16384)])
def test_matches_brute_force_for_any_block_and_tile_size(
    seed: int, threshold: float, dim: int, spread: float, block_size: int, tile_size: int
) -> None:
    vectors = clustered(400, dim, 40, spread, seed)
    expected = brute_force_keep_first(vectors, threshold)
    assert 0 < expected.kept.sum() < len(vectors)
    assert_same(greedy_keep_first(vectors, threshold, block_size=block_size, tile_size=tile_size), expected)


def test_float32_input_matches_too() -> None:
    vectors = clustered(300, 48, 30, 0.3, 5, np.float32)
    assert_same(greedy_keep_first(vectors, 0.85, block_size=17), brute_force_keep_first(vectors, 0.85))


def test_rule_is_greedy_keep_first_not_connected_components() -> None:
    # A~B and B~C but not A~C: greedy keeps A and C (B is removed, so it cannot remove C).
    a = np.array([1.0, 0.0])
    b = np.array([np.cos(0.5), np.sin(0.5)])
    c = np.array([np.cos(1.0), np.sin(1.0)])
    result = greedy_keep_first(np.stack([a, b, c]), threshold=float(np.cos(0.6)))
    assert result.kept.tolist() == [True, False, True]
    assert result.duplicate_of.tolist() == [-1, 0, -1]


def test_removed_item_points_at_its_most_similar_kept_item_earliest_on_ties() -> None:
    vectors = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.9, 0.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    result = greedy_keep_first(vectors, threshold=0.7)
    assert result.kept.tolist() == [True, True, False, False, False]
    assert result.duplicate_of.tolist()[2:] == [0, 0, 0]
    assert result.similarity[4] == np.float32(1.0)


def test_a_score_exactly_at_the_threshold_is_a_duplicate() -> None:
    vectors = np.array([[1.0, 0.0], [0.6, 0.8]])
    assert greedy_keep_first(vectors, threshold=0.6).kept.tolist() == [True, False]
    assert greedy_keep_first(vectors, threshold=0.6000001).kept.tolist() == [True, True]


def test_empty_and_single_inputs() -> None:
    assert greedy_keep_first(np.zeros((0, 4), np.float32), 0.8).kept.size == 0
    assert greedy_keep_first(np.ones((1, 4), np.float32), 0.8).kept.tolist() == [True]


@pytest.mark.parametrize("threshold", [0.7, 0.9])
def test_torch_bfloat16_scoring_gives_the_same_result(threshold: float) -> None:
    vectors = clustered(300, 64, 30, 0.3, 7)
    expected = brute_force_keep_first(vectors, threshold)
    assert_same(greedy_keep_first(vectors, threshold, block_size=64, tile_size=100, device="cpu"), expected)


def pairs_a_hair_from(threshold: float, count: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` random unit vectors (float64), each followed by a partner at cosine `threshold` plus or minus
    up to 1e-7 (float32 rounding moves a score by about that much), and which partners are at or above it."""
    rng = np.random.default_rng(seed)
    anchors = rng.standard_normal((count, dim))
    anchors /= np.linalg.norm(anchors, axis=1, keepdims=True)
    offsets = rng.uniform(1e-9, 1e-7, count) * rng.choice([-1.0, 1.0], count)
    vectors = np.empty((2 * count, dim))
    for item, (anchor, offset) in enumerate(zip(anchors, offsets, strict=True)):
        side = rng.standard_normal(dim)
        side -= (side @ anchor) * anchor
        angle = np.arccos(threshold + offset)
        vectors[2 * item] = anchor
        vectors[2 * item + 1] = np.cos(angle) * anchor + np.sin(angle) * side / np.linalg.norm(side)
    return vectors, offsets > 0


@pytest.mark.parametrize(("threshold", "dim"), [(0.8, 64), (0.95, 256)])
@pytest.mark.parametrize(("block_size", "tile_size"), [(1, 50), (7, 13), (1024, 16384)])
def test_scores_a_hair_from_the_threshold_are_decided_exactly(
    threshold: float, dim: int, block_size: int, tile_size: int
) -> None:
    """float32 scores of pairs within 1e-7 of the threshold fall on either side of it; the search must pass
    every one of them to the float64 check (its tolerance), or it keeps copies that are duplicates."""
    vectors, above = pairs_a_hair_from(threshold, 200, dim, seed=dim)
    units = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    scores = np.einsum("ij,ij->i", units[0::2], units[1::2])
    assert np.count_nonzero(above & (scores < np.float32(threshold))) > 0  # float32 alone would miss some
    result = greedy_keep_first(vectors, threshold, block_size=block_size, tile_size=tile_size)
    assert result.kept[1::2].tolist() == (~above).tolist()
    assert result.duplicate_of[1::2][above].tolist() == (2 * np.flatnonzero(above)).tolist()
    assert_same(result, brute_force_keep_first(vectors, threshold))


def test_low_rank_bound_is_an_upper_bound_for_any_basis() -> None:
    rng = np.random.default_rng(11)
    vectors = clustered(600, 256, 50, 0.5, 3).astype(np.float32)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    for basis in (np.linalg.qr(rng.standard_normal((256, 64)))[0], np.linalg.eigh(unit.T @ unit)[1][:, -64:]):
        projected, residual = LowRankBound(basis).project(unit)
        upper = projected @ projected.T + residual[:, None] * residual[None, :]
        assert (upper + LowRankBound.SLACK >= unit.astype(np.float64) @ unit.T.astype(np.float64)).all()


def test_pruned_search_equals_the_plain_one_on_anisotropic_vectors(monkeypatch: pytest.MonkeyPatch) -> None:
    vectors = clip_like_vectors(4500, dim=256)
    fitted: list[LowRankBound | None] = []
    original = LowRankBound.fit.__func__

    def spy(cls: type, *args: object, **kwargs: object) -> LowRankBound | None:
        fitted.append(original(cls, *args, **kwargs))
        return fitted[-1]

    monkeypatch.setattr(LowRankBound, "fit", classmethod(spy))
    pruned = greedy_keep_first(vectors, 0.9, block_size=512, tile_size=2000)
    assert fitted and fitted[0] is not None
    assert 0.05 < 1 - pruned.kept.mean() < 0.6
    assert_same(pruned, greedy_keep_first(vectors, 0.9, block_size=512, tile_size=2000, prune=False))


def test_isotropic_vectors_do_not_use_the_bound() -> None:
    vectors = clustered(5000, 512, 4000, 0.3, 1)
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
    assert LowRankBound.fit(vectors, norms, 0.8) is None


def test_ivf_search_probing_every_cell_is_the_exact_search() -> None:
    pytest.importorskip("faiss", reason="the ann extra is not installed (pip install 'llava_mixes[ann]')")
    from llava_mixes.dedup.ann import approximate_keep_first

    vectors = clustered(3000, 128, 300, 0.3, 9)
    assert_same(approximate_keep_first(vectors, 0.8, cells=8, probes=8), greedy_keep_first(vectors, 0.8))


def test_ivf_search_finds_nearly_every_pair_with_its_defaults() -> None:
    pytest.importorskip("faiss", reason="the ann extra is not installed (pip install 'llava_mixes[ann]')")
    from llava_mixes.dedup.ann import approximate_keep_first

    vectors = clip_like_vectors(6000, dim=256)
    approximate, exact = approximate_keep_first(vectors, 0.9), greedy_keep_first(vectors, 0.9)
    assert (approximate.kept == exact.kept).mean() > 0.99


@pytest.mark.parametrize("value", [0.8, 0.795, 0.9 - 8e-3, 1.0, 0.5, 1e-3, -3e-3, -0.5])
def test_bfloat16_floor_is_the_largest_bfloat16_at_or_below_the_value(value: float) -> None:
    import torch

    floor = bfloat16_floor(value)
    assert floor <= value
    assert torch.tensor(floor, dtype=torch.bfloat16).item() == floor
    above = torch.nextafter(torch.tensor(floor, dtype=torch.bfloat16), torch.tensor(2.0, dtype=torch.bfloat16))
    assert above.item() > value


def test_host_search_switches_to_bfloat16_where_the_cpu_runs_it_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    vectors = clustered(700, 64, 60, 0.3, 9)
    expected = brute_force_keep_first(vectors, 0.8)
    scorers: list[str] = []
    original = search._TorchScorer.__init__

    def spy(self: object, *args: object) -> None:
        scorers.append(str(args[-1]))
        original(self, *args)

    monkeypatch.setattr(search._TorchScorer, "__init__", spy)
    monkeypatch.setattr(search, "CPU_BFLOAT16_MIN_ITEMS", 500)
    monkeypatch.setattr(search, "CPU_BFLOAT16_BLOCK", 128)
    monkeypatch.setattr(search, "CPU_BFLOAT16_TILE", 256)
    monkeypatch.setattr(search, "cpu_bfloat16_speedup", lambda: 4.0)
    assert_same(greedy_keep_first(vectors, 0.8, block_size=64, tile_size=100), expected)
    assert scorers == ["cpu"]
    monkeypatch.setattr(search, "cpu_bfloat16_speedup", lambda: 1.0)
    assert_same(greedy_keep_first(vectors, 0.8, block_size=64, tile_size=100), expected)
    assert scorers == ["cpu"]


@pytest.mark.parametrize("device", [None, "cpu"])
def test_work_counts_every_scored_pair_and_no_pruned_one(device: str | None) -> None:
    vectors = clustered(500, 32, 40, 0.35, 9)
    result = greedy_keep_first(vectors, 0.8, block_size=64, tile_size=100, device=device, prune=False)
    kept_before = np.concatenate([[0], np.cumsum(result.kept)])
    sizes = {start: min(64, 500 - start) for start in range(0, 500, 64)}
    expected = sum(size * (int(kept_before[start]) + size) for start, size in sizes.items())
    work = result.work
    assert (work.scored_pairs, work.bounded_pairs, work.dim) == (expected, 0, 32)
    assert work.flops == 2.0 * expected * 32
    assert work.precision == ("bfloat16" if device else "float32")
    assert work.rechecked_pairs > 0
    assert work.product_seconds > 0


def test_work_of_a_pruned_search_leaves_the_pruned_tiles_out() -> None:
    vectors = clip_like_vectors(4500, dim=256)
    pruned = greedy_keep_first(vectors, 0.9, block_size=512, tile_size=2000)
    dense = greedy_keep_first(vectors, 0.9, block_size=512, tile_size=2000, prune=False)
    assert pruned.work.rank == LowRankBound.RANK and pruned.work.bounded_pairs > 0
    # Every pair the dense search scores is checked on the bound first; only the tiles it fails to prune are scored.
    assert pruned.work.bounded_pairs == dense.work.scored_pairs
    assert 0 <= pruned.work.scored_pairs < 0.5 * dense.work.scored_pairs


def test_bfloat16_probe_is_skipped_on_x86_without_bfloat16_instructions(monkeypatch: pytest.MonkeyPatch) -> None:
    speed.cpu_bfloat16_speedup.cache_clear()
    has_bfloat16 = speed.x86_has_bfloat16
    monkeypatch.setattr(speed.platform, "machine", lambda: "aarch64")
    assert has_bfloat16()
    monkeypatch.setattr(speed, "x86_has_bfloat16", lambda: False)
    monkeypatch.setattr(speed, "measure_bfloat16_speedup", lambda: pytest.fail("measured without bfloat16"))
    try:
        assert speed.cpu_bfloat16_speedup() == 0.0
    finally:
        speed.cpu_bfloat16_speedup.cache_clear()
