"""Where a benchmark's pictures are, in the layouts `decontam.references` reads (image folders, LLaVA's eval
layout, question files, TSVs, saved datasets), found before any picture is read: a `Planned` per benchmark.

A benchmark's folder is untrusted: it is walked with `paths.walk_files`, and every name found in it (a picture a
question names, a split or data file of a saved dataset) is resolved with `paths.contained`, so nothing outside
it is planned. Each entry left out is noted as `name (why)`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from llava_mixes.decontam.reference_files import check_saved_folder, question_names
from llava_mixes.errors import ConfigError, PathEscapeError
from llava_mixes.paths import Skipped, contained, walk_files

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")
QUESTION_SUFFIX = ".jsonl"
TSV_SUFFIX = ".tsv"
SAVED_MARKERS = ("state.json", "dataset_dict.json")


def short(text: str, limit: int = 160) -> str:
    """`text`, cut to `limit` characters with its length noted: a message never grows with the input."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def exists(path: Path) -> bool:
    """Whether anything (a dangling link too) is at `path`; False for a path the system cannot take."""
    return os.path.lexists(path)


@dataclass
class Planned:
    """One benchmark of a reference path before any picture is read: its folder, the pictures (id, file), TSVs
    and saved dataset to read, every file the result depends on, and what is already known to be left out."""

    name: str
    root: Path
    pictures: list[tuple[str, Path]] = field(default_factory=list)
    tsvs: list[Path] = field(default_factory=list)
    saved: Path | None = None
    inputs: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def _is_picture(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def _walk(root: Path, keep: Callable[[str], bool], missing: list[str]) -> list[Path]:
    """`paths.walk_files(root)`, each entry it skips noted in `missing` as `relative path (why)`."""

    def skipped(entry: Skipped) -> None:
        where = entry.path.relative_to(root).as_posix() if entry.path.is_relative_to(root) else str(entry.path)
        missing.append(f"{where} ({entry.reason})")

    return list(walk_files(root, keep, skipped))


def _entries(folder: Path) -> tuple[list[tuple[str, Path]], list[tuple[str, Path]], list[tuple[str, str]]]:
    """The files and the folders directly in `folder`, as (entry name, resolved path inside it), sorted; and the
    entries left out (a link that leads out, dangles or loops; neither a file nor a folder) with why."""
    try:
        names = sorted(os.listdir(folder))
    except OSError as error:
        raise ConfigError(
            f"reference folder {str(folder)!r} cannot be listed: {os.strerror(error.errno or 0)}"
        ) from None
    files, folders, skipped = [], [], []
    for name in names:
        try:
            target = contained(folder, name, "entry")
        except PathEscapeError as error:
            skipped.append((name, short(str(error))))
            continue
        if target.is_dir():
            folders.append((name, target))
        elif target.is_file():
            files.append((name, target))
        else:
            skipped.append((name, "not a regular file"))
    return files, folders, skipped


def _benchmark_files(files: list[tuple[str, Path]]) -> tuple[list[Path], list[Path]]:
    return (
        [path for name, path in files if name.endswith(QUESTION_SUFFIX)],
        [path for name, path in files if name.endswith(TSV_SUFFIX)],
    )


def _resolve(folder: Path, written: str, by_name: dict[str, list[Path]]) -> tuple[Path | None, str]:
    """The picture a question names: `written` inside `folder` (`paths.contained`), else the one picture of
    that file name below it; or None and why (not found, ambiguous, or leads out, which is never read)."""
    try:
        path = contained(folder, written, "picture")
    except PathEscapeError as error:
        if exists(folder / written):
            return None, short(str(error))
    else:
        if path.is_file():
            return path, ""
    candidates = by_name.get(Path(written).name, [])
    ending = [path for path in candidates if path.as_posix().endswith("/" + Path(written).as_posix())]
    if len(ending) == 1:
        return ending[0], ""
    if len(candidates) == 1:
        return candidates[0], ""
    return None, f"{len(candidates)} pictures of that name" if candidates else "not found"


def _plan_images(name: str, folder: Path) -> Planned:
    plan = Planned(name, folder)
    pictures = _walk(folder, _is_picture, plan.missing)
    plan.pictures = [(path.relative_to(folder).as_posix(), path) for path in pictures]
    plan.inputs = pictures
    return plan


def _plan_benchmark(name: str, folder: Path, questions: list[Path], tsvs: list[Path], missing: list[str]) -> Planned:
    plan = Planned(name, folder, tsvs=tsvs, inputs=[*questions, *tsvs], missing=missing)
    if not questions:
        return plan
    by_name: dict[str, list[Path]] = {}
    for path in _walk(folder, _is_picture, plan.missing):
        by_name.setdefault(path.name, []).append(path)
    chosen: dict[Path, str] = {}
    for file in questions:
        names, problems = question_names(file)
        plan.missing += problems
        for written in names:
            path, why = _resolve(folder, written, by_name)
            if path is None:
                plan.missing.append(f"{short(repr(written), 120)} ({why})")
            else:
                chosen.setdefault(path, path.relative_to(folder).as_posix())
    plan.pictures = [(ref_id, path) for path, ref_id in chosen.items()]
    plan.inputs += list(chosen)
    return plan


def _plan_saved(name: str, folder: Path) -> Planned:
    check_saved_folder(folder)
    plan = Planned(name, folder, saved=folder)
    plan.inputs = _walk(folder, lambda _: True, plan.missing)
    return plan


def _plan_folder(name: str | None, folder: Path) -> list[Planned]:
    """The benchmarks of a reference folder: a saved dataset, a benchmark folder, an eval folder of benchmark
    folders, or an image folder."""
    own = name or folder.name
    if any(exists(folder / marker) for marker in SAVED_MARKERS):
        return [_plan_saved(own, folder)]
    files, folders, skipped = _entries(folder)
    questions, tsvs = _benchmark_files(files)
    if questions or tsvs:  # with question files, the walk for their pictures names the entries left out
        notes = [] if questions else [f"{entry} ({why})" for entry, why in skipped]
        return [_plan_benchmark(own, folder, questions, tsvs, notes)]
    listed = [(entry, sub, *_entries(sub)) for entry, sub in folders]
    if not any(any(_benchmark_files(sub_files)) for _, _, sub_files, _, _ in listed):
        return [_plan_images(own, folder)]
    prefix = f"{name}/" if name else ""
    plans = [Planned(prefix + entry, folder, missing=[f"{entry} ({why})"]) for entry, why in skipped]
    for entry, sub, sub_files, _, sub_skipped in listed:
        questions, tsvs = _benchmark_files(sub_files)
        if questions or tsvs:
            notes = [] if questions else [f"{item} ({why})" for item, why in sub_skipped]
            plans.append(_plan_benchmark(prefix + entry, sub, questions, tsvs, notes))
        else:
            plans.append(_plan_images(prefix + entry, sub))
    return plans


def plan_path(name: str | None, path: Path) -> list[Planned]:
    """The benchmarks of a reference path the user named (a folder, a question file or a TSV)."""
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError) as error:
        raise ConfigError(f"reference {str(path)!r} cannot be resolved: {short(str(error))}") from None
    if resolved.is_dir():
        return _plan_folder(name, resolved)
    if resolved.is_file() and resolved.name.endswith(QUESTION_SUFFIX):
        return [_plan_benchmark(name or resolved.parent.name, resolved.parent, [resolved], [], [])]
    if resolved.is_file() and resolved.name.endswith(TSV_SUFFIX):
        return [Planned(name or resolved.parent.name, resolved.parent, tsvs=[resolved], inputs=[resolved])]
    raise ConfigError(
        f"reference {str(path)!r} is neither a folder, a .jsonl question file nor a .tsv; give one of those, a "
        "saved dataset's folder or a Hub dataset id"
    )
