"""The layout rules of ARCHITECTURE.md, checked on the import graph and the outputs read with `ast`
(`tests/architecture_graph.py`: every form of import, function-level ones included, `if TYPE_CHECKING:` left out),
so that a change that breaks one fails CI. A rule that ARCHITECTURE.md states with "never" is checked
transitively: no module of the stage reaches the forbidden one through any chain of imports."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from architecture_graph import paths_to, read_module, read_package

import llava_mixes

PACKAGE = Path(llava_mixes.__file__).parent
NAME = "llava_mixes"
PREFIX = NAME + "."
MODULES, GRAPH, FACTS = read_package(PACKAGE)

FOUNDATIONS = (
    "schema",
    "errors",
    "store",
    "paths",
    "outputs",
    "vectors",
    "network",
    "devices",
    "extras",
    "plugin",
    "progress",
)
"""The top-level modules every stage may use; each imports at most other foundations."""
FACE = ("__init__", "__main__", "analysis")
"""The rest of the top level: the package's face, `python -m llava_mixes`, and the README's documented name."""
STAGES = (
    "sources",
    "builders",
    "building",
    "embedding",
    "dedup",
    "decontam",
    "recipes",
    "report",
    "publish",
    "exporters",
    "workflows",
    "cli",
    "playground",
)
DYNAMIC_IMPORTS = {PREFIX + "extras", PREFIX + "network"}
"""Modules allowed to import a name known only at run time: both import optional third-party packages."""
BUILD_RECORDS = (PREFIX + "building.report", PREFIX + "building.tables")
"""The build stage's report record and its tables: what `publish` takes with a built config."""


def _in(*stages: str) -> list[str]:
    names = [PREFIX + stage for stage in stages]
    return [module for module in MODULES if any(module == name or module.startswith(name + ".") for name in names)]


def _forbidden(target: str, stages: tuple[str, ...], allowed: tuple[str, ...] = ()) -> bool:
    if target in allowed:
        return False
    return any(target == PREFIX + stage or target.startswith(PREFIX + stage + ".") for stage in stages)


def _never(
    modules: list[str], stages: tuple[str, ...], allowed: tuple[str, ...] = (), through: tuple[str, ...] = ()
) -> list[str]:
    """Each module of `modules` that reaches a module of `stages` (other than `allowed`) through any chain of
    imports, with that chain; the chains do not go on through `through`."""
    found = []
    for module in modules:
        for target, path in paths_to(GRAPH, module, set(through)).items():
            if _forbidden(target, stages, allowed):
                found.append(" -> ".join(path))
    return sorted(found)


# The reader itself: each spelling it must see, planted in a snippet.


@pytest.mark.parametrize(
    ("source", "module", "expected"),
    [
        ("import llava_mixes.dedup.search", "llava_mixes.x", "llava_mixes.dedup.search"),
        ("from llava_mixes.dedup import search", "llava_mixes.x", "llava_mixes.dedup.search"),
        ("from . import search", "llava_mixes.dedup.deduplicate", "llava_mixes.dedup.search"),
        ("from .search import greedy", "llava_mixes.dedup.deduplicate", "llava_mixes.dedup.search.greedy"),
        ("from ..embedding import cache", "llava_mixes.dedup.deduplicate", "llava_mixes.embedding.cache"),
        ("from .deduplicate import x", "llava_mixes.dedup", "llava_mixes.dedup.deduplicate.x"),
        ("import importlib\nimportlib.import_module('llava_mixes.cli')", "llava_mixes.x", "llava_mixes.cli"),
        ("from importlib import import_module as m\nm('llava_mixes.cli')", "llava_mixes.x", "llava_mixes.cli"),
        ("import importlib\nimportlib.import_module('.cli', 'llava_mixes')", "llava_mixes.x", "llava_mixes.cli"),
        (
            "import importlib\nimportlib.import_module('.cli', package='llava_mixes')",
            "llava_mixes.x",
            "llava_mixes.cli",
        ),
        ("__import__('llava_mixes.cli')", "llava_mixes.x", "llava_mixes.cli"),
        ("def f():\n    from llava_mixes import cli", "llava_mixes.x", "llava_mixes.cli"),
        ("if TYPE_CHECKING:\n    pass\nelse:\n    import llava_mixes.cli", "llava_mixes.x", "llava_mixes.cli"),
    ],
)
def test_the_reader_sees_every_form_of_import(source: str, module: str, expected: str) -> None:
    assert expected in read_module(source, module, is_package=module == "llava_mixes.dedup").imported


