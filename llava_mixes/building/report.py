"""Build reports: rejected rows with their reasons, per-group dedup statistics, and the statistics file's name.

The statistics follow the seed study's tables (rows, distinct images, similar images removed, images
kept) plus kept rows and rejected rows, so that for every group and in total
`rows + rejected rows = rows in` and `kept rows + removed rows = rows`; a decontaminated build's
`contaminated_rows` are counted apart: `rows in = kept + removed + contaminated + rejected`.
The tables are in `building.tables`; the checks on rows lost in `building.losses`.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow.compute as pc

from llava_mixes import schema
from llava_mixes.errors import LlavaMixesError
from llava_mixes.paths import check_file_name
from llava_mixes.plugin import DEDUP_MARK, dedup_config_name
from llava_mixes.schema import NO_GROUP, TEXT_ONLY_GROUP, Rejection
from llava_mixes.store import CacheRepair, write_atomic

logger = logging.getLogger(__name__)

REPORT_FILE = "llava_mixes_report.json"
REMOVAL_ALARM_SHARE = 0.30
"""The share of a group's rows whose removal, by dedup or by decontamination, raises an alarm (`removal_alarms`)."""
REMOVAL_ALARM_MIN_ROWS = 20
"""The rows a group must have before a step for that step's removals to raise an alarm: in a smaller group one or
two removals pass the share (1 of 3 rows is 33%) and say nothing about the threshold."""
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
"""Where a recipe source's rows went: `rows_in` is the sum of the others. A source's line also holds `requested`
(the rows its sampling asked, repeats included) and `repeats` (the extra copies of its kept rows): `train` holds
`kept + repeats` of its rows."""
RECIPE_REQUESTED = "requested"
RECIPE_REPEATS = "repeats"


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
        and (report.recipe is None or _recipe_record_typed(report.recipe))
    ):
        raise TypeError("a field does not have its type")
    return report


def _recipe_record_typed(recipe: dict[str, Any]) -> bool:
    """Whether a recipe record's per-source counts and per-task lines have their types (counts >= 0, shares None or
    numbers), so the tables that show them can trust them."""
    sources, tasks = recipe.get("sources", {}), recipe.get("tasks", {})
    if not isinstance(sources, dict) or not isinstance(tasks, dict):
        return False
    lines = [*sources.values(), *tasks.values()]
    if not all(isinstance(line, dict) for line in lines):
        return False
    counts = [value for line in sources.values() for value in line.values()]
    counts += [line.get(key) for line in tasks.values() for key in ("requested", "in_train")]
    shares = [line.get("share") for line in tasks.values()]
    return all(map(_is_count, counts)) and all(
        share is None or (isinstance(share, (int, float)) and not isinstance(share, bool)) for share in shares
    )


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
    """A recipe build's recipe: `name`, `digest`, `settings`, per source the counts of `RECIPE_COUNTS` (with
    `requested` and `repeats`), and per task (`recipe_tasks`) the requested rows and the rows in `train`."""

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


def dedup_group_stats(result: datasets.DatasetDict, rejected: list[Rejection]) -> list[GroupStats]:
    """Per-group statistics of a `deduplicate` result (see `group_stats`)."""
    return group_stats(result[schema.TRAIN_SPLIT], result[schema.REMOVED_SPLIT], rejected)


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


def recipe_tasks(
    shares: Mapping[str, float], requested: Mapping[str, int], in_train: Mapping[str, int]
) -> dict[str, dict[str, Any]]:
    """Per task label, in name order: its share (None where the recipe names none), the rows the sampling asked
    for (repeats included) and the rows in `train`."""
    tasks = sorted({*shares, *requested, *in_train})
    return {
        task: {"share": shares.get(task), "requested": requested.get(task, 0), "in_train": in_train.get(task, 0)}
        for task in tasks
    }


def recipe_accounted(report: BuildReport) -> bool:
    """Whether, for every source of a recipe build, rows in equal the sum of where they went, and the rows in
    `train` per task add up to the sources' kept rows and repeats."""
    recipe = report.recipe or {}
    sources = recipe.get("sources", {})
    if not sources or not all(c["rows_in"] == sum(c[key] for key in RECIPE_COUNTS[1:]) for c in sources.values()):
        return False
    if "tasks" not in recipe:
        return True
    train = sum(c["kept"] + c.get(RECIPE_REPEATS, 0) for c in sources.values())
    return train == sum(line["in_train"] for line in recipe["tasks"].values())


def removal_alarms(
    report: BuildReport, share: float = REMOVAL_ALARM_SHARE, min_rows: int = REMOVAL_ALARM_MIN_ROWS
) -> list[dict[str, Any]]:
    """Each group of at least `min_rows` rows that dedup or decontamination took more than `share` of the rows
    from: the step, the group, its rows before the step, the rows removed and the share, in group order (dedup
    first)."""
    alarms = []
    for stats in report.groups:
        rows = stats.kept_rows + stats.removed_rows
        if rows >= max(min_rows, 1) and report.dedup is not None and stats.removed_rows / rows > share:
            alarms.append(_alarm("dedup", stats.image_group, rows, stats.removed_rows))
    for group, counts in sorted(((report.decontamination or {}).get("groups") or {}).items()):
        if counts["rows"] >= max(min_rows, 1) and counts["contaminated"] / counts["rows"] > share:
            alarms.append(_alarm("decontamination", group, counts["rows"], counts["contaminated"]))
    return alarms


def _alarm(step: str, group: str, rows: int, removed: int) -> dict[str, Any]:
    return {"step": step, "image_group": group, "rows": rows, "removed": removed, "share": round(removed / rows, 4)}


def alarm_line(alarm: Mapping[str, Any]) -> str:
    """One line that says which step took how much of which group, and where to look."""
    return (
        f"{alarm['step']} removed {alarm['removed']:,} of {alarm['rows']:,} rows ({alarm['share']:.0%}) of the group "
        f"{alarm['image_group']!r}, more than {REMOVAL_ALARM_SHARE:.0%} (an alarm for groups of "
        f"{REMOVAL_ALARM_MIN_ROWS} rows or more); {GALLERY_HINT}"
    )
