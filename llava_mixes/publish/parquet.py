"""A built config written as a Hub repo's Parquet shards, with the manifest entry that describes them.

Each split becomes `<config>/<split>-NNNNN-of-NNNNN.parquet` (the layout `push_to_hub` uses), sharded so
that a shard holds about `max_shard_size` uncompressed bytes. Images are embedded as bytes, as
`push_to_hub` does, so the Hub viewer shows them; with `images="paths"` the `image` column is left out and
`image_path` (relative to the source's data layout) is all that names a picture. The `datasets` feature
metadata stays in each file's schema, so `load_dataset` restores `Image()` and the other types.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
from datasets.table import embed_table_storage
from datasets.utils import tqdm as hf_tqdm

from llava_mixes import schema
from llava_mixes.building.report import BuildReport
from llava_mixes.errors import ConfigError, unknown_choice
from llava_mixes.plugin import dedup_config_name

if TYPE_CHECKING:
    from llava_mixes.building.config import LlavaMixesConfig

logger = logging.getLogger(__name__)

IMAGE_MODES = ("bytes", "paths")
DEFAULT_MAX_SHARD_SIZE = "500MB"
MIN_SHARD_BYTES = 1_000
MAX_SHARDS_PER_SPLIT = 10_000
"""The Hub's limit on files per folder."""
SHARD_SIZE = re.compile(r"^\s*(\d{1,15})\s*([KMGT]I?)?B?\s*$", re.IGNORECASE)
SPLIT_ORDER = (schema.TRAIN_SPLIT, schema.REMOVED_SPLIT)
"""The splits a config publishes first; its other splits (a recipe's exact duplicate rows, a decontaminated
config's or a recipe's contaminated rows) follow in the build's order."""
TEMP_PREFIX = ".tmp-"
RECIPE_PREFIX = "recipe-"
DECONTAMINATED_SUFFIX = "-decontaminated"
RECIPE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def published_name(config: LlavaMixesConfig) -> str:
    """The repo config name of a built config: its named config, or `<mix>-dedup-<t>[-global]` for other settings,
    with `-decontaminated` where benchmark pictures were taken out (so it never passes for the config without)."""
    name = config.base_name
    if config.is_dedup:
        name = dedup_config_name(config.base_name, float(config.dedup_threshold or 0.0))
        name = f"{name}-global" if config.dedup_scope == "global" else name
    return f"{name}{DECONTAMINATED_SUFFIX}" if config.is_decontaminated else name


def recipe_config_name(recipe: str) -> str:
    """The repo config name of a recipe build, `recipe-<recipe>` (so two recipes never share one), refusing a
    recipe name that cannot name a repo folder and its `data_files` pattern."""
    if not RECIPE_NAME.fullmatch(recipe):
        raise ConfigError(
            f"recipe name {recipe!r} is not allowed as a published config name; use letters, digits, '.', '_', '-' "
            "and '+', starting with a letter or digit (set `name:` in the recipe)"
        )
    return f"{RECIPE_PREFIX}{recipe}"


