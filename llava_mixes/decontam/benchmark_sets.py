"""Named benchmark sets: shipped lists of Hub benchmark repositories (`decontam/benchmarks/*.yaml`), each entry
naming the repo, its config, the splits and the columns that hold its pictures.

A reference string names a whole set (`llava-1.5-evals`) or one entry of it (`llava-1.5-evals/pope`). A list file
is package data, but it is parsed as untrusted text: every field is checked on load (`BenchmarkEntry`), a repo id
must be `owner/name` (never a path), and a config, split or column name must be one plain path component, so no
list edit can make the project read outside the folders it was given.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from llava_mixes.errors import ConfigError, PathEscapeError
from llava_mixes.paths import check_file_name

SHIPPED = "llava_mixes.decontam.benchmarks"
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
"""A Hub dataset id as a list names it: `owner/name`, no `..`, never a path."""
SET_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
ENTRY_KEYS = ("name", "repo", "config", "splits", "columns", "confirmed")
SET_KEYS = ("name", "description", "benchmarks")
MAX_LIST_BYTES = 1 << 20
"""A list file larger than this is refused before it is parsed."""


def _show(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _component(value: object, what: str) -> str:
    try:
        return check_file_name(value, what)
    except PathEscapeError as error:
        raise ConfigError(str(error)) from None


def _names(value: object, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or len(value) > 64:
        raise ConfigError(f"{what}={_show(value)} is not allowed; give a list of 1 to 64 names")
    names = tuple(_component(item, what) for item in value)
    if len(set(names)) != len(names):
        raise ConfigError(f"{what}={_show(value)} names one more than once")
    return names


@dataclass(frozen=True)
class BenchmarkEntry:
    """One benchmark of a named set: its short name, the Hub dataset repo (`owner/name`), the config (None: the
    repo's default), the splits and the `Image` columns (an `Image` or a list of them) that hold its pictures,
    and whether that layout was confirmed against the repo's card or lmms-eval's task files."""

    name: str
    repo: str
    config: str | None
    splits: tuple[str, ...]
    columns: tuple[str, ...]
    confirmed: bool

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not SET_NAME.fullmatch(self.name):
            raise ConfigError(f"benchmark name {_show(self.name)} is not allowed; use 1-64 of a-z 0-9 _ . -")
        if not isinstance(self.repo, str) or not REPO_ID.fullmatch(self.repo) or ".." in self.repo:
            raise ConfigError(
                f"benchmark {self.name}: repo {_show(self.repo)} is not allowed; give a Hub dataset id owner/name"
            )
        if self.config is not None:
            _component(self.config, f"benchmark {self.name}: config")
        object.__setattr__(self, "splits", _names(list(self.splits), f"benchmark {self.name}: splits"))
        object.__setattr__(self, "columns", _names(list(self.columns), f"benchmark {self.name}: columns"))
        if not isinstance(self.confirmed, bool):
            raise ConfigError(f"benchmark {self.name}: confirmed={_show(self.confirmed)} is not allowed; true, false")

    @property
    def repo_config(self) -> str:
        """`owner/name` with `:config` where the entry names one."""
        return self.repo + (f":{self.config}" if self.config else "")


@dataclass(frozen=True)
class BenchmarkSet:
    """A named list of benchmarks and the SHA-256 of the list file it was read from."""

    name: str
    description: str
    entries: tuple[BenchmarkEntry, ...]
    digest: str

    def entry(self, name: str) -> BenchmarkEntry:
        """The entry called `name`; `ConfigError` names the closest ones."""
        for entry in self.entries:
            if entry.name == name:
                return entry
        names = [entry.name for entry in self.entries]
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(f'{self.name}/{item}' for item in close)}? " if close else ""
        raise ConfigError(f"{self.name} has no benchmark {_show(name)}; {hint}its benchmarks are {names}")


def _entry(item: object, position: int) -> BenchmarkEntry:
    if not isinstance(item, dict):
        raise ConfigError(f"benchmarks[{position}] is {_show(item)}; each benchmark is a mapping of {ENTRY_KEYS}")
    unknown = sorted(str(key) for key in item if key not in ENTRY_KEYS)
    if unknown:
        raise ConfigError(f"benchmarks[{position}]: unknown keys {unknown}; allowed keys: {list(ENTRY_KEYS)}")
    absent = [key for key in ("name", "repo", "splits", "columns") if key not in item]
    if absent:
        raise ConfigError(f"benchmarks[{position}]: the keys {absent} are missing")
    return BenchmarkEntry(
        name=item["name"],
        repo=item["repo"],
        config=item.get("config"),
        splits=_names(item["splits"], f"benchmarks[{position}].splits"),
        columns=_names(item["columns"], f"benchmarks[{position}].columns"),
        confirmed=item.get("confirmed", False),
    )


def parse_set(text: str | bytes, where: str = "list") -> BenchmarkSet:
    """A benchmark list from its YAML text, every field checked; `ConfigError` (naming `where`) otherwise."""
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    if len(data) > MAX_LIST_BYTES:
        raise ConfigError(f"{where}: {len(data):,} bytes is too large for a benchmark list (at most {MAX_LIST_BYTES})")
    try:
        loaded: Any = yaml.safe_load(data)
    except (yaml.YAMLError, ValueError, RecursionError) as error:
        raise ConfigError(f"{where}: not valid YAML ({type(error).__name__})") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{where}: a benchmark list is a mapping with the keys {list(SET_KEYS)}")
    unknown = sorted(str(key) for key in loaded if key not in SET_KEYS)
    if unknown or "name" not in loaded or "benchmarks" not in loaded:
        raise ConfigError(f"{where}: keys {sorted(map(str, loaded))}; a benchmark list has {list(SET_KEYS)}")
    name, description, items = loaded["name"], loaded.get("description", ""), loaded["benchmarks"]
    if not isinstance(name, str) or not SET_NAME.fullmatch(name) or not isinstance(description, str):
        raise ConfigError(f"{where}: name={_show(name)} is not allowed; use 1-64 of a-z 0-9 _ . -")
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{where}: benchmarks={_show(items)} is not allowed; give a non-empty list")
    entries = tuple(_entry(item, position) for position, item in enumerate(items))
    names = [entry.name for entry in entries]
    twice = sorted({item for item in names if names.count(item) > 1})
    if twice:
        raise ConfigError(f"{where}: the benchmarks {twice} are listed more than once")
    return BenchmarkSet(name, description, entries, hashlib.sha256(data).hexdigest())


@cache
def shipped_sets() -> dict[str, BenchmarkSet]:
    """Every shipped benchmark list, by name (each file's name is its set's name)."""
    sets = {}
    for item in sorted(resources.files(SHIPPED).iterdir(), key=lambda item: item.name):
        if item.name.endswith(".yaml"):
            parsed = parse_set(item.read_bytes(), f"{SHIPPED}/{item.name}")
            if f"{parsed.name}.yaml" != item.name:
                raise ConfigError(f"{SHIPPED}/{item.name}: its name is {parsed.name!r}; a list is named as its file")
            sets[parsed.name] = parsed
    return sets


def named_entries(reference: object) -> tuple[BenchmarkSet, tuple[BenchmarkEntry, ...]] | None:
    """The set and entries a reference string names (`SET` or `SET/ENTRY`), or None where it names no set."""
    if not isinstance(reference, str):
        return None
    set_name, _, entry = reference.partition("/")
    found = shipped_sets().get(set_name)
    if found is None:
        return None
    if not entry:
        return found, found.entries
    return found, (found.entry(entry),)


def suggest_set(reference: object) -> str:
    """`; did you mean SET?` for a reference close to a set's name (or `SET/ENTRY` to an entry's), else ''."""
    if not isinstance(reference, str) or len(reference) > 200:
        return ""
    set_name, slash, entry = reference.partition("/")
    close = difflib.get_close_matches(set_name, list(shipped_sets()), n=1, cutoff=0.8)
    if not close:
        return ""
    if not slash:
        return f"; did you mean the benchmark set {close[0]!r} (`llava-mixes list --benchmarks`)?"
    entries = [item.name for item in shipped_sets()[close[0]].entries]
    near = difflib.get_close_matches(entry, entries, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}/{near[0] if near else entry}? (`llava-mixes list --benchmarks`)"
