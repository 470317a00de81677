"""The build as steps (`building.steps`, `building.chain`): each step's code version covers its own modules and what
they import, so a code edit makes only the steps it touches stale; the one freshness check reads the recorded
steps whole or not at all."""

from __future__ import annotations

import ast
import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llava_mixes import plugin
from llava_mixes.builders import SOURCES
from llava_mixes.building import build, mixing, steps
from llava_mixes.building.chain import DEDUP_CODE, NORMALISE_CODE
from llava_mixes.building.steps import STEPS_RECORD, Step, changed, code_modules, write_steps
from llava_mixes.playground.layout import Playground

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)


def edited(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """Make the code version of every step that runs `module` change, as an edit of its file would."""
    original: Callable[[str], str] = steps.module_digest
    monkeypatch.setattr(steps, "module_digest", lambda name: "edited" if name == module else original(name))


def rebuilt(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.getMessage().startswith("rebuilding")]


def arrow_files(folder: Path) -> dict[str, tuple[int, int]]:
    return {path.name: (path.stat().st_ino, path.stat().st_mtime_ns) for path in folder.glob("*.arrow")}


def test_a_step_follows_the_imports_of_its_own_modules_only() -> None:
    normalise = code_modules([SOURCES["zh600k"].__module__, *NORMALISE_CODE])
    assert "llava_mixes.builders.zh600k" in normalise and "llava_mixes.sources.base" in normalise
    assert not [name for name in normalise if name.startswith("llava_mixes.builders") and "zh600k" not in name]
    assert not [name for name in normalise if name.startswith(("llava_mixes.dedup", "llava_mixes.embedding"))]
    dedup = code_modules(DEDUP_CODE)
    assert "llava_mixes.dedup.search" in dedup
    assert not [name for name in dedup if name.startswith(("llava_mixes.sources", "llava_mixes.builders"))]


IMPORT_MODULE = "import_module"


def every_import(module: str) -> frozenset[str]:
    """The package modules `module` imports, read by walking its whole syntax tree (what `steps.module_imports`
    finds from its import statements alone)."""
    path = steps.PACKAGE_DIR.joinpath(*module.split(".")[1:])
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    is_package = path.name == "__init__.py"
    names = []
    for node in ast.walk(ast.parse(path.read_bytes())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names += [f"{base}.{alias.name}" for alias in node.names]
        elif (
            isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
        ):
            names += [arg.value for arg in node.args[:1] if isinstance(arg, ast.Constant)]
    found = {steps._resolve(name) for name in names if name.startswith(steps.PACKAGE + ".")}
    return frozenset(found - {None, module})


def test_the_import_scan_finds_what_the_whole_syntax_tree_holds() -> None:
    modules = []
    for path in sorted(steps.PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(steps.PACKAGE_DIR.parent).with_suffix("").parts)
        modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    assert len(modules) > 100
    for module in modules:
        assert steps.module_imports(module) == every_import(module), module


def test_the_import_scan_reads_statements_anywhere_and_only_statements(tmp_path: Path) -> None:
    source = b"""\"\"\"Docs.\"\"\"
from __future__ import annotations

import os
from .sibling import (
    one,
    two,
)

def late() -> None:
    from llava_mixes.dedup import search  # noqa
    importlib.import_module("llava_mixes.store")

text = "import nothing, from which prose follows"
"""
    names = set(steps._imported_names("llava_mixes.building.example", source))
    assert {"os", "llava_mixes.building.sibling.one", "llava_mixes.building.sibling.two"} <= names
    assert {"llava_mixes.dedup.search", "llava_mixes.store"} <= names
    assert not any("nothing" in name for name in names)


def test_the_cache_path_holds_the_schema_and_layout_not_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    before = plugin.layout_hash()
    edited(monkeypatch, "llava_mixes.dedup.search")
    assert plugin.layout_hash() == before
    monkeypatch.setattr(plugin, "CACHE_LAYOUT", plugin.CACHE_LAYOUT + 1)
    assert plugin.layout_hash() != before


def test_an_edited_builder_rebuilds_its_source_only(
    playground: Playground, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    root = str(playground.root)
    first = {name: build(name, root).folder for name in ("mix665k", "zh600k")}
    files = {name: arrow_files(folder) for name, folder in first.items()}
    edited(monkeypatch, SOURCES["zh600k"].__module__)
    with caplog.at_level(logging.INFO, logger="llava_mixes"):
        again = {name: build(name, root).folder for name in ("mix665k", "zh600k")}
    assert again == first
    assert arrow_files(again["mix665k"]) == files["mix665k"]
    assert arrow_files(again["zh600k"]) != files["zh600k"]
    (line,) = rebuilt(caplog)
    assert line.startswith("rebuilding zh600k") and "the code of its step normalise:zh600k changed" in line


def test_an_edited_dedup_search_reruns_dedup_over_the_normalised_rows(
    playground: Playground, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    root = str(playground.root)
    first = build("mix665k-dedup-0.8", root, embedder="thumbnail")
    base_files, dedup_files = (
        arrow_files(Path(first.base.cache_files[0]["filename"]).parent),
        arrow_files(first.folder),
    )
    edited(monkeypatch, "llava_mixes.dedup.search")
    with caplog.at_level(logging.INFO, logger="llava_mixes"):
        again = build("mix665k-dedup-0.8", root, embedder="thumbnail")
    assert again.folder == first.folder
    assert arrow_files(Path(again.base.cache_files[0]["filename"]).parent) == base_files
    assert arrow_files(again.folder) != dedup_files
    (line,) = rebuilt(caplog)
    assert line.startswith("rebuilding mix665k-dedup-0.8") and "the code of its step dedup changed" in line
    assert [row for row in again.dataset["train"]] == [row for row in first.dataset["train"]]


def test_a_recorded_step_matches_itself_and_names_what_changed(tmp_path: Path) -> None:
    step = Step("dedup", "abc", {"threshold": 0.8}, {"base:mix665k": "1", "embedder:dedup": None})
    write_steps(tmp_path, [step])
    assert changed(tmp_path, [step]) is None
    assert (
        changed(tmp_path, [Step("dedup", "abd", step.settings, step.inputs)]) == "the code of its step dedup changed"
    )
    moved = Step("dedup", "abc", step.settings, {"base:mix665k": "2", "embedder:dedup": "w"})
    assert changed(tmp_path, [moved]) == "its base build mix665k was rebuilt since"
    assert "settings" in str(changed(tmp_path, [Step("dedup", "abc", {"threshold": 0.9}, step.inputs)]))


@given(data=JSON)
def test_a_damaged_steps_record_reads_as_no_record_or_a_reason(data: object, tmp_path: Path) -> None:
    step = Step("normalise:mix665k", "abc", {"on_bad_records": "skip"})
    write_steps(tmp_path, [step])
    recorded = json.loads((tmp_path / STEPS_RECORD).read_text())
    recorded["steps"] = data if isinstance(data, list) else recorded["steps"]
    recorded[str(data)[:6]] = data
    (tmp_path / STEPS_RECORD).write_text(json.dumps(recorded))
    reason = changed(tmp_path, [step])
    assert reason is None or isinstance(reason, str)
    if reason is None:
        assert json.loads((tmp_path / STEPS_RECORD).read_text())["steps"] == [step.to_json()]


def test_a_recipe_is_parsed_once_per_build(
    playground: Playground, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = tmp_path / "mix.yaml"
    recipe.write_text("sources: [mix665k, zh600k]\n")
    parsed = []
    original = mixing.load_recipe

    def counted(*args: object) -> object:
        parsed.append(args)
        return original(*args)

    monkeypatch.setattr(mixing, "load_recipe", counted)
    first = build("recipe", str(playground.root), recipe=str(recipe))
    assert len(parsed) == 1
    again = build("recipe", str(playground.root), recipe=str(recipe))
    assert len(parsed) == 2 and again.folder == first.folder
