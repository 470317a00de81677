"""Build reports: rejected rows with their reasons, per-group dedup statistics, and their tables.

The statistics follow the seed study's tables (rows, distinct images, similar images removed, images
kept) plus kept rows and rejected rows, so that for every group and in total
`rows + rejected rows = rows in` and `kept rows + removed rows = rows`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from llava_mixes.store import write_atomic

REPORT_FILE = "llava_mixes_report.json"
TEXT_ONLY_GROUP = "(text only)"
NO_GROUP = "(no image group)"


@dataclass(frozen=True)
class Rejection:
    """One rejected input row and why."""

    source: str
    row_index: int
    source_id: str | None
    image_group: str | None
    image_path: str | None
    reason: str
    detail: str


@dataclass
class GroupStats:
    """One line of the statistics table."""

    image_group: str
    rows: int = 0
    images: int = 0
    removed_images: int = 0
    kept_images: int = 0
    kept_rows: int = 0
    removed_rows: int = 0
    rejected_rows: int = 0


@dataclass
class BuildReport:
    """Everything a build did to its input: counts, rejections, and dedup statistics when it deduplicated."""

    config_name: str
    version: str
    sources: list[str]
    rows_in: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    groups: list[GroupStats] = field(default_factory=list)
    dedup: dict[str, Any] | None = None
    embedding: dict[str, Any] | None = None

    @property
    def rejected_rows(self) -> int:
        return len(self.rejected)

    def reject_reasons(self) -> dict[str, int]:
        return dict(Counter(rejection.reason for rejection in self.rejected).most_common())

    def total(self) -> GroupStats:
        """The sum of every group's line."""
        total = GroupStats("total")
        for group in self.groups:
            for name in ("rows", "images", "removed_images", "kept_images", "kept_rows", "removed_rows"):
                setattr(total, name, getattr(total, name) + getattr(group, name))
            total.rejected_rows += group.rejected_rows
        return total

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["rejected_rows"] = self.rejected_rows
        data["reject_reasons"] = self.reject_reasons()
        data["total"] = asdict(self.total())
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BuildReport:
        return cls(
            config_name=data["config_name"],
            version=data["version"],
            sources=list(data["sources"]),
            rows_in=data["rows_in"],
            rejected=[Rejection(**item) for item in data["rejected"]],
            groups=[GroupStats(**item) for item in data["groups"]],
            dedup=data.get("dedup"),
            embedding=data.get("embedding"),
        )

    def save(self, path: Path) -> None:
        write_atomic(path, json.dumps(self.to_json(), indent=2, ensure_ascii=False).encode())

    @classmethod
    def load(cls, path: Path) -> BuildReport:
        return cls.from_json(json.loads(Path(path).read_text()))


def _named(table: pa.Table) -> pa.Table:
    """`(line name, image_path)` per row: the image group, or a text-only / no-group line."""
    group, path = table.column("image_group"), table.column("image_path")
    fallback = pc.if_else(pc.is_null(path), TEXT_ONLY_GROUP, NO_GROUP)
    name = pc.if_else(pc.and_(pc.is_valid(path), pc.is_valid(group)), group, fallback)
    return pa.table({"name": name, "path": path})


def _counts(table: pa.Table) -> dict[str, tuple[int, int]]:
    """Per line name: rows, and distinct image paths."""
    counted = _named(table).group_by("name").aggregate([("name", "count"), ("path", "count_distinct")])
    return {
        name: (rows, images)
        for name, rows, images in zip(
            counted.column("name").to_pylist(),
            counted.column("name_count").to_pylist(),
            counted.column("path_count_distinct").to_pylist(),
            strict=True,
        )
    }


def group_stats(kept: pa.Table, removed: pa.Table, rejected: Iterable[Rejection]) -> list[GroupStats]:
    """Per-group lines from the `image_group` and `image_path` columns of kept and removed rows, and the
    rejections (an image counts once per line and split however many rows use it)."""
    groups: dict[str, GroupStats] = {}
    for table, rows_field, images_field in (
        (kept, "kept_rows", "kept_images"),
        (removed, "removed_rows", "removed_images"),
    ):
        for name, (rows, images) in _counts(table).items():
            stats = groups.setdefault(name, GroupStats(name))
            stats.rows += rows
            setattr(stats, rows_field, rows)
            setattr(stats, images_field, images)
    for rejection in rejected:
        name = rejection.image_group or NO_GROUP
        groups.setdefault(name, GroupStats(name)).rejected_rows += 1
    for stats in groups.values():
        stats.images = stats.kept_images + stats.removed_images
    return sorted(groups.values(), key=lambda stats: (stats.image_group.startswith("("), stats.image_group))


COLUMNS = (
    ("image_group", "group"),
    ("rows", "rows"),
    ("images", "images"),
    ("removed_images", "similar (removed) images"),
    ("kept_images", "kept images"),
    ("kept_rows", "kept rows"),
    ("rejected_rows", "rejected rows"),
)


def format_table(report: BuildReport) -> str:
    """The statistics as a Markdown table, with a total line, in the shape of the seed study's tables."""
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    for stats in [*report.groups, report.total()]:
        cells = [stats.image_group] + [f"{getattr(stats, name):,}" for name, _ in COLUMNS[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
