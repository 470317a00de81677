"""A copy published by `llava-mixes publish` (a folder or a Hub repo), read back with plain `datasets`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import datasets

from llava_mixes import schema
from llava_mixes.errors import ConfigError, MissingDataError

logger = logging.getLogger(__name__)

MANIFEST = "llava_mixes_manifest.json"


def _local_version(folder: Path) -> str | None:
    """The latest release a published folder's manifest records, as `X.Y.Z`; None without a manifest."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return None
    try:
        versions = json.loads(manifest.read_text(encoding="utf-8"))["versions"]
        return str(versions[-1]["version"])
    except (OSError, ValueError, KeyError, IndexError, TypeError) as error:
        raise ConfigError(f"{manifest} cannot be read as a llava_mixes manifest ({error})") from error


def load_published(path_or_repo_id: str | Path, config: str, revision: str | None = None) -> datasets.Dataset:
    """The `train` split of `config` from a published tree (a folder) or Hub repo, at `revision` (`vX.Y.Z`).

    A folder holds one release, the latest its manifest records; a `revision` naming another one is refused.
    """
    folder = Path(path_or_repo_id)
    if folder.is_dir():
        if revision is not None:
            present = _local_version(folder)
            if present is None or revision.removeprefix("v") != present.removeprefix("v"):
                raise ConfigError(
                    f"revision={revision!r} is not in {folder}: it holds version {present!r}; a folder holds one "
                    "release, so drop revision or point at the Hub repo"
                )
        return datasets.load_dataset(str(folder), config, split=schema.TRAIN_SPLIT)
    if str(path_or_repo_id).count("/") != 1:
        raise MissingDataError(f"{path_or_repo_id!r} is neither a folder nor a Hub repo id (org/name)")
    return datasets.load_dataset(str(path_or_repo_id), config, split=schema.TRAIN_SPLIT, revision=revision)
