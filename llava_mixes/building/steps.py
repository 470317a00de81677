"""The build as a chain of steps, and the one check that tells whether a cached step still holds.

A step (`Step`) declares what its output follows from: its own code version (`code_version`: a digest of its modules
and the package modules they import, their import statements read with `ast`, never the whole package), its
settings, and the digests of its inputs (the outputs of the steps before it, embedder weight files, benchmark
pictures), each digest computed stat first and from the content only when the `stat` cannot decide
(`embedding.weights`, `decontam.references`, `sources.inputs`). A build stores its steps in its folder
(`STEPS_RECORD`); `changed` is the one freshness check: the recorded steps either match the ones the config would
run now or they do not, and the first difference is named. The files a plain build discovers while it runs (the
images it reads) are its dynamic inputs, recorded after the run (`sources.inputs`) and checked by the same
stat-first rule.

A code edit thus makes exactly the steps stale whose code it touches: editing one source's builder rebuilds the
configs that read that source; editing `dedup/` reruns the dedup steps over the normalised rows, which are reused.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llava_mixes.store import write_atomic

PACKAGE_DIR = Path(__file__).resolve().parents[1]
PACKAGE = PACKAGE_DIR.name
STEPS_RECORD = "llava_mixes_steps.json"
"""In a build's folder: the steps that made it, each with its code version, settings and input digests."""
STEPS_FORMAT = 1
_INPUT_REASONS = {
    "base": "its base build {name} was rebuilt since",
    "embedder": "its {name} embedder changed since (its weights or its code)",
    "references": "the benchmark pictures it was checked against changed",
    "step": "its step {name} changed",
}


def _module_path(module: str) -> Path | None:
    relative = Path(*module.split(".")[1:])
    for path in (PACKAGE_DIR / relative / "__init__.py", (PACKAGE_DIR / relative).with_suffix(".py")):
        if path.is_file():
            return path
    return None


def _resolve(name: str) -> str | None:
    """The module of this package that the dotted `name` lands in (its longest module prefix), or None."""
    while name and name != PACKAGE:
        if _module_path(name) is not None:
            return name
        name = name.rpartition(".")[0]
    return None


_IMPORT_STATEMENT = re.compile(
    rb"^[ \t]*(?:from[ \t]+[.\w]+[ \t]+import[ \t]*(?:\([^)]*\)|[^\n]*)|import[ \t]+[^\n]*)", re.MULTILINE
)
"""An import statement on its own line (a parenthesised name list may span lines), wherever it stands: at the top,
in a function, under `if TYPE_CHECKING:`, or inside a string (which can only add a dependency, never lose one)."""
_IMPORT_MODULE_CALL = re.compile(rb"import_module\(\s*[\"']([\w.]+)[\"']")


def _import_nodes(source: bytes) -> Iterable[ast.Import | ast.ImportFrom]:
    """The import statements of `source`, each parsed alone: parsing only them, not the whole module, keeps the
    code version of a step cheap enough for every cache-hit load."""
    for match in _IMPORT_STATEMENT.finditer(source):
        try:
            statement = ast.parse(match.group(0).strip()).body
        except SyntaxError:  # a line of prose that starts like an import
            continue
        yield from (node for node in statement if isinstance(node, (ast.Import, ast.ImportFrom)))


