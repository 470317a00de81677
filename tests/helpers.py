"""Assertions shared by the build tests."""

from __future__ import annotations

import datasets

from llava_mixes import schema


def assert_schema_invariants(dataset: datasets.Dataset) -> None:
    """Alternating turns; one `<image>` opening the first human turn of image rows, none elsewhere; unique ids;
    a group and a content hash for every image row."""
    ids = dataset[schema.ID]
    assert len(ids) == len(set(ids))
    for row in dataset.select_columns(
        [schema.IMAGE_PATH, schema.IMAGE_GROUP, schema.IMAGE_SHA256, schema.CONVERSATIONS]
    ):
        turns = row[schema.CONVERSATIONS]
        assert turns and [turn["from"] for turn in turns] == ["human", "gpt"] * (len(turns) // 2)
        assert all(turn["value"].strip() for turn in turns)
        tokens = sum(turn["value"].count(schema.IMAGE_TOKEN) for turn in turns)
        if row[schema.IMAGE_PATH] is None:
            assert tokens == 0 and row[schema.IMAGE_GROUP] is None
        else:
            assert tokens == 1 and turns[0]["value"].startswith(schema.IMAGE_TOKEN)
            assert turns[0]["value"] == schema.IMAGE_TOKEN or turns[0]["value"].startswith(schema.IMAGE_TOKEN + "\n")
            assert row[schema.IMAGE_GROUP] and len(row[schema.IMAGE_SHA256]) == 64
