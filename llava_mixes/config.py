"""Builder configuration: the `LlavaMixesConfig` dataclass, its validation, and the list of named configs.

Named configs are `<mix>` and `<mix>-dedup-<t>` for t in 0.7, 0.8, 0.9; any other threshold goes through
config kwargs, e.g. `load_dataset("llava_mixes", "mix665k", data_dir=DIR, dedup_threshold=0.85)`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

import datasets

from llava_mixes.builders import MIXES, SOURCES
from llava_mixes.errors import ConfigError

VERSION = datasets.Version("1.0.0")
DEFAULT_EMBEDDER = "openai/clip-vit-large-patch14-336"
THRESHOLDS = (0.7, 0.8, 0.9)
SCOPES = ("group", "global")
SEARCHES = ("exact", "ivf")
BAD_RECORD_POLICIES = ("skip", "error")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
ENGINES = ("local", "ray")
DEDUP_MARK = "-dedup-"


SPEED_FIELDS = ("batch_size", "num_workers", "engine", "content_cache_dir")
DEDUP_FIELDS = (
    "dedup_scope",
    "dedup_search",
    "embedder",
    "embedder_revision",
    "device",
    "precision",
    "keep_embeddings",
)


def default_cache_root() -> Path:
    """Where image checks and embeddings are cached: `$LLAVA_MIXES_CACHE`, else `~/.cache/llava_mixes`."""
    if os.environ.get("LLAVA_MIXES_CACHE"):
        return Path(os.environ["LLAVA_MIXES_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "llava_mixes"


def _choice(field_name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{field_name}={value!r} is not allowed; choose one of {list(allowed)}")


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
        embedder: an HF vision checkpoint (hub id or local path), or `thumbnail` (weight-free, CPU).
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

    def __post_init__(self) -> None:
        super().__post_init__()
        self.validate()

    def validate(self) -> None:
        """Check every field; raises `ConfigError` naming the bad value and the allowed ones."""
        self.sources = tuple(self.sources)
        if not self.sources:
            raise ConfigError(f"config {self.name!r} has no sources; choose from {sorted(SOURCES)}")
        for source in self.sources:
            _choice("sources", source, tuple(sorted(SOURCES)))
        if self.base_name not in MIXES:
            raise ConfigError(f"sources={list(self.sources)} form no plain config; plain configs: {sorted(MIXES)}")
        threshold = self.dedup_threshold
        if threshold is not None:
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 < threshold <= 1.0:
                raise ConfigError(f"dedup_threshold={threshold!r} is not allowed; it must be a number in (0, 1]")
            self.dedup_threshold = float(threshold)
        _choice("dedup_scope", self.dedup_scope, SCOPES)
        _choice("dedup_search", self.dedup_search, SEARCHES)
        _choice("on_bad_records", self.on_bad_records, BAD_RECORD_POLICIES)
        _choice("precision", self.precision, PRECISIONS)
        _choice("engine", self.engine, ENGINES)
        if not isinstance(self.embedder, str) or not self.embedder:
            raise ConfigError(f"embedder={self.embedder!r} is not allowed; give an HF model id, a path or 'thumbnail'")
        _positive_int("batch_size", self.batch_size)
        _positive_int("num_workers", self.num_workers, allow_none=True)

    def create_config_id(self, config_kwargs: dict, custom_features: datasets.Features | None = None) -> str:
        """The cache id, from the kwargs that can change this config's rows only: speed settings never do,
        and embedding and dedup settings do not for a plain config. So the same rows are built once."""
        ignored = set(SPEED_FIELDS) | (set() if self.is_dedup else set(DEDUP_FIELDS))
        relevant = {key: value for key, value in config_kwargs.items() if key not in ignored}
        return super().create_config_id(relevant, custom_features)

    @property
    def is_dedup(self) -> bool:
        return self.dedup_threshold is not None

    @property
    def base_name(self) -> str:
        """The plain config with the same sources, which a deduplicated config is built from."""
        for name, sources in MIXES.items():
            if sources == self.sources:
                return name
        return "+".join(self.sources)

    def cache_root(self) -> Path:
        return Path(self.content_cache_dir) if self.content_cache_dir else default_cache_root()

    def base_overrides(self) -> dict[str, object]:
        """The fields that shape the plain config's rows, where they differ from their defaults."""
        defaults = {field.name: field.default for field in fields(LlavaMixesConfig)}
        return {
            name: getattr(self, name)
            for name in ("on_bad_records", "content_cache_dir")
            if getattr(self, name) != defaults[name]
        }


def dedup_config_name(mix: str, threshold: float) -> str:
    return f"{mix}{DEDUP_MARK}{threshold:g}"


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
    return configs
