"""Whether a cached build still matches its inputs on disk, and whether its folder still holds what the build
wrote; the builder rebuilds one that does not.

Every build is compared through one check (`stale_reason` over a typed `BuildPlan`): its steps against the ones it
recorded (`building.steps`: each step's code version, settings and input digests: the base builds it was made from,
the weight files of the embedders it used, the benchmark pictures it was checked against), after its base builds
(a recipe has one per source), which must be built and fresh themselves; a plain build then against its record of
the files it read (`sources.inputs`: annotation files, image files, paths looked for in vain, unreadable images).

Every build also writes a build record (`BUILD_RECORD`, last, before `datasets` writes `dataset_info.json`): the
size and SHA-256 of every file it wrote (its Arrow files, its report, its records) and each split's row counts,
with a SHA-256 of its own content (a record edited by hand reads as no record).
- `damage_reason` is the check made on every load. It costs a few `stat` calls and reads only the small JSON
  files: a recorded file that is gone, not a regular file or of another size, a JSON file whose SHA-256 moved, or
  split sizes in `dataset_info.json` that are not the build's. It does not read the Arrow files, so it misses an
  Arrow file rewritten at the same size (flipped bits, a byte replaced): `verify_build` finds those.
- `verify_build` hashes every recorded file (what `llava-mixes verify` runs).
- `build_digest` names a build's content: `datasets` keys the results it caches beside a build
  (`cache-*.arrow`, the results of `map`, `select`, `cast` on its rows) by the dataset's fingerprint, which the
  builder derives from it, so a result computed from an earlier build is never served for a rebuilt one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from llava_mixes.building.report import REPORT_FILE
from llava_mixes.building.steps import Step, changed
from llava_mixes.errors import LlavaMixesError
from llava_mixes.paths import check_file_name
from llava_mixes.sources import inputs as build_inputs
from llava_mixes.store import write_atomic

logger = logging.getLogger(__name__)

BUILD_RECORD = "llava_mixes_build.json"
BUILD_RECORD_FORMAT = 1
BUILD_LOCK_SUFFIX = "_llava_mixes.lock"
"""The lock beside a build folder, held while one process checks and (re)builds it."""
DAMAGED_SUFFIX = ".damaged"
CONTENT_CHECKED_SUFFIX = ".json"
"""Recorded files whose content (SHA-256) the load check compares too: the small JSON records and the report."""
_SHARD = re.compile(r"^(?P<split>[A-Za-z0-9_.]+?)(?:-\d{5}-of-\d{5})?\.arrow$")


@dataclass(frozen=True)
class RecordedFile:
    """One file of a build, as the build wrote it."""

    size: int
    sha256: str


@dataclass(frozen=True)
class BuildRecord:
    """What a build wrote (see the module docstring): its files, and each split's rows and shard lengths."""

    files: dict[str, RecordedFile]
    splits: dict[str, tuple[int, tuple[int, ...] | None]]

    def digest(self) -> str:
        """A SHA-256 of the record: it changes whenever any recorded file's content does."""
        files = {name: [entry.size, entry.sha256] for name, entry in sorted(self.files.items())}
        return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def is_built(folder: Path) -> bool:
    """Whether `folder` holds a finished build."""
    return (folder / datasets.config.DATASET_INFO_FILENAME).exists()


def set_aside_unreadable_info(folder: Path) -> None:
    """Rename a `dataset_info.json` in `folder` that `datasets` cannot read (cut short, edited into another shape)
    to `dataset_info.json.damaged`, with a WARNING: the folder then counts as not built, and is built again."""
    path = folder / datasets.config.DATASET_INFO_FILENAME
    if not path.is_file():
        return
    try:
        datasets.DatasetInfo.from_directory(str(folder))
    except Exception as error:  # noqa: BLE001 - whatever datasets raises on a damaged file means the same here
        path.replace(path.with_name(path.name + DAMAGED_SUFFIX))
        logger.warning("%s cannot be read (%s: %s); the build is made again", path, type(error).__name__, error)


