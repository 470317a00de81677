"""What an export starts from: a config built from a data folder, or a copy published by `llava-mixes publish`.

`run_export` is the function `llava-mixes export` calls: it builds (or loads from the cache) the config, or
loads the published copy, and hands its `train` split to `export`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import datasets

from llava_mixes import schema
from llava_mixes.errors import ConfigError, MissingDataError
from llava_mixes.exporters.core import ExportResult, export
from llava_mixes.exporters.formats import llamafactory_hub_entry

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


def run_export(
    config: str,
    format: str,
    out: str | Path,
    *,
    data_dir: str | Path | None = None,
    from_: str | Path | None = None,
    revision: str | None = None,
    image_folder: str | Path | None = None,
    images_dir: str | Path | None = None,
    name: str | None = None,
    cache_dir: str | None = None,
    config_kwargs: Mapping[str, Any] | None = None,
) -> tuple[ExportResult, dict[str, Any] | None]:
    """Export `config` built from `data_dir`, or published at `from_` (folder or Hub repo id, at `revision`).

    Built from `data_dir`: pictures are referenced there (`image_folder` defaults to `data_dir`);
    `config_kwargs` (embedder, threshold, ...) and `cache_dir` go to `load_dataset`. From a published copy:
    embedded pictures are written under `images_dir` (default `out/images`); a copy published with
    `images="paths"` needs `image_folder`, the user's original layout. Returns the result and, for
    `format="llamafactory"` from a Hub repo with embedded pictures, the `dataset_info.json` entry that reads
    the copy from the Hub (else None).
    """
    if (data_dir is None) == (from_ is None):
        raise ConfigError(f"pass exactly one of data_dir={data_dir!r} and from_={from_!r}")
    hub_entry = None
    if data_dir is not None:
        if revision is not None:
            raise ConfigError(f"revision={revision!r} is only for a published copy (from_); drop it with data_dir")
        built = datasets.load_dataset(
            "llava_mixes", config, data_dir=str(data_dir), cache_dir=cache_dir, **dict(config_kwargs or {})
        )
        dataset = built[schema.TRAIN_SPLIT]
        image_folder = data_dir if image_folder is None and images_dir is None else image_folder
    else:
        if config_kwargs:
            raise ConfigError(f"config_kwargs={dict(config_kwargs)!r} only apply to a build; drop them with from_")
        dataset = load_published(from_, config, revision)
        published_with_images = schema.IMAGE in dataset.column_names
        if format == "llamafactory" and published_with_images and not Path(from_).is_dir():
            hub_entry = llamafactory_hub_entry(str(from_), config)
    result = export(dataset, format, out, image_folder=image_folder, images_dir=images_dir, name=name or config)
    return result, hub_entry
