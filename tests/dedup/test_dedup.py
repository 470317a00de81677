from __future__ import annotations

import datasets
import numpy as np
import pytest

from llava_mixes import deduplicate, schema
from llava_mixes.dedup.search import brute_force_keep_first
from llava_mixes.errors import ConfigError


def vector_dataset(
    vectors: np.ndarray, groups: list[str | None], hashes: list[str | None] | None = None
) -> datasets.Dataset:
    n = len(vectors)
    paths = [None if group is None else f"{group}/img{i}.jpg" for i, group in enumerate(groups)]
    hashes = hashes or [None if group is None else f"sha{i}" for i, group in enumerate(groups)]
    features = datasets.Features(
        {
            schema.ID: datasets.Value("string"),
            schema.IMAGE_GROUP: datasets.Value("string"),
            schema.IMAGE_PATH: datasets.Value("string"),
            schema.IMAGE_SHA256: datasets.Value("string"),
            schema.EMBEDDING: schema.embedding_feature(vectors.shape[1]),
        }
    )
    return datasets.Dataset.from_dict(
        {
            schema.ID: [f"row{i}" for i in range(n)],
            schema.IMAGE_GROUP: groups,
            schema.IMAGE_PATH: paths,
            schema.IMAGE_SHA256: hashes,
            schema.EMBEDDING: [
                None if group is None else vector for group, vector in zip(groups, vectors, strict=True)
            ],
        },
        features=features,
    )


def random_unit(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n // 8, dim))
    points = centres[rng.integers(0, len(centres), n)] + 0.4 * rng.normal(size=(n, dim))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float16).astype(np.float32)


def test_per_group_result_equals_brute_force_in_each_group() -> None:
    vectors = random_unit(240, 24, 0)
    groups = ["coco" if i % 3 else "gqa" for i in range(240)]
    result = deduplicate(vector_dataset(vectors, groups), threshold=0.8)
    removed_paths = set(result["removed"][schema.IMAGE_PATH])
    for group in ("coco", "gqa"):
        members = [i for i, g in enumerate(groups) if g == group]
        expected = brute_force_keep_first(vectors[members], 0.8)
        assert {f"{group}/img{members[j]}.jpg" for j in np.flatnonzero(~expected.kept)} == {
            path for path in removed_paths if path.startswith(group)
        }
    assert len(result["train"]) + len(result["removed"]) == 240


def test_global_scope_compares_across_groups() -> None:
    vectors = np.array([[1.0, 0.0], [0.99, 0.14], [0.0, 1.0]], np.float32)
    per_group = deduplicate(vector_dataset(vectors, ["a", "b", "c"]), threshold=0.9)
    assert len(per_group["removed"]) == 0
    merged = deduplicate(vector_dataset(vectors, ["a", "b", "c"]), threshold=0.9, scope="global")
    assert merged["removed"][schema.DUPLICATE_OF] == ["a/img0.jpg"]
    assert merged["removed"][schema.SIMILARITY][0] == pytest.approx(0.99 / np.hypot(0.99, 0.14), abs=1e-6)


def test_text_rows_are_kept_and_byte_identical_copies_removed_at_any_threshold() -> None:
    vectors = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], np.float32)
    dataset = vector_dataset(vectors, ["g", "g", None, "g"], hashes=["same", "same", None, "other"])
    result = deduplicate(dataset, threshold=1.0)
    assert result["removed"][schema.IMAGE_PATH] == ["g/img1.jpg"]
    assert result["removed"][schema.SIMILARITY] == [1.0]
    assert result["train"][schema.ID] == ["row0", "row2", "row3"]
    assert result["train"][schema.DUPLICATE_OF] == [None, None, None]


def test_rows_sharing_a_removed_image_are_all_removed() -> None:
    vectors = np.array([[1.0, 0.0], [0.995, 0.1], [0.995, 0.1]], np.float32)
    dataset = vector_dataset(vectors, ["g", "g", "g"])
    dataset = dataset.map(
        lambda row, i: {schema.IMAGE_PATH: "g/img1.jpg" if i == 2 else row[schema.IMAGE_PATH]}, with_indices=True
    )
    result = deduplicate(dataset, threshold=0.9)
    assert result["removed"][schema.ID] == ["row1", "row2"]


def test_same_output_whatever_block_size() -> None:
    dataset = vector_dataset(random_unit(300, 16, 4), ["g"] * 300)
    reference = deduplicate(dataset, threshold=0.75, block_size=1024)
    for block_size in (1, 13, 100):
        other = deduplicate(dataset, threshold=0.75, block_size=block_size)
        for split in ("train", "removed"):
            assert other[split].to_dict() == reference[split].to_dict()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"threshold": 1.5}, "threshold=1.5"), ({"threshold": 0.8, "scope": "all"}, "unknown scope value 'all'")],
)
def test_bad_arguments_name_the_value_and_the_allowed_ones(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        deduplicate(vector_dataset(np.eye(2, dtype=np.float32), ["g", "g"]), **kwargs)


def test_image_rows_without_embedding_are_named() -> None:
    dataset = vector_dataset(np.eye(2, dtype=np.float32), ["g", "g"])
    dataset = dataset.map(
        lambda row, i: {schema.EMBEDDING: None if i == 1 else row[schema.EMBEDDING]}, with_indices=True
    )
    with pytest.raises(ValueError, match="row1"):
        deduplicate(dataset, threshold=0.8)


def test_ivf_search_through_deduplicate() -> None:
    pytest.importorskip("faiss", reason="the ann extra is not installed (pip install 'llava_mixes[ann]')")
    dataset = vector_dataset(random_unit(300, 16, 4), ["g"] * 300)
    exact = deduplicate(dataset, threshold=0.75)
    approximate = deduplicate(dataset, threshold=0.75, search="ivf")
    assert approximate["removed"][schema.ID] == exact["removed"][schema.ID]
    with pytest.raises(ConfigError, match="unknown search value 'annoy'"):
        deduplicate(dataset, threshold=0.75, search="annoy")
