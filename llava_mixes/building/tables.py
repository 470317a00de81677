"""A build report's tables, in Markdown: the per-group statistics and a recipe's per-source counts (and, from
`decontam.tables`, a decontamination's per-benchmark lines)."""

from __future__ import annotations

from llava_mixes.building.report import RECIPE_COUNTS, BuildReport
from llava_mixes.decontam.tables import benchmark_table as format_benchmark_table

__all__ = ["format_benchmark_table", "format_recipe_table", "format_table"]

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


def format_recipe_table(report: BuildReport) -> str:
    """A recipe build's per-source counts (`RECIPE_COUNTS`) as a Markdown table, with a total line."""
    sources: dict[str, dict[str, int]] = (report.recipe or {}).get("sources", {})
    heads = ["source", *(key.replace("_", " ") for key in RECIPE_COUNTS)]
    lines = ["| " + " | ".join(heads) + " |", "|" + " --- |" * len(heads)]
    total = dict.fromkeys(RECIPE_COUNTS, 0)
    for config, counts in sources.items():
        lines.append("| " + " | ".join([config, *(f"{counts[key]:,}" for key in RECIPE_COUNTS)]) + " |")
        for key in RECIPE_COUNTS:
            total[key] += counts[key]
    lines.append("| " + " | ".join(["total", *(f"{total[key]:,}" for key in RECIPE_COUNTS)]) + " |")
    return "\n".join(lines)
