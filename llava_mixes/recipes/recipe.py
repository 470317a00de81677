"""Recipes: a mix of built configs described in YAML, validated on construction.

```yaml
name: my-mix                 # optional; the file's stem by default; one plain file name (it names output files)
seed: 0                      # seeds every source's sampling: an integer in [0, 2**63) (default 0)
sources:                     # plain configs (`llava-mixes list`), in order: earlier sources win in dedup
  - config: mix665k
    sample: all              # all (default) | a row count (integer >= 1) | a fraction in (0, 1] (at least 1 row)
  - config: sharegpt4v-mix665k
    sample: 0.5
  - {config: textocr-gpt4v, data_files: textocr-gpt4v.train.jsonl}  # file(s) under another name, in data_dir
dedup:                       # optional; no near-duplicate removal without it
  threshold: 0.8             # cosine in (0, 1]
  scope: recipe              # recipe: across all sources (default) | group: within each image group
  embedder: gradients        # any embedder name (default: gradients)
decontaminate:               # optional: benchmarks whose pictures leave the mix
  references: [playground/data/eval]
  threshold: null            # default: the embedder's copy threshold
  embedder: gradients
duplicate_rows: remove       # remove (default): exact duplicate rows leave as `duplicate_row` | keep
```

A relative path in a recipe (a reference, an embedder file or folder) is read from the recipe file's folder,
never from the working directory; a source's `data_files` from `data_dir` only (absolute paths are refused here,
paths out of `data_dir` by `paths.contained` at build time). A recipe file is untrusted input, read with bounds:
at most `MAX_RECIPE_BYTES`, UTF-8, plain YAML (no anchors, aliases, merge keys, duplicate keys or explicit tags
beyond the core scalars, at most `MAX_DEPTH` levels deep), and every error shows a bad value cut short.
`Recipe.digest()` covers every setting, so a build keyed by it changes whenever the recipe's content does.
"""

from __future__ import annotations

import hashlib
import json
import os
import reprlib
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from llava_mixes.decontam.references import HUB_ID, HUB_PREFIX
from llava_mixes.dedup.deduplicate import check_threshold
from llava_mixes.embedding.copy import GRADIENTS, TORCHSCRIPT_SUFFIXES
from llava_mixes.embedding.embedders import THUMBNAIL
from llava_mixes.errors import ConfigError, PathEscapeError, choices
from llava_mixes.paths import check_file_name

RECIPE_SCOPES = ("recipe", "group")
DUPLICATE_ROW_POLICIES = ("remove", "keep")
TOP_KEYS = ("name", "seed", "sources", "dedup", "decontaminate", "duplicate_rows")
SOURCE_KEYS = ("config", "sample", "data_files")
DEDUP_KEYS = ("threshold", "scope", "embedder")
DECONTAM_KEYS = ("references", "threshold", "embedder")
SHIPPED = "llava_mixes.recipes.shipped"
MAX_RECIPE_BYTES = 64 << 10
"""Largest recipe file read; real recipes take a few hundred bytes."""
MAX_DEPTH = 32
"""Deepest nesting of YAML collections in a recipe; a real one nests 3 deep."""
MAX_SEED = 2**63
MAX_DATA_FILES = 1000  # the most annotation files one recipe source may name; a real source has a few
NAMED_EMBEDDERS = (GRADIENTS, THUMBNAIL)
_CORE_TAGS = frozenset(f"tag:yaml.org,2002:{kind}" for kind in ("str", "int", "float", "bool", "null", "seq", "map"))
_MERGE_TAG = "tag:yaml.org,2002:merge"

_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxdict, _repr.maxlist, _repr.maxtuple, _repr.maxset = 2, 4, 4, 4, 4
_repr.maxstring, _repr.maxother, _repr.maxlong = 80, 80, 40


def show(value: object) -> str:
    """`repr(value)`, cut short: an error message never grows with the input."""
    return _repr.repr(value)


class RecipeLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing what lets a small file grow into a huge structure or name a Python type:
    anchors and aliases, merge keys, explicit tags other than the core scalar and collection tags, duplicate
    keys, and collections nested deeper than `MAX_DEPTH`."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _refused("an alias (*name); write the value out", event.start_mark)
        if getattr(event, "anchor", None) is not None:
            raise _refused("an anchor (&name); write the value out", event.start_mark)
        tag = getattr(event, "tag", None)
        if tag is not None and tag != "!" and tag not in _CORE_TAGS:
            raise _refused(
                f"the tag {show(tag)}; a recipe holds plain strings, numbers, lists and maps", event.start_mark
            )
        nested = isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent))
        self._depth += nested
        if self._depth > MAX_DEPTH:
            raise _refused(f"nesting deeper than {MAX_DEPTH} levels", event.start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= nested

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                raise _refused("a merge key (<<); write the keys out", key_node.start_mark)
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                raise _refused(f"a key that is not a plain value ({show(key)})", key_node.start_mark) from None
            if duplicate:
                raise _refused(f"the key {show(key)} twice in one mapping", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _refused(what: str, mark: yaml.Mark | None) -> yaml.YAMLError:
    return yaml.constructor.ConstructorError(None, None, f"a recipe may not hold {what}", mark)


def _keys(where: str, mapping: object, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where} must be a mapping with the keys {list(allowed)}; got {show(mapping)}")
    unknown = [key for key in mapping if key not in allowed]
    if unknown:
        raise ConfigError(f"{where}: unknown key {show(unknown[0])}; allowed keys: {list(allowed)}")
    return mapping


def _embedder_name(where: str, embedder: object) -> None:
    if not isinstance(embedder, str) or not embedder or "\0" in embedder:
        raise ConfigError(
            f"{where}={show(embedder)} is not allowed; give an embedder name ({', '.join(NAMED_EMBEDDERS)}), a "
            "TorchScript file, a checkpoint folder or an HF model id"
        )


@dataclass(frozen=True)
class RecipeSource:
    """One source of a recipe: a plain config, how many of its rows to take, and its annotation files where they
    are not the names the source expects (`data_files`, relative to `data_dir`; empty: the expected names)."""

    config: str
    sample: str | int | float = "all"
    data_files: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.config, str) or not self.config:
            raise ConfigError(f"sources[].config={show(self.config)} is not allowed; give a plain config name")
        object.__setattr__(self, "data_files", _data_files(self.config, self.data_files))
        sample = self.sample
        if isinstance(sample, str) and sample == "all":
            return
        if isinstance(sample, bool) or not isinstance(sample, (int, float)):
            raise ConfigError(
                f"sources[].sample={show(sample)} is not allowed; give 'all', a count >= 1 or a fraction in (0, 1]"
            )
        if isinstance(sample, int) and sample < 1:
            raise ConfigError(f"sources[].sample={show(sample)} is not allowed; a count must be >= 1")
        if isinstance(sample, float) and not 0.0 < sample <= 1.0:
            raise ConfigError(f"sources[].sample={show(sample)} is not allowed; a fraction must lie in (0, 1]")

    def pick(self, rows: int, seed: int, position: int) -> np.ndarray:
        """The sorted row indices this source keeps out of `rows`, the same for the same seed and position; a
        fraction keeps at least one row of a source that has any."""
        if self.sample == "all":
            return np.arange(rows, dtype=np.int64)
        if isinstance(self.sample, int):
            wanted = min(rows, self.sample)
        else:
            wanted = min(rows, max(1, round(self.sample * rows)))
        chosen = np.random.default_rng([seed, position]).choice(rows, size=wanted, replace=False)
        return np.sort(chosen).astype(np.int64)


def _data_files(config: str, data_files: object) -> tuple[str, ...]:
    """A source's `data_files` as relative paths; `ConfigError` for a wrong value, `PathEscapeError` if absolute."""
    files = (data_files,) if isinstance(data_files, str) else data_files
    count = len(files) if isinstance(files, (list, tuple)) else -1
    if not (0 < count <= MAX_DATA_FILES or files == ()) or not all(map(_is_name, files)):  # type: ignore[arg-type]
        raise ConfigError(
            f"sources[{config}].data_files={show(data_files)} is not allowed; give a file or a list of "
            f"1-{MAX_DATA_FILES} files, relative to data_dir"
        )
    for item in (item for item in files if Path(item).is_absolute()):
        raise PathEscapeError(f"sources[{config}].data_files={show(item)}: an absolute path; use data_dir's", item)
    return tuple(files)


@dataclass(frozen=True)
class RecipeDedup:
    """Near-duplicate removal across the recipe's rows."""

    threshold: float
    scope: str = "recipe"
    embedder: str = GRADIENTS

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "threshold", check_threshold(self.threshold, f"dedup.threshold={show(self.threshold)}")
        )
        if not isinstance(self.scope, str) or self.scope not in RECIPE_SCOPES:
            raise ConfigError(f"dedup.scope={show(self.scope)} is not allowed; choose one of {list(RECIPE_SCOPES)}")
        _embedder_name("dedup.embedder", self.embedder)


