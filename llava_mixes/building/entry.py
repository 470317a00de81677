"""The one build entry: `build(name, data_dir, **kwargs)` = `prepare(configure(...))` -> `Built`, `verify`, and
`load_dataset`, the `datasets.load_dataset` of this package's configs that registers the builder itself.

`configure` gives the builder of a named config with its kwargs applied and validated; `prepare` builds it, or
reuses its cached build when its inputs are unchanged; `verify` hashes every file of a cached build.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from llava_mixes import schema
from llava_mixes.building.builder import LlavaMixes
from llava_mixes.building.config import LlavaMixesConfig, check_config_name
from llava_mixes.building.freshness import damage_reason, is_built, verify_build
from llava_mixes.building.mixing import recipe_base
from llava_mixes.building.report import REPORT_FILE, BuildReport
from llava_mixes.errors import ConfigError
from llava_mixes.plugin import DATASET_NAME, register


@dataclass(frozen=True)
class Built:
    """One built config: its splits, its report, its resolved settings, the plain rows its dedup started from
    (its own `train` split for a plain config) and where its build lives."""

    config: LlavaMixesConfig
    dataset: datasets.DatasetDict
    report: BuildReport
    base: datasets.Dataset
    folder: Path


def configure(config: str, data_dir: str | None, cache_dir: str | None = None, **config_kwargs: Any) -> LlavaMixes:
    """The builder of one named config with `config_kwargs` applied and validated, not yet built."""
    check_config_name(config)
    root = Path(cache_dir or datasets.config.HF_DATASETS_CACHE)
    if root.exists() and not root.is_dir():
        raise ConfigError(
            f"cache_dir={str(root)!r} is not allowed: it is a file; give a folder for the datasets cache"
        )
    register()
    return datasets.load_dataset_builder(DATASET_NAME, config, data_dir=data_dir, cache_dir=cache_dir, **config_kwargs)


def prepare(dataset_builder: LlavaMixes) -> Built:
    """Build `dataset_builder`'s config, or reuse its cached build when its inputs are unchanged."""
    dataset_builder.download_and_prepare()
    dataset = dataset_builder.as_dataset()
    if dataset_builder.config.is_recipe:
        base = recipe_base(dataset)
    else:
        base_builder = dataset_builder.base_builders()[0] if dataset_builder.config.is_derived else dataset_builder
        # A derived build that was reused has just checked its base's inputs, and one that was rebuilt built its
        # base: preparing the base again would only repeat that check (one stat per image file).
        base_folder = Path(base_builder.cache_dir)
        if base_builder is not dataset_builder and (not is_built(base_folder) or damage_reason(base_folder)):
            base_builder.download_and_prepare()
        base = base_builder.as_dataset(split=schema.TRAIN_SPLIT)
    folder = Path(dataset_builder.cache_dir)
    return Built(dataset_builder.config, dataset, BuildReport.load(folder / REPORT_FILE), base, folder)


def build(config: str, data_dir: str | None, cache_dir: str | None = None, **config_kwargs: Any) -> Built:
    """The one build entry: config name + kwargs -> `Built` (splits, report, plain rows), built or reused."""
    return prepare(configure(config, data_dir, cache_dir, **config_kwargs))


def load_dataset(config: str, data_dir: str | None = None, **kwargs: Any) -> Any:
    """`datasets.load_dataset("llava_mixes", config, data_dir=data_dir, **kwargs)` that cannot miss the builder's
    registration (plain `datasets` does not know the name `llava_mixes` until this package is imported). The
    config name is checked first ("unknown config ...; did you mean ..."), and a cached build is reused only after
    the freshness check; `kwargs` are `datasets.load_dataset`'s own (`split`, `streaming`, `cache_dir`, ...) and
    the config's fields (`embedder`, `dedup_threshold`, `data_files`, ...)."""
    check_config_name(config)
    register()
    return datasets.load_dataset(DATASET_NAME, config, data_dir=data_dir, **kwargs)


def verify(
    config: str, data_dir: str | None, cache_dir: str | None = None, **config_kwargs: Any
) -> dict[Path, list[str]]:
    """Check every file of the cached build of `config` (with `config_kwargs`), and of the plain builds a derived
    config is made from, against their build records, each file hashed in full (`freshness.verify_build`); builds
    nothing. The problems found, per build folder: all empty when every build is whole."""
    dataset_builder = configure(config, data_dir, cache_dir, **config_kwargs)
    builders = [dataset_builder, *dataset_builder.base_builders()]
    return {Path(each.cache_dir): verify_build(Path(each.cache_dir)) for each in builders}
