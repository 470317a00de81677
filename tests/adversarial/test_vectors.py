"""Non-finite, zero and corrupted vectors: never an input to the search, never a silent change of the result.

Issue #10, section 2: one NaN vector used to switch dedup off (the pruning basis became NaN), and a bad
vector from an embedder or from the cache changed a build's result with exit 0.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pytest
from dedup_builds import build, decisions, kept_original

from llava_mixes import add_embeddings, deduplicate, load_report, schema
from llava_mixes.dedup.ann import approximate_keep_first
from llava_mixes.dedup.search import brute_force_keep_first, greedy_keep_first
from llava_mixes.dedup.sweep import sweep_pass
from llava_mixes.embedding.cache import EmbeddingError, store_schema
from llava_mixes.embedding.embedders import ThumbnailEmbedder
from llava_mixes.errors import BadEmbeddingError, BadRecordError
from llava_mixes.playground.layout import ANNOTATION_FILE, Playground
from llava_mixes.playground.synthetic import clip_like_vectors
from llava_mixes.store import ShardStore

FEATURE = "vectors"

BAD_VALUES = {"nan": np.nan, "inf": np.inf, "zero": 0.0}


@pytest.fixture(scope="module")
def issue_vectors() -> np.ndarray:
    """The issue's vectors: 1,425 of them are removed at 0.9 when all are finite."""
    vectors = clip_like_vectors(6000, seed=1)
    assert int((~greedy_keep_first(vectors, 0.9).kept).sum()) == 1425
    return vectors


def _spoiled(vectors: np.ndarray, value: float, item: int = 0) -> np.ndarray:
    spoiled = vectors.copy()
    spoiled[item] = value
    return spoiled


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("bad", list(BAD_VALUES))
def test_one_bad_vector_among_6000_is_named_instead_of_switching_dedup_off(
    issue_vectors: np.ndarray, bad: str
) -> None:
    with pytest.raises(BadEmbeddingError, match=r"1 of 6000 vectors .* at item indices \[0\]") as raised:
        greedy_keep_first(_spoiled(issue_vectors, BAD_VALUES[bad]), 0.9)
    assert raised.value.positions == [0]


SEARCHES: dict[str, Callable[[np.ndarray], object]] = {
    "brute_force": lambda vectors: brute_force_keep_first(vectors, 0.8),
    "ivf": lambda vectors: approximate_keep_first(vectors, 0.8, cells=2, probes=2),
    "sweep": lambda vectors: sweep_pass(vectors, (0.7, 0.8, 0.9)),
    "bfloat16": lambda vectors: greedy_keep_first(vectors, 0.8, device="cpu"),
}


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("search", list(SEARCHES))
def test_every_search_refuses_a_bad_vector_and_names_it(search: str) -> None:
    vectors = _spoiled(clip_like_vectors(64, seed=2), np.inf, item=17)
    with pytest.raises(BadEmbeddingError, match=r"item indices \[17\]"):
        SEARCHES[search](vectors)


def _vector_rows(vectors: np.ndarray) -> datasets.Dataset:
    n, dim = vectors.shape
    features = datasets.Features(
        {
            schema.ID: datasets.Value("string"),
            schema.IMAGE_GROUP: datasets.Value("string"),
            schema.IMAGE_PATH: datasets.Value("string"),
            schema.IMAGE_SHA256: datasets.Value("string"),
            schema.EMBEDDING: schema.embedding_feature(dim),
        }
    )
    columns = {
        schema.ID: [f"row{i}" for i in range(n)],
        schema.IMAGE_GROUP: ["g"] * n,
        schema.IMAGE_PATH: [f"g/{i}.jpg" for i in range(n)],
        schema.IMAGE_SHA256: [f"sha{i}" for i in range(n)],
        schema.EMBEDDING: list(vectors),
    }
    return datasets.Dataset.from_dict(columns, features=features)


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("bad", list(BAD_VALUES))
def test_deduplicate_names_the_row_whose_embedding_is_bad(bad: str) -> None:
    vectors = _spoiled(clip_like_vectors(40, seed=3).astype(np.float32), BAD_VALUES[bad], item=7)
    with pytest.raises(BadEmbeddingError, match=r"1 image rows .* \['row7'\]"):
        deduplicate(_vector_rows(vectors), threshold=0.8)