@dataclass(frozen=True)
class RecipeDecontamination:
    """Benchmarks whose pictures leave the recipe."""

    references: tuple[str, ...]
    threshold: float | None = None
    embedder: str = GRADIENTS

    def __post_init__(self) -> None:
        references = (self.references,) if isinstance(self.references, str) else self.references
        if (
            not isinstance(references, (list, tuple))
            or not references
            or not all(_is_name(item) for item in references)
        ):
            raise ConfigError(
                f"decontaminate.references={show(self.references)} is not allowed; give a list of folders, files or "
                "Hub ids"
            )
        object.__setattr__(self, "references", tuple(references))
        if self.threshold is not None:
            threshold = check_threshold(self.threshold, f"decontaminate.threshold={show(self.threshold)}")
            object.__setattr__(self, "threshold", threshold)
        _embedder_name("decontaminate.embedder", self.embedder)


def _is_name(item: object) -> bool:
    return isinstance(item, str) and bool(item) and "\0" not in item


@dataclass(frozen=True)
class Recipe:
    """A validated recipe (see the module docstring); `plain_configs` are the config names sources may use."""

    name: str
    sources: tuple[RecipeSource, ...]
    seed: int = 0
    dedup: RecipeDedup | None = None
    decontaminate: RecipeDecontamination | None = None
    duplicate_rows: str = "remove"
    plain_configs: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        try:
            check_file_name(self.name, "recipe name")
        except PathEscapeError as error:
            raise PathEscapeError(f"{error} (set `name:` in the recipe)", error.path) from None
        if not self.sources:
            raise ConfigError("sources=[] is not allowed; list at least one plain config")
        configs = [source.config for source in self.sources]
        for config in configs:
            if self.plain_configs and config not in self.plain_configs:
                raise ConfigError(
                    f"sources[].config={show(config)} is not allowed; choose one of {choices(self.plain_configs)}"
                )
        if len(set(configs)) != len(configs):
            raise ConfigError(f"sources={show(configs)} is not allowed; list each config once")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < MAX_SEED:
            raise ConfigError(f"seed={show(self.seed)} is not allowed; give an integer in [0, 2**63)")
        if not isinstance(self.duplicate_rows, str) or self.duplicate_rows not in DUPLICATE_ROW_POLICIES:
            raise ConfigError(
                f"duplicate_rows={show(self.duplicate_rows)} is not allowed; choose one of "
                f"{list(DUPLICATE_ROW_POLICIES)}"
            )

    def to_json(self) -> dict[str, Any]:
        """Every setting, as JSON-serialisable values."""
        data = asdict(self)
        data.pop("plain_configs")
        data["sources"] = [{key: value for key, value in item.items() if value != ()} for item in data["sources"]]
        return data

    def digest(self) -> str:
        """A SHA-256 of every setting (the recipe's part of a build's cache identity)."""
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()


def _reference(item: object, base: Path | None) -> object:
    """A recipe's reference: a path (relative ones read from `base`, the recipe's folder) or a Hub dataset id."""
    if base is None or not _is_name(item):
        return item
    written = Path(item)
    candidate = written if written.is_absolute() else base / written
    if os.path.exists(candidate):
        return str(candidate)
    if not written.is_absolute() and HUB_ID.fullmatch(item) and ".." not in item:
        return HUB_PREFIX + item
    raise ConfigError(
        f"decontaminate.references: {show(item)} not found (as {show(str(candidate))}; a relative path is read from "
        "the recipe file's folder); give an existing folder or file, or a Hub dataset id (owner/name)"
    )


def _embedder(item: object, base: Path | None) -> object:
    """A recipe's embedder, a relative file or folder read from `base` (the recipe's folder)."""
    if base is None or not _is_name(item) or item in NAMED_EMBEDDERS or Path(item).is_absolute():
        return item
    candidate = base / item
    return str(candidate) if item.endswith(TORCHSCRIPT_SUFFIXES) or os.path.exists(candidate) else item


def _section(data: dict[str, Any], key: str, allowed: tuple[str, ...]) -> dict[str, Any] | None:
    if key not in data:
        return None
    if data[key] is None:
        raise ConfigError(f"{key}: null is not allowed; leave the key out for no {key}, or give {list(allowed)}")
    return dict(_keys(key, data[key], allowed))


