"""The tricky rows the golden dedup tests run on (see `test_golden`), and a `VectorSource` over a dict."""

from __future__ import annotations

from collections.abc import Sequence

import datasets
import numpy as np

from llava_mixes import schema

ROWS = 9000
DIM = 16
GROUPS = ["coco", "gqa", "vg", None]


class DictVectors:
    """A `VectorSource` over a dict of vectors by hash, with an error for the hashes in `failing`."""

    def __init__(
        self, vectors: dict[str, np.ndarray], failing: frozenset[str] = frozenset(), dtype: type = np.float32
    ) -> None:
        self.stored = vectors
        self.failing = failing
        self.dtype = dtype

    def missing(self, keys: Sequence[str]) -> list[str]:
        return list(dict.fromkeys(key for key in keys if key not in self.stored))

    def vectors(self, keys: list[str]) -> tuple[np.ndarray, list[str | None]]:
        errors = ["unreadable" if key in self.failing else None for key in keys]
        stacked = np.array([self.stored[key] for key in keys], dtype=np.float32).reshape(len(keys), DIM)
        return stacked.astype(self.dtype), errors

    def key(self) -> str:
        return "dict-vectors-1"


def tricky_rows() -> tuple[dict[str, list], dict[str, np.ndarray]]:
    """Columns of `ROWS` rows and the vector of every hash (see the module docstring)."""
    rng = np.random.default_rng(14)
    centres = rng.normal(size=(60, DIM))
    hashes = [f"sha{index:04d}" for index in range(700)]
    points = centres[rng.integers(0, len(centres), len(hashes))] + 0.35 * rng.normal(size=(len(hashes), DIM))
    unit = (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)
    vectors = dict(zip(hashes, unit, strict=True))
    paths: list[tuple[str, str, str | None]] = []  # (path, sha, group)
    for index in range(900):
        group = GROUPS[index % len(GROUPS)]
        if index % 7 == 3:  # the file of an earlier path of the same group, under another name
            sha = paths[index - 4][1] if index >= 4 else hashes[index]
        elif index % 11 == 5:  # the file of an earlier path of another group
            sha = paths[index - 5][1] if index >= 5 else hashes[index]
        else:
            sha = hashes[int(rng.integers(0, len(hashes)))]
        paths.append((f"{group or 'misc'}/img{index:04d}.jpg", sha, group))
    columns: dict[str, list] = {name: [] for name in (schema.ID, "path", "sha", "group", "vector")}
    for row in range(ROWS):
        text_only = rng.random() < 0.1
        path, sha, group = (None, None, None) if text_only else paths[int(rng.integers(0, len(paths)))]
        columns[schema.ID].append(f"row{row:05d}")
        columns["path"].append(path)
        columns["sha"].append(sha)
        columns["group"].append(group)
        columns["vector"].append(None if sha is None else vectors[sha])
    return columns, vectors


def as_dataset(columns: dict[str, list], with_vectors: bool) -> datasets.Dataset:
    features = {
        schema.ID: datasets.Value("string"),
        schema.IMAGE_PATH: datasets.Value("string"),
        schema.IMAGE_SHA256: datasets.Value("string"),
        schema.IMAGE_GROUP: datasets.Value("string"),
    }
    data = {
        schema.ID: columns[schema.ID],
        schema.IMAGE_PATH: columns["path"],
        schema.IMAGE_SHA256: columns["sha"],
        schema.IMAGE_GROUP: columns["group"],
    }
    if with_vectors:
        features[schema.EMBEDDING] = schema.embedding_feature(DIM)
        data[schema.EMBEDDING] = columns["vector"]
    return datasets.Dataset.from_dict(data, features=datasets.Features(features))