def test_the_reader_leaves_out_annotation_only_imports() -> None:
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import llava_mixes.cli\n"
    assert "llava_mixes.cli" not in read_module(source, "llava_mixes.x", False).imported


@pytest.mark.parametrize(
    "source",
    [
        "print('x')",
        "out = print",
        "list(map(print, rows))",
        "import builtins\nbuiltins.print('x')",
        "import builtins as b\nb.print('x')",
        "from builtins import print as say\nsay('x')",
        "__builtins__['print']('x')",
        "import sys\nsys.stdout.write('x')",
        "import sys\nsys.stderr.write('x')",
        "import sys as s\ns.stdout.flush()",
        "import sys\nsys.__stdout__.write('x')",
        "from sys import stdout\nstdout.write('x')",
        "from sys import stdout as o\no.write('x')",
        "import sys\ngetattr(sys, 'stdout').write('x')",
        "import os\nos.write(1, b'x')",
        "open('/dev/stdout', 'w')",
        "open(1, 'w')",
        "from pprint import pprint\npprint(1)",
        "import pprint\npprint.pprint(1)",
        "def f():\n    print('late')",
    ],
)
def test_the_reader_sees_every_spelling_of_output(source: str) -> None:
    assert read_module(source, "llava_mixes.x", False).outputs


@pytest.mark.parametrize(
    "source",
    ["import logging\nlogging.getLogger(__name__).info('x')", "x = {'print': 1}", "import os\nos.write(5, b'')"],
)
def test_the_reader_does_not_see_output_where_there_is_none(source: str) -> None:
    assert read_module(source, "llava_mixes.x", False).outputs == []


def test_the_reader_stops_at_the_packages_it_is_told_to() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": set()}
    assert paths_to(graph, "a") == {"b": ["a", "b"], "c": ["a", "b", "c"]}
    assert paths_to(graph, "a", {"b"}) == {"b": ["a", "b"]}


# The rules.


def test_the_graph_is_read() -> None:
    assert f"{PREFIX}dedup.search" in GRAPH[f"{PREFIX}dedup.deduplicate"]
    assert f"{PREFIX}building.entry" in GRAPH[f"{PREFIX}cli.build"]


def test_the_top_level_holds_foundations_and_the_face_only() -> None:
    top = {module.removeprefix(PREFIX) for module in MODULES if module.count(".") == 1}
    packages = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    assert top - packages == set(FOUNDATIONS) | (set(FACE) - {"__init__"})
    assert packages == set(STAGES)


@pytest.mark.parametrize("module", ["schema", "errors"])
def test_foundations_import_nothing_of_ours(module: str) -> None:
    assert GRAPH[PREFIX + module] == set()


def test_foundations_import_only_foundations() -> None:
    foundations = {PREFIX + name for name in FOUNDATIONS}
    assert {module: GRAPH[module] - foundations for module in foundations} == {module: set() for module in foundations}


def test_sources_and_builders_know_their_raw_format_and_the_schema_only() -> None:
    """Rule 2: never embedding, dedup, reports, publishing, the build stage or the CLI."""
    stages = ("embedding", "dedup", "decontam", "recipes", "report", "publish", "exporters", "building", "workflows")
    assert _never(_in("sources", "builders"), (*stages, "cli", "playground")) == []


def test_dedup_works_on_vectors_and_ids() -> None:
    """Rule 3: no embedder, builder, source or build."""
    stages = ("embedding", "sources", "builders", "building", "report", "publish", "cli", "playground", "workflows")
    assert _never(_in("dedup"), stages) == []


def test_embedding_knows_no_dedup_source_or_builder() -> None:
    """Rule 4."""
    stages = ("dedup", "sources", "builders", "building", "report", "publish", "cli", "playground", "workflows")
    assert _never(_in("embedding"), stages) == []


def test_only_the_cli_imports_the_cli() -> None:
    """Rule 5: `python -m llava_mixes` (`__main__`) is the command line too: it only runs `cli.main`."""
    assert GRAPH[PREFIX + "__main__"] == {PREFIX + "cli.main"}
    outside = [module for module in MODULES if not module.startswith((PREFIX + "cli", PREFIX + "__main__"))]
    assert _never(outside, ("cli",)) == []


def test_library_code_never_prints() -> None:
    """Rule 5: no `print` or standard stream outside `cli/`, in any spelling (see `architecture_graph`)."""
    found = [
        f"{module}:{line}"
        for module, facts in FACTS.items()
        if not module.startswith((PREFIX + "cli", PREFIX + "__main__"))
        for line in facts.outputs
    ]
    assert found == []