def parse_recipe(data: object, name: str, plain_configs: tuple[str, ...] = (), base: Path | None = None) -> Recipe:
    """A `Recipe` from parsed YAML; `base` is the folder relative paths are read from (None: as given)."""
    data = _keys("recipe", data, TOP_KEYS)
    if "sources" not in data:
        raise ConfigError(f"recipe: the key 'sources' is missing; allowed keys: {list(TOP_KEYS)}")
    raw_sources = data["sources"]
    if not isinstance(raw_sources, list):
        raise ConfigError(
            f"sources must be a list of {{config, sample, data_files}} mappings; got {show(raw_sources)}"
        )
    sources = []
    for entry in raw_sources:
        entry = {"config": entry} if isinstance(entry, str) else entry
        entry = _keys("sources[]", entry, SOURCE_KEYS)
        if "config" not in entry:
            raise ConfigError(
                f"sources[]: the key 'config' is missing in {show(entry)}; allowed keys: {list(SOURCE_KEYS)}"
            )
        sources.append(RecipeSource(**entry))
    dedup = _section(data, "dedup", DEDUP_KEYS)
    if dedup is not None:
        if "threshold" not in dedup:
            raise ConfigError(f"dedup: the key 'threshold' is missing; allowed keys: {list(DEDUP_KEYS)}")
        if "embedder" in dedup:
            dedup["embedder"] = _embedder(dedup["embedder"], base)
        dedup = RecipeDedup(**dedup)
    decontam = _section(data, "decontaminate", DECONTAM_KEYS)
    if decontam is not None:
        if "references" not in decontam:
            raise ConfigError(f"decontaminate: the key 'references' is missing; allowed keys: {list(DECONTAM_KEYS)}")
        references = decontam["references"]
        if isinstance(references, list):
            decontam["references"] = [_reference(item, base) for item in references]
        elif isinstance(references, str):
            decontam["references"] = _reference(references, base)
        if "embedder" in decontam:
            decontam["embedder"] = _embedder(decontam["embedder"], base)
        decontam = RecipeDecontamination(**decontam)
    return Recipe(
        name=data.get("name", name),
        sources=tuple(sources),
        seed=data.get("seed", 0),
        dedup=dedup,
        decontaminate=decontam,
        duplicate_rows=data.get("duplicate_rows", "remove"),
        plain_configs=plain_configs,
    )


def read_recipe_yaml(text: str, where: str) -> object:
    """The YAML document of a recipe (see `RecipeLoader`); `ConfigError` naming `where` and the position."""
    loader = None
    try:
        loader = RecipeLoader(text)
        loader.name = where
        return loader.get_single_data()
    except yaml.YAMLError as error:
        raise ConfigError(f"recipe {where!r} is not a plain YAML recipe: {str(error)[:600]}") from None
    except (ValueError, OverflowError) as error:  # a number or date PyYAML resolves but cannot build
        raise ConfigError(f"recipe {where!r} holds a value that cannot be read: {str(error)[:300]}") from None
    finally:
        if loader is not None:
            loader.dispose()


def _read_recipe_file(path: Path) -> str:
    with path.open("rb") as handle:
        data = handle.read(MAX_RECIPE_BYTES + 1)
    if len(data) > MAX_RECIPE_BYTES:
        raise ConfigError(f"recipe {str(path)!r} is larger than {MAX_RECIPE_BYTES:,} bytes; a recipe is a short file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"recipe {str(path)!r} is not UTF-8 text: byte {error.start} (0x{data[error.start]:02x}) cannot be "
            "decoded; save the file as UTF-8"
        ) from None


def shipped_recipes() -> tuple[str, ...]:
    """The names of the recipes that ship with llava_mixes."""
    folder = resources.files(SHIPPED)
    return tuple(sorted(item.name[: -len(".yaml")] for item in folder.iterdir() if item.name.endswith(".yaml")))


def load_recipe(recipe: str | Path, plain_configs: tuple[str, ...] = ()) -> Recipe:
    """A recipe from a YAML file (relative paths in it read from its folder), or a shipped recipe by name (see
    `shipped_recipes`)."""
    path = Path(recipe)
    if path.is_file():
        text, name, base = _read_recipe_file(path), path.stem, path.parent.absolute()
    elif str(recipe) in shipped_recipes():
        text, name, base = resources.files(SHIPPED).joinpath(f"{recipe}.yaml").read_text("utf-8"), str(recipe), None
    else:
        raise ConfigError(
            f"recipe={show(str(recipe))} is neither a file nor a shipped recipe; shipped: {list(shipped_recipes())}"
        )
    return parse_recipe(read_recipe_yaml(text, str(recipe)), name, plain_configs, base)
