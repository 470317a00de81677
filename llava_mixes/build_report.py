"""Build reports: rejected rows with their reasons, per-group dedup statistics, and their tables.

The statistics follow the seed study's tables (rows, distinct images, similar images removed, images
kept) plus kept rows and rejected rows, so that for every group and in total
`rows + rejected rows = rows in` and `kept rows + removed rows = rows`; a decontaminated build's
`contaminated_rows` are counted apart: `rows in = kept + removed + contaminated + rejected`.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow.compute as pc
from datasets.fingerprint import Hasher

from llava_mixes import schema
from llava_mixes.errors import BadRecordError, ConfigError, LlavaMixesError
from llava_mixes.paths import check_file_name
from llava_mixes.plugin import DEDUP_MARK, dedup_config_name
from llava_mixes.store import CacheRepair, write_atomic

logger = logging.getLogger(__name__)

REPORT_FILE = "llava_mixes_report.json"
REMOVAL_ALARM_SHARE = 0.30
"""The share of a group's rows whose removal, by dedup or by decontamination, raises an alarm (`removal_alarms`)."""
GALLERY_HINT = "see the removed pairs in the report's gallery: llava-mixes report CONFIG --data-dir DIR --out FOLDER"
PART_REPORTS = "reports"
"""The folder, inside a build, where each source's part report is kept while the build runs."""
RECIPE_COUNTS = (
    "rows_in",
    "rejected",
    "not_sampled",
    "duplicate_rows",
    "contaminated",
    "not_embedded",
    "removed",
    "kept",
)
"""Where a recipe source's rows went: `rows_in` is the sum of the others."""
TEXT_ONLY_GROUP = "(text only)"
NO_GROUP = "(no image group)"


class ReportError(LlavaMixesError, ValueError):
    """A build report file cannot be read as one; the message names the file."""


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _checked(report: BuildReport) -> BuildReport:
    """`report` when every field read from a file has its type (counts are whole numbers >= 0); else TypeError."""
    texts = [report.config_name, report.version, *report.sources]
    texts += [value for item in report.rejected for value in (item.source, item.reason, item.detail)]
    optional = [value for item in report.rejected for value in (item.source_id, item.image_group, item.image_path)]
    counts = [report.rows_in, *(item.row_index for item in report.rejected)]
    counts += [
        getattr(group, name)
        for group in report.groups
        for name in GroupStats.__dataclass_fields__
        if name != "image_group"
    ]
    objects = (report.dedup, report.embedding, report.decontamination, report.recipe)
    if not (
        all(isinstance(value, str) for value in texts + [group.image_group for group in report.groups])
        and all(value is None or isinstance(value, str) for value in optional)
        and all(_is_count(value) for value in counts)
        and all(value is None or isinstance(value, dict) for value in objects)
        and (report.duplicate_rows is None or _is_count(report.duplicate_rows))
    ):
        raise TypeError("a field does not have its type")
    return report


@dataclass(frozen=True)
class Rejection:
    """One rejected input row and why."""

    source: str
    row_index: int
    source_id: str | None
    image_group: str | None
    image_path: str | None
    reason: str
    detail: str


@dataclass
class GroupStats:
    """One line of the statistics table."""

    image_group: str
    rows: int = 0
    images: int = 0
    removed_images: int = 0
    kept_images: int = 0
    kept_rows: int = 0
    removed_rows: int = 0
    rejected_rows: int = 0


