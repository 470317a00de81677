"""The report's pruned sweep against the full one on cached vectors: the same tables, kept paths, pairs and
counts, and the same nearest neighbours from `nearest_from` up."""

from __future__ import annotations

import functools
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pytest

from llava_mixes import schema
from llava_mixes.dedup.search import LowRankBound
from llava_mixes.dedup.sweep import PRUNE_PROBE, sweep_pass
from llava_mixes.embedding.cache import EmbeddingCache, vector_table
from llava_mixes.embedding.embedders import ThumbnailEmbedder
from llava_mixes.errors import ConfigError
from llava_mixes.playground.synthetic import clip_like_vectors
from llava_mixes.report import analysis as report_analysis
from llava_mixes.report import pairs
from llava_mixes.report.pairs import CROSS_GROUP, IDENTICAL
from llava_mixes.vectors import checked_norms

SIZES = {"coco": 4400, "ocr_vqa": 900, "gqa": 500}


def rows_and_cache(root: Path) -> tuple[datasets.Dataset, EmbeddingCache, np.ndarray]:
    """Three groups of CLIP-like 256-d vectors, each group turned its own way, with byte-identical copies
    across groups (same hash, another path) and near copies at 0.8 and 0.9 +- 1e-7; the big group's vectors."""
    rng = np.random.default_rng(5)
    n = sum(SIZES.values())
    vectors = clip_like_vectors(n, seed=5, dim=256, latent=24).astype(np.float64)
    labels = np.repeat(np.arange(len(SIZES)), list(SIZES.values()))
    rng.shuffle(labels)
    turns = rng.normal(size=(len(SIZES), 256))
    turns *= 0.3 / np.linalg.norm(turns, axis=1, keepdims=True)
    vectors += turns[labels]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for item in rng.choice(np.arange(n // 2, n), 60, replace=False):
        earlier = int(rng.integers(0, n // 2))
        side = rng.normal(size=256)
        side -= (side @ vectors[earlier]) * vectors[earlier]
        angle = np.arccos(rng.choice([0.8, 0.9]) + rng.choice([-1e-7, 0.0, 1e-7]))
        vectors[item] = np.cos(angle) * vectors[earlier] + np.sin(angle) * side / np.linalg.norm(side)
    hashes = [f"{index:064x}" for index in range(n)]
    copies = rng.choice(np.arange(n // 2, n), 12, replace=False)
    for item in copies:
        earlier = int(rng.choice(np.flatnonzero(labels[: n // 2] != labels[item])))
        hashes[item], vectors[item] = hashes[earlier], vectors[earlier]
    names = list(SIZES)
    table = pa.table(
        {
            schema.ID: [f"r{index}" for index in range(n)],
            schema.IMAGE_PATH: [f"{names[group]}/{index}.jpg" for index, group in enumerate(labels)],
            schema.IMAGE_SHA256: hashes,
            schema.IMAGE_GROUP: [names[group] for group in labels],
        }
    )
    cache = EmbeddingCache(root / "content", ThumbnailEmbedder(16))
    distinct = [index for index in range(n) if index not in set(copies.tolist())]
    cache.store.commit(vector_table([hashes[index] for index in distinct], vectors[distinct], [None] * len(distinct)))
    half = vectors.astype(np.float16)
    return datasets.Dataset(table), cache, half[labels == 0]


@pytest.mark.parametrize("scope", ["group", "global"])
def test_pruned_report_equals_the_full_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scope: str) -> None:
    dataset, cache, big = rows_and_cache(tmp_path)
    assert LowRankBound.fit(big, checked_norms(big), PRUNE_PROBE) is not None  # the bound engages
    pruned = report_analysis.analyse(dataset, cache, "c", (0.8, 0.9), scope=scope, per_band=50, block_size=512)
    monkeypatch.setattr(report_analysis, "sweep_pass", functools.partial(sweep_pass, prune=False))
    full = report_analysis.analyse(dataset, cache, "c", (0.8, 0.9), scope=scope, per_band=50, block_size=512)
    assert pruned.tables == full.tables
    for threshold in (0.5, 0.8, 0.9, 1.0):
        for pass_scope in ("group", "global"):
            assert pruned.kept_paths(threshold, pass_scope) == full.kept_paths(threshold, pass_scope)
    assert pruned.pair_counts == full.pair_counts
    assert [(p.section, p.band, p.earlier, p.later) for p in pruned.pairs] == [
        (p.section, p.band, p.earlier, p.later) for p in full.pairs
    ]
    assert any(pair.section == CROSS_GROUP and pair.band == IDENTICAL for pair in pruned.pairs)
    for group, values in full.nearest.items():
        reached = values >= 0.5 + 1e-3
        assert np.allclose(pruned.nearest[group][reached], values[reached], atol=1e-5)
        assert (pruned.nearest[group][~reached] <= 0.5 + 1e-3).all()
    assert pruned.to_json()["nearest_from"] == 0.5


def test_nearest_from_is_checked(tmp_path: Path) -> None:
    dataset, cache, _ = rows_and_cache(tmp_path)
    with pytest.raises(ConfigError, match=r"nearest_from=1\.5 is not allowed"):
        report_analysis.analyse(dataset, cache, "c", nearest_from=1.5)


def test_pairs_scored_in_chunks_equal_one_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dataset, cache, _ = rows_and_cache(tmp_path)
    whole = report_analysis.analyse(dataset, cache, "c", (0.8, 0.9), per_band=50, block_size=512)
    monkeypatch.setattr(pairs, "_CHUNK", 7)  # many chunks, the last one short
    chunked = report_analysis.analyse(dataset, cache, "c", (0.8, 0.9), per_band=50, block_size=512)
    assert len(whole.pairs) > 20 and chunked.pairs == whole.pairs and chunked.pair_counts == whole.pair_counts
