"""Whether a cached build still matches its inputs on disk; the builder rebuilds one that does not.

A plain build is compared with its record of inputs (`sources.inputs`: annotation files, image files, paths
looked for in vain, unreadable images); a derived build (deduplicated, decontaminated or a recipe) with its base
builds (a recipe has one per source), which must be fresh themselves and the ones it was made from, and with the
benchmark pictures it was checked against.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import datasets

from llava_mixes.decontam.references import references_changed
from llava_mixes.errors import LlavaMixesError
from llava_mixes.sources import inputs as build_inputs


def is_built(folder: Path) -> bool:
    """Whether `folder` holds a finished build."""
    return (folder / datasets.config.DATASET_INFO_FILENAME).exists()


def bases_digest(folders: list[Path]) -> str | None:
    """The digest of the plain builds a derived build is made from: the one base's record digest, or for several a
    SHA-256 of theirs in order; None when one has no record."""
    digests = [build_inputs.record_digest(folder) for folder in folders]
    if len(digests) == 1 or None in digests:
        return digests[0] if len(digests) == 1 else None
    return hashlib.sha256(json.dumps(digests).encode()).hexdigest()


def stale_reason(builder: Any, folder: Path) -> str | None:
    """Why the build of `builder` (a `builder.LlavaMixes`) cached under `folder` no longer matches its inputs on
    disk, or None when it does."""
    config = builder.config
    if config.is_derived:
        if config.references():
            changed = references_changed(folder, config.references())
            if changed is not None:
                return changed
        bases = builder._base_builders()
        for base in bases:
            base_folder = Path(base.cache_dir)
            if not is_built(base_folder):
                return f"its base {base.config.name} is not built"
            reason = stale_reason(base, base_folder)
            if reason is not None:
                return f"its base {base.config.name} is stale: {reason}"
        if len(bases) == 1:
            return build_inputs.base_changed(folder, Path(bases[0].cache_dir))
        meta = build_inputs.read_meta(folder)
        if meta is None or meta.get("base_sha256") != bases_digest([Path(base.cache_dir) for base in bases]):
            return "one of its base builds was rebuilt since"
        return None
    try:
        data_dir = builder._data_dir()
        files = [path for paths in builder._annotation_files(data_dir).values() for path in paths]
    except LlavaMixesError as error:
        return f"its inputs cannot be located ({error})"
    return build_inputs.stale_reason(folder, files)
