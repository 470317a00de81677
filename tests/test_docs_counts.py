"""The counts the README and the docs pages state are the registry's (issue 23, item 4: the README said 32 configs
where 33 exist). Any "N configs" phrase in README.md or docs/*.md, wherever a page puts it, is checked against
`building.CONFIG_NAMES` (what `llava-mixes list` prints); "N plain configs", "N deduplicated configs",
"N sources" / "N instruction sets" and "N shipped recipes" against their own registries."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llava_mixes.builders import SOURCES
from llava_mixes.building.config import CONFIG_NAMES, MIXES, THRESHOLDS
from llava_mixes.recipes.recipe import shipped_recipes

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SPACE = r"[^\S\n]+"
CLAIM = re.compile(
    rf"(?:\b(?P<count>\d[\d,]*){SPACE}(?P<kind>(?:(?:named|plain|deduplicated|dedup){SPACE})?configs?)"
    rf"|\b(?:all|the){SPACE}(?P<whole>\d[\d,]*){SPACE}(?P<set>instruction{SPACE}sets|sources|shipped{SPACE}recipes))\b",
    re.IGNORECASE,
)
"""A count: any "N configs" (plain, deduplicated), and "all N" or "the N" sources, instruction sets or shipped
recipes (a bare "4 sources" may be a recipe's, not the registry's). Within one line."""


def registry_counts() -> dict[str, int]:
    """Each kind of count a page may state, as the code has it."""
    return {
        "configs": len(CONFIG_NAMES),
        "named configs": len(CONFIG_NAMES),
        "plain configs": len(MIXES),
        "deduplicated configs": len(MIXES) * len(THRESHOLDS),
        "dedup configs": len(MIXES) * len(THRESHOLDS),
        "sources": len(SOURCES),
        "instruction sets": len(SOURCES),
        "shipped recipes": len(shipped_recipes()),
    }


def claims(text: str) -> list[tuple[str, int, str]]:
    """Every count `text` states: (kind, number, the phrase as written)."""
    found = []
    for match in CLAIM.finditer(text):
        kind = " ".join((match["kind"] or match["set"]).lower().split())
        kind = "configs" if kind == "config" else kind
        found.append((kind, int((match["count"] or match["whole"]).replace(",", "")), match[0]))
    return found


def wrong_counts(text: str) -> list[str]:
    """The phrases of `text` whose number is not the registry's, each with the right one."""
    counts = registry_counts()
    return [
        f"{phrase!r} (the code has {counts[kind]})" for kind, number, phrase in claims(text) if counts[kind] != number
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_count_a_page_states_is_the_registrys(page: Path) -> None:
    assert wrong_counts(page.read_text(encoding="utf-8")) == []


def test_the_config_count_is_stated_somewhere() -> None:
    """So that the check above cannot pass by finding nothing: the README or a docs page says how many configs
    `llava-mixes list` shows."""
    stated = [claim for page in PAGES for claim in claims(page.read_text(encoding="utf-8"))]
    assert ("configs", len(CONFIG_NAMES)) in [(kind, number) for kind, number, _ in stated]


def test_the_checker_catches_the_old_readme_count() -> None:
    text = f"llava-mixes list   # the 32 configs\nall {len(SOURCES)} Sources, 1,000 plain configs, the 2 sources"
    assert wrong_counts(text) == [
        f"'32 configs' (the code has {len(CONFIG_NAMES)})",
        f"'1,000 plain configs' (the code has {len(MIXES)})",
        f"'the 2 sources' (the code has {len(SOURCES)})",
    ]
    assert wrong_counts("seed: 0\nsources: [a, b]\na recipe of 4 sources") == []
    assert wrong_counts(f"the {len(CONFIG_NAMES)} configs") == []