@dataclass
class BuildReport:
    """Everything a build did to its input: counts, rejections, dedup statistics when it deduplicated, and the
    damaged cache shards it found and set aside (`cache_repairs`)."""

    config_name: str
    version: str
    sources: list[str]
    rows_in: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    groups: list[GroupStats] = field(default_factory=list)
    dedup: dict[str, Any] | None = None
    embedding: dict[str, Any] | None = None
    cache_repairs: list[CacheRepair] = field(default_factory=list)
    decontamination: dict[str, Any] | None = None
    duplicate_rows: int | None = None
    """Rows that repeat an earlier row's picture and conversation text (`dedup.rows`); None where not counted."""
    recipe: dict[str, Any] | None = None
    """A recipe build's recipe: `name`, `digest`, `settings` and per source the counts of `RECIPE_COUNTS`."""

    @property
    def rejected_rows(self) -> int:
        return len(self.rejected)

    @property
    def contaminated_rows(self) -> int:
        """Rows moved to the `contaminated` split (their picture copies a benchmark's); 0 without decontamination."""
        return int(self.decontamination["rows_removed"]) if self.decontamination else 0

    def reject_reasons(self) -> dict[str, int]:
        return dict(Counter(rejection.reason for rejection in self.rejected).most_common())

    def total(self) -> GroupStats:
        """The sum of every group's line."""
        total = GroupStats("total")
        for group in self.groups:
            for name in ("rows", "images", "removed_images", "kept_images", "kept_rows", "removed_rows"):
                setattr(total, name, getattr(total, name) + getattr(group, name))
            total.rejected_rows += group.rejected_rows
        return total

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["removal_alarms"] = removal_alarms(self)
        data["rejected_rows"] = self.rejected_rows
        data["reject_reasons"] = self.reject_reasons()
        data["total"] = asdict(self.total())
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BuildReport:
        return cls(
            config_name=data["config_name"],
            version=data["version"],
            sources=list(data["sources"]),
            rows_in=data["rows_in"],
            rejected=[Rejection(**item) for item in data["rejected"]],
            groups=[GroupStats(**item) for item in data["groups"]],
            dedup=data.get("dedup"),
            embedding=data.get("embedding"),
            cache_repairs=[CacheRepair(**item) for item in data.get("cache_repairs", [])],
            decontamination=data.get("decontamination"),
            duplicate_rows=data.get("duplicate_rows"),
            recipe=data.get("recipe"),
        )

    def save(self, path: Path) -> None:
        """Write the report as JSON; writing a build's own report (`REPORT_FILE`) logs its removal alarms."""
        data = self.to_json()
        if Path(path).name == REPORT_FILE:
            for alarm in data["removal_alarms"]:
                logger.warning(alarm_line(alarm))
        write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False).encode())

    @classmethod
    def load(cls, path: Path) -> BuildReport:
        """The report saved at `path`; `ReportError` naming the file when it cannot be read as one."""
        try:
            return _checked(cls.from_json(json.loads(Path(path).read_bytes())))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise ReportError(f"the build report {path} cannot be read ({type(error).__name__}: {error})") from error


