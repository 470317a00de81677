"""Whether a cached build still matches its inputs on disk; the builder rebuilds one that does not.

A plain build is compared with its record of inputs (`sources.inputs`: annotation files, image files, paths
looked for in vain, unreadable images); a derived build (deduplicated or decontaminated) with its base build,
which must be fresh itself and the one it was made from, and with the benchmark pictures it was checked against.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets

from llava_mixes.decontam.references import references_changed
from llava_mixes.errors import LlavaMixesError
from llava_mixes.sources import inputs as build_inputs


def is_built(folder: Path) -> bool:
    """Whether `folder` holds a finished build."""
    return (folder / datasets.config.DATASET_INFO_FILENAME).exists()


def stale_reason(builder: Any, folder: Path) -> str | None:
    """Why the build of `builder` (a `builder.LlavaMixes`) cached under `folder` no longer matches its inputs on
    disk, or None when it does."""
    config = builder.config
    if config.is_derived:
        if config.is_decontaminated:
            changed = references_changed(folder, list(config.decontaminate))
            if changed is not None:
                return changed
        base = builder._base_builder()
        base_folder = Path(base.cache_dir)
        if not is_built(base_folder):
            return f"its base {base.config.name} is not built"
        reason = stale_reason(base, base_folder)
        if reason is not None:
            return f"its base {base.config.name} is stale: {reason}"
        return build_inputs.base_changed(folder, base_folder)
    try:
        data_dir = builder._data_dir()
        files = [path for paths in builder._annotation_files(data_dir).values() for path in paths]
    except LlavaMixesError as error:
        return f"its inputs cannot be located ({error})"
    return build_inputs.stale_reason(folder, files)
