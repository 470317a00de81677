"""The report of a built config: what deduplication does to its rows, written under a folder.

Files: `index.html` (the self-contained gallery), `sweep.png` and `nearest.png` (also inlined in the page),
`sample.xlsx` and `sample-<split>.csv` (every Nth row), and `sweep.json` (tables and pairs, for dataset cards).
The folder is checked before any work (`report_folder`: not a file, not inside the data folder) and locked while
written (`llava_mixes.outputs`); a file there is overwritten only when a report wrote it and it is unchanged
since, and a sample file of an earlier report that this one no longer writes is removed on the same terms.
The sweep looks at the plain config's rows (what dedup starts from), with the config's embedder and scope;
embeddings come from the cache, so an image embedded by a build is never embedded again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from llava_mixes.dedup.deduplicate import THRESHOLDS
from llava_mixes.dedup.sweep import GRID, sweep_thresholds
from llava_mixes.devices import parse_devices
from llava_mixes.embedding.cache import EmbeddingCache
from llava_mixes.embedding.embedders import Embedder, resolve_embedder
from llava_mixes.embedding.transform import fill_cache
from llava_mixes.errors import CacheWriteError, ConfigError
from llava_mixes.extras import require
from llava_mixes.outputs import OutputFolder, check_claims, output_folder
from llava_mixes.report.analysis import DedupAnalysis, analyse
from llava_mixes.report.cross import DEFAULT_SAMPLE
from llava_mixes.report.gallery import render_page
from llava_mixes.report.plots import nearest_png, sweep_png
from llava_mixes.report.samples import XLSX_FILE, Sheet, sheet_title, write_samples
from llava_mixes.store import write_atomic

if TYPE_CHECKING:
    from llava_mixes.building.config import LlavaMixesConfig
    from llava_mixes.building.entry import Built

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


@dataclass(frozen=True)
class ConfigAnalysis:
    """A built config and the sweep over the embeddings of the plain rows its dedup starts from."""

    built: Built
    analysis: DedupAnalysis


def embedder_of(config: LlavaMixesConfig) -> Embedder:
    """The config's embedder, loaded now, so that one that cannot load fails before anything is built."""
    model = resolve_embedder(
        config.embedder, config.embedder_revision, parse_devices(config.device)[0], config.precision
    )
    EmbeddingCache(config.cache_root(), model)
    return model


def analyse_built(
    built: Built,
    *,
    thresholds: tuple[float, ...] = THRESHOLDS,
    pairs_per_band: int = PAIRS_PER_BAND,
    cross_group: bool | str = "exact",
    model: Embedder | None = None,
    nearest_from: float = GRID[0],
    cross_group_sample: float = DEFAULT_SAMPLE,
) -> ConfigAnalysis:
    """Sweep the embeddings of `built`'s plain rows (from the cache; missing ones embedded); nearest
    neighbours from `nearest_from` up, the cross-group pass as `cross_group` says (see `analyse`)."""
    sweep_thresholds(thresholds)
    settings = built.config
    model = model or embedder_of(settings)
    devices = parse_devices(settings.device)
    cache, _ = fill_cache(
        built.base, model, settings.cache_root(), settings.batch_size, settings.num_workers, devices, settings.engine
    )
    analysis = analyse(
        built.base,
        cache,
        settings.name,
        thresholds,
        settings.dedup_scope,
        cross_group,
        pairs_per_band,
        nearest_from=nearest_from,
        cross_group_sample=cross_group_sample,
    )
    return ConfigAnalysis(built, analysis)


def report_folder(out: str | Path, data_dir: str | Path | None = None) -> Path:
    """`out` resolved, once it is known that it can hold a report: absent or a folder, not inside `data_dir`, and
    holding no file of the report's names that a report did not write (see `llava_mixes.outputs`); the CLI
    checks it before anything is built."""
    folder = output_folder(out, "out", {"data_dir": data_dir})
    check_claims(folder, [XLSX_FILE, SWEEP_PNG, NEAREST_PNG, PAGE_FILE, SUMMARY_FILE], "out")
    return folder


def write_report(analysed: ConfigAnalysis, out: str | Path, *, every: int = EVERY) -> ReportFiles:
    """Write the report of an analysed config under `out` (see the module docstring)."""
    require("matplotlib")
    require("openpyxl")
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ConfigError(f"every={every!r} is not allowed; it must be a whole number >= 1")
    built, analysis = analysed.built, analysed.analysis
    taken: set[str] = set()
    sheets = []
    for split, rows in built.dataset.items():
        title = sheet_title(built.config.name, split, taken)
        taken.add(title)
        sheets.append(Sheet(title, f"sample-{split}.csv", rows))
    names = [XLSX_FILE, *(sheet.csv_name for sheet in sheets), SWEEP_PNG, NEAREST_PNG, PAGE_FILE, SUMMARY_FILE]
    with OutputFolder(report_folder(out, getattr(built.config, "data_dir", None)), "out") as output:
        folder = output.path
        for name in names:
            output.claim(name)
        try:
            samples = write_samples(folder, sheets, every)
            figures = {
                SWEEP_PNG: sweep_png(analysis.tables, analysis.scope, analysis.shown),
                NEAREST_PNG: nearest_png(analysis.nearest, analysis.shown, analysis.nearest_from),
            }
            for name, data in figures.items():
                write_atomic(folder / name, data)
            page = render_page(
                analysis, built.base, figures[SWEEP_PNG], figures[NEAREST_PNG], [path.name for path in samples]
            )
            write_atomic(folder / PAGE_FILE, page.encode())
            summary = {**analysis.to_json(), "every": every, "samples": [path.name for path in samples]}
            write_atomic(folder / SUMMARY_FILE, json.dumps(summary, indent=1, ensure_ascii=False).encode())
        except CacheWriteError as error:
            cause = error.__cause__
            reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(error)
            raise CacheWriteError(
                f"cannot write the report into {folder}: {reason}. Free some space there, or choose another --out"
            ) from error
        for name in names:
            output.written(name)
        for stale in output.owned_names():
            if stale.startswith("sample-") and stale.endswith(".csv") and stale not in names:
                output.drop(stale)
    return ReportFiles(folder / PAGE_FILE, folder / SWEEP_PNG, folder / NEAREST_PNG, samples, folder / SUMMARY_FILE)