def _group_counts(dataset: datasets.Dataset | None) -> dict[str, tuple[int, int]]:
    """Rows and distinct image paths per group line of `dataset`'s rows: a row without an image
    counts under `TEXT_ONLY_GROUP`, an image without a group under `NO_GROUP`."""
    if dataset is None or len(dataset) == 0:
        return {}
    table = dataset.data.table.select([schema.IMAGE_GROUP, schema.IMAGE_PATH])
    if dataset._indices is not None:
        # One take over the selected rows: `Dataset.__getitem__` would gather them one row at a time.
        table = table.take(dataset._indices.column(0))
    paths, groups = table.column(schema.IMAGE_PATH).combine_chunks(), table.column(schema.IMAGE_GROUP).combine_chunks()
    names = pc.if_else(pc.is_null(paths), TEXT_ONLY_GROUP, pc.if_else(pc.is_null(groups), NO_GROUP, groups))
    # Dictionary codes and NumPy counting: Arrow's group-by costs a third of a second on its first call.
    name_codes = pc.dictionary_encode(names)
    name_index = name_codes.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    path_codes = pc.dictionary_encode(paths)
    path_index = path_codes.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    count = len(name_codes.dictionary)
    rows = np.bincount(name_index, minlength=count)
    with_image = path_index >= 0
    pairs = np.unique(name_index[with_image] * len(path_codes.dictionary) + path_index[with_image])
    images = np.bincount(pairs // max(len(path_codes.dictionary), 1), minlength=count)
    return {name: (int(rows[code]), int(images[code])) for code, name in enumerate(name_codes.dictionary.to_pylist())}


def group_stats(
    kept: datasets.Dataset, removed: datasets.Dataset | None, rejected: Iterable[Rejection]
) -> list[GroupStats]:
    """Per-group lines from the kept rows, the removed rows (None: no dedup) and the rejections."""
    groups: dict[str, GroupStats] = {}
    for name, (rows, images) in _group_counts(kept).items():
        groups[name] = GroupStats(name, rows=rows, kept_rows=rows, kept_images=images)
    for name, (rows, images) in _group_counts(removed).items():
        stats = groups.setdefault(name, GroupStats(name))
        stats.rows += rows
        stats.removed_rows = rows
        stats.removed_images = images
    for rejection in rejected:
        groups.setdefault(rejection.image_group or NO_GROUP, GroupStats(rejection.image_group or NO_GROUP))
        groups[rejection.image_group or NO_GROUP].rejected_rows += 1
    for stats in groups.values():
        stats.images = stats.kept_images + stats.removed_images
    return sorted(groups.values(), key=lambda stats: (stats.image_group.startswith("("), stats.image_group))


COLUMNS = (
    ("image_group", "group"),
    ("rows", "rows"),
    ("images", "images"),
    ("removed_images", "similar (removed) images"),
    ("kept_images", "kept images"),
    ("kept_rows", "kept rows"),
    ("rejected_rows", "rejected rows"),
)


def format_table(report: BuildReport) -> str:
    """The statistics as a Markdown table, with a total line, in the shape of the seed study's tables."""
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    for stats in [*report.groups, report.total()]:
        cells = [stats.image_group] + [f"{getattr(stats, name):,}" for name, _ in COLUMNS[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def dedup_group_stats(result: datasets.DatasetDict, rejected: list[Rejection]) -> list[GroupStats]:
    """Per-group statistics of a `deduplicate` result (see `group_stats`)."""
    return group_stats(result[schema.TRAIN_SPLIT], result[schema.REMOVED_SPLIT], rejected)


def reject_unembeddable(
    dataset: datasets.Dataset, failed: Mapping[str, str], on_bad_records: str = "skip"
) -> tuple[datasets.Dataset, list[Rejection]]:
    """`dataset` without the rows whose image (by `image_sha256`) is in `failed` (no usable vector), and a
    rejection per such row (reason `embedding_failed`, the detail says why). Under `on_bad_records="error"`
    the first such row raises `BadRecordError` instead."""
    if not failed:
        return dataset, []
    rejected: list[Rejection] = []
    columns = [schema.ID, schema.SOURCE, schema.SOURCE_ID, schema.IMAGE_GROUP, schema.IMAGE_PATH, schema.IMAGE_SHA256]
    for table in dataset.select_columns(columns).with_format("arrow").iter(batch_size=65536):
        for row in table.to_pylist():
            why = failed.get(row[schema.IMAGE_SHA256]) if row[schema.IMAGE_SHA256] is not None else None
            if why is None:
                continue
            source = row[schema.SOURCE]
            rejection = Rejection(
                source,
                int(row[schema.ID][len(source) + 1 :]),
                row[schema.SOURCE_ID],
                row[schema.IMAGE_GROUP],
                row[schema.IMAGE_PATH],
                schema.EMBEDDING_FAILED,
                f"{row[schema.IMAGE_PATH]}: {why}",
            )
            if on_bad_records == "error":
                raise BadRecordError(
                    f"{source} row {rejection.row_index} (id {rejection.source_id!r}) rejected: {rejection.reason}: "
                    f"{rejection.detail}. Pass on_bad_records='skip' to reject such rows and list them in the build "
                    "report."
                )
            rejected.append(rejection)
    kept = dataset.filter(
        _has_vector,
        batched=True,
        input_columns=[schema.IMAGE_SHA256],
        fn_kwargs={"unusable": set(failed)},
        new_fingerprint=Hasher.hash((dataset._fingerprint, "reject_unembeddable", sorted(failed.items()))),
        desc="Rejecting images without a vector",
    )
    return kept, rejected


def _has_vector(hashes: list[str | None], unusable: set[str]) -> list[bool]:
    """`Dataset.filter` function: the rows without an image, or whose image is not in `unusable`."""
    return [sha is None or sha not in unusable for sha in hashes]


DEFAULT_MAX_REJECTED = 0.0
"""The share of a build's rows in that may be lost with missing image folders, unless the user allows more: none,
so that a build missing a whole image folder fails. Rows rejected for other reasons (a missing or broken image in a
folder that is there, a malformed record) never fail a build; the report lists them."""
LOST_FOLDER_ROWS = 2
"""A missing folder counts as lost when at least this many rows point into it: a folder that one row points into is
that row's missing image, which the report lists like any other."""


class RowsLostError(LlavaMixesError, ValueError):
    """Image folders that rows point into are missing, and they take more rows than `max_rejected` allows."""


def check_max_rejected(value: object) -> float:
    """`value` as a share in [0, 1]; `ConfigError` naming it otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"max_rejected={value!r} is not allowed; give a share of the rows in, from 0 to 1")
    return float(value)


def _lost_folder(data_dir: Path, prefixes: Sequence[str], path: str) -> str | None:
    """The missing folder, relative to `data_dir`, that takes the image at `path` (as written) with it, or None.
    Image roots are `data_dir` joined with each prefix; where no root is there, the first is missing; else the
    path's top folder is missing when it is under none of the roots that are there."""
    roots = [prefix for prefix in prefixes if (data_dir / prefix).is_dir()]
    parts = Path(path).parts
    if not roots:
        return Path(prefixes[0]).as_posix()
    if len(parts) < 2 or any((data_dir / root / parts[0]).is_dir() for root in roots):
        return None
    return Path(roots[0], parts[0]).as_posix()


def missing_image_folders(
    rejected: Iterable[Rejection], data_dir: Path, prefixes: Mapping[str, Sequence[str]]
) -> dict[str, int]:
    """The image folders under `data_dir` that rows point into and that are missing (see `_lost_folder`; `prefixes`:
    each source name's image prefixes), each with the rows it takes, where at least `LOST_FOLDER_ROWS` do."""
    lost: Counter[str] = Counter()
    seen: dict[tuple[str, str], str | None] = {}
    for rejection in rejected:
        path = rejection.image_path
        if rejection.reason != schema.MISSING_IMAGE or not path or os.path.isabs(path) or ".." in Path(path).parts:
            continue
        key = (rejection.source, Path(path).parts[0])
        if key not in seen:
            seen[key] = _lost_folder(data_dir, tuple(prefixes.get(rejection.source, ())) or ("",), path)
        if seen[key] is not None:
            lost[seen[key]] += 1
    return {folder: rows for folder, rows in sorted(lost.items()) if rows >= LOST_FOLDER_ROWS}


def check_lost_rows(
    report: BuildReport, data_dir: Path, prefixes: Mapping[str, Sequence[str]], max_rejected: float
) -> None:
    """Raise `RowsLostError` when the rows of `report` lost with missing image folders (`missing_image_folders`) are
    more than `max_rejected` of its rows in, naming every folder; log them as a WARNING when they are allowed."""
    missing = missing_image_folders(report.rejected, data_dir, prefixes)
    lost = sum(missing.values())
    if not lost:
        return
    rows_in = max(report.rows_in, 1)
    folders = ", ".join(f"{folder}/ ({rows:,} rows)" for folder, rows in missing.items())
    if lost <= max_rejected * report.rows_in:
        logger.warning(
            "%s: image folders missing under %s (allowed by max_rejected=%g): %s",
            report.config_name,
            data_dir,
            max_rejected,
            folders,
        )
        return
    allowed = math.ceil(lost / rows_in * 1000) / 1000
    raise RowsLostError(
        f"{report.config_name}: image folders missing under {data_dir}: {folders}. They take {lost:,} of "
        f"{report.rows_in:,} rows ({lost / rows_in:.1%}) with them ({report.rejected_rows:,} rows, "
        f"{report.rejected_rows / rows_in:.1%}, rejected in all). Put the folders there, or allow the loss with "
        f"max_rejected={allowed:g} (--max-rejected {allowed:g}); max_rejected is {max_rejected:g} now"
    )


def plain_report(
    name: str, version: str, sources: tuple[str, ...], part_dir: Path, rows: datasets.Dataset
) -> BuildReport:
    """The report of a plain build: its sources' part reports (saved under `part_dir`) and its rows' groups."""
    report = BuildReport(name, version, list(sources))
    rejected: list[Rejection] = []
    for source in sources:
        part = BuildReport.load(part_dir / f"{source}.json")
        report.rows_in += part.rows_in
        rejected.extend(part.rejected)
    report.rejected = rejected
    report.groups = group_stats(rows, None, rejected)
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


STATS_SUFFIX = ".stats.json"


def stats_file_name(report: BuildReport) -> str:
    """The one name of a build's statistics file, from what the build did: `recipe-<recipe name>` for a recipe,
    else the plain config's name, with `-dedup-<threshold>` where it removed near-duplicates and `-decontaminated`
    where it took benchmark pictures out; `PathEscapeError` when the name is no plain file name."""
    if report.recipe:
        name = f"recipe-{report.recipe.get('name')}"
    else:
        name = report.config_name.split(DEDUP_MARK)[0]
        if report.dedup:
            name = dedup_config_name(name, float(report.dedup["threshold"]))
        if report.decontamination:
            name += "-decontaminated"
    return check_file_name(f"{name}{STATS_SUFFIX}", "the statistics file name")


def recipe_accounted(report: BuildReport) -> bool:
    """Whether, for every source of a recipe build, rows in equal the sum of where they went."""
    sources = (report.recipe or {}).get("sources", {})
    return bool(sources) and all(c["rows_in"] == sum(c[key] for key in RECIPE_COUNTS[1:]) for c in sources.values())


def format_recipe_table(report: BuildReport) -> str:
    """A recipe build's per-source counts (`RECIPE_COUNTS`) as a Markdown table, with a total line."""
    sources: dict[str, dict[str, int]] = (report.recipe or {}).get("sources", {})
    heads = ["source", *(key.replace("_", " ") for key in RECIPE_COUNTS)]
    lines = ["| " + " | ".join(heads) + " |", "|" + " --- |" * len(heads)]
    total = dict.fromkeys(RECIPE_COUNTS, 0)
    for config, counts in sources.items():
        lines.append("| " + " | ".join([config, *(f"{counts[key]:,}" for key in RECIPE_COUNTS)]) + " |")
        for key in RECIPE_COUNTS:
            total[key] += counts[key]
    lines.append("| " + " | ".join(["total", *(f"{total[key]:,}" for key in RECIPE_COUNTS)]) + " |")
    return "\n".join(lines)


def format_benchmark_table(decontamination: Mapping[str, Any]) -> str:
    """A decontamination's per-benchmark lines (`BuildReport.decontamination`) as a Markdown table."""
    lines = [
        "| benchmark | reference images | reference images hit | training rows removed | not found | not embedded |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for stats in decontamination["benchmarks"]:
        lines.append(
            f"| {stats['benchmark']} | {stats['reference_images']:,} | {stats['images_hit']:,} | "
            f"{stats['rows_removed']:,} | {stats['not_found']:,} | {stats['not_embedded']:,} |"
        )
    return "\n".join(lines)


def removal_alarms(report: BuildReport, share: float = REMOVAL_ALARM_SHARE) -> list[dict[str, Any]]:
    """Each group that dedup or decontamination took more than `share` of the rows from: the step, the group,
    its rows before the step, the rows removed and the share, in group order (dedup first)."""
    alarms = []
    for stats in report.groups:
        rows = stats.kept_rows + stats.removed_rows
        if rows and report.dedup is not None and stats.removed_rows / rows > share:
            alarms.append(_alarm("dedup", stats.image_group, rows, stats.removed_rows))
    for group, counts in sorted(((report.decontamination or {}).get("groups") or {}).items()):
        if counts["rows"] and counts["contaminated"] / counts["rows"] > share:
            alarms.append(_alarm("decontamination", group, counts["rows"], counts["contaminated"]))
    return alarms


def _alarm(step: str, group: str, rows: int, removed: int) -> dict[str, Any]:
    return {"step": step, "image_group": group, "rows": rows, "removed": removed, "share": round(removed / rows, 4)}


def alarm_line(alarm: Mapping[str, Any]) -> str:
    """One line that says which step took how much of which group, and where to look."""
    return (
        f"{alarm['step']} removed {alarm['removed']:,} of {alarm['rows']:,} rows ({alarm['share']:.0%}) of the group "
        f"{alarm['image_group']!r}, more than {REMOVAL_ALARM_SHARE:.0%}; {GALLERY_HINT}"
    )
