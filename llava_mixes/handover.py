"""Hand a cleaned mix to the training code people run: build a config (or read a published copy) and export its
`train` rows in one call; what `llava-mixes export` runs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llava_mixes import schema
from llava_mixes.builder import build
from llava_mixes.errors import ConfigError
from llava_mixes.exporters.core import ExportResult, export
from llava_mixes.exporters.formats import llamafactory_hub_entry
from llava_mixes.exporters.published import load_published


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
    `config_kwargs` (embedder, threshold, ...) and `cache_dir` go to `builder.build`. From a published copy:
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
        built = build(config, str(data_dir), cache_dir, **dict(config_kwargs or {}))
        dataset = built.dataset[schema.TRAIN_SPLIT]
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
