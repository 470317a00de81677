"""The `llava_mixes` dataset builder: plain configs normalise the sources; dedup configs embed and filter.

A plain config streams each source's annotation file through `SourceNormaliser` into the `train` split.
A deduplicated config builds (or reuses) its plain config, adds cached embeddings with a `Dataset.map`,
splits it with `deduplicate` (a `Dataset.filter`) into `train` and `removed`, and copies both splits
into its own cache. Every build writes a `BuildReport` next to its Arrow files (see `load_report`), and a
record of its inputs (see `build_inputs`): a cached build whose inputs changed since is rebuilt, with no
cache to clear by hand.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
from datasets.builder import Key
from datasets.download.download_manager import DownloadMode
from datasets.table import InMemoryTable, MemoryMappedTable
from datasets.utils import tqdm as hf_tqdm

from llava_mixes import schema
from llava_mixes.build_report import REPORT_FILE, BuildReport, Rejection, group_stats
from llava_mixes.builders import SOURCES
from llava_mixes.config import VERSION, LlavaMixesConfig, named_configs
from llava_mixes.dedup.deduplicate import dedup_group_stats, deduplicate, group_path_pairs, reject_unembeddable
from llava_mixes.devices import parse_devices
from llava_mixes.embedding.cache import EmbeddingCache
from llava_mixes.embedding.embedders import resolve_embedder
from llava_mixes.embedding.transform import attach_embeddings, fill_cache
from llava_mixes.errors import LlavaMixesError, MissingDataError
from llava_mixes.sources import inputs as build_inputs
from llava_mixes.sources.images import ImageIndex
from llava_mixes.sources.normalise import SourceNormaliser
from llava_mixes.store import repairs_mark, repairs_since

logger = logging.getLogger(__name__)

DATASET_NAME = "llava_mixes"
PART_REPORTS = "reports"
KEEP_RULE = (
    "distinct images of a scope are visited in order of first appearance; an image is removed when its cosine "
    "similarity to an image already kept in its scope is >= the threshold; byte-identical files are duplicates "
    "at every threshold"
)


class LlavaMixes(datasets.ArrowBasedBuilder):
    """Builds every llava_mixes config from local raw downloads (`data_dir`)."""

    VERSION = VERSION
    BUILDER_CONFIG_CLASS = LlavaMixesConfig
    BUILDER_CONFIGS = named_configs()
    DEFAULT_CONFIG_NAME = "mix665k"
    config: LlavaMixesConfig

    def _info(self) -> datasets.DatasetInfo:
        self.config.validate()
        sources = [SOURCES[name] for name in self.config.sources]
        dim = None
        if self.config.is_dedup and self.config.keep_embeddings:
            dim = EmbeddingCache(self.config.cache_root(), self._embedder()).dim
        return datasets.DatasetInfo(
            description=self.config.description or " + ".join(source.description for source in sources),
            features=schema.output_features(self.config.is_dedup, dim, self._extra_features()),
            homepage=" ".join(source.homepage for source in sources),
            license="; ".join(f"{source.name}: {source.license}" for source in sources),
            citation="\n".join(source.citation for source in sources),
        )

    def _extra_features(self) -> dict[str, datasets.Value]:
        """The source-specific columns of this config's sources, in source order."""
        extra: dict[str, datasets.Value] = {}
        for name in self.config.sources:
            extra.update(SOURCES[name].extra_features)
        return extra

    def _embedder(self) -> Any:
        config = self.config
        device = parse_devices(config.device)[0]
        return resolve_embedder(config.embedder, config.embedder_revision, device, config.precision)

    def _data_dir(self) -> Path:
        hints = " ".join(SOURCES[name].download_hint for name in self.config.sources)
        if not self.config.data_dir:
            raise MissingDataError(f"llava_mixes builds from your local downloads: pass data_dir=<folder>. {hints}")
        data_dir = Path(self.config.data_dir).expanduser()
        if not data_dir.is_dir():
            raise MissingDataError(f"data_dir {str(data_dir)!r} is not a folder. {hints}")
        return data_dir

    def _split_generators(self, dl_manager: Any) -> list[datasets.SplitGenerator]:
        data_dir = self._data_dir()
        if not self.config.is_dedup:
            for name in self.config.sources:
                SOURCES[name]().locate_files(data_dir)
            return [datasets.SplitGenerator(schema.TRAIN_SPLIT, gen_kwargs={"sources": list(self.config.sources)})]
        forced = bool(getattr(dl_manager.download_config, "force_download", False))
        result = self._deduplicated(rebuild_base=forced)
        return [
            datasets.SplitGenerator(split, gen_kwargs={"dataset": result[split]})
            for split in (schema.TRAIN_SPLIT, schema.REMOVED_SPLIT)
        ]

    def _base_builder(self) -> LlavaMixes:
        kwargs = {"data_dir": self.config.data_dir, **self.config.base_overrides()}
        return LlavaMixes(
            cache_dir=self._cache_dir_root,
            config_name=self.config.base_name,
            hash=self.hash,
            dataset_name=self.dataset_name,
            **kwargs,
        )

    def _deduplicated(self, rebuild_base: bool) -> datasets.DatasetDict:
        config = self.config
        model = self._embedder()
        base_builder = self._base_builder()
        base_builder.download_and_prepare(download_mode="force_redownload" if rebuild_base else None)
        self._base_digest = build_inputs.record_digest(Path(base_builder.cache_dir))
        base = base_builder.as_dataset(split=schema.TRAIN_SPLIT)
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
        base_report = BuildReport.load(Path(base_builder.cache_dir) / REPORT_FILE)
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
            for batch, table in enumerate(dataset.with_format("arrow").iter(batch_size=1000)):
                yield Key(0, batch), table
            return
        data_dir = self._data_dir()
        index = ImageIndex(self.config.cache_root(), self.config.num_workers)
        features = schema.row_features(self._extra_features())
        for shard, name in enumerate(sources or []):
            source = SOURCES[name]()
            files = source.locate_files(data_dir)
            inputs = build_inputs.InputLog()
            inputs.annotations(files)
            normaliser = SourceNormaliser(source, data_dir, index, self.config.on_bad_records, features, inputs)
            total = sum(path.stat().st_size for path in files)
            with hf_tqdm(total=total, unit="B", unit_scale=True, desc=f"Normalising {source.name}") as progress:
                for batch, table in enumerate(normaliser.tables(progress.update, files)):
                    yield Key(shard, batch), table
            report_dir = getattr(self, "_part_report_dir", None)
            if report_dir is not None:
                part = BuildReport(name, str(self.config.version), [name], normaliser.result.rows_in)
                part.rejected = normaliser.result.rejected
                part.save(Path(report_dir) / f"{name}.json")
                inputs.save(Path(report_dir) / f"{name}{build_inputs.PART_SUFFIX}")

    def _download_and_prepare(self, dl_manager: Any, verification_mode: Any, **prepare_split_kwargs: Any) -> None:
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
        report = self._pending_report or self._plain_report()
        report.cache_repairs = repairs_since(repairs)
        report.save(Path(self._output_dir) / REPORT_FILE)
        if self.config.is_dedup:
            build_inputs.write_dedup_record(Path(self._output_dir), self._base_digest)
            return
        parts = [Path(self._part_report_dir) / f"{name}{build_inputs.PART_SUFFIX}" for name in self.config.sources]
        build_inputs.write_record(Path(self._output_dir), parts)
        for part in parts:
            part.unlink()

    def download_and_prepare(
        self,
        output_dir: str | None = None,
        download_config: datasets.DownloadConfig | None = None,
        download_mode: DownloadMode | str | None = None,
        **kwargs: Any,
    ) -> None:
        """As in `datasets`, except that a cached build whose inputs changed since it was built (see
        `build_inputs`) is built again, as a forced rebuild of this config only, with one INFO line saying why."""
        folder = Path(output_dir if output_dir is not None else self._cache_dir)
        reusing = DownloadMode(download_mode or DownloadMode.REUSE_DATASET_IF_EXISTS)
        if (
            reusing == DownloadMode.REUSE_DATASET_IF_EXISTS
            and (folder / datasets.config.DATASET_INFO_FILENAME).exists()
        ):
            reason = self._stale_reason(folder)
            if reason is not None:
                logger.info("rebuilding %s in %s: %s", self.config.name, folder, reason)
                download_mode = DownloadMode.REUSE_CACHE_IF_EXISTS
        super().download_and_prepare(output_dir, download_config, download_mode, **kwargs)

    def _stale_reason(self, folder: Path) -> str | None:
        """Why the build cached under `folder` no longer matches its inputs on disk, or None when it does."""
        if self.config.is_dedup:
            base = self._base_builder()
            base_folder = Path(base.cache_dir)
            if not (base_folder / datasets.config.DATASET_INFO_FILENAME).exists():
                return f"its base {base.config.name} is not built"
            reason = base._stale_reason(base_folder)
            if reason is not None:
                return f"its base {base.config.name} is stale: {reason}"
            return build_inputs.base_changed(folder, base_folder)
        try:
            data_dir = self._data_dir()
            files = [path for name in self.config.sources for path in SOURCES[name]().locate_files(data_dir)]
        except LlavaMixesError as error:
            return f"its inputs cannot be located ({error})"
        return build_inputs.stale_reason(folder, files)

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

    def _plain_report(self) -> BuildReport:
        report = BuildReport(self.config.name, str(self.config.version), list(self.config.sources))
        rejected: list[Rejection] = []
        for name in self.config.sources:
            part = BuildReport.load(Path(self._part_report_dir) / f"{name}.json")
            report.rows_in += part.rows_in
            rejected.extend(part.rejected)
        report.rejected = rejected
        files = sorted(Path(self._output_dir).glob(f"{self.dataset_name}-{schema.TRAIN_SPLIT}*.arrow"))
        rows = datasets.concatenate_datasets([datasets.Dataset.from_file(str(path)) for path in files])
        report.groups = group_stats(group_path_pairs(rows), [], rejected)
        return report


def load_report(dataset: datasets.Dataset | datasets.DatasetDict) -> BuildReport:
    """The `BuildReport` of a dataset loaded with `load_dataset("llava_mixes", ...)`."""
    if isinstance(dataset, datasets.DatasetDict):
        dataset = next(iter(dataset.values()))
    if not dataset.cache_files:
        raise ValueError("this dataset has no cache files, so it was not built by llava_mixes' builder")
    folder = Path(dataset.cache_files[0]["filename"]).parent
    path = folder / REPORT_FILE
    if not path.exists():
        raise FileNotFoundError(f"no {REPORT_FILE} in {folder}: was it built by llava_mixes' builder?")
    return BuildReport.load(path)
