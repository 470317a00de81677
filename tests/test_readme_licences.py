"""The README's licence table names every instruction set of the registry, with the commercial use the registry
states (a subset of a release stands under its release's row)."""

from __future__ import annotations

import re
from pathlib import Path

from llava_mixes.builders import SOURCES

README = Path(__file__).resolve().parent.parent / "README.md"


def licence_rows() -> dict[str, bool]:
    """Each config the licence table names, and whether its row allows commercial use."""
    text = README.read_text()
    table = text[text.index("## Licences") :]
    table = table[: table.index("\n## ")]
    rows: dict[str, bool] = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            for name in re.findall(r"`([^`]+)`", cells[0]):
                rows[name] = not cells[2].startswith("**no**")
    return rows


def test_every_source_has_a_licence_row_that_agrees_on_commercial_use() -> None:
    rows = licence_rows()
    for name, source in SOURCES.items():
        row = name if name in rows else f"{name.split('-')[0]}-<subset>"
        assert row in rows, name
        assert rows[row] == source.commercial_use, name
