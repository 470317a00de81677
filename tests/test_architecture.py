"""The layout rules of ARCHITECTURE.md, checked on the import graph read with `ast` (imports inside functions
count; imports under `if TYPE_CHECKING:` do not), so that a change that breaks one fails CI."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import llava_mixes

PACKAGE = Path(llava_mixes.__file__).parent
NAME = "llava_mixes"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            continue
        yield child
        yield from _walk(child)


def _resolve(name: str) -> str:
    """The module of ours that an imported name lands in (the longest module prefix of the dotted name)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def imports_of(module: str) -> set[str]:
    """The modules of this package that `module` imports (a package import counts as its `__init__`)."""
    found: set[str] = set()
    for node in _walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name == NAME or name.startswith(NAME + "."):
                target = _resolve(name)
                if target and target != module:
                    found.add(target)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def _stage(module: str) -> str:
    """The stage of a module: its subpackage (`dedup`, `sources`, ...), or the module itself at the top."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else NAME


def _violations(modules: list[str], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{module} imports {target}"
        for module in modules
        for target in sorted(GRAPH[module])
        if any(target == stage or target.startswith(stage + ".") for stage in forbidden)
    ]


def _in(stage: str) -> list[str]:
    return [module for module in MODULES if module == stage or module.startswith(stage + ".")]


PREFIX = NAME + "."


def test_the_graph_is_read() -> None:
    assert f"{PREFIX}dedup.search" in GRAPH[f"{PREFIX}dedup.deduplicate"]
    assert f"{PREFIX}building.entry" in GRAPH[f"{PREFIX}cli.build"]


@pytest.mark.parametrize("module", ["schema", "errors"])
def test_foundations_import_nothing_of_ours(module: str) -> None:
    assert GRAPH[PREFIX + module] == set()


def test_sources_and_builders_know_their_raw_format_and_the_schema_only() -> None:
    stages = ("embedding", "dedup", "report", "publish", "cli", "building", "workflows", "playground")
    modules = _in(PREFIX + "sources") + _in(PREFIX + "builders")
    assert _violations(modules, tuple(PREFIX + stage for stage in stages)) == []


def test_dedup_works_on_vectors_and_ids() -> None:
    stages = ("embedding", "sources", "builders", "building", "report", "publish", "cli", "playground")
    assert _violations(_in(PREFIX + "dedup"), tuple(PREFIX + stage for stage in stages)) == []


def test_embedding_knows_no_dedup_source_or_builder() -> None:
    stages = ("dedup", "sources", "builders", "building", "report", "publish", "cli", "playground")
    assert _violations(_in(PREFIX + "embedding"), tuple(PREFIX + stage for stage in stages)) == []


def test_publish_takes_built_datasets_and_never_opens_a_raw_source() -> None:
    """Publish may read the source registry's metadata (licences, citations, languages for the card), never a
    source's reader or files, the builder, or an embedder."""
    building = tuple(f"building.{name}" for name in ("builder", "entry", "config", "mixing", "freshness", "losses"))
    stages = ("sources", *building, "embedding", "workflows", "cli", "playground")
    assert _violations(_in(PREFIX + "publish"), tuple(PREFIX + stage for stage in stages)) == []


def test_report_reads_built_rows_and_cached_vectors_only() -> None:
    stages = ("sources", "builders", "building", "publish", "workflows", "cli", "playground")
    assert _violations(_in(PREFIX + "report"), tuple(PREFIX + stage for stage in stages)) == []


def test_exporters_take_built_or_published_rows_only() -> None:
    stages = ("sources", "builders", "building", "embedding", "dedup", "report", "publish", "workflows", "cli")
    assert _violations(_in(PREFIX + "exporters"), tuple(PREFIX + stage for stage in stages)) == []


def test_decontam_reads_benchmarks_and_vectors_only() -> None:
    """Decontamination reads benchmark pictures, embeds them through `embedding` and searches with vectors: it
    never opens a training source or the builder, and takes training rows as a `datasets.Dataset`."""
    stages = ("sources", "builders", "building", "report", "publish", "exporters", "workflows", "cli")
    assert _violations(_in(PREFIX + "decontam"), tuple(PREFIX + stage for stage in stages)) == []


def test_only_the_cli_imports_the_cli() -> None:
    """`python -m llava_mixes` (`__main__`) is the command line too: it only runs `cli.main`."""
    assert imports_of(PREFIX + "__main__") == {PREFIX + "cli.main"}
    outside = [module for module in MODULES if not module.startswith((PREFIX + "cli", PREFIX + "__main__"))]
    assert _violations(outside, (PREFIX + "cli",)) == []


def test_library_code_never_prints() -> None:
    found = []
    for module, path in MODULES.items():
        if module.startswith(PREFIX + "cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                found.append(f"{module}:{node.lineno} print()")
            is_stream = isinstance(node, ast.Attribute) and node.attr in ("stdout", "stderr")
            if is_stream and isinstance(node.value, ast.Name) and node.value.id == "sys":
                found.append(f"{module}:{node.lineno} sys.{node.attr}")
    assert found == []


def test_there_are_no_import_loops() -> None:
    """No module reaches itself through the imports (function-level ones included)."""
    loops = []
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                loops.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(MODULES):
        if module not in state:
            visit(module, [module])
    assert loops == []


def test_one_build_entry() -> None:
    """The build stage is the one place that prepares a config (`building.entry.build`, and the builder for the
    plain builds a derived config is made from): no other module calls `download_and_prepare` or
    `load_dataset_builder`."""
    callers = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("download_and_prepare", "load_dataset_builder"):
                callers.append(module)
    assert sorted(set(callers)) == [PREFIX + "building.builder", PREFIX + "building.entry"]


def test_recipes_take_built_rows_and_vectors_only() -> None:
    """Overlap between sources reads built rows (`datasets.Dataset`) and embeds through `embedding`: it never
    opens a raw source or the builder."""
    stages = ("sources", "builders", "building", "report", "publish", "exporters", "workflows", "cli")
    assert _violations(_in(PREFIX + "recipes"), tuple(PREFIX + stage for stage in stages)) == []
