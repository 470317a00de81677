"""Recipes: a mix of built configs described in YAML, validated on construction.

```yaml
name: my-mix                 # optional; the file's stem by default
seed: 0                      # seeds every source's sampling (default 0)
sources:                     # plain configs (`llava-mixes list`), in order: earlier sources win in dedup
  - config: mix665k
    sample: all              # all (default) | a row count (integer >= 1) | a fraction in (0, 1]
  - config: sharegpt4v-mix665k
    sample: 0.5
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

A relative reference path is read from the recipe file's folder. `Recipe.digest()` covers every setting, so a
build keyed by it changes whenever the recipe's content does.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from llava_mixes.dedup.deduplicate import check_threshold
from llava_mixes.errors import ConfigError

RECIPE_SCOPES = ("recipe", "group")
DUPLICATE_ROW_POLICIES = ("remove", "keep")
TOP_KEYS = ("name", "seed", "sources", "dedup", "decontaminate", "duplicate_rows")
SOURCE_KEYS = ("config", "sample")
DEDUP_KEYS = ("threshold", "scope", "embedder")
DECONTAM_KEYS = ("references", "threshold", "embedder")
SHIPPED = "llava_mixes.mixes.recipes"


def _keys(where: str, mapping: object, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where} must be a mapping with the keys {list(allowed)}; got {mapping!r}")
    unknown = [key for key in mapping if key not in allowed]
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; allowed keys: {list(allowed)}")
    return mapping


@dataclass(frozen=True)
class RecipeSource:
    """One source of a recipe: a plain config and how many of its rows to take."""

    config: str
    sample: str | int | float = "all"

    def __post_init__(self) -> None:
        if not isinstance(self.config, str) or not self.config:
            raise ConfigError(f"sources[].config={self.config!r} is not allowed; give a plain config name")
        sample = self.sample
        if sample == "all":
            return
        if isinstance(sample, bool) or not isinstance(sample, (int, float)):
            raise ConfigError(f"sources[].sample={sample!r} is not allowed; give 'all', a count >= 1 or a fraction")
        if isinstance(sample, int) and sample < 1:
            raise ConfigError(f"sources[].sample={sample!r} is not allowed; a count must be >= 1")
        if isinstance(sample, float) and not 0.0 < sample <= 1.0:
            raise ConfigError(f"sources[].sample={sample!r} is not allowed; a fraction must lie in (0, 1]")

    def pick(self, rows: int, seed: int, position: int) -> np.ndarray:
        """The sorted row indices this source keeps out of `rows`, the same for the same seed and position."""
        if self.sample == "all":
            return np.arange(rows, dtype=np.int64)
        wanted = min(rows, self.sample if isinstance(self.sample, int) else round(self.sample * rows))
        chosen = np.random.default_rng([seed, position]).choice(rows, size=wanted, replace=False)
        return np.sort(chosen).astype(np.int64)


@dataclass(frozen=True)
class RecipeDedup:
    """Near-duplicate removal across the recipe's rows."""

    threshold: float
    scope: str = "recipe"
    embedder: str = "gradients"

    def __post_init__(self) -> None:
        object.__setattr__(self, "threshold", check_threshold(self.threshold, f"dedup.threshold={self.threshold!r}"))
        if self.scope not in RECIPE_SCOPES:
            raise ConfigError(f"dedup.scope={self.scope!r} is not allowed; choose one of {list(RECIPE_SCOPES)}")
        if not isinstance(self.embedder, str) or not self.embedder:
            raise ConfigError(f"dedup.embedder={self.embedder!r} is not allowed; give an embedder name")


