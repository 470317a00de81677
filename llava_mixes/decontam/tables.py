"""A decontamination's per-benchmark lines as a Markdown table, from its record (`Contamination.to_json()`, which a
build report keeps as `decontamination`); plain data in, text out, so that the card and the CLI can show it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def benchmark_table(decontamination: Mapping[str, Any]) -> str:
    """The per-benchmark table (Markdown) of a decontamination record, then where its named benchmarks were read."""
    lines = [
        "| benchmark | reference images | reference images hit | training rows removed | not found | not embedded |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for stats in decontamination["benchmarks"]:
        lines.append(
            f"| {stats['benchmark']} | {stats['reference_images']:,} | {stats['images_hit']:,} | "
            f"{stats['rows_removed']:,} | {stats['not_found']:,} | {stats['not_embedded']:,} |"
        )
    named = decontamination.get("named_benchmarks") or []
    if named:
        lines += [
            "",
            "| named benchmark | repo | config | splits | read from | revision | pictures | pictures SHA-256 |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for entry in named:
            lines.append(
                f"| {entry['benchmark']} | {entry['repo']} | {entry['config'] or '(default)'} | "
                f"{', '.join(entry['splits'])} | {entry['read_from']} | {(entry['revision'] or '-')[:12]} | "
                f"{entry['pictures']:,} | {entry['pictures_sha256'][:16]} |"
            )
    return "\n".join(lines)