def _nan_for_one_picture(sha: str) -> Callable[[ThumbnailEmbedder, bytes], np.ndarray]:
    """A thumbnail `prepare` that gives one picture (by SHA-256) a NaN vector: a model that outputs NaN."""
    original = ThumbnailEmbedder.prepare

    def prepare(embedder: ThumbnailEmbedder, data: bytes) -> np.ndarray:
        if hashlib.sha256(data).hexdigest() == sha:
            return np.full(embedder.dim, np.nan, dtype=np.float32)
        return original(embedder, data)

    return prepare


@pytest.mark.adversarial("rejected")
def test_an_image_the_embedder_turns_into_nan_is_rejected_and_counted(
    playground: Playground, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = build(playground, tmp_path / "clean_hf")
    path, sha = kept_original(clean)
    monkeypatch.setenv("LLAVA_MIXES_CACHE", str(tmp_path / "other_content_cache"))
    monkeypatch.setattr(ThumbnailEmbedder, "prepare", _nan_for_one_picture(sha))
    result = build(playground, tmp_path / "hf")
    for split in result.values():
        assert sha not in split[schema.IMAGE_SHA256]
    report = load_report(result)
    failed = [rejection for rejection in report.rejected if rejection.reason == schema.EMBEDDING_FAILED]
    assert failed and {rejection.image_path for rejection in failed} == {path}
    assert "NaN" in failed[0].detail
    total = report.total()
    assert total.kept_rows + total.removed_rows + total.rejected_rows == report.rows_in == playground.rows
    assert (total.kept_rows, total.removed_rows) == (len(result["train"]), len(result["removed"]))
    assert all(group.rows == group.kept_rows + group.removed_rows for group in report.groups)


@pytest.mark.adversarial("error")
def test_a_nan_image_stops_the_build_under_on_bad_records_error(
    playground: Playground, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    annotation = playground.root / ANNOTATION_FILE
    rows = json.loads(annotation.read_text())
    bad = {int(row_id.rsplit("-", 1)[1]) for row_id in playground.expected_rejections}
    annotation.write_text(json.dumps([row for index, row in enumerate(rows) if index not in bad]))
    path, sha = kept_original(build(playground, tmp_path / "clean_hf", on_bad_records="error"))
    monkeypatch.setenv("LLAVA_MIXES_CACHE", str(tmp_path / "other_content_cache"))
    monkeypatch.setattr(ThumbnailEmbedder, "prepare", _nan_for_one_picture(sha))
    with pytest.raises(BadRecordError, match=rf"row \d+ .*embedding_failed: {path}"):
        build(playground, tmp_path / "hf", on_bad_records="error")


@pytest.mark.adversarial("error")
def test_add_embeddings_refuses_an_image_the_embedder_turns_into_nan(
    playground: Playground, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = datasets.load_dataset("llava_mixes", "mix665k", data_dir=str(playground.root), split="train")
    sha = next(sha for sha in base[schema.IMAGE_SHA256] if sha)
    monkeypatch.setattr(ThumbnailEmbedder, "prepare", _nan_for_one_picture(sha))
    with pytest.raises(EmbeddingError, match=r"1 images could not be embedded .*NaN"):
        add_embeddings(base, "thumbnail", cache_dir=tmp_path / "cache")


@pytest.mark.adversarial("repaired")
def test_a_stored_nan_vector_with_a_valid_shard_is_embedded_again(playground: Playground, tmp_path: Path) -> None:
    clean = build(playground, tmp_path / "clean_hf")
    _, sha = kept_original(clean)
    folder = next((tmp_path / "content_cache" / "embeddings").iterdir())
    (shard,) = folder.glob("*.arrow")
    table = pa.ipc.open_file(pa.memory_map(str(shard))).read_all()
    dim = table.schema.field("vector").type.list_size
    vectors = table.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
    vectors = vectors.copy()
    vectors[table.column("key").to_pylist().index(sha)] = np.nan
    spoiled = table.set_column(
        1, "vector", pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float16()), dim)
    )
    shard.unlink()
    ShardStore(folder, store_schema(dim)).commit(spoiled)  # a well-formed shard that holds a NaN vector
    again = build(playground, tmp_path / "hf")
    assert decisions(again) == decisions(clean)
    report = load_report(again)
    assert report.embedding["embedded"] == 1
    assert any("NaN" in repair.reason for repair in report.cache_repairs)
