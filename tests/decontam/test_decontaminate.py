"""Decontamination on the playground with planted benchmark copies, and the search against brute force."""

from __future__ import annotations

import hashlib
from pathlib import Path

import datasets
import numpy as np
import pytest

from llava_mixes import schema
from llava_mixes.building.entry import build
from llava_mixes.decontam import (
    CONTAMINATED_SPLIT,
    MATCHED_REFERENCE,
    decontaminate,
    find_contamination,
    load_references,
    range_search,
)
from llava_mixes.errors import ConfigError
from llava_mixes.playground import Playground
from llava_mixes.playground.eval import write_eval_playground


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def built(playground: Playground, tmp_path: Path) -> datasets.Dataset:
    return build(
        "mix665k", str(playground.root), str(tmp_path / "hf"), content_cache_dir=str(tmp_path / "cc")
    ).dataset[schema.TRAIN_SPLIT]


def test_every_planted_copy_is_found_and_nothing_else(playground: Playground, built, tmp_path: Path) -> None:
    evals = write_eval_playground(playground.root)
    references = [
        evals.root / "pope" / "val2014",
        evals.root / "textvqa" / "llava_textvqa_val_v051_ocr.jsonl",
        evals.root / "mmbench" / "mmbench_dev_20230712.tsv",
    ]
    # The thumbnail embedder at its copy threshold (0.9: it states none, so the fallback, which is the issue's).
    result = decontaminate(built, references, embedder="thumbnail", cache_dir=tmp_path / "cc")
    planted = {_sha(playground.root / path) for path in evals.training_pictures}
    expected = sorted(row for row, sha in enumerate(built[schema.IMAGE_SHA256]) if sha in planted)
    contaminated = result[CONTAMINATED_SPLIT]
    assert len(expected) >= 5
    assert sorted(contaminated[schema.ID]) == sorted(built.select(expected)[schema.ID])
    assert len(result[schema.TRAIN_SPLIT]) + len(contaminated) == len(built)
    assert set(result[schema.TRAIN_SPLIT][schema.IMAGE_SHA256]).isdisjoint(planted)
    assert all(score >= 0.9 for score in contaminated[schema.SIMILARITY])
    by_benchmark = {label.split(":", 1)[0] for label in contaminated[MATCHED_REFERENCE]}
    assert by_benchmark == {"val2014", "textvqa", "mmbench"}


def test_the_eval_layout_gives_one_benchmark_per_folder(playground: Playground, built, tmp_path: Path) -> None:
    evals = write_eval_playground(playground.root)
    found = find_contamination(built, [evals.root], embedder="thumbnail", cache_dir=tmp_path / "cc")
    stats = {line.benchmark: line for line in found.benchmarks}
    assert set(stats) == {"pope", "textvqa", "mmbench"}
    hashes = built[schema.IMAGE_SHA256]
    for benchmark, copies in evals.planted.items():
        assert stats[benchmark].reference_images == evals.reference_images[benchmark]
        assert stats[benchmark].images_hit == len(copies)
        shas = {_sha(playground.root / path) for path in copies.values()}
        assert stats[benchmark].rows_removed == sum(sha in shas for sha in hashes)
    pairs = zip(found.rows, found.matched_reference, strict=True)
    byte_copy = [row for row, label in pairs if label.startswith("pope:val2014/")]
    assert byte_copy and sum(found.similarity[found.rows.index(row)] == 1.0 for row in byte_copy) >= 1


def test_a_dataset_with_an_image_column_is_a_reference(playground: Playground, built, tmp_path: Path) -> None:
    evals = write_eval_playground(playground.root)
    folder = evals.root / "pope" / "val2014"
    bench = datasets.Dataset.from_dict(
        {"question_id": list(range(5)), "image": [str(path) for path in sorted(folder.iterdir())]},
        features=datasets.Features({"question_id": datasets.Value("int64"), "image": datasets.Image()}),
    )
    saved = tmp_path / "saved"
    bench.save_to_disk(str(saved))
    for reference in (("pope-hub-copy", bench), saved):
        result = decontaminate(built, [reference], embedder="thumbnail", cache_dir=tmp_path / "cc")
        shas = {_sha(playground.root / path) for path in evals.planted["pope"].values()}
        assert set(result[CONTAMINATED_SPLIT][schema.IMAGE_SHA256]) == shas


def test_mmbench_repeats_resolve_to_the_row_they_name(playground: Playground) -> None:
    evals = write_eval_playground(playground.root)
    found = load_references([evals.root / "mmbench" / "mmbench_dev_20230712.tsv"])
    assert found.benchmarks == ["mmbench"]
    assert len(found.images) == 3 and not found.missing


def test_bad_references_name_what_is_allowed(built, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'.*/nowhere/at_all' not found: give an existing folder"):
        load_references([str(tmp_path / "nowhere" / "at_all")])
    with pytest.raises(ConfigError, match="at least one"):
        load_references([])
    with pytest.raises(ConfigError, match=r"threshold=1\.5"):
        decontaminate(built, [tmp_path], threshold=1.5, embedder="thumbnail", cache_dir=tmp_path / "cc")


@pytest.mark.parametrize(("block", "tile"), [(1, 1), (7, 5), (1024, 16384)])
def test_range_search_equals_brute_force(block: int, tile: int) -> None:
    rng = np.random.default_rng(3)
    references = rng.standard_normal((37, 16)).astype(np.float16)
    queries = np.concatenate(
        [references[:10] + rng.normal(0, 0.3, (10, 16)).astype(np.float16), rng.standard_normal((40, 16))]
    ).astype(np.float32)
    threshold = 0.8
    exact = (queries.astype(np.float64) @ references.astype(np.float64).T) / np.outer(
        np.linalg.norm(queries.astype(np.float64), axis=1), np.linalg.norm(references.astype(np.float64), axis=1)
    )
    rows, cols = np.nonzero(exact >= threshold)
    found = range_search(queries, references, threshold, block_size=block, tile_size=tile)
    found_pairs = list(zip(found.query.tolist(), found.reference.tolist(), strict=True))
    assert found_pairs == list(zip(rows.tolist(), cols.tolist(), strict=True))
    assert np.allclose(found.similarity, exact[rows, cols])
    best, _ = found.best(len(queries))
    for query in range(len(queries)):
        hits = np.flatnonzero(exact[query] >= threshold)
        assert best[query] == (hits[np.argmax(exact[query, hits])] if hits.size else -1)
