"""Annotation files named by the user: `datasets`' own `data_files=` kwarg (and `--data-files`), resolved
against `data_dir`, and the similarly named files to suggest when an expected file is missing."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from llava_mixes.errors import ConfigError

TRAIN_KEY = "train"
ANNOTATION_SUFFIXES = (".json", ".jsonl", ".parquet")
MAX_SUGGESTIONS = 5


def files_per_source(data_files: Any, sources: tuple[str, ...]) -> dict[str, list[Path]]:
    """The annotation files `data_files` (a resolved `datasets.data_files.DataFilesDict`, or None) names for
    each source: under the key `train` for a one-source config, or under each source's config name.

    Raises `ConfigError` for a key that names no source of the config, or a file that is not local."""
    if not data_files:
        return {}
    allowed = [TRAIN_KEY, *sources] if len(sources) == 1 else list(sources)
    named: dict[str, list[Path]] = {}
    for key, files in data_files.items():
        if key not in allowed:
            raise ConfigError(
                f"data_files key {key!r} names no source of this config; use one of {allowed} "
                "(a string or a list names the annotation files of a one-source config)"
            )
        paths = [Path(str(file)) for file in files]
        remote = [str(path) for path in paths if not path.is_file()]
        if remote:
            raise ConfigError(f"data_files={remote!r} are not local files; name annotation files on this machine")
        named[sources[0] if key == TRAIN_KEY else key] = paths
    return named


def read_instead(config: str, in_recipe: bool) -> str:
    """How to read a file of another name as `config`'s annotation file: for a plain build `data_files=` (and
    `--data-files FILE`); for a source of a recipe, whose config refuses a plain `data_files=`, the recipe key or
    a `data_files` mapping keyed by the source (and `--data-files CONFIG=FILE`)."""
    if in_recipe:
        return (
            f"to read one, set `data_files: <file>` on the `config: {config}` entry of the recipe, or pass "
            f"`--data-files {config}=<file>` (data_files={{{config!r}: <file>}} from Python), relative to data_dir"
        )
    return "to read one, pass `--data-files <file>` (data_files=<file> from Python), relative to data_dir"


def similar_files(folders: list[Path], expected: str) -> list[Path]:
    """Annotation-like files (JSON, JSON Lines, Parquet) in `folders` whose names resemble `expected`: they
    contain its stem, it contains theirs, or `difflib` finds them close."""
    stem = Path(expected).stem.lower()
    present = sorted(
        {
            path
            for folder in folders
            if folder.is_dir()
            for path in folder.iterdir()
            if path.is_file() and path.suffix.lower() in ANNOTATION_SUFFIXES and path.name != expected
        }
    )
    by_name = {path.name.lower(): path for path in present}
    close = set(difflib.get_close_matches(expected.lower(), list(by_name), n=MAX_SUGGESTIONS, cutoff=0.7))
    alike = [
        path
        for name, path in by_name.items()
        if name in close or stem in name or (len(Path(name).stem) >= 4 and Path(name).stem in stem)
    ]
    return alike[:MAX_SUGGESTIONS]
