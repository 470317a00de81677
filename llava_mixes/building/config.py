"""The config of the `llava_mixes` builder: its fields (validated on construction), the named configs and their
names.

Named configs are `<mix>` and `<mix>-dedup-<t>` for t in 0.7, 0.8, 0.9; any other threshold goes through
config kwargs, e.g. `load_dataset("llava_mixes", "mix665k", data_dir=DIR, dedup_threshold=0.85)`. The config
`recipe` builds a recipe (`recipe=` a YAML file or a shipped recipe's name; see `building.mixing`) from its sources'
plain builds, cached under the recipe's digest.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, fields
from pathlib import Path

import datasets

from llava_mixes import schema
from llava_mixes.builders import MIXES, SOURCES
from llava_mixes.building.losses import DEFAULT_MAX_REJECTED, check_max_rejected
from llava_mixes.building.mixing import NOT_FOR_RECIPES, check_recipe_kwargs, config_recipe, recipe_refusal
from llava_mixes.decontam.decontaminate import DEFAULT_EMBEDDER as DECONTAM_EMBEDDER
from llava_mixes.decontam.decontaminate import check_settings as check_decontamination
from llava_mixes.dedup.deduplicate import SCOPES, SEARCHES, THRESHOLDS, check_threshold
from llava_mixes.embedding.embedders import DEFAULT_EMBEDDER, PRECISIONS
from llava_mixes.embedding.engines import ENGINES
from llava_mixes.errors import ConfigError, choices, unknown_choice
from llava_mixes.paths import contained
from llava_mixes.plugin import dedup_config_name
from llava_mixes.recipes.recipe import Recipe
from llava_mixes.store import default_cache_root

VERSION = datasets.Version("1.0.0")
RECIPE_CONFIG = "recipe"
SPEED_FIELDS = ("batch_size", "num_workers", "engine", "content_cache_dir")
CHECK_FIELDS = ("max_rejected",)
"""Fields that decide whether a build may be served, never what it holds."""
DEDUP_FIELDS = (
    "dedup_scope",
    "dedup_search",
    "embedder",
    "embedder_revision",
    "device",
    "precision",
    "keep_embeddings",
)


def _choice(field_name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise unknown_choice(field_name, value, allowed)


def _positive_int(field_name: str, value: object, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{field_name}={value!r} is not allowed; it must be a whole number >= 1")


@dataclass
class LlavaMixesConfig(datasets.BuilderConfig):
    """One buildable mix. Every field can be overridden as a `load_dataset` kwarg.

    Attributes:
        sources: config names of the sources concatenated, in order (see `builders.SOURCES`).
        dedup_threshold: cosine similarity at or above which an image duplicates a kept one; None: no dedup.
        dedup_scope: `group` compares images within their `image_group`; `global` compares all images.
        dedup_search: `exact`, or `ivf` (approximate, for millions of images in one scope; faiss needed).
        embedder: an HF vision checkpoint (hub id or local path), a TorchScript file (e.g. SSCD's), or the
            weight-free `thumbnail` or `gradients` (crop-tolerant copy detection).
        embedder_revision: hub revision (branch, tag or commit) of the embedder.
        device: torch device(s) for the embedder: None or `cuda` use every visible GPU (one process each),
            else `cpu`; `cuda:1`, or a list such as `cuda:0,cuda:1`.
        precision: `auto` (bf16 on CUDA, fp32 otherwise), `fp32`, `bf16` or `fp16`; part of the cache key.
        batch_size: images per embedder forward pass.
        num_workers: threads decoding and preprocessing images; None: one per CPU core.
        engine: `local` (threads, one process per device) or `ray` (Ray Data; `pip install llava_mixes[ray]`).
        content_cache_dir: where image checks and embeddings are cached; None: `default_cache_root()`.
        on_bad_records: `skip` lists rejected rows in the build report; `error` stops at the first one.
        keep_embeddings: keep the `embedding` column in deduplicated configs.
        decontaminate: evaluation benchmarks whose pictures leave `train` for a `contaminated` split (folders,
            question files, TSVs, saved datasets or Hub ids; see `decontam.references`).
        decontaminate_threshold: cosine at or above which a picture copies a benchmark's; None: the
            decontamination embedder's copy threshold.
        decontaminate_embedder: the embedder that compares pictures with benchmarks' (a copy embedder).
        recipe: for the config `recipe` only: a recipe YAML file or a shipped recipe's name; its sources, dedup
            and decontamination come from the recipe, so the fields above that it does not use are refused
            (`mixing.NOT_FOR_RECIPES`).
        max_rejected: the share of the rows in that may be lost with missing image folders (0 to 1; default 0: a
            build that misses an image folder fails, naming it; see `building.losses.missing_image_folders`).
    """

    sources: tuple[str, ...] = ()
    dedup_threshold: float | None = None
    dedup_scope: str = "group"
    dedup_search: str = "exact"
    embedder: str = DEFAULT_EMBEDDER
    embedder_revision: str | None = None
    device: str | None = None
    precision: str = "auto"
    batch_size: int = 64
    num_workers: int | None = None
    engine: str = "local"
    content_cache_dir: str | None = None
    on_bad_records: str = "skip"
    keep_embeddings: bool = False
    decontaminate: tuple[str, ...] = ()
    decontaminate_threshold: float | None = None
    decontaminate_embedder: str = DECONTAM_EMBEDDER
    recipe: str | None = None
    max_rejected: float = DEFAULT_MAX_REJECTED

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.is_recipe or self.recipe is not None:
            self.validate()

    def validate(self) -> None:
        """Check every field; raises `ConfigError` naming the bad value and the allowed ones."""
        if self.is_recipe:
            self._check_recipe_fields()
        elif self.recipe is not None:
            raise ConfigError(f"recipe={self.recipe!r} is not allowed for config {self.name!r}; use config 'recipe'")
        self.sources = tuple(self.sources)
        if not self.sources:
            raise ConfigError(f"config {self.name!r} has no sources; choose from {sorted(SOURCES)}")
        for source in self.sources:
            _choice("sources", source, tuple(sorted(SOURCES)))
        if not self.is_recipe and self.base_name not in MIXES:
            raise ConfigError(f"sources={list(self.sources)} form no plain config; plain configs: {sorted(MIXES)}")
        if self.dedup_threshold is not None:
            self.dedup_threshold = check_threshold(self.dedup_threshold, f"dedup_threshold={self.dedup_threshold!r}")
        _choice("dedup_scope", self.dedup_scope, SCOPES)
        _choice("dedup_search", self.dedup_search, SEARCHES)
        _choice("on_bad_records", self.on_bad_records, schema.BAD_RECORD_POLICIES)
        _choice("precision", self.precision, PRECISIONS)
        _choice("engine", self.engine, ENGINES)
        if not isinstance(self.embedder, str) or not self.embedder:
            raise ConfigError(
                f"embedder={self.embedder!r} is not allowed; give an HF model id or checkpoint folder, a TorchScript "
                "file (.pt), 'thumbnail' or 'gradients'"
            )
        _positive_int("batch_size", self.batch_size)
        _positive_int("num_workers", self.num_workers, allow_none=True)
        self.max_rejected = check_max_rejected(self.max_rejected)
        self.decontaminate, self.decontaminate_threshold = check_decontamination(
            self.decontaminate, self.decontaminate_threshold, self.decontaminate_embedder
        )

    def _check_recipe_fields(self) -> None:
        """The config `recipe`: a recipe is given, and no field that it does not use (`mixing.NOT_FOR_RECIPES`) is
        set; its sources are the recipe's."""
        defaults = {field.name: field.default for field in fields(LlavaMixesConfig)}
        refused = {
            name: getattr(self, name)
            for name in NOT_FOR_RECIPES
            if name != "data_files" and getattr(self, name) != defaults[name]
        }
        check_recipe_kwargs(refused)
        self.sources = tuple(source.config for source in self.recipe_spec().sources)
        for key in self.data_files or {}:
            if key not in self.sources:
                files = [str(file) for file in self.data_files[key]]
                refusal = recipe_refusal("data_files", {key: files})
                raise ConfigError(f"{refusal}; CONFIG is one of {list(self.sources)}")

    def recipe_data_files(self, data_dir: Path) -> dict[str, list[str]]:
        """The annotation files each source of the config `recipe` reads where they are not the names it expects:
        those `data_files` names for it (keyed by its config name), else its `data_files` in the recipe; each
        resolved inside `data_dir` (`paths.contained`: a path that leads outside it, dangles or is missing is
        refused with `PathEscapeError`)."""
        named = {key: [str(file) for file in files] for key, files in (self.data_files or {}).items()}
        chosen: dict[str, list[str]] = {}
        for source in self.recipe_spec().sources:
            given = named.get(source.config) or list(source.data_files)
            if given:
                what = f"sources[{source.config}].data_files"
                chosen[source.config] = [str(_regular_file(contained(data_dir, file, what), what)) for file in given]
        return chosen

    def recipe_spec(self) -> Recipe:
        """The recipe of the config `recipe`, parsed once into a typed `Recipe` (when the config is validated, or at
        the first use) and passed down from there; parsed again only if `recipe` is set to another value."""
        parsed: tuple[str | None, Recipe] | None = getattr(self, "_parsed_recipe", None)
        if parsed is None or parsed[0] != self.recipe:
            parsed = self._parsed_recipe = (self.recipe, config_recipe(self.recipe))
        return parsed[1]

    def create_config_id(self, config_kwargs: dict, custom_features: datasets.Features | None = None) -> str:
        """The cache id, from the kwargs that can change this config's rows only: speed settings never do,
        and embedding and dedup settings do not for a plain config (nor for a recipe, whose own are in its
        content). A recipe counts by its content's digest, not its file name. So the same rows are built once."""
        ignored = set(SPEED_FIELDS) | set(CHECK_FIELDS) | (set() if self.is_dedup else set(DEDUP_FIELDS))
        relevant = {key: value for key, value in config_kwargs.items() if key not in ignored}
        if self.is_recipe:
            relevant["recipe"] = self.recipe_spec().digest()
        return super().create_config_id(relevant, custom_features)

    @property
    def is_dedup(self) -> bool:
        """Whether this config removes near-duplicate images."""
        return self.dedup_threshold is not None

    @property
    def is_decontaminated(self) -> bool:
        """Whether this config moves rows whose picture copies a benchmark's to a `contaminated` split."""
        return bool(self.decontaminate)

    @property
    def is_recipe(self) -> bool:
        """Whether this is the config `recipe`, made from a recipe's sources."""
        return self.name == RECIPE_CONFIG

    @property
    def is_derived(self) -> bool:
        """Whether this config is made from plain configs' rows (deduplicated, decontaminated or a recipe)."""
        return self.is_dedup or self.is_decontaminated or self.is_recipe

    def embedders(self) -> dict[str, str]:
        """The embedders this config's rows depend on, by role: `dedup` and `decontaminate`, where used."""
        if self.is_recipe:
            spec = self.recipe_spec()
            used = {"dedup": spec.dedup.embedder if spec.dedup else None}
            used["decontaminate"] = spec.decontaminate.embedder if spec.decontaminate else None
        else:
            used = {"dedup": self.embedder if self.is_dedup else None}
            used["decontaminate"] = self.decontaminate_embedder if self.is_decontaminated else None
        return {role: name for role, name in used.items() if name is not None}

    def references(self) -> list[str]:
        """The benchmarks this config's rows are checked against: its own, or its recipe's."""
        if self.is_recipe:
            spec = self.recipe_spec().decontaminate
            return list(spec.references) if spec else []
        return list(self.decontaminate)

    @property
    def base_name(self) -> str:
        """The plain config with the same sources, which a deduplicated config is built from."""
        for name, sources in MIXES.items():
            if sources == self.sources:
                return name
        return "+".join(self.sources)

    def cache_root(self) -> Path:
        """Where this config's image checks and embeddings are cached."""
        return Path(self.content_cache_dir) if self.content_cache_dir else default_cache_root()

    def base_overrides(self) -> dict[str, object]:
        """The fields that shape the plain config's rows, where they differ from their defaults."""
        defaults = {field.name: field.default for field in fields(LlavaMixesConfig)}
        return {
            name: getattr(self, name)
            for name in ("on_bad_records", "content_cache_dir", "max_rejected")
            if getattr(self, name) != defaults[name]
        }


def _regular_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise ConfigError(f"{what}: {str(path)!r} is not a file; name annotation files (.json, .jsonl, .parquet)")
    return path


def named_configs() -> list[LlavaMixesConfig]:
    """Every named config: each plain mix, then its deduplicated variants."""
    configs = []
    for mix, sources in MIXES.items():
        configs.append(
            LlavaMixesConfig(name=mix, version=VERSION, sources=sources, description=f"{mix}, not deduplicated")
        )
        for threshold in THRESHOLDS:
            configs.append(
                LlavaMixesConfig(
                    name=dedup_config_name(mix, threshold),
                    version=VERSION,
                    sources=sources,
                    dedup_threshold=threshold,
                    description=f"{mix}, near-duplicate images removed at cosine >= {threshold} per image group",
                )
            )
    configs.append(
        LlavaMixesConfig(
            name=RECIPE_CONFIG, version=VERSION, description="a recipe (recipe=...): several configs mixed"
        )
    )
    return configs


CONFIG_NAMES = tuple(config.name for config in named_configs())


def check_config_name(config: object) -> None:
    """Raise `ConfigError` for a name that is no config, naming the closest ones (the name shown cut to
    `SHOWN_NAME` characters: the message never grows with what was typed)."""
    if isinstance(config, str) and config in CONFIG_NAMES:
        return
    shown = repr(config) if len(repr(config)) <= SHOWN_NAME else f"{repr(config)[:SHOWN_NAME]}..."
    close = difflib.get_close_matches(config, CONFIG_NAMES, n=3, cutoff=0.6) if _comparable(config) else []
    if close:
        hint = f"did you mean {', '.join(close)}? (`llava-mixes list` shows all {len(CONFIG_NAMES)} configs)"
        raise ConfigError(f"unknown config {shown}; {hint}")
    raise ConfigError(f"unknown config {shown}; choose one of {choices(CONFIG_NAMES)}")


SHOWN_NAME = 120


def _comparable(config: object) -> bool:
    """Whether `config` is a name worth comparing with the config names (a string of a name's length)."""
    return isinstance(config, str) and len(config) <= SHOWN_NAME
