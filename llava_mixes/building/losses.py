"""Rows a build loses: rows whose picture has no usable vector (rejected, or the build stops), and rows lost with
missing image folders, which fail a build beyond the share `max_rejected` allows."""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import datasets
from datasets.fingerprint import Hasher

from llava_mixes import schema
from llava_mixes.building.report import BuildReport
from llava_mixes.errors import BadRecordError, ConfigError, LlavaMixesError
from llava_mixes.schema import Rejection

logger = logging.getLogger(__name__)


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
