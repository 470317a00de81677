"""A decontamination's per-benchmark lines as a Markdown table, from its record (`Contamination.to_json()`, which a
build report keeps as `decontamination`); plain data in, text out, so that the card and the CLI can show it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def benchmark_table(decontamination: Mapping[str, Any]) -> str:
    """The per-benchmark table (Markdown) of a decontamination record."""
    lines = [
        "| benchmark | reference images | reference images hit | training rows removed | not found | not embedded |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for stats in decontamination["benchmarks"]:
        lines.append(
            f"| {stats['benchmark']} | {stats['reference_images']:,} | {stats['images_hit']:,} | "
            f"{stats['rows_removed']:,} | {stats['not_found']:,} | {stats['not_embedded']:,} |"
        )
    return "\n".join(lines)