def test_imports_known_only_at_run_time_are_the_optional_extras() -> None:
    dynamic = {module for module, facts in FACTS.items() if facts.dynamic}
    assert dynamic <= DYNAMIC_IMPORTS


def test_one_build_entry() -> None:
    """Rule 6: the build stage is the one place that prepares a config: no other module calls
    `download_and_prepare` or `load_dataset_builder`."""
    callers = set()
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("download_and_prepare", "load_dataset_builder"):
                callers.add(module)
    assert sorted(callers) == [PREFIX + "building.builder", PREFIX + "building.entry"]


def test_publish_takes_built_datasets_and_never_opens_a_raw_source() -> None:
    """Rule 7: publish takes built configs and their reports (`building.report`, `building.tables`), never a source's
    reader or files, the rest of the build stage, or an embedder. Its card views take the report's `CardSummary`
    (plain data, computed by the workflow) and draw with `report.pairs` and `report.thumbnails` only, never the
    analysis, which reads vectors. It reads the source registry (`builders`) for the card's licences, citations and
    languages: the registry's own imports (the source modules) are not publish's, so the chains stop there."""
    stages = ("sources", "building", "embedding", "dedup", "report", "workflows", "cli", "playground")
    views = (PREFIX + "report.pairs", PREFIX + "report.thumbnails")
    assert _never(_in("publish"), stages, (*BUILD_RECORDS, *views), through=(PREFIX + "builders",)) == []


def test_report_reads_built_rows_and_cached_vectors_only() -> None:
    """Rule 8."""
    stages = ("sources", "builders", "building", "publish", "workflows", "cli", "playground")
    assert _never(_in("report"), stages, BUILD_RECORDS) == []


def test_exporters_take_built_or_published_rows_only() -> None:
    """Rule 9."""
    stages = ("sources", "builders", "building", "embedding", "dedup", "report", "publish", "workflows", "cli")
    assert _never(_in("exporters"), stages) == []


def test_decontam_reads_benchmarks_and_vectors_only() -> None:
    """Rule 10: decontamination reads benchmark pictures, embeds them through `embedding` and searches with
    vectors: it never opens a training source or the build stage, and takes training rows as a `datasets.Dataset`."""
    stages = ("sources", "builders", "building", "recipes", "report", "publish", "exporters", "workflows", "cli")
    assert _never(_in("decontam"), stages) == []


def test_recipes_take_built_rows_and_vectors_only() -> None:
    """Rule 11: the recipe schema and overlap between sources read built rows (`datasets.Dataset`) and embed through
    `embedding`: never a raw source or the build stage."""
    stages = ("sources", "builders", "building", "report", "publish", "exporters", "workflows", "cli")
    assert _never(_in("recipes"), stages) == []


def test_the_build_stage_never_reaches_the_consumers_of_builds() -> None:
    """Rule 12: the build stage composes sources, embedding, dedup, decontamination and recipes: it never reaches
    what consumes a build."""
    stages = ("report", "publish", "exporters", "workflows", "cli", "playground")
    assert _never(_in("building"), stages) == []


def test_there_are_no_import_loops() -> None:
    """Rule 13: no module reaches itself through the imports (function-level ones included)."""
    loops = [
        " -> ".join([*path, module])
        for module in sorted(MODULES)
        for target, path in paths_to(GRAPH, module).items()
        if module in GRAPH[target]
    ]
    assert loops == []


MAX_LINES = 420
"""About 400 lines."""
LONG_ELSEWHERE = {PREFIX + "dedup.sweep": "502 lines as issue 25 landed it; its split is left to dedup's owner"}


def test_no_module_is_much_longer_than_400_lines() -> None:
    long = {
        module: len(path.read_text().splitlines())
        for module, path in MODULES.items()
        if len(path.read_text().splitlines()) > MAX_LINES and module not in LONG_ELSEWHERE
    }
    assert long == {}


def test_architecture_md_names_the_stages_and_foundations_there_are() -> None:
    text = (PACKAGE.parent / "ARCHITECTURE.md").read_text()
    for stage in STAGES:
        assert re.search(rf"^  {stage}/", text, re.M), stage
    for name in FOUNDATIONS:
        assert f"`{name}.py`" in text, name


def test_the_readme_counts_the_configs_there_are() -> None:
    from llava_mixes.building.config import CONFIG_NAMES

    counted = re.findall(r"# the (\d+) configs", (PACKAGE.parent / "README.md").read_text())
    assert counted == [str(len(CONFIG_NAMES))]
