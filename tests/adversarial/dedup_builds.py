"""Shared by the vector and cache tests: a thumbnail build of the playground, its decisions, and the image
whose damage would change them."""

from __future__ import annotations

from pathlib import Path

import datasets

from llava_mixes import schema
from llava_mixes.playground.layout import Playground

DEDUP = "mix665k-dedup-0.8"


def build(playground: Playground, hf_cache: Path, config: str = DEDUP, **kwargs: object) -> datasets.DatasetDict:
    """`config` of the playground with the `thumbnail` embedder, built into its own datasets cache."""
    return datasets.load_dataset(
        "llava_mixes", config, data_dir=str(playground.root), embedder="thumbnail", cache_dir=str(hf_cache), **kwargs
    )


def decisions(result: datasets.DatasetDict) -> dict[str, list[tuple[object, ...]]]:
    """Every split's rows as (id, image hash, duplicate_of, similarity), sorted."""
    columns = [schema.ID, schema.IMAGE_SHA256, schema.DUPLICATE_OF, schema.SIMILARITY]
    found = {}
    for split, rows in result.items():
        values = [rows[column] if column in rows.column_names else [None] * len(rows) for column in columns]
        found[split] = sorted(zip(*values, strict=True))
    return found


def kept_original(result: datasets.DatasetDict) -> tuple[str, str]:
    """A kept image that a planted near-duplicate was removed against (its path and content hash): without
    its true vector, that duplicate would be kept."""
    original = result[schema.REMOVED_SPLIT][0][schema.DUPLICATE_OF]
    train = result[schema.TRAIN_SPLIT]
    return original, train[list(train[schema.IMAGE_PATH]).index(original)][schema.IMAGE_SHA256]
