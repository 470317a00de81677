"""`llava-mixes report`: build a config, then write what deduplication does to its rows under `--out`.

Files: `index.html` (the self-contained gallery), `sweep.png` and `nearest.png` (also inlined in the page),
`sample.xlsx` and `sample-<split>.csv` (every Nth row), and `sweep.json` (tables and pairs, for dataset cards).
The sweep looks at the plain config's rows (what dedup starts from), with the config's embedder and scope;
embeddings come from the cache, so an image embedded by a build is never embedded again.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import datasets

from llava_mixes import schema
from llava_mixes.builder import LlavaMixes
from llava_mixes.cli.main import _add_build_options, _config_kwargs, _out
from llava_mixes.config import THRESHOLDS
from llava_mixes.dedup.sweep import sweep_thresholds
from llava_mixes.devices import parse_devices
from llava_mixes.embedding.cache import EmbeddingCache
from llava_mixes.embedding.embedders import resolve_embedder
from llava_mixes.embedding.transform import fill_cache
from llava_mixes.errors import ConfigError
from llava_mixes.extras import require
from llava_mixes.plugin import DATASET_NAME, register
from llava_mixes.report.analysis import DedupAnalysis, analyse
from llava_mixes.report.gallery import render_page
from llava_mixes.report.plots import nearest_png, sweep_png
from llava_mixes.report.samples import Sheet, sheet_title, write_samples
from llava_mixes.store import write_atomic

EVERY = 500
PAIRS_PER_BAND = 3
PAGE_FILE = "index.html"
SWEEP_PNG = "sweep.png"
NEAREST_PNG = "nearest.png"
SUMMARY_FILE = "sweep.json"


@dataclass(frozen=True)
class ReportFiles:
    """Where the report was written."""

    page: Path
    sweep_png: Path
    nearest_png: Path
    samples: list[Path]
    summary: Path


def _splits(dataset_builder: LlavaMixes) -> list[str]:
    return [schema.TRAIN_SPLIT, schema.REMOVED_SPLIT] if dataset_builder.config.is_dedup else [schema.TRAIN_SPLIT]


@dataclass(frozen=True)
class ConfigAnalysis:
    """A built config, the plain rows its dedup starts from, and the sweep over their embeddings."""

    builder: LlavaMixes
    base: datasets.Dataset
    analysis: DedupAnalysis


def analyse_config(
    config: str,
    data_dir: str,
    *,
    thresholds: tuple[float, ...] = THRESHOLDS,
    pairs_per_band: int = PAIRS_PER_BAND,
    cross_group: bool = True,
    cache_dir: str | None = None,
    **config_kwargs: object,
) -> ConfigAnalysis:
    """Build (or reuse) `config` and sweep its plain rows' embeddings (from the cache; missing ones embedded)."""
    sweep_thresholds(thresholds)
    register()
    dataset_builder = datasets.load_dataset_builder(
        DATASET_NAME, config, data_dir=data_dir, cache_dir=cache_dir, **config_kwargs
    )
    settings = dataset_builder.config
    devices = parse_devices(settings.device)
    model = resolve_embedder(settings.embedder, settings.embedder_revision, devices[0], settings.precision)
    EmbeddingCache(settings.cache_root(), model)  # fails now, not after the build, if the embedder cannot load
    dataset_builder.download_and_prepare()
    base_builder = dataset_builder._base_builder() if settings.is_dedup else dataset_builder
    base_builder.download_and_prepare()
    base = base_builder.as_dataset(split=schema.TRAIN_SPLIT)
    cache, _ = fill_cache(
        base, model, settings.cache_root(), settings.batch_size, settings.num_workers, devices, settings.engine
    )
    analysis = analyse(base, cache, settings.name, thresholds, settings.dedup_scope, cross_group, pairs_per_band)
    return ConfigAnalysis(dataset_builder, base, analysis)


def write_report(
    config: str,
    data_dir: str,
    out: str | Path,
    *,
    thresholds: tuple[float, ...] = THRESHOLDS,
    every: int = EVERY,
    pairs_per_band: int = PAIRS_PER_BAND,
    cross_group: bool = True,
    cache_dir: str | None = None,
    **config_kwargs: object,
) -> tuple[DedupAnalysis, ReportFiles]:
    """Build (or reuse) `config` and write its report under `out` (see the module docstring)."""
    require("matplotlib")
    require("openpyxl")
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ConfigError(f"every={every!r} is not allowed; it must be a whole number >= 1")
    analysed = analyse_config(
        config,
        data_dir,
        thresholds=thresholds,
        pairs_per_band=pairs_per_band,
        cross_group=cross_group,
        cache_dir=cache_dir,
        **config_kwargs,
    )
    dataset_builder, base, analysis = analysed.builder, analysed.base, analysed.analysis
    settings = dataset_builder.config

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    sheets = []
    for split in _splits(dataset_builder):
        title = sheet_title(settings.name, split, taken)
        taken.add(title)
        sheets.append(Sheet(title, f"sample-{split}.csv", dataset_builder.as_dataset(split=split)))
    samples = write_samples(folder, sheets, every)
    figures = {
        SWEEP_PNG: sweep_png(analysis.tables, analysis.scope, analysis.shown),
        NEAREST_PNG: nearest_png(analysis.nearest, analysis.shown),
    }
    for name, data in figures.items():
        write_atomic(folder / name, data)
    page = render_page(analysis, base, figures[SWEEP_PNG], figures[NEAREST_PNG], [path.name for path in samples])
    write_atomic(folder / PAGE_FILE, page.encode())
    summary = {**analysis.to_json(), "every": every, "samples": [path.name for path in samples]}
    write_atomic(folder / SUMMARY_FILE, json.dumps(summary, indent=1, ensure_ascii=False).encode())
    files = ReportFiles(folder / PAGE_FILE, folder / SWEEP_PNG, folder / NEAREST_PNG, samples, folder / SUMMARY_FILE)
    return analysis, files


def add_report_options(parser: argparse.ArgumentParser) -> None:
    """The `report` command's options: the build options, and what to show."""
    _add_build_options(parser)
    parser.add_argument("--out", required=True, help="folder for index.html, the figures and the samples")
    parser.add_argument(
        "--thresholds", nargs="+", type=float, default=list(THRESHOLDS), help="thresholds to label pairs at"
    )
    parser.add_argument("--every", type=int, default=EVERY, help="export every Nth row of each split")
    parser.add_argument("--pairs-per-band", type=int, default=PAIRS_PER_BAND, help="pairs shown per group and band")
    parser.add_argument(
        "--no-cross-group",
        action="store_true",
        help="skip the global pass that finds duplicates across groups (it compares every pair of images)",
    )


def run_report(args: argparse.Namespace) -> int:
    """Write the report and print where it is and the kept images at the shown thresholds."""
    analysis, files = write_report(
        args.config,
        args.data_dir,
        args.out,
        thresholds=tuple(args.thresholds),
        every=args.every,
        pairs_per_band=args.pairs_per_band,
        cross_group=not args.no_cross_group,
        cache_dir=args.cache_dir,
        **_config_kwargs(args),
    )
    table = analysis.table
    kept = ", ".join(f"{value:g}: {sum(table.kept_at(value).values()):,}" for value in analysis.shown)
    _out(f"{analysis.config_name}: {sum(table.images):,} images; kept per threshold ({analysis.scope} scope): {kept}")
    _out(f"{len(analysis.pairs)} pairs shown; report in {files.page}")
    _out("also: " + ", ".join(str(path) for path in [files.sweep_png, files.nearest_png, *files.samples]))
    return 0