def clear_unfinished(folder: Path) -> None:
    """Empty `folder`, the temporary folder a build writes into, of what a killed build left there (a build that
    ends well renames it into place, so anything in it at the start of a build is an interrupted build's)."""
    for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
        logger.info("removing %s, left by a build that did not finish", entry)
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _split_entry(value: Any) -> tuple[int, tuple[int, ...] | None]:
    if not isinstance(value, dict):
        raise ValueError("a split is not an object")
    rows, shards = value.get("num_examples"), value.get("shard_lengths")
    if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
        raise ValueError(f"num_examples={rows!r} is not a count")
    if shards is None:
        return rows, None
    if not isinstance(shards, list) or not all(isinstance(n, int) and not isinstance(n, bool) for n in shards):
        raise ValueError(f"shard_lengths={shards!r} is not a list of counts")
    return rows, tuple(shards)


def _split_table(splits: Any) -> dict[str, tuple[int, tuple[int, ...] | None]]:
    if not isinstance(splits, dict):
        raise ValueError("splits is not an object")
    return {str(name): _split_entry(value) for name, value in splits.items()}


def _checksum(files: Any, splits: Any) -> str:
    """The SHA-256 a build record carries of its own content (its files and splits, as JSON)."""
    return hashlib.sha256(json.dumps([files, splits], sort_keys=True).encode()).hexdigest()


def parse_build_record(data: Any) -> BuildRecord:
    """A build record from its JSON value; ValueError when it is not one (of this format, with its checksum)."""
    if not isinstance(data, dict) or data.get("format") != BUILD_RECORD_FORMAT:
        raise ValueError(f"not a build record of format {BUILD_RECORD_FORMAT}")
    if data.get("sha256") != _checksum(data.get("files"), data.get("splits")):
        raise ValueError("the record does not match its own checksum")
    files = data.get("files")
    if not isinstance(files, dict):
        raise ValueError("files is not an object")
    recorded = {}
    for name, entry in files.items():
        try:
            check_file_name(name, "a recorded file")
        except LlavaMixesError as error:
            raise ValueError(str(error)) from None
        size = entry.get("size") if isinstance(entry, dict) else None
        sha = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError(f"{name}: size={size!r} is not a size")
        if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise ValueError(f"{name}: sha256={sha!r} is not a SHA-256")
        recorded[name] = RecordedFile(size, sha)
    return BuildRecord(recorded, _split_table(data.get("splits")))


def read_build_record(folder: Path) -> BuildRecord | None:
    """The build record in `folder`, or None when it is absent, unreadable or not a build record."""
    try:
        return parse_build_record(json.loads((folder / BUILD_RECORD).read_bytes()))
    except (OSError, ValueError):
        return None


def build_digest(folder: Path) -> str | None:
    """The digest of the build in `folder` (see `BuildRecord.digest`), or None when it has no record."""
    record = read_build_record(folder)
    return None if record is None else record.digest()


def written_files(folder: Path, dataset_name: str, splits: Iterable[str]) -> list[str]:
    """The files a build wrote in `folder` that its rows and records live in: each split's Arrow files and the
    project's own records (the report, the records of inputs and references), never `datasets`' caches."""
    names = set(splits)
    found = []
    for name in sorted(os.listdir(folder)):
        if name.startswith(f"{dataset_name}-"):
            match = _SHARD.fullmatch(name[len(dataset_name) + 1 :])
            if match and match.group("split") in names:
                found.append(name)
        elif name.startswith("llava_mixes_") and name != BUILD_RECORD and (folder / name).is_file():
            found.append(name)
    return found


def write_build_record(folder: Path, dataset_name: str, splits: datasets.SplitDict) -> BuildRecord:
    """Record, in `folder`, the size and SHA-256 of every file the build wrote and each split's counts."""
    files = {
        name: RecordedFile((folder / name).stat().st_size, build_inputs.sha256_of(folder / name))
        for name in written_files(folder, dataset_name, splits)
    }
    table = {
        name: {"num_examples": info.num_examples, "shard_lengths": info.shard_lengths} for name, info in splits.items()
    }
    listed = {name: {"size": entry.size, "sha256": entry.sha256} for name, entry in files.items()}
    data = {"format": BUILD_RECORD_FORMAT, "files": listed, "splits": table, "sha256": _checksum(listed, table)}
    write_atomic(folder / BUILD_RECORD, json.dumps(data, indent=1, sort_keys=True).encode())
    return BuildRecord(files, _split_table(table))


