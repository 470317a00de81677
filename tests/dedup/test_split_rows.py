"""Reading the rows of `deduplicate`'s splits (row selections of the input) the fast way gives the rows a plain
read gives: the builder's writing of a split, and the per-group statistics."""

from __future__ import annotations

import datasets
import numpy as np
import pyarrow as pa
import pytest
from golden_rows import DictVectors, as_dataset, tricky_rows

from llava_mixes import deduplicate, schema
from llava_mixes.building.builder import _arrow_batches
from llava_mixes.building.report import group_stats


def several_batches() -> datasets.Dataset:
    """Rows stored as several Arrow record batches of different lengths."""
    columns, _ = tricky_rows()
    whole = as_dataset(columns, False)
    return datasets.concatenate_datasets([whole.select(range(start, start + 700)) for start in (0, 700, 1900)])


def plain(dataset: datasets.Dataset) -> pa.Table:
    return dataset.with_format("arrow")[:]


@pytest.mark.parametrize(
    "rows",
    [None, [3, 5, 6, 700, 701, 1399, 1400, 2099], [2099, 4, 4, 900], list(range(0, 2100, 3)), []],
    ids=["all rows", "ascending", "any order", "every third", "none"],
)
def test_arrow_batches_hold_the_rows_of_a_plain_read(rows: list[int] | None) -> None:
    dataset = several_batches() if rows is None else several_batches().select(rows)
    batches = list(_arrow_batches(dataset, size=64))
    assert all(batch.num_rows <= 64 for batch in batches)
    read = pa.concat_tables(batches) if batches else plain(dataset).slice(0, 0)
    assert read.equals(plain(dataset))


def test_group_lines_of_deduplicated_splits_are_those_of_their_rows() -> None:
    columns, vectors = tricky_rows()
    result = deduplicate(as_dataset(columns, False), 0.9, device=None, embeddings=DictVectors(vectors))
    assert result["train"]._indices is not None and len(result["removed"]) > 0
    flat = {split: rows.flatten_indices() for split, rows in result.items()}
    assert group_stats(result["train"], result["removed"], []) == group_stats(flat["train"], flat["removed"], [])
    lines = {line.image_group: line for line in group_stats(result["train"], result["removed"], [])}
    assert lines["coco"].removed_images > 0 and lines["coco"].kept_rows > 0
    shuffled = flat["train"].select(np.random.default_rng(0).permutation(len(flat["train"])).tolist())
    assert group_stats(shuffled, None, []) == group_stats(flat["train"], None, [])
    assert schema.DUPLICATE_OF in result["removed"].column_names
