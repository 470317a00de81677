"""Overlap between sources: its numbers against a brute-force count over every pair of cached vectors in
float64, the embedding cache (a second run embeds nothing), the CLI's table, JSON and heatmap."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llava_mixes import schema
from llava_mixes.building.entry import build
from llava_mixes.cli.main import main
from llava_mixes.embedding.cache import EmbeddingCache
from llava_mixes.embedding.embedders import resolve_embedder
from llava_mixes.errors import ConfigError
from llava_mixes.playground import Playground
from llava_mixes.recipes import format_overlap, source_overlap
from llava_mixes.recipes.heatmap import overlap_png

CONFIGS = ("mix665k", "sharegpt4v-mix665k", "svit-mix665k", "textocr-gpt4v")


def _sources(playground: Playground, tmp_path: Path) -> dict[str, object]:
    kwargs = {"content_cache_dir": str(tmp_path / "cc")}
    return {
        name: build(name, str(playground.root), str(tmp_path / "hf"), **kwargs).dataset[schema.TRAIN_SPLIT]
        for name in CONFIGS
    }


def _brute_force(sources: dict, cache: EmbeddingCache, threshold: float) -> dict[str, list]:
    """Every count of `Overlap` from all pairs of pictures, cosines in float64 one pair at a time."""
    rows = {name: {} for name in sources}
    for name, dataset in sources.items():
        for sha in dataset[schema.IMAGE_SHA256]:
            if sha is not None:
                rows[name][sha] = rows[name].get(sha, 0) + 1
    every = sorted(set().union(*rows.values()))
    vectors, errors = cache.vectors(every)
    vector = {
        sha: None if error else vectors[i].astype(np.float64)
        for i, (sha, error) in enumerate(zip(every, errors, strict=True))
    }

    def copies(a: str, b: str) -> bool:
        if a == b:
            return True
        if vector[a] is None or vector[b] is None:
            return False
        cosine = vector[a] @ vector[b] / (np.linalg.norm(vector[a]) * np.linalg.norm(vector[b]))
        return bool(cosine >= threshold)

    names = list(sources)
    exact = [[len(rows[a].keys() & rows[b].keys()) for b in names] for a in names]
    near = [[sum(any(copies(x, y) for y in rows[b]) for x in rows[a]) for b in names] for a in names]
    lost = [
        [
            sum(n for x, n in rows[b].items() if any(copies(x, y) for y in rows[a])) if i < j else 0
            for i, a in enumerate(names)
        ]
        for j, b in enumerate(names)
    ]
    totals = [
        sum(n for x, n in rows[b].items() if any(copies(x, y) for a in names[:j] for y in rows[a]))
        for j, b in enumerate(names)
    ]
    return {"exact": exact, "near": near, "rows_lost": lost, "rows_lost_total": totals}


@pytest.mark.parametrize("embedder", ["gradients", "thumbnail"])
def test_overlap_matches_a_brute_force_count(playground: Playground, tmp_path: Path, embedder: str) -> None:
    sources = _sources(playground, tmp_path)
    overlap = source_overlap(sources, embedder=embedder, cache_dir=tmp_path / "cc", block_size=7, tile_size=5)
    cache = EmbeddingCache(tmp_path / "cc", resolve_embedder(embedder))
    expected = _brute_force(sources, cache, overlap.threshold)
    assert overlap.exact == expected["exact"]
    assert overlap.near == expected["near"]
    assert overlap.rows_lost == expected["rows_lost"]
    assert overlap.rows_lost_total == expected["rows_lost_total"]
    # The playground's sources reuse COCO and VG pictures: the test compares something.
    assert overlap.exact[0][1] > 0 and overlap.rows_lost_total[1] > 0
    assert overlap.rows_lost_total[0] == 0
    assert overlap.images == [len(set(sha for sha in d[schema.IMAGE_SHA256] if sha)) for d in sources.values()]


def test_a_second_run_embeds_nothing(playground: Playground, tmp_path: Path) -> None:
    sources = _sources(playground, tmp_path)
    first = source_overlap(sources, cache_dir=tmp_path / "cc")
    second = source_overlap(sources, cache_dir=tmp_path / "cc")
    assert first.embedded > 0
    assert second.embedded == 0
    assert second.to_json() | {"embedded": 0, "cached": 0} == first.to_json() | {"embedded": 0, "cached": 0}
    assert format_overlap(second).splitlines()[0].startswith("source")
    assert overlap_png(second).startswith(b"\x89PNG")


def test_overlap_needs_two_sources_and_a_valid_threshold(playground: Playground, tmp_path: Path) -> None:
    sources = _sources(playground, tmp_path)
    with pytest.raises(ConfigError, match="at least two"):
        source_overlap({"mix665k": sources["mix665k"]}, cache_dir=tmp_path / "cc")
    with pytest.raises(ConfigError, match=r"threshold=1\.5"):
        source_overlap(sources, threshold=1.5, cache_dir=tmp_path / "cc")


def test_overlap_command(playground: Playground, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["overlap", "mix665k", "sharegpt4v-mix665k", "--data-dir", str(playground.root)]
    args += ["--cache-dir", str(tmp_path / "hf"), "--content-cache-dir", str(tmp_path / "cc"), "--threshold", "0.9"]
    assert main([*args, "--json", str(tmp_path / "o.json"), "--png", str(tmp_path / "o.png")]) == 0
    printed = capsys.readouterr().out
    data = json.loads((tmp_path / "o.json").read_text())
    assert data["sources"] == ["mix665k", "sharegpt4v-mix665k"] and data["threshold"] == 0.9
    assert f"{data['exact'][1][0]:,}" in printed and "rows lost to earlier sources" in printed
    assert (tmp_path / "o.png").read_bytes().startswith(b"\x89PNG")
    assert main(args) == 0
    assert "0 pictures embedded" in capsys.readouterr().out