def _imported_names(module: str, source: bytes) -> Iterable[str]:
    is_package = _module_path(module) == PACKAGE_DIR.joinpath(*module.split(".")[1:], "__init__.py")
    for node in _import_nodes(source):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            parts = module.split(".")
            anchor = parts if is_package else parts[:-1]
            anchor = anchor[: len(anchor) - node.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        yield from (f"{base}.{alias.name}" for alias in node.names)
    yield from (name.decode() for name in _IMPORT_MODULE_CALL.findall(source))


@functools.cache
def module_imports(module: str) -> frozenset[str]:
    """The modules of this package that `module` imports anywhere in its file (a package import counts as its
    `__init__`)."""
    path = _module_path(module)
    if path is None:
        return frozenset()
    found = set()
    for name in _imported_names(module, path.read_bytes()):
        target = _resolve(name) if name.startswith(PACKAGE + ".") else None
        if target is not None and target != module:
            found.add(target)
    return frozenset(found)


def module_digest(module: str) -> str:
    """A SHA-256 of the source file of `module`."""
    path = _module_path(module)
    return hashlib.sha256(path.read_bytes() if path is not None else b"").hexdigest()


def code_modules(modules: Iterable[str]) -> list[str]:
    """`modules` and every module of this package they import, directly or not, sorted."""
    seen: set[str] = set()
    pending = list(modules)
    while pending:
        module = pending.pop()
        if module not in seen:
            seen.add(module)
            pending.extend(module_imports(module))
    return sorted(seen)


def code_version(*modules: str, own: Iterable[str] = ()) -> str:
    """The code version of a step run by `modules`: a digest of their source and of every module of this package
    they import, directly or not, and of the source of the modules `own` (whose imports are not followed)."""
    digest = hashlib.sha256()
    for module in code_modules(modules):
        digest.update(f"{module}\t{module_digest(module)}\n".encode())
    for module in sorted(set(own)):
        digest.update(f"own {module}\t{module_digest(module)}\n".encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Step:
    """One step of a build: its name, its code version, its settings (JSON values) and the digests of its inputs,
    named `<kind>:<name>` (`base:mix665k`, `embedder:dedup`, `references`). An input digest of None cannot tell
    (a Hub model id, a weight file that is gone) and counts as unchanged."""

    name: str
    code: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    inputs: Mapping[str, str | None] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "code": self.code,
            "settings": dict(sorted(self.settings.items())),
            "inputs": dict(sorted(self.inputs.items())),
        }

    def digest(self) -> str:
        """The digest the step's output is stored under: of its name, code, settings and inputs."""
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True, default=str).encode()).hexdigest()


def _checksum(steps: Any) -> str:
    return hashlib.sha256(json.dumps(steps, sort_keys=True, default=str).encode()).hexdigest()


def write_steps(folder: Path, steps: Sequence[Step]) -> None:
    """Record, in a build's `folder`, the steps that made it."""
    listed = [step.to_json() for step in steps]
    data = {"format": STEPS_FORMAT, "steps": listed, "sha256": _checksum(listed)}
    write_atomic(folder / STEPS_RECORD, json.dumps(data, indent=1, sort_keys=True, default=str).encode())


def read_steps(folder: Path) -> list[dict[str, Any]] | None:
    """The steps recorded in `folder` (as JSON objects), or None when the record is absent, damaged or of another
    format."""
    try:
        data = json.loads((folder / STEPS_RECORD).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != STEPS_FORMAT:
        return None
    steps = data.get("steps")
    if not isinstance(steps, list) or data.get("sha256") != _checksum(steps):
        return None
    if not all(isinstance(step, dict) and isinstance(step.get("inputs"), dict) for step in steps):
        return None
    return steps


def _input_reason(key: str) -> str:
    kind, _, name = key.partition(":")
    return _INPUT_REASONS.get(kind, "its input {kind} {name} changed").format(kind=kind, name=name)


def _step_reason(recorded: Mapping[str, Any], step: Step) -> str | None:
    if recorded.get("code") != step.code:
        return f"the code of its step {step.name} changed"
    settings = step.to_json()["settings"]
    if recorded.get("settings") != json.loads(json.dumps(settings, default=str)):
        return f"the settings of its step {step.name} changed"
    inputs = recorded["inputs"]
    if set(inputs) != set(step.inputs):
        return f"the inputs of its step {step.name} are now {sorted(step.inputs)}, not {sorted(inputs)}"
    for key, digest in sorted(step.inputs.items()):
        if digest is not None and inputs[key] is not None and inputs[key] != digest:
            return _input_reason(key)
    return None


def changed(folder: Path, steps: Sequence[Step]) -> str | None:
    """The one freshness check: why the steps recorded in `folder` are not `steps` (the first difference: a step's
    code, settings or one of its inputs), or None when they match."""
    recorded = read_steps(folder)
    if recorded is None:
        return "it has no record of the steps that made it"
    names = [step.name for step in steps]
    if [step.get("name") for step in recorded] != names:
        return f"its steps are now {names}, not {[step.get('name') for step in recorded]}"
    for before, step in zip(recorded, steps, strict=True):
        reason = _step_reason(before, step)
        if reason is not None:
            return reason
    return None
