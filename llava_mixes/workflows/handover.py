"""Hand a cleaned mix to the training code people run: build a config (or read a published copy) and export its
`train` rows in one call; what `llava-mixes export` runs."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llava_mixes import schema
from llava_mixes.building.entry import build
from llava_mixes.errors import ConfigError, unknown_choice
from llava_mixes.exporters.core import ExportResult, export
from llava_mixes.exporters.formats import FORMATS, llamafactory_hub_entry
from llava_mixes.exporters.published import read_published
from llava_mixes.outputs import check_claims, output_folder
from llava_mixes.paths import check_file_name


def _local_copy(from_: str | Path | None) -> str | Path | None:
    """`from_` when it names something on this machine (a published copy's folder), else None (a Hub repo)."""
    if from_ is None:
        return None
    text = os.fspath(from_)
    return from_ if text and "\0" not in text and os.path.lexists(text) else None


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

    Built from `data_dir`: pictures are referenced there (`image_folder` defaults to `data_dir`), or copied from it
    with `images_dir`; `config_kwargs` (embedder, threshold, ...) and `cache_dir` go to `builder.build`. From a
    published copy (untrusted: see `exporters.published` and `exporters.pictures`): its pictures are written
    under `images_dir` (default `out/images`); a copy published with `images="paths"` needs `image_folder`, the
    user's original layout. The output folders are checked before anything is built or read. Returns the
    result and, for `format="llamafactory"` from a Hub repo with embedded pictures, the `dataset_info.json`
    entry that reads the copy from the Hub (else None).
    """
    if (data_dir is None) == (from_ is None):
        raise ConfigError(f"pass exactly one of data_dir={data_dir!r} and from_={from_!r}")
    if format not in FORMATS:
        raise unknown_choice("format", format, FORMATS)
    inputs = {"data_dir": data_dir, "the published copy": _local_copy(from_), "image_folder": image_folder}
    out_path = output_folder(out, "out", inputs)
    check_file_name(config, "config")
    check_claims(out_path, [check_file_name(name or config, "name") + FORMATS[format].suffix], "out")
    output_folder(
        images_dir if images_dir is not None else out_path / "images", "images_dir", inputs, nested_inputs=False
    )
    hub_entry = None
    if data_dir is not None:
        if revision is not None:
            raise ConfigError(f"revision={revision!r} is only for a published copy (from_); drop it with data_dir")
        built = build(config, str(data_dir), cache_dir, **dict(config_kwargs or {}))
        dataset = built.dataset[schema.TRAIN_SPLIT]
        image_folder = data_dir if image_folder is None and images_dir is None else image_folder
        return (
            export(
                dataset,
                format,
                out,
                image_folder=image_folder,
                images_dir=images_dir,
                files_from=data_dir,
                name=name or config,
            ),
            None,
        )
    if config_kwargs:
        raise ConfigError(f"config_kwargs={dict(config_kwargs)!r} only apply to a build; drop them with from_")
    published = read_published(from_, config, revision)
    if format == "llamafactory" and schema.IMAGE in published.dataset.column_names and published.folder is None:
        hub_entry = llamafactory_hub_entry(str(from_), config)
    result = export(
        published.dataset,
        format,
        out,
        image_folder=image_folder,
        images_dir=images_dir,
        files_from=published.folder,
        untrusted=True,
        name=name or config,
    )
    return result, hub_entry