def _file_problem(folder: Path, name: str, entry: RecordedFile, full: bool) -> str | None:
    path = folder / name
    try:
        found = os.stat(path)
    except OSError as error:
        return f"{name} is gone ({error.strerror})" if isinstance(error, FileNotFoundError) else f"{name}: {error}"
    if not stat.S_ISREG(found.st_mode):
        return f"{name} is not a regular file"
    if found.st_size != entry.size:
        return f"{name} is {found.st_size} bytes; the build wrote {entry.size}"
    if full or name.endswith(CONTENT_CHECKED_SUFFIX):
        try:
            if build_inputs.sha256_of(path) != entry.sha256:
                return f"{name} does not match its SHA-256 from the build"
        except OSError as error:
            return f"{name} cannot be read ({error.strerror})"
    return None


def _info_problem(folder: Path, record: BuildRecord) -> str | None:
    name = datasets.config.DATASET_INFO_FILENAME
    try:
        info = json.loads((folder / name).read_bytes())
        splits = _split_table(info.get("splits") if isinstance(info, dict) else None)
    except OSError as error:
        return f"{name} cannot be read ({error.strerror})"
    except ValueError as error:
        return f"{name} is damaged ({error})"
    if splits != record.splits:
        return f"the splits in {name} ({splits}) are not the build's ({record.splits})"
    return None


def _incomplete(record: BuildRecord) -> str | None:
    """Why `record` cannot describe a whole build (no report, or fewer Arrow files than a split's rows need)."""
    if REPORT_FILE not in record.files:
        return f"its build record lists no {REPORT_FILE}"
    for split, (rows, shards) in sorted(record.splits.items()):
        matches = [_SHARD.fullmatch(name.partition("-")[2]) for name in record.files if "-" in name]
        found = sum(1 for match in matches if match and match.group("split") == split)
        if found < (len(shards) if shards else 1 if rows else 0):
            return f"its build record lists {found} Arrow file(s) for the split {split}"
    return None


def folder_problems(folder: Path, full: bool = False) -> list[str]:
    """What is wrong with the build in `folder`, one line per file: sizes and the JSON files' content against the
    build record, and the split sizes in `dataset_info.json`; with `full`, every recorded file's SHA-256 too."""
    record = read_build_record(folder)
    if record is None:
        state = "is damaged" if (folder / BUILD_RECORD).exists() else "is missing"
        return [f"its build record {BUILD_RECORD} {state}"]
    problems = [_incomplete(record)]
    problems += [_file_problem(folder, name, entry, full) for name, entry in sorted(record.files.items())]
    problems.append(_info_problem(folder, record))
    return [problem for problem in problems if problem is not None]


def damage_reason(folder: Path) -> str | None:
    """Why the build in `folder` cannot be served as it is (the cheap check of the module docstring), or None."""
    problems = folder_problems(folder)
    return f"its folder is damaged: {'; '.join(problems)}" if problems else None


def verify_build(folder: Path) -> list[str]:
    """Every problem with the build in `folder`, every recorded file hashed in full; empty when it is whole."""
    info = datasets.config.DATASET_INFO_FILENAME
    if (folder / f"{info}{DAMAGED_SUFFIX}").exists() and not is_built(folder):
        return [f"{info} was damaged and is set aside; the next build makes the folder again"]
    if not is_built(folder):
        return ["it holds no finished build"]
    return folder_problems(folder, full=True)


@dataclass(frozen=True)
class BuildPlan:
    """What the freshness check needs of one build: its config's name, its folder, its steps as they would run now
    (`building.steps.Step`), the plans of the plain builds it is made from, and for a plain build its dynamic inputs:
    the annotation files it would read now (the images it read are in its record of inputs, `sources.inputs`)."""

    name: str
    folder: Path
    steps: Callable[[], list[Step]]
    bases: tuple[BuildPlan, ...] = ()
    annotation_files: Callable[[], list[Path]] | None = None


def stale_reason(plan: BuildPlan) -> str | None:
    """Why the build of `plan` no longer matches its inputs on disk, or None when it does: its bases first (each
    built and fresh itself), then its steps against those it recorded (`steps.changed`: code versions, settings,
    the digests of its inputs), then a plain build's record of the files it read."""
    for base in plan.bases:
        if not is_built(base.folder):
            return f"its base {base.name} is not built"
        reason = stale_reason(base)
        if reason is not None:
            return f"its base {base.name} is stale: {reason}"
    reason = changed(plan.folder, plan.steps())
    if reason is not None or plan.annotation_files is None:
        return reason
    try:
        files = plan.annotation_files()
    except LlavaMixesError as error:
        return f"its inputs cannot be located ({error})"
    return build_inputs.stale_reason(plan.folder, files)
