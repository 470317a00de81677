"""Registration with `datasets`, so that `load_dataset("llava_mixes", CONFIG, data_dir=DIR)` works.

`datasets` (>= 4) no longer runs loading scripts, and its packaged-module route scans `data_dir` for data
files first, which would list a whole image tree. So `dataset_module_factory` in `datasets.load` and
`datasets.inspect` (private API, pinned by the `datasets` range in pyproject.toml and guarded by a test) is
wrapped: the name `llava_mixes` resolves straight to this package's builder, with no scan and no network call.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import datasets.inspect
import datasets.load
from datasets.load import DatasetModule

DATASET_NAME = "llava_mixes"
DEDUP_MARK = "-dedup-"
BUILDER_MODULE = "llava_mixes.building.builder"
_PACKAGE_DIR = Path(__file__).parent


CACHE_LAYOUT = 1
"""The build folder's layout, raised by hand when it changes (what a build writes besides its rows and records)."""


def layout_hash() -> str:
    """The part of a build's `datasets` cache path that stands for this package's code: the schema's source and
    `CACHE_LAYOUT`, never the whole package, so that a code edit moves no build folder. Each step of a build keys
    its own code (`building.steps`); a step that a code edit touches is rebuilt in place."""
    digest = hashlib.sha256(f"layout {CACHE_LAYOUT}\n".encode())
    digest.update((_PACKAGE_DIR / "schema.py").read_bytes())
    return digest.hexdigest()[:16]


def _factory(original: Any) -> Any:
    def dataset_module_factory(path: str, *args: Any, **kwargs: Any) -> DatasetModule:
        if path == DATASET_NAME:
            # `data_files` are resolved against `data_dir`, as datasets' own folder builders do.
            base_path = {"base_path": str(kwargs["data_dir"])} if kwargs.get("data_dir") else {}
            return DatasetModule(BUILDER_MODULE, layout_hash(), {"dataset_name": DATASET_NAME, **base_path})
        return original(path, *args, **kwargs)

    dataset_module_factory.__wrapped__ = original  # type: ignore[attr-defined]
    dataset_module_factory.llava_mixes = True  # type: ignore[attr-defined]
    return dataset_module_factory


def register() -> None:
    """Make `datasets` resolve the name `llava_mixes` to this package's builder; idempotent."""
    for module in (datasets.load, datasets.inspect):
        current = module.dataset_module_factory
        if not getattr(current, "llava_mixes", False):
            module.dataset_module_factory = _factory(current)


def dedup_config_name(mix: str, threshold: float) -> str:
    """The name of `mix` deduplicated at `threshold`, e.g. `mix665k-dedup-0.8`."""
    return f"{mix}{DEDUP_MARK}{threshold:g}"
