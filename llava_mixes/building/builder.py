"""The `llava_mixes` dataset builder: one `datasets` builder for every config (see `building.config`).

A plain config streams each source's annotation files through `SourceNormaliser` into the `train` split.
A deduplicated config builds (or reuses) its plain config, fills the embedding cache, rejects the rows whose
image has no usable vector, splits the rest with `deduplicate` (a row selection) into `train` and
`removed`, and copies both splits into its own cache. Every build writes a `BuildReport` next to its Arrow
files (see `building.report.load_report`), and a record of its inputs (see `sources.inputs`): a cached build
whose inputs changed since is rebuilt, with no cache to clear by hand.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import replace
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
from llava_mixes.builders import SOURCES, check_data_dir, check_data_dir_name, extra_features, info_fields
from llava_mixes.building.chain import config_steps
from llava_mixes.building.config import VERSION, LlavaMixesConfig, check_config_name, named_configs
from llava_mixes.building.derive import DedupSettings, Embedding, decontaminate_rows, deduplicate_rows
from llava_mixes.building.freshness import (
    BUILD_LOCK_SUFFIX,
    BuildPlan,
    build_digest,
    clear_unfinished,
    damage_reason,
    is_built,
    set_aside_unreadable_info,
    stale_reason,
    write_build_record,
)
from llava_mixes.building.losses import check_lost_rows, reject_unembeddable
from llava_mixes.building.mixing import SourceBuild, mix_recipe
from llava_mixes.building.report import (
    PART_REPORTS,
    REPORT_FILE,
    BuildReport,
    dedup_group_stats,
    group_stats,
)
from llava_mixes.building.steps import Step, write_steps
from llava_mixes.decontam import CONTAMINATED_SPLIT, DECONTAM_FEATURES
from llava_mixes.dedup.rows import duplicate_rows
from llava_mixes.devices import parse_devices
from llava_mixes.embedding.cache import EmbeddingCache
from llava_mixes.embedding.embedders import resolve_embedder
from llava_mixes.errors import LlavaMixesError
from llava_mixes.progress import quiet
from llava_mixes.schema import Rejection
from llava_mixes.sources import inputs as build_inputs
from llava_mixes.sources.data_files import files_per_source
from llava_mixes.sources.images import ImageIndex
from llava_mixes.sources.normalise import normalise_sources, read_part
from llava_mixes.store import repairs_mark, repairs_since

logger = logging.getLogger(__name__)


class LlavaMixes(datasets.ArrowBasedBuilder):
    """Builds every llava_mixes config from local raw downloads (`data_dir`)."""

    VERSION = VERSION
    BUILDER_CONFIG_CLASS = LlavaMixesConfig
    BUILDER_CONFIGS = named_configs()
    DEFAULT_CONFIG_NAME = "mix665k"
    config: LlavaMixesConfig
    in_recipe: bool = False
    """Whether this plain build is a recipe's source (its missing-file errors then name the recipe's remedies)."""

    def __init__(self, *args: Any, config_name: str | None = None, **kwargs: Any) -> None:
        # A mistyped name is the project's "unknown config ...; did you mean ...", not datasets' list of every name.
        if isinstance(config_name, str):
            check_config_name(config_name)
        check_data_dir_name(kwargs.get("data_dir"))
        super().__init__(*args, config_name=config_name, **kwargs)

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

    def steps(self) -> list[Step]:
        """The steps that build this config (`chain.config_steps`), with the digests of their inputs now."""
        bases = {base.config.name: Path(base.cache_dir) for base in self.base_builders()}
        return config_steps(self.config, bases)

    def plan(self, folder: Path | None = None) -> BuildPlan:
        """What the freshness check needs of this config's build, cached in `folder` (default: its cache folder)."""
        derived = self.config.is_derived
        return BuildPlan(
            self.config.name,
            folder or Path(self.cache_dir),
            self.steps,
            tuple(base.plan() for base in self.base_builders()),
            None if derived else self._located_files,
        )

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
        """`losses.check_lost_rows` for the build in `folder`, under this config's `max_rejected`."""
        prefixes = {SOURCES[name].name: SOURCES[name].image_prefixes for name in self.config.sources}
        report = BuildReport.load(folder / REPORT_FILE)
        check_lost_rows(report, self._data_dir(), prefixes, self.config.max_rejected)

    def _located_files(self) -> list[Path]:
        return [path for paths in self._annotation_files(self._data_dir()).values() for path in paths]

    def _annotation_files(self, data_dir: Path) -> dict[str, list[Path]]:
        """Each source's annotation files: those `data_files` names, else those the source finds or fetches."""
        named = files_per_source(self.config.data_files, self.config.sources)
        in_recipe = getattr(self, "in_recipe", False)
        return {
            name: named.get(name) or SOURCES[name]().locate_files(data_dir, in_recipe) for name in self.config.sources
        }

    def _split_generators(self, dl_manager: Any) -> list[datasets.SplitGenerator]:
        data_dir = self._data_dir()
        if not self.config.is_derived:
            self._annotation_files(data_dir)
            return [datasets.SplitGenerator(schema.TRAIN_SPLIT, gen_kwargs={"sources": list(self.config.sources)})]
        forced = bool(getattr(dl_manager.download_config, "force_download", False))
        result = self._mixed(rebuild_base=forced) if self.config.is_recipe else self._derived(rebuild_base=forced)
        return [datasets.SplitGenerator(split, gen_kwargs={"dataset": rows}) for split, rows in result.items()]

    def _base_builder(self, config_name: str) -> LlavaMixes:
        """The plain build of `config_name` that this config is made from; a recipe's source reads the files its
        recipe (or `data_files`) names for it, which key its build as a plain build's `data_files` do."""
        data_files: Any = self.config.data_files
        if self.config.is_recipe:
            data_files = self.config.recipe_data_files(self._data_dir()).get(config_name)
        kwargs = {"data_dir": self.config.data_dir, "data_files": data_files}
        kwargs.update(self.config.base_overrides())
        base = LlavaMixes(
            cache_dir=self._cache_dir_root,
            config_name=config_name,
            hash=self.hash,
            dataset_name=self.dataset_name,
            **kwargs,
        )
        base.in_recipe = self.config.is_recipe
        return base

    def base_builders(self) -> list[LlavaMixes]:
        """The plain builds this config is made from: none for a plain config, its plain config for a deduplicated
        or decontaminated one, each source of its recipe for a recipe."""
        if self.config.is_recipe:
            return [self._base_builder(source) for source in self.config.sources]
        return [self._base_builder(self.config.base_name)] if self.config.is_derived else []

    def _mixed(self, rebuild_base: bool) -> dict[str, datasets.Dataset]:
        """The splits of the config `recipe`, from its sources' plain builds (see `mixing.mix_recipe`)."""
        config = self.config
        sources = []
        for base_builder in self.base_builders():
            base_builder.download_and_prepare(download_mode="force_redownload" if rebuild_base else None)
            folder = Path(base_builder.cache_dir)
            rows = base_builder.as_dataset(split=schema.TRAIN_SPLIT)
            sources.append(SourceBuild(base_builder.config.name, rows, BuildReport.load(folder / REPORT_FILE)))
        splits, self._pending_report = mix_recipe(
            config.recipe_spec(), sources, config.name, str(config.version), self._embedding(engine=False)
        )
        features = self.info.features
        with quiet(sum(len(rows) for rows in splits.values())):
            return {split: schema.conform(rows, features) for split, rows in splits.items()}

    def _derived(self, rebuild_base: bool) -> dict[str, datasets.Dataset]:
        """The splits of a deduplicated and/or decontaminated config, from its plain config's rows: the rows whose
        picture copies a benchmark's leave first (`contaminated`), then the rest are deduplicated."""
        config = self.config
        (base_builder,) = self.base_builders()
        base_builder.download_and_prepare(download_mode="force_redownload" if rebuild_base else None)
        base = base_builder.as_dataset(split=schema.TRAIN_SPLIT)
        base_report = BuildReport.load(Path(base_builder.cache_dir) / REPORT_FILE)
        splits: dict[str, datasets.Dataset] = {}
        decontamination = None
        if config.is_decontaminated:
            base, splits[CONTAMINATED_SPLIT], decontamination = decontaminate_rows(
                base,
                list(config.decontaminate),
                config.decontaminate_threshold,
                config.decontaminate_embedder,
                self._embedding(engine=False),
            )
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
        with quiet(sum(len(rows) for rows in splits.values())):
            return {split: schema.conform(rows, features) for split, rows in splits.items()}

    def _embedding(self, engine: bool = True) -> Embedding:
        """Where and how this config's pictures are embedded (`engine`: with its engine; else the local one)."""
        config = self.config
        local = Embedding(config.cache_root(), config.device, config.batch_size, config.num_workers)
        return replace(local, engine=config.engine) if engine else local

    def _deduplicated(self, base: datasets.Dataset, base_report: BuildReport) -> datasets.DatasetDict:
        """The dedup step of this config's chain (`derive.deduplicate_rows`); the rows whose picture has no vector
        are rejected with their reason (`losses.reject_unembeddable`)."""
        config = self.config
        unembeddable: list[Rejection] = []

        def reject(rows: datasets.Dataset, failed: Mapping[str, str]) -> datasets.Dataset:
            kept, rejected = reject_unembeddable(rows, failed, config.on_bad_records)
            unembeddable.extend(rejected)
            return kept

        settings = DedupSettings(
            config.dedup_threshold,
            config.dedup_scope,
            config.embedder,
            config.dedup_search,
            config.embedder_revision,
            config.precision,
            config.keep_embeddings,
        )
        done = deduplicate_rows(base, settings, self._embedding(), reject)
        rejected = [*base_report.rejected, *unembeddable]
        self._pending_report = BuildReport(
            config_name=config.name,
            version=str(config.version),
            sources=list(config.sources),
            rows_in=base_report.rows_in,
            rejected=rejected,
            groups=dedup_group_stats(done.splits, rejected),
            dedup=done.dedup,
            embedding=done.embedding,
        )
        return done.splits

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
        if not self.config.is_derived:
            parts = [Path(self._part_report_dir) / f"{name}{build_inputs.PART_SUFFIX}" for name in self.config.sources]
            build_inputs.write_record(Path(self._output_dir), parts)
            for part in parts:
                part.unlink()
        write_steps(Path(self._output_dir), self.steps())
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
                reason = damage or stale_reason(self.plan(folder))
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


def plain_report(
    name: str, version: str, sources: tuple[str, ...], part_dir: Path, rows: datasets.Dataset
) -> BuildReport:
    """The report of a plain build: its sources' part reports (saved under `part_dir`) and its rows' groups."""
    report = BuildReport(name, version, list(sources))
    rejected: list[Rejection] = []
    for source in sources:
        part = read_part(part_dir / f"{source}.json")
        report.rows_in += part.rows_in
        rejected.extend(part.rejected)
    report.rejected = rejected
    report.groups = group_stats(rows, None, rejected)
    return report
