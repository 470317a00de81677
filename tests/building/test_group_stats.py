"""The per-group lines of a build report, counted in Arrow: rows and distinct images per group for kept and
removed rows, text-only rows and images without a group on their own lines, and rejections added."""

from __future__ import annotations

import datasets

from llava_mixes import schema
from llava_mixes.building.report import group_stats
from llava_mixes.schema import NO_GROUP, TEXT_ONLY_GROUP, Rejection


def rows(pairs: list[tuple[str | None, str | None]]) -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {schema.IMAGE_GROUP: [group for group, _ in pairs], schema.IMAGE_PATH: [path for _, path in pairs]},
        features=datasets.Features(
            {schema.IMAGE_GROUP: datasets.Value("string"), schema.IMAGE_PATH: datasets.Value("string")}
        ),
    )


def test_group_lines_count_rows_and_distinct_images_of_kept_and_removed_rows() -> None:
    kept = rows(
        [("coco", "a.jpg"), ("coco", "a.jpg"), ("coco", "b.jpg"), (None, None), (None, "x.jpg"), ("gqa", None)]
    )
    removed = rows([("coco", "c.jpg"), ("coco", "c.jpg"), ("vg", "v.jpg")]).filter(lambda row: True)
    rejected = [
        Rejection("mix665k", 7, "r1", "coco", "d.jpg", "unreadable_image", ""),
        Rejection("mix665k", 8, "r2", None, None, "malformed_record", ""),
    ]
    lines = {line.image_group: line for line in group_stats(kept, removed, rejected)}
    assert [line.image_group for line in group_stats(kept, removed, rejected)] == [
        "coco",
        "vg",
        NO_GROUP,
        TEXT_ONLY_GROUP,
    ]
    coco = lines["coco"]
    assert (coco.rows, coco.kept_rows, coco.removed_rows, coco.rejected_rows) == (5, 3, 2, 1)
    assert (coco.images, coco.kept_images, coco.removed_images) == (3, 2, 1)
    assert (lines["vg"].rows, lines["vg"].kept_rows, lines["vg"].removed_images) == (1, 0, 1)
    assert (lines[NO_GROUP].rows, lines[NO_GROUP].kept_images, lines[NO_GROUP].rejected_rows) == (1, 1, 1)
    assert (lines[TEXT_ONLY_GROUP].rows, lines[TEXT_ONLY_GROUP].images) == (2, 0)


def test_no_removed_split_and_empty_splits_give_lines_of_kept_rows_only() -> None:
    kept = rows([("coco", "a.jpg")])
    assert [(line.image_group, line.rows) for line in group_stats(kept, None, [])] == [("coco", 1)]
    assert group_stats(kept.select([]), kept.select([]), []) == []


def test_counts_hold_across_many_arrow_chunks() -> None:
    pairs = [(f"g{index % 3}", f"p{index % 50}.jpg" if index % 7 else None) for index in range(3000)]
    parts = [rows(pairs[start : start + 250]) for start in range(0, len(pairs), 250)]
    kept = datasets.concatenate_datasets(parts)
    lines = {line.image_group: line for line in group_stats(kept, None, [])}
    for group in ("g0", "g1", "g2"):
        mine = [path for name, path in pairs if name == group and path is not None]
        assert (lines[group].rows, lines[group].kept_images) == (len(mine), len(set(mine)))
    assert lines[TEXT_ONLY_GROUP].rows == sum(1 for _, path in pairs if path is None)
