"""The package's import graph and its outputs, read with `ast`, for the layout rules of ARCHITECTURE.md.

Every form of import counts: `import a.b`, `from a import b`, relative imports (`from . import x`, `from ..a
import b`), and `importlib.import_module` / `__import__` with a constant name (`import_module(".x",
package="llava_mixes.a")` too); imports inside functions count, imports under `if TYPE_CHECKING:` (annotations
only) do not. Importing `a.b.c` counts as importing the module `a.b.c` (or, for `from a.b import c` where `c` is no
module, `a.b`), not the packages above it, as import-linter counts it.

Outputs are `print` and the standard streams in every spelling: the name `print` (called or passed on),
`builtins.print` under any alias, `from builtins import print`, `__builtins__`, `sys.stdout` / `sys.stderr` /
`sys.__stdout__` / `sys.__stderr__` under any alias of `sys` (so `sys.stdout.write` too), `from sys import stdout`,
`getattr(sys, "stdout")`, `os.write(1, ...)` / `os.write(2, ...)`, `open(1)` / `open("/dev/stdout")`, and `pprint`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

STREAMS = ("stdout", "stderr", "__stdout__", "__stderr__")
DEVICES = ("/dev/stdout", "/dev/stderr", "/dev/tty")


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def walk(node: ast.AST) -> Iterator[ast.AST]:
    """Every node below `node`, leaving out what sits under `if TYPE_CHECKING:`."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            yield from (item for part in child.orelse for item in (part, *walk(part)))
            continue
        yield child
        yield from walk(child)


def absolute(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name that `from <level dots><name> import ...` in `module` starts from."""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    base = parts[: len(parts) - (level - 1)] if level > 1 else parts
    return ".".join([*base, name] if name else base)


@dataclass
class ModuleFacts:
    """What one module's source shows: the dotted names it imports, and its outputs and dynamic imports."""

    imported: set[str] = field(default_factory=set)
    outputs: list[str] = field(default_factory=list)
    dynamic: list[str] = field(default_factory=list)
    """Lines that import a name only known at run time (`import_module(variable)`)."""


def _constant(node: ast.AST | None) -> object:
    return node.value if isinstance(node, ast.Constant) else None


def read_module(source: str, module: str, is_package: bool) -> ModuleFacts:
    """The facts of `module` (its dotted name; `is_package`: it is a package's `__init__`) from its `source`."""
    facts = ModuleFacts()
    tree = ast.parse(source)
    aliases: dict[str, str] = {}
    """Local names bound to a module or a function of interest: `sys`, `builtins`, `os`, `importlib`, ..."""
    nodes = list(walk(tree))
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                facts.imported.add(alias.name)
                aliases[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom):
            origin = absolute(module, is_package, node.level, node.module) if node.level else (node.module or "")
            for alias in node.names:
                facts.imported.add(f"{origin}.{alias.name}" if alias.name != "*" else origin)
                aliases[alias.asname or alias.name] = f"{origin}.{alias.name}"
            if origin in ("sys", "builtins"):
                for alias in node.names:
                    if alias.name in (*STREAMS, "print", "*"):
                        facts.outputs.append(f"{node.lineno} from {origin} import {alias.name}")
            if origin == "pprint":
                facts.outputs.append(f"{node.lineno} from pprint import ...")
    for node in nodes:
        _read_node(node, aliases, module, is_package, facts)
    return facts


def _read_node(node: ast.AST, aliases: dict[str, str], module: str, is_package: bool, facts: ModuleFacts) -> None:
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
        if node.id == "print" and node.id not in aliases:
            facts.outputs.append(f"{node.lineno} print")
        elif node.id == "__builtins__":
            facts.outputs.append(f"{node.lineno} __builtins__")
        elif aliases.get(node.id) in ("builtins.print", *(f"sys.{stream}" for stream in STREAMS)):
            facts.outputs.append(f"{node.lineno} {aliases[node.id]}")
        elif aliases.get(node.id) == "pprint" or aliases.get(node.id, "").startswith("pprint."):
            facts.outputs.append(f"{node.lineno} pprint")
    elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        target = aliases.get(node.value.id)
        if (target == "sys" and node.attr in STREAMS) or (target == "builtins" and node.attr == "print"):
            facts.outputs.append(f"{node.lineno} {target}.{node.attr}")
    elif isinstance(node, ast.Call):
        _read_call(node, aliases, module, is_package, facts)


def _call_name(func: ast.AST, aliases: dict[str, str]) -> str | None:
    if isinstance(func, ast.Name):
        return aliases.get(func.id, func.id)
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return f"{aliases.get(func.value.id, func.value.id)}.{func.attr}"
    return None


def _read_call(node: ast.Call, aliases: dict[str, str], module: str, is_package: bool, facts: ModuleFacts) -> None:
    name = _call_name(node.func, aliases)
    first = _constant(node.args[0]) if node.args else None
    if name in ("importlib.import_module", "__import__"):
        package = next((_constant(k.value) for k in node.keywords if k.arg == "package"), None)
        if package is None and len(node.args) > 1 and name == "importlib.import_module":
            package = _constant(node.args[1])
        if isinstance(first, str) and first.startswith("."):
            level = len(first) - len(first.lstrip("."))
            anchor = str(package) if isinstance(package, str) else module
            facts.imported.add(absolute(anchor, isinstance(package, str) or is_package, level, first.lstrip(".")))
        elif isinstance(first, str):
            facts.imported.add(first)
        else:
            facts.dynamic.append(f"{node.lineno} {name}(<not a constant>)")
    elif name == "getattr" and len(node.args) > 1 and isinstance(node.args[0], ast.Name):
        target, attribute = aliases.get(node.args[0].id), _constant(node.args[1])
        if (target == "sys" and attribute in STREAMS) or (target == "builtins" and attribute == "print"):
            facts.outputs.append(f"{node.lineno} getattr({target}, {attribute!r})")
    elif name == "os.write" and first in (1, 2):
        facts.outputs.append(f"{node.lineno} os.write({first}, ...)")
    elif name in ("open", "io.open") and (first in (1, 2) or first in DEVICES):
        facts.outputs.append(f"{node.lineno} open({first!r})")


def module_name(path: Path, package_dir: Path) -> str:
    parts = path.relative_to(package_dir.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolve(name: str, modules: dict[str, Path]) -> str:
    """The module of ours that an imported name lands in (the longest module prefix of the dotted name)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


def read_package(package_dir: Path) -> tuple[dict[str, Path], dict[str, set[str]], dict[str, ModuleFacts]]:
    """Every module of the package, its imports of the package's modules, and its facts."""
    modules = {module_name(path, package_dir): path for path in sorted(package_dir.rglob("*.py"))}
    top = package_dir.name
    facts = {
        module: read_module(path.read_text(), module, path.name == "__init__.py") for module, path in modules.items()
    }
    graph = {
        module: {
            target
            for name in found.imported
            if name == top or name.startswith(top + ".")
            for target in [resolve(name, modules)]
            if target and target != module
        }
        for module, found in facts.items()
    }
    return modules, graph, facts


def paths_to(graph: dict[str, set[str]], start: str, stop: set[str] | None = None) -> dict[str, list[str]]:
    """Every module `start` reaches through imports, each with one import path that leads there; the search does
    not go on through the modules in `stop` (they are reached, not passed)."""
    found = {start: [start]}
    queue = [start]
    while queue:
        module = queue.pop(0)
        if module != start and stop and module in stop:
            continue
        for target in sorted(graph[module]):
            if target not in found:
                found[target] = [*found[module], target]
                queue.append(target)
    found.pop(start)
    return found
