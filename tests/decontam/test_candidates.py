"""The candidate stage of copy detection: the same pairs as the exact range search, counted by label, and the
budget that stops a run before verification when there are too many (library, build and CLI)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from document_folders import write_mix665k

from llava_mixes import schema
from llava_mixes.building import build
from llava_mixes.cli.main import main
from llava_mixes.decontam import find_contamination, range_search
from llava_mixes.decontam.candidates import (
    BUDGET_VARIABLE,
    MAX_CANDIDATE_PAIRS,
    CandidateBudget,
    CandidateTally,
    TooManyCandidatesError,
    candidate_pairs,
)
from llava_mixes.decontam.copies import copy_deduplicate
from llava_mixes.embedding import verify
from llava_mixes.embedding.copy import GradientsEmbedder
from llava_mixes.embedding.verify import CopyVerifier
from llava_mixes.errors import ConfigError, LlavaMixesError
from llava_mixes.playground import Playground
from llava_mixes.playground.copies import encode, picture
from llava_mixes.recipes import source_overlap


def _clustered(seed: int, count: int) -> np.ndarray:
    centres = np.random.default_rng(99).standard_normal((5, 16))
    rng = np.random.default_rng(seed)
    return (centres[rng.integers(0, 5, count)] + 0.25 * rng.standard_normal((count, 16))).astype(np.float32)


@pytest.mark.parametrize(("block", "tile"), [(1, 3), (7, 5), (1024, 16384)])
def test_candidate_pairs_are_the_range_search_pairs(block: int, tile: int) -> None:
    queries, references = _clustered(0, 40), _clustered(1, 30)
    expected = range_search(queries, references, 0.8)
    tally = CandidateTally()
    labels = ["a"] * 20 + ["b"] * 20
    found = candidate_pairs(
        queries, references, 0.8, labels, ["x"] * 30, CandidateBudget(), tally, block_size=block, tile_size=tile
    )
    assert found.query.tolist() == expected.query.tolist() and found.reference.tolist() == expected.reference.tolist()
    assert np.array_equal(found.similarity, expected.similarity) and len(found.query) > 20
    assert tally.pairs == len(found.query)
    assert tally.by_labels == {("a", "x"): int((found.query < 20).sum()), ("b", "x"): int((found.query >= 20).sum())}


def test_earlier_only_and_wanted_keep_the_pairs_asked_for() -> None:
    vectors = _clustered(2, 50)
    every = range_search(vectors, vectors, 0.8)
    keep = (every.reference < every.query) & ((every.query + every.reference) % 2 == 0)
    found = candidate_pairs(
        vectors,
        vectors,
        0.8,
        ["g"] * 50,
        ["g"] * 50,
        CandidateBudget(),
        CandidateTally(),
        earlier_only=True,
        wanted=lambda query, reference: (query + reference) % 2 == 0,
        block_size=8,
        tile_size=16,
    )
    assert list(zip(found.query.tolist(), found.reference.tolist(), strict=True)) == list(
        zip(every.query[keep].tolist(), every.reference[keep].tolist(), strict=True)
    )


def test_past_the_budget_nothing_is_kept_and_the_error_names_the_labels_the_time_and_the_ways_out() -> None:
    vectors = np.ones((30, 8), dtype=np.float32) + 0.01 * np.random.default_rng(0).standard_normal((30, 8))
    tally, budget = CandidateTally(), CandidateBudget(max_pairs=100)
    labels = ["ocr_vqa"] * 25 + ["coco"] * 5
    found = candidate_pairs(vectors, vectors, 0.7, labels, ["DocVQA"] * 30, budget, tally, block_size=4, tile_size=4)
    assert len(found.query) == 0 and tally.pairs == 900 and budget.over(tally)
    assert tally.by_labels == {("ocr_vqa", "DocVQA"): 750, ("coco", "DocVQA"): 150}
    with pytest.raises(TooManyCandidatesError) as caught:
        budget.check(tally, "cosine >= 0.7 with gradients", "decontaminate_threshold=")
    message = str(caught.value)
    assert isinstance(caught.value, LlavaMixesError)
    for part in ("900 candidate pairs", "budget of 100", "ocr_vqa x DocVQA: 750", "CPU-hours", "ms a pair"):
        assert part in message, part
    for way_out in ("decontaminate_threshold=", "SSCD", "max_candidate_pairs=N", BUDGET_VARIABLE):
        assert way_out in message, way_out
    assert message.index("ocr_vqa x DocVQA") < message.index("coco x DocVQA")
    CandidateBudget(max_pairs=900).check(tally, "", "")


def test_the_budget_comes_from_the_argument_the_environment_or_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BUDGET_VARIABLE, raising=False)
    assert CandidateBudget.of().max_pairs == MAX_CANDIDATE_PAIRS
    monkeypatch.setenv(BUDGET_VARIABLE, "12_000")
    assert CandidateBudget.of().max_pairs == 12000 and CandidateBudget.of(7).max_pairs == 7
    for bad in ("-1", "many", "1e9"):
        monkeypatch.setenv(BUDGET_VARIABLE, bad)
        with pytest.raises(ConfigError, match=BUDGET_VARIABLE):
            CandidateBudget.of()
    monkeypatch.delenv(BUDGET_VARIABLE)
    for bad_value in (-5, 2.5, True, "10"):
        with pytest.raises(ConfigError, match="max_candidate_pairs"):
            CandidateBudget.of(bad_value)


def _spy_on_verification(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = verify.CopyVerifier.verify

    def counting(self: verify.CopyVerifier, *args: object) -> verify.Verdict:
        calls.append(1)
        return original(self, *args)

    monkeypatch.setattr(verify.CopyVerifier, "verify", counting)
    return calls


@pytest.fixture
def pages(tmp_path: Path) -> tuple[Path, Path]:
    """A 665K-layout folder of 6 covers and 4 pages, and a benchmark folder of 3 other pages."""
    data = tmp_path / "data"
    write_mix665k(
        data,
        {
            "ocr_vqa": [encode(picture("cover", seed), "cover") for seed in range(6)],
            "textvqa": [encode(picture("page", seed), "page") for seed in range(4)],
        },
    )
    benchmark = tmp_path / "bench" / "docs"
    benchmark.mkdir(parents=True)
    for seed in range(3):
        (benchmark / f"{seed}.png").write_bytes(encode(picture("page", 100 + seed), "page"))
    return data, benchmark


def test_find_contamination_stops_before_verifying_past_the_budget(
    pages: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, benchmark = pages
    rows = build("mix665k", str(data), str(tmp_path / "hf")).dataset[schema.TRAIN_SPLIT]
    calls = _spy_on_verification(monkeypatch)
    with pytest.raises(TooManyCandidatesError, match=r"textvqa x docs: \d") as caught:
        find_contamination(rows, [str(benchmark)], threshold=0.2, cache_dir=tmp_path / "cc", max_candidate_pairs=2)
    assert "budget of 2 " in str(caught.value) and calls == []
    found = find_contamination(rows, [str(benchmark)], threshold=0.2, cache_dir=tmp_path / "cc")
    assert found.verification is not None and found.verification["pairs"] > 2 and len(calls) > 2


def test_a_build_and_the_cli_stop_with_one_line_past_the_budget(
    pages: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    data, benchmark = pages
    monkeypatch.setenv(BUDGET_VARIABLE, "1")
    calls = _spy_on_verification(monkeypatch)
    kwargs = {"decontaminate": [str(benchmark)], "decontaminate_threshold": 0.2}
    with pytest.raises(TooManyCandidatesError, match="budget of 1 "):
        build("mix665k", str(data), str(tmp_path / "hf"), **kwargs)
    argv = ["build", "mix665k", "--data-dir", str(data), "--cache-dir", str(tmp_path / "hf2")]
    assert main([*argv, "--decontaminate", str(benchmark), "--decontaminate-threshold", "0.2"]) == 2
    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert len(errors) == 1 and "\n" not in errors[0] and BUDGET_VARIABLE in errors[0] and calls == []


def test_an_empty_dataset_has_no_candidates() -> None:
    empty = np.zeros((0, 8), dtype=np.float32)
    found = candidate_pairs(
        empty, np.ones((3, 8), np.float32), 0.5, [], ["b"] * 3, CandidateBudget(), CandidateTally()
    )
    assert len(found.query) == 0


def test_copy_dedup_counts_every_group_before_verifying_any(
    pages: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, _ = pages
    rows = build("mix665k", str(data), str(tmp_path / "hf")).dataset[schema.TRAIN_SPLIT]
    embedder = GradientsEmbedder()
    vectors = {
        sha: embedder.prepare((data / path).read_bytes())
        for sha, path in zip(rows[schema.IMAGE_SHA256], rows[schema.IMAGE_PATH], strict=True)
    }
    calls = _spy_on_verification(monkeypatch)
    with pytest.raises(TooManyCandidatesError, match=r"ocr_vqa x ocr_vqa: 15\b.*textvqa x textvqa: 6\b"):
        copy_deduplicate(rows, vectors, 0.0, "group", CopyVerifier(), workers=1, budget=CandidateBudget(20))
    assert calls == []
    result, stats = copy_deduplicate(
        rows, vectors, 0.0, "group", CopyVerifier(), workers=1, budget=CandidateBudget(21)
    )
    assert stats.pairs == 21 and len(calls) == 21 and len(result[schema.TRAIN_SPLIT]) == 10


def test_overlap_counts_only_pairs_across_sources(playground: Playground, tmp_path: Path) -> None:
    kwargs = {"content_cache_dir": str(tmp_path / "cc")}
    sources = {
        name: build(name, str(playground.root), str(tmp_path / "hf"), **kwargs).dataset[schema.TRAIN_SPLIT]
        for name in ("mix665k", "svit-mix665k")
    }
    with pytest.raises(TooManyCandidatesError, match=r"mix665k\+svit-mix665k x mix665k: \d") as caught:
        source_overlap(sources, threshold=0.05, cache_dir=tmp_path / "cc", max_candidate_pairs=0)
    listed = str(caught.value).split("Most pairs: ")[1].split(". Ways out")[0].split(", ")
    pairs = [entry.rsplit(": ", 1)[0].split(" x ") for entry in listed]
    assert pairs and all(query != reference for query, reference in pairs)