def parse_shard_size(value: object) -> int:
    """The bytes per shard that `value` (a whole number of bytes, or a size such as '500MB' or '1GiB') asks for;
    `ConfigError` naming it unless it is at least `MIN_SHARD_BYTES`."""
    match = SHARD_SIZE.fullmatch(value) if isinstance(value, str) else None
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif match:
        unit = (match[2] or "").upper()
        base = 1024 if unit.endswith("I") else 1000
        size = int(match[1]) * base ** ("KMGT".index(unit[0]) + 1 if unit else 0)
    else:
        size = -1
    if size < MIN_SHARD_BYTES:
        raise ConfigError(
            f"--max-shard-size {str(value)[:40]!r} is not allowed; give the uncompressed bytes per shard as a whole "
            f"number of at least {MIN_SHARD_BYTES:,} or with a unit, e.g. '500MB', '1GB' or '512MiB'"
        )
    return size


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_digest(files: dict[str, dict[str, Any]], recipe_digest: str | None = None) -> str:
    """One digest of a config's data files (their repo paths and SHA-256s) and, for a recipe build, of its
    recipe's settings (`recipe_digest`), which the card shows: the same rows from other settings differ."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(f"{path}\0{files[path]['sha256']}\n".encode())
    if recipe_digest is not None:
        digest.update(f"recipe\0{recipe_digest}\n".encode())
    return digest.hexdigest()


def shard_path(config_name: str, split: str, index: int, count: int) -> str:
    return f"{config_name}/{split}-{index:05d}-of-{count:05d}.parquet"


def _has_images(features: datasets.Features) -> bool:
    return isinstance(features.get(schema.IMAGE), datasets.Image)


def _write_split(
    dataset: datasets.Dataset, root: Path, config_name: str, split: str, max_shard_bytes: int
) -> tuple[dict[str, dict[str, Any]], int]:
    """Write one split's shards under `root`; return `{repo path: {sha256, size}}` and its uncompressed size."""
    from datasets.arrow_writer import get_writer_batch_size_from_data_size, get_writer_batch_size_from_features

    # `_estimate_nbytes` (private, pinned by the datasets range) adds the external image files' sizes.
    nbytes = dataset._estimate_nbytes()
    count = min(int(nbytes / max_shard_bytes) + 1, len(dataset)) if len(dataset) else 1
    if count > MAX_SHARDS_PER_SPLIT:
        raise ConfigError(
            f"--max-shard-size {max_shard_bytes:,} bytes would write {split} of {config_name} as {count:,} shards, "
            f"over the Hub's {MAX_SHARDS_PER_SPLIT:,} files per folder; use larger shards"
        )
    batch_size = get_writer_batch_size_from_features(dataset.features) or get_writer_batch_size_from_data_size(
        len(dataset), nbytes
    )
    files: dict[str, dict[str, Any]] = {}
    written = 0
    for index in hf_tqdm(range(count), unit="shard", desc=f"Writing {config_name}/{split}"):
        shard = dataset.shard(num_shards=count, index=index, contiguous=True)
        if _has_images(shard.features):
            shard = shard.with_format("arrow").map(
                embed_table_storage, batched=True, batch_size=batch_size, keep_in_memory=True
            )
        repo_path = shard_path(config_name, split, index, count)
        target = root / repo_path
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex}-{target.name}")
        written += shard.to_parquet(str(temp), batch_size=batch_size)
        os.replace(temp, target)
        files[repo_path] = {"sha256": sha256_file(target), "size": target.stat().st_size}
    return files, written


def _compact_report(report: BuildReport) -> dict[str, Any]:
    """The report without its per-row rejection list (which can be long): counts and group lines only."""
    data = report.to_json()
    data.pop("rejected")
    return data


def export_config(
    dataset: datasets.DatasetDict,
    report: BuildReport,
    config: LlavaMixesConfig,
    root: Path,
    images: str = "bytes",
    max_shard_size: str | int = DEFAULT_MAX_SHARD_SIZE,
) -> dict[str, Any]:
    """Write every split of a built config as Parquet shards under `root` and return its manifest entry; a recipe
    build (its report has a `recipe`) is the config `recipe-<its name>`."""
    if images not in IMAGE_MODES:
        raise unknown_choice("images", images, IMAGE_MODES)
    max_shard_bytes = parse_shard_size(max_shard_size)
    recipe = report.recipe
    name = recipe_config_name(recipe["name"]) if recipe else published_name(config)
    order = [split for split in SPLIT_ORDER if split in dataset]
    order += [split for split in dataset if split not in SPLIT_ORDER]
    splits: dict[str, dict[str, Any]] = {}
    files: dict[str, dict[str, Any]] = {}
    features = None
    for split in order:
        data = dataset[split]
        if images == "paths" and schema.IMAGE in data.column_names:
            data = data.remove_columns(schema.IMAGE)
        features = data.features
        split_files, num_bytes = _write_split(data, root, name, split, max_shard_bytes)
        files.update(split_files)
        splits[split] = {"num_examples": len(data), "num_bytes": num_bytes, "files": sorted(split_files)}
    if features is None:
        raise ConfigError(f"config {name!r} has no split among {list(SPLIT_ORDER)}")
    logger.info("wrote %s: %s", name, {split: info["num_examples"] for split, info in splits.items()})
    return {
        "name": name,
        "builder_config": config.name,
        "builder_version": str(config.version),
        "sources": list(config.sources),
        "images": images,
        "dedup": report.dedup,
        "features": features.to_dict(),
        "splits": splits,
        "files": files,
        "content": content_digest(files, recipe["digest"] if recipe else None),
        "report": _compact_report(report),
    }
