"""A build report's tables, in Markdown: the per-group statistics and a recipe's per-source counts (and, from
`decontam.tables`, a decontamination's per-benchmark lines)."""

from __future__ import annotations

from typing import Any

from llava_mixes.building.report import RECIPE_COUNTS, RECIPE_REPEATS, RECIPE_REQUESTED, BuildReport
from llava_mixes.decontam.tables import benchmark_table as format_benchmark_table

__all__ = ["format_benchmark_table", "format_recipe_table", "format_table", "format_task_lines", "format_task_table"]

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
    """A recipe build's per-source counts (`RECIPE_COUNTS`), its repeats, its rows in `train` and the rows its
    sampling asked (with the source's `sample` and cap) as a Markdown table, with a total line."""
    recipe = report.recipe or {}
    sources: dict[str, dict[str, int]] = recipe.get("sources", {})
    asked = _asked(recipe.get("settings") or {})
    keys = (*RECIPE_COUNTS, RECIPE_REPEATS)
    heads = ["source", *(key.replace("_", " ") for key in keys), "in train", "requested (sample)"]
    lines = ["| " + " | ".join(heads) + " |", "|" + " --- |" * len(heads)]
    total = dict.fromkeys((*keys, RECIPE_REQUESTED), 0)
    for config, counts in sources.items():
        values = {key: counts.get(key, 0) for key in (*keys, RECIPE_REQUESTED)}
        requested = f"{values[RECIPE_REQUESTED]:,} ({asked.get(config, 'all')})" if RECIPE_REQUESTED in counts else "—"
        train = values["kept"] + values[RECIPE_REPEATS]
        lines.append(
            "| " + " | ".join([config, *(f"{values[key]:,}" for key in keys), f"{train:,}", requested]) + " |"
        )
        for key in total:
            total[key] += values[key]
    train = total["kept"] + total[RECIPE_REPEATS]
    cells = ["total", *(f"{total[key]:,}" for key in keys), f"{train:,}", f"{total[RECIPE_REQUESTED]:,}"]
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _asked(settings: dict[str, Any]) -> dict[str, str]:
    """Each source's `sample` and cap as the recipe wrote them (`all`, `0.5`, `2.0`, `300000`, `all, cap 350,000`)."""
    recipe_cap = settings.get("cap")
    asked = {}
    for source in settings.get("sources") or []:
        cap = source.get("cap", recipe_cap)
        asked[source.get("config")] = f"{source.get('sample', 'all')}" + (f", cap {cap:,}" if cap else "")
    return asked


TASK_LINES = 40
"""The most task lines a table shows (the tasks with a share, then the largest); the rest share one line. A source
may keep any label its annotations hold, so the number of tasks is the data's, not ours."""
CELL_CHARACTERS = 80


def format_task_table(report: BuildReport) -> str:
    """A recipe build's rows per task: its share (— where the recipe names none), the rows its sampling asked, and
    the rows in `train` with their share of it, as a Markdown table of at most `TASK_LINES` tasks and a line for the
    others, with a total line; empty for a build whose report has no tasks."""
    tasks: dict[str, dict[str, Any]] = (report.recipe or {}).get("tasks") or {}
    if not tasks:
        return ""
    in_train = sum(line["in_train"] for line in tasks.values())
    requested = sum(line["requested"] for line in tasks.values())
    heads = ["task", "share", "requested", "in train", "share of train"]
    lines = ["| " + " | ".join(heads) + " |", "|" + " --- |" * len(heads)]
    ranked = sorted(tasks, key=lambda task: (tasks[task]["share"] is None, -tasks[task]["in_train"], task))
    shown = sorted(ranked[:TASK_LINES])
    rest = ranked[TASK_LINES:]
    rows = [(_cell(task), tasks[task]) for task in shown]
    if rest:
        others = {"share": None, **{key: sum(tasks[task][key] for task in rest) for key in ("requested", "in_train")}}
        rows.append((f"{len(rest):,} other tasks", others))
    for name, line in rows:
        share = "—" if line["share"] is None else f"{line['share']:.4g}"
        realised = f"{line['in_train'] / in_train:.4g}" if in_train else "—"
        lines.append(f"| {name} | {share} | {line['requested']:,} | {line['in_train']:,} | {realised} |")
    shares = "1" if any(line["share"] for line in tasks.values()) else "—"
    lines.append(f"| total | {shares} | {requested:,} | {in_train:,} | {'1' if in_train else '—'} |")
    return "\n".join(lines)


def format_task_lines(report: BuildReport) -> str:
    """The task table (`format_task_table`) with its line of text, after a blank line; nothing without tasks."""
    table = format_task_table(report)
    return (
        f"\n\nRows per task, requested (after `sample`, `cap` and `shares`) and in `train`:\n\n{table}"
        if table
        else ""
    )


def _cell(text: str) -> str:
    """`text` as one Markdown table cell: its pipes escaped, its line breaks made spaces, cut at `CELL_CHARACTERS`."""
    text = " ".join(str(text).split())
    text = text if len(text) <= CELL_CHARACTERS else text[: CELL_CHARACTERS - 1] + "…"
    return text.replace("|", "\\|")
