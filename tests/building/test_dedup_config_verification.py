"""A plain dedup config with a weight-free copy embedder verifies its pairs (issue 23, item 11): `mix665k-dedup-0.8
--embedder gradients` keeps every distinct document, removes a planted re-encoded copy and a byte-identical file
under another path, records the verification in its report as a recipe's copy dedup does, and stops loudly past the
candidate budget naming the dedup config's own way out.

Before, every pair at the threshold was removed as found: `gradients` puts most pairs of distinct text pages,
tables and screenshots at cosine >= 0.8 (bench/RESULTS.md), and the test checks that these pictures are such pairs.
"""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import numpy as np
import pytest
from document_folders import write_mix665k
from PIL import Image

from llava_mixes import schema
from llava_mixes.building import build
from llava_mixes.cli.main import main
from llava_mixes.decontam.candidates import BUDGET_VARIABLE, TooManyCandidatesError
from llava_mixes.embedding.copy import GradientsEmbedder
from llava_mixes.playground.copies import encode, picture, plant

KINDS = ("page", "table", "screenshot", "slide", "chart")


def _copy(data: bytes, transformation: str, seed: int) -> bytes:
    return plant(Image.open(io.BytesIO(data)).convert("RGB"), transformation, np.random.default_rng(seed))[1]


@pytest.fixture(scope="module")
def documents() -> list[bytes]:
    """15 distinct documents: 3 of each kind of `KINDS` (the third of each a same-template look-alike)."""
    return [
        encode(picture(kind, seed, variant), kind) for kind in KINDS for seed, variant in ((30, 0), (31, 0), (30, 1))
    ]


def test_the_documents_are_pairs_a_one_stage_dedup_would_remove(documents: list[bytes]) -> None:
    model = GradientsEmbedder()
    vectors = np.stack([model.prepare(data) for data in documents])
    close = [(a, b) for a, b in itertools.combinations(range(len(documents)), 2) if vectors[a] @ vectors[b] >= 0.8]
    assert len({index for pair in close for index in pair}) >= 8


def test_a_gradients_dedup_config_keeps_distinct_documents_and_removes_the_copies(
    documents: list[bytes], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    pictures = [*documents, _copy(documents[0], "reencode", 1), documents[4]]
    paths = write_mix665k(data, {"textvqa": pictures})["textvqa"]
    built = build("mix665k-dedup-0.8", str(data), str(tmp_path / "hf"), embedder="gradients")
    removed = built.dataset[schema.REMOVED_SPLIT]
    assert dict(zip(removed[schema.IMAGE_PATH], removed[schema.DUPLICATE_OF], strict=True)) == {
        paths[15]: paths[0],
        paths[16]: paths[4],
    }
    assert len(built.dataset[schema.TRAIN_SPLIT]) == 15
    verification = built.report.dedup["verification"]
    assert verification["candidate_threshold"] == 0.8
    assert verification["confirmed"] == 1 and verification["pairs"] >= 20
    assert verification["verifier"]["kind"] == "aligned-windows" and built.report.dedup["search"] == "exact"


def test_past_the_candidate_budget_a_dedup_config_stops_naming_its_own_way_out(
    documents: list[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    write_mix665k(data, {"textvqa": documents})
    monkeypatch.setenv(BUDGET_VARIABLE, "3")
    with pytest.raises(TooManyCandidatesError, match="dedup_threshold=N, or `--threshold N`") as raised:
        build("mix665k-dedup-0.8", str(data), str(tmp_path / "hf"), embedder="gradients")
    assert "recipe" not in str(raised.value) and "--embedder openai/clip-vit-large-patch14-336" in str(raised.value)


def test_the_command_line_says_the_dedup_was_verified(
    documents: list[bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    write_mix665k(data, {"textvqa": [*documents[:6], _copy(documents[1], "reencode", 2)]})
    argv = ["--log-level", "error", "build", "mix665k-dedup-0.8", "--data-dir", str(data), "--embedder", "gradients"]
    assert main([*argv, "--cache-dir", str(tmp_path / "hf")]) == 0
    out = capsys.readouterr().out
    assert "dedup: images at cosine >= 0.8 to a kept image, confirmed by verification (1 of " in out