@dataclass(frozen=True)
class RecipeDecontamination:
    """Benchmarks whose pictures leave the recipe."""

    references: tuple[str, ...]
    threshold: float | None = None
    embedder: str = "gradients"

    def __post_init__(self) -> None:
        references = (self.references,) if isinstance(self.references, str) else tuple(self.references or ())
        if not references or not all(isinstance(item, str) and item for item in references):
            raise ConfigError(
                f"decontaminate.references={self.references!r} is not allowed; give a list of folders, files or "
                "Hub ids"
            )
        object.__setattr__(self, "references", references)
        if self.threshold is not None:
            threshold = check_threshold(self.threshold, f"decontaminate.threshold={self.threshold!r}")
            object.__setattr__(self, "threshold", threshold)
        if not isinstance(self.embedder, str) or not self.embedder:
            raise ConfigError(f"decontaminate.embedder={self.embedder!r} is not allowed; give an embedder name")


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
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"name={self.name!r} is not allowed; give a non-empty string")
        if not self.sources:
            raise ConfigError("sources=[] is not allowed; list at least one plain config")
        configs = [source.config for source in self.sources]
        for config in configs:
            if self.plain_configs and config not in self.plain_configs:
                raise ConfigError(
                    f"sources[].config={config!r} is not allowed; choose one of {list(self.plain_configs)}"
                )
        if len(set(configs)) != len(configs):
            raise ConfigError(f"sources={configs} is not allowed; list each config once")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed={self.seed!r} is not allowed; give an integer >= 0")
        if self.duplicate_rows not in DUPLICATE_ROW_POLICIES:
            raise ConfigError(
                f"duplicate_rows={self.duplicate_rows!r} is not allowed; choose one of {list(DUPLICATE_ROW_POLICIES)}"
            )

    def to_json(self) -> dict[str, Any]:
        """Every setting, as JSON-serialisable values."""
        data = asdict(self)
        data.pop("plain_configs")
        return data

    def digest(self) -> str:
        """A SHA-256 of every setting (the recipe's part of a build's cache identity)."""
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()


def parse_recipe(data: object, name: str, plain_configs: tuple[str, ...] = (), base: Path | None = None) -> Recipe:
    """A `Recipe` from parsed YAML; `base` is the folder relative reference paths are read from."""
    data = _keys("recipe", data, TOP_KEYS)
    if "sources" not in data:
        raise ConfigError(f"recipe: the key 'sources' is missing; allowed keys: {list(TOP_KEYS)}")
    raw_sources = data["sources"]
    if not isinstance(raw_sources, list):
        raise ConfigError(f"sources must be a list of {{config, sample}} mappings; got {raw_sources!r}")
    sources = []
    for entry in raw_sources:
        entry = {"config": entry} if isinstance(entry, str) else entry
        sources.append(RecipeSource(**_keys("sources[]", entry, SOURCE_KEYS)))
    dedup = data.get("dedup")
    if dedup is not None:
        dedup = _keys("dedup", dedup, DEDUP_KEYS)
        if "threshold" not in dedup:
            raise ConfigError(f"dedup: the key 'threshold' is missing; allowed keys: {list(DEDUP_KEYS)}")
        dedup = RecipeDedup(**dedup)
    decontam = data.get("decontaminate")
    if decontam is not None:
        decontam = dict(_keys("decontaminate", decontam, DECONTAM_KEYS))
        references = decontam.get("references")
        if base is not None and isinstance(references, list):
            decontam["references"] = [
                str(base / item) if isinstance(item, str) and (base / item).exists() else item for item in references
            ]
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


def shipped_recipes() -> tuple[str, ...]:
    """The names of the recipes that ship with llava_mixes."""
    folder = resources.files(SHIPPED)
    return tuple(sorted(item.name[: -len(".yaml")] for item in folder.iterdir() if item.name.endswith(".yaml")))


def load_recipe(recipe: str | Path, plain_configs: tuple[str, ...] = ()) -> Recipe:
    """A recipe from a YAML file, or a shipped recipe by name (see `shipped_recipes`)."""
    path = Path(recipe)
    if path.is_file():
        text, name, base = path.read_text(encoding="utf-8"), path.stem, path.parent
    elif str(recipe) in shipped_recipes():
        text, name, base = (
            resources.files(SHIPPED).joinpath(f"{recipe}.yaml").read_text(encoding="utf-8"),
            str(recipe),
            None,
        )
    else:
        raise ConfigError(
            f"recipe={str(recipe)!r} is neither a file nor a shipped recipe; shipped: {list(shipped_recipes())}"
        )
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"recipe {str(recipe)!r} is not valid YAML: {error}") from error
    return parse_recipe(data, name, plain_configs, base)
