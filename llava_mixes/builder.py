"""The `llava_mixes` dataset builder, its config, and the one build entry (`build`).

A plain config streams each source's annotation files through `SourceNormaliser` into the `train` split.
A deduplicated config builds (or reuses) its plain config, fills the embedding cache, rejects the rows whose
image has no usable vector, splits the rest with `deduplicate` (a row selection) into `train` and
`removed`, and copies both splits into its own cache. Every build writes a `BuildReport` next to its Arrow
files (see `build_report.load_report`), and a record of its inputs (see `sources.inputs`): a cached build
whose inputs changed since is rebuilt, with no cache to clear by hand.

Named configs are `<mix>` and `<mix>-dedup-<t>` for t in 0.7, 0.8, 0.9; any other threshold goes through
config kwargs, e.g. `load_dataset("llava_mixes", "mix665k", data_dir=DIR, dedup_threshold=0.85)`. The config
`recipe` builds a recipe (`recipe=` a YAML file or a shipped recipe's name; see `mixing`) from its sources' plain
builds, cached under the recipe's digest.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
from datasets.builder import Key
from datasets.download.download_manager import DownloadMode
from datasets.fingerprint import Hasher
from datasets.table import InMemoryTable, MemoryMappedTable
from filelock import FileLock

from llava_mixes import schema
from llava_mixes.build_report import (
    DEFAULT_MAX_REJECTED,
    PART_REPORTS,
    REPORT_FILE,
    BuildReport,
    check_lost_rows,
    check_max_rejected,
    dedup_group_stats,
    group_stats,
    plain_report,
    reject_unembeddable,
)
from llava_mixes.builders import MIXES, SOURCES, check_data_dir, extra_features, info_fields
from llava_mixes.decontam import CONTAMINATED_SPLIT, DECONTAM_FEATURES, find_contamination, split_contaminated
from llava_mixes.decontam.decontaminate import DEFAULT_EMBEDDER as DECONTAM_EMBEDDER
from llava_mixes.decontam.decontaminate import check_settings as check_decontamination
from llava_mixes.decontam.references import record_references
from llava_mixes.dedup.deduplicate import KEEP_RULE, SCOPES, SEARCHES, THRESHOLDS, check_threshold, deduplicate
from llava_mixes.dedup.rows import duplicate_rows
from llava_mixes.devices import parse_devices
from llava_mixes.embedding.cache import EmbeddingCache
from llava_mixes.embedding.embedders import DEFAULT_EMBEDDER, PRECISIONS, embedder_fingerprint, resolve_embedder
from llava_mixes.embedding.engines import ENGINES
from llava_mixes.embedding.transform import attach_embeddings, fill_cache
from llava_mixes.errors import ConfigError, LlavaMixesError
from llava_mixes.freshness import (
    BUILD_LOCK_SUFFIX,
    bases_digest,
    build_digest,
    clear_unfinished,
    damage_reason,
    is_built,
    set_aside_unreadable_info,
    stale_reason,
    verify_build,
    write_build_record,
)
from llava_mixes.mixes.recipe import Recipe
from llava_mixes.mixing import NOT_FOR_RECIPES, Embedding, SourceBuild, config_recipe, mix_recipe, recipe_base
from llava_mixes.plugin import DATASET_NAME, dedup_config_name, register
from llava_mixes.sources import inputs as build_inputs
from llava_mixes.sources.data_files import files_per_source
from llava_mixes.sources.images import ImageIndex
from llava_mixes.sources.normalise import normalise_sources
from llava_mixes.store import default_cache_root, repairs_mark, repairs_since

logger = logging.getLogger(__name__)

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
            build that misses an image folder fails, naming it; see `build_report.missing_image_folders`).
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
        refused = {name: getattr(self, name) for name in NOT_FOR_RECIPES if getattr(self, name) != defaults[name]}
        self.sources = tuple(source.config for source in config_recipe(self.recipe, refused).sources)

    def recipe_spec(self) -> Recipe:
        """The recipe of the config `recipe`, loaded and validated."""
        return config_recipe(self.recipe)

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


class LlavaMixes(datasets.ArrowBasedBuilder):
    """Builds every llava_mixes config from local raw downloads (`data_dir`)."""

    VERSION = VERSION
    BUILDER_CONFIG_CLASS = LlavaMixesConfig
    BUILDER_CONFIGS = named_configs()
    DEFAULT_CONFIG_NAME = "mix665k"
    config: LlavaMixesConfig

    def _info(self) -> datasets.DatasetInfo:
        self.config.validate()
        fields_of_sources = info_fields(self.config.sources)
        dim = None
        if self.config.is_dedup and self.config.keep_embeddings:
            dim = EmbeddingCache(self.config.cache_root(), self._embedder()).dim
        dedup = self.config.is_dedup or self.config.is_recipe
        features = schema.output_features(dedup, dim, extra_features(self.config.sources))
        if self.config.is_decontaminated or self.config.is_recipe:
            features.update(DECONTAM_FEATURES)
        return datasets.DatasetInfo(
            description=self.config.description or fields_of_sources["description"],
            features=features,
            homepage=fields_of_sources["homepage"],
            license=fields_of_sources["license"],
            citation=fields_of_sources["citation"],
        )

    def _embedder(self) -> Any:
        config = self.config
        device = parse_devices(config.device)[0]
        return resolve_embedder(config.embedder, config.embedder_revision, device, config.precision)

    def _data_dir(self) -> Path:
        return check_data_dir(self.config.sources, self.config.data_dir)

    def embedder_fingerprints(self) -> dict[str, str | None]:
        """Each embedder this config uses, by role, as `embedder_fingerprint` identifies it (`freshness` compares
        them with those the build recorded)."""
        return {role: embedder_fingerprint(name) for role, name in self.config.embedders().items()}

    def _build_cache_dir(self) -> str:
        """As in `datasets`, except that a `dataset_info.json` there that cannot be read is set aside first (see
        `freshness.set_aside_unreadable_info`): the folder is then built again instead of failing every load."""
        folder = super()._build_cache_dir()
        set_aside_unreadable_info(Path(folder))
        return folder

    def _get_dataset_fingerprint(self, split: Any) -> str:
        """As in `datasets` (the build folder's relative path and the split), and the digest of the build's content
        (`freshness.build_digest`): the results `datasets` caches beside a build (`cache-*.arrow`) are keyed by
        this fingerprint, so that none computed from an earlier build of the folder is reused after a rebuild."""
        return Hasher.hash((super()._get_dataset_fingerprint(split), build_digest(Path(self._output_dir))))

    def _check_lost_rows(self, folder: Path) -> None:
        """`build_report.check_lost_rows` for the build in `folder`, under this config's `max_rejected`."""
        prefixes = {SOURCES[name].name: SOURCES[name].image_prefixes for name in self.config.sources}
        report = BuildReport.load(folder / REPORT_FILE)
        check_lost_rows(report, self._data_dir(), prefixes, self.config.max_rejected)

    def _annotation_files(self, data_dir: Path) -> dict[str, list[Path]]:
        """Each source's annotation files: those `data_files` names, else those the source finds or fetches."""
        named = files_per_source(self.config.data_files, self.config.sources)
        return {name: named.get(name) or SOURCES[name]().locate_files(data_dir) for name in self.config.sources}

    def _split_generators(self, dl_manager: Any) -> list[datasets.SplitGenerator]:
        data_dir = self._data_dir()
        if not self.config.is_derived:
            self._annotation_files(data_dir)
            return [datasets.SplitGenerator(schema.TRAIN_SPLIT, gen_kwargs={"sources": list(self.config.sources)})]
        forced = bool(getattr(dl_manager.download_config, "force_download", False))
        result = self._mixed(rebuild_base=forced) if self.config.is_recipe else self._derived(rebuild_base=forced)
        return [datasets.SplitGenerator(split, gen_kwargs={"dataset": rows}) for split, rows in result.items()]

    def _base_builder(self, config_name: str | None = None) -> LlavaMixes:
        kwargs = {"data_dir": self.config.data_dir, "data_files": self.config.data_files}
        kwargs.update(self.config.base_overrides())
        return LlavaMixes(
            cache_dir=self._cache_dir_root,
            config_name=config_name or self.config.base_name,
            hash=self.hash,
            dataset_name=self.dataset_name,
            **kwargs,
        )

    def _base_builders(self) -> list[LlavaMixes]:
        """The plain builds this derived config is made from: its plain config, or each source of its recipe."""
        if self.config.is_recipe:
            return [self._base_builder(source) for source in self.config.sources]
        return [self._base_builder()]

    def _mixed(self, rebuild_base: bool) -> dict[str, datasets.Dataset]:
        """The splits of the config `recipe`, from its sources' plain builds (see `mixing.mix_recipe`)."""
        config = self.config
        sources = []
        for base_builder in self._base_builders():
            base_builder.download_and_prepare(download_mode="force_redownload" if rebuild_base else None)
            folder = Path(base_builder.cache_dir)
            rows = base_builder.as_dataset(split=schema.TRAIN_SPLIT)
            sources.append(SourceBuild(base_builder.config.name, rows, BuildReport.load(folder / REPORT_FILE)))
        self._base_digest = bases_digest([Path(base.cache_dir) for base in self._base_builders()])
        embedding = Embedding(config.cache_root(), config.device, config.batch_size, config.num_workers)
        splits, self._pending_report = mix_recipe(
            config.recipe_spec(), sources, config.name, str(config.version), embedding
        )
        features = self.info.features
        return {split: schema.conform(rows, features) for split, rows in splits.items()}

    def _derived(self, rebuild_base: bool) -> dict[str, datasets.Dataset]:
        """The splits of a deduplicated and/or decontaminated config, from its plain config's rows: the rows whose
        picture copies a benchmark's leave first (`contaminated`), then the rest are deduplicated."""
        config = self.config
        base_builder = self._base_builder()
        base_builder.download_and_prepare(download_mode="force_redownload" if rebuild_base else None)
        self._base_digest = build_inputs.record_digest(Path(base_builder.cache_dir))
        base = base_builder.as_dataset(split=schema.TRAIN_SPLIT)
        base_report = BuildReport.load(Path(base_builder.cache_dir) / REPORT_FILE)
        splits: dict[str, datasets.Dataset] = {}
        decontamination = None
        if config.is_decontaminated:
            found = find_contamination(
                base,
                list(config.decontaminate),
                config.decontaminate_threshold,
                config.decontaminate_embedder,
                cache_dir=config.cache_root(),
                device=config.device,
                batch_size=config.batch_size,
                num_workers=config.num_workers,
            )
            parts = split_contaminated(base, found)
            base, splits[CONTAMINATED_SPLIT] = parts[schema.TRAIN_SPLIT], parts[CONTAMINATED_SPLIT]
            decontamination = found.to_json()
        if config.is_dedup:
            splits = {**self._deduplicated(base, base_report), **splits}
        else:
            splits = {schema.TRAIN_SPLIT: base, **splits}
            self._pending_report = BuildReport(
                config_name=config.name,
                version=str(config.version),
                sources=list(config.sources),
                rows_in=base_report.rows_in,
                rejected=base_report.rejected,
                groups=group_stats(base, None, base_report.rejected),
            )
        self._pending_report.decontamination = decontamination
        features = self.info.features
        return {split: schema.conform(rows, features) for split, rows in splits.items()}

    def _deduplicated(self, base: datasets.Dataset, base_report: BuildReport) -> datasets.DatasetDict:
        config = self.config
        model = self._embedder()
        devices = parse_devices(config.device)
        cache, stats = fill_cache(
            base,
            model,
            config.cache_root(),
            config.batch_size,
            config.num_workers,
            devices,
            config.engine,
            keep_failures=True,
        )
        base, unembeddable = reject_unembeddable(base, stats.failed, config.on_bad_records)
        rows = attach_embeddings(base, cache) if config.keep_embeddings else base
        result = deduplicate(
            rows, config.dedup_threshold, config.dedup_scope, search=config.dedup_search, embeddings=cache
        )
        rejected = [*base_report.rejected, *unembeddable]
        self._pending_report = BuildReport(
            config_name=config.name,
            version=str(config.version),
            sources=list(config.sources),
            rows_in=base_report.rows_in,
            rejected=rejected,
            groups=dedup_group_stats(result, rejected),
            dedup={
                "threshold": config.dedup_threshold,
                "scope": config.dedup_scope,
                "search": config.dedup_search,
                "rule": KEEP_RULE,
                "embedder": model.identity(),
            },
            embedding={"cache_key": stats.embedder, "images": stats.images, "embedded": stats.embedded},
        )
        return result

    def _generate_tables(
        self, sources: list[str] | None = None, dataset: datasets.Dataset | None = None
    ) -> Iterator[tuple[Key, pa.Table]]:
        if dataset is not None:
            if len(dataset) == 0:
                yield Key(0, 0), self.info.features.arrow_schema.empty_table()
            for batch, table in enumerate(_arrow_batches(dataset)):
                yield Key(0, batch), table
            return
        yield from normalise_sources(
            [SOURCES[name]() for name in sources or []],
            self._data_dir(),
            ImageIndex(self.config.cache_root(), self.config.num_workers),
            self.config.on_bad_records,
            schema.row_features(extra_features(self.config.sources)),
            Path(self._part_report_dir) if getattr(self, "_part_report_dir", None) else None,
            str(self.config.version),
            files_per_source(self.config.data_files, self.config.sources),
        )

    def _rows(self) -> datasets.Dataset:
        """The `train` rows this builder has just written."""
        files = sorted(Path(self._output_dir).glob(f"{self.dataset_name}-{schema.TRAIN_SPLIT}*.arrow"))
        return datasets.concatenate_datasets([datasets.Dataset.from_file(str(path)) for path in files])

    def _download_and_prepare(self, dl_manager: Any, verification_mode: Any, **prepare_split_kwargs: Any) -> None:
        clear_unfinished(Path(self._output_dir))
        self._part_report_dir = str(Path(self._output_dir) / PART_REPORTS)
        self._pending_report = None
        self._base_digest = None
        # Split sizes loaded from an earlier build are no expectation: the local sources may have changed.
        self.info.splits = None
        repairs = repairs_mark()
        try:
            super()._download_and_prepare(dl_manager, verification_mode, **prepare_split_kwargs)
        except datasets.exceptions.DatasetGenerationError as error:
            if isinstance(error.__cause__, LlavaMixesError):
                raise error.__cause__ from None
            raise
        report = self._pending_report or plain_report(
            self.config.name, str(self.config.version), self.config.sources, Path(self._part_report_dir), self._rows()
        )
        report.cache_repairs = repairs_since(repairs)
        if not self.config.is_derived:
            report.duplicate_rows = len(duplicate_rows(self._rows()))
        report.save(Path(self._output_dir) / REPORT_FILE)
        if self.config.is_derived:
            build_inputs.write_dedup_record(Path(self._output_dir), self._base_digest, self.embedder_fingerprints())
            if self.config.references():
                record_references(Path(self._output_dir), self.config.references())
        else:
            parts = [Path(self._part_report_dir) / f"{name}{build_inputs.PART_SUFFIX}" for name in self.config.sources]
            build_inputs.write_record(Path(self._output_dir), parts)
            for part in parts:
                part.unlink()
        write_build_record(Path(self._output_dir), self.dataset_name, self.info.splits)

    def download_and_prepare(
        self,
        output_dir: str | None = None,
        download_config: datasets.DownloadConfig | None = None,
        download_mode: DownloadMode | str | None = None,
        **kwargs: Any,
    ) -> None:
        """As in `datasets`, except that a cached build is built again, as a forced rebuild of this config only,
        when its folder is damaged (one WARNING line) or its inputs changed since it was built (one INFO line; see
        `freshness`); that one process at a time checks and builds a folder (a lock beside it); that a build folder
        reached through a symbolic link is rebuilt where the link leads; and that a build which lost more rows with
        missing image folders than `max_rejected` allows raises `RowsLostError`."""
        folder = Path(output_dir if output_dir is not None else self._cache_dir)
        if folder.is_symlink():
            folder = folder.resolve()
            output_dir = str(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{folder}{BUILD_LOCK_SUFFIX}"):
            reusing = DownloadMode(download_mode or DownloadMode.REUSE_DATASET_IF_EXISTS)
            if reusing == DownloadMode.REUSE_DATASET_IF_EXISTS and is_built(folder):
                damage = damage_reason(folder)
                reason = damage or stale_reason(self, folder)
                if reason is not None:
                    log = logger.warning if damage else logger.info
                    log("rebuilding %s in %s: %s", self.config.name, folder, reason)
                    download_mode = DownloadMode.REUSE_CACHE_IF_EXISTS
            super().download_and_prepare(output_dir, download_config, download_mode, **kwargs)
        self._check_lost_rows(folder)

    def _as_dataset(self, split: Any = datasets.Split.TRAIN, in_memory: bool = False) -> datasets.Dataset:
        """As in `datasets`, except that an empty split (an empty source, a dedup that removed nothing) loads
        from its empty Arrow file in the build folder, so that `load_report` finds the folder; in memory
        where there is no such file."""
        named = isinstance(split, (str, datasets.NamedSplit))
        recorded = (self.info.splits or {}).get(str(split)) if named else None
        if recorded is not None and recorded.num_examples == 0:
            empty = Path(self._output_dir) / f"{self.dataset_name}-{split}.arrow"
            if empty.is_file():
                table = (InMemoryTable if in_memory else MemoryMappedTable).from_file(str(empty))
            else:
                table = InMemoryTable(self.info.features.arrow_schema.empty_table())
            return datasets.Dataset(
                table,
                info=self.info.copy(),
                split=datasets.NamedSplit(str(split)),
                fingerprint=self._get_dataset_fingerprint(split),
            )
        return super()._as_dataset(split, in_memory)


def _arrow_batches(dataset: datasets.Dataset, size: int = 1000) -> Iterator[pa.Table]:
    """The rows of `dataset` as Arrow tables of at most `size` rows. Rows selected in ascending order (a
    `Dataset.select` or `filter`) are taken from each stored record batch at once: `Dataset.iter` would gather
    them one row at a time."""
    rows = dataset._indices.column(0).to_numpy() if dataset._indices is not None else None
    if rows is None or (rows.size > 1 and not bool(np.all(rows[1:] > rows[:-1]))):
        yield from dataset.with_format("arrow").iter(batch_size=size)
        return
    start = 0
    for stored in dataset.data.table.to_batches(max_chunksize=size):
        local = rows[np.searchsorted(rows, start) : np.searchsorted(rows, start + stored.num_rows)] - start
        if local.size:
            yield pa.Table.from_batches([stored.take(pa.array(local))])
        start += stored.num_rows


CONFIG_NAMES = tuple(config.name for config in LlavaMixes.BUILDER_CONFIGS)


@dataclass(frozen=True)
class Built:
    """One built config: its splits, its report, its resolved settings, the plain rows its dedup started from
    (its own `train` split for a plain config) and where its build lives."""

    config: LlavaMixesConfig
    dataset: datasets.DatasetDict
    report: BuildReport
    base: datasets.Dataset
    folder: Path


def check_config_name(config: str) -> None:
    """Raise `ConfigError` for a name that is no config, naming the closest ones."""
    if config not in CONFIG_NAMES:
        close = difflib.get_close_matches(config, CONFIG_NAMES, n=3, cutoff=0.6)
        if close:
            hint = f"did you mean {', '.join(close)}? (`llava-mixes list` shows all {len(CONFIG_NAMES)} configs)"
            raise ConfigError(f"config {config!r} is not allowed; {hint}")
        raise ConfigError(f"config {config!r} is not allowed; choose one of {list(CONFIG_NAMES)}")


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
        base_builder = dataset_builder._base_builder() if dataset_builder.config.is_derived else dataset_builder
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


def verify(
    config: str, data_dir: str | None, cache_dir: str | None = None, **config_kwargs: Any
) -> dict[Path, list[str]]:
    """Check every file of the cached build of `config` (with `config_kwargs`), and of the plain builds a derived
    config is made from, against their build records, each file hashed in full (`freshness.verify_build`); builds
    nothing. The problems found, per build folder: all empty when every build is whole."""
    dataset_builder = configure(config, data_dir, cache_dir, **config_kwargs)
    bases = dataset_builder._base_builders() if dataset_builder.config.is_derived else []
    return {Path(each.cache_dir): verify_build(Path(each.cache_dir)) for each in [dataset_builder, *bases]}
