"""Published copies for export tests: the demo published as a user publishes it, a tiny copy written by hand in
the same layout, and edits to a copy's rows that keep its manifest consistent (as a hostile publisher would)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from llava_mixes import schema

CONFIG = "mix665k-dedup-0.8"
MANIFEST = "llava_mixes_manifest.json"


def publish_demo(data_dir: Path, out: Path, cache: Path, images: str = "bytes") -> Path:
    """`llava-mixes publish --local-dir out` of the demo's `mix665k-dedup-0.8`, run as a user runs it."""
    command = [str(Path(sys.executable).parent / "llava-mixes"), "publish", CONFIG, "--repo", "demo/llava_mixes"]
    command += ["--version", "1.0.0", "--local-dir", str(out), "--data-dir", str(data_dir)]
    command += ["--embedder", "thumbnail", "--images", images, "--no-card-views"]
    env = {**os.environ, "HF_DATASETS_CACHE": str(cache / "hf_datasets"), "LLAVA_MIXES_CACHE": str(cache / "content")}
    subprocess.run(command, check=True, env=env, capture_output=True)
    return out


def picture(color: str = "red", size: tuple[int, int] = (8, 6), kind: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=kind)
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def image_row(index: int, data: bytes | None, path: str | None = None, **columns: Any) -> dict[str, Any]:
    """A row of this schema with one picture (`image` = `{bytes, path}`) and one `<image>` tag."""
    row = {
        schema.ID: f"x-{index}",
        schema.SOURCE_ID: str(index),
        schema.SOURCE: "hand",
        schema.IMAGE_GROUP: "coco",
        schema.IMAGE_PATH: f"coco/{index}.png",
        schema.IMAGE: {"bytes": data, "path": path},
        schema.IMAGE_SHA256: sha256(data) if data is not None else None,
        schema.CONVERSATIONS: [
            {"from": "human", "value": "<image>\nWhat is this?"},
            {"from": "gpt", "value": f"Picture {index}."},
        ],
        schema.LANGUAGE: "en",
        schema.TASK: "vqa",
    }
    row.update(columns)
    return row


def shard_name(config: str) -> str:
    return f"{config}/train-00000-of-00001.parquet"


def reseal(copy: Path, config: str = CONFIG) -> None:
    """Make the manifest describe the copy's `train` shards as they are now (SHA-256, size, rows)."""
    manifest = json.loads((copy / MANIFEST).read_text())
    entry = manifest["configs"][config]
    rows = 0
    for path in entry["splits"]["train"]["files"]:
        data = (copy / path).read_bytes()
        entry["files"][path] = {"sha256": sha256(data), "size": len(data)}
        try:
            rows += pq.ParquetFile(copy / path).metadata.num_rows
        except (pa.ArrowException, OSError):
            rows = -1  # not Parquet: the row count stays as it was
    if rows >= 0:
        entry["splits"]["train"]["num_examples"] = rows
    (copy / MANIFEST).write_text(json.dumps(manifest, indent=1))


def edit_rows(copy: Path, edit: Callable[[list[dict[str, Any]]], list[dict[str, Any]]], config: str = CONFIG) -> None:
    """Rewrite the copy's `train` shard with `edit(rows)` (same Arrow schema and `datasets` metadata), then reseal."""
    path = copy / shard_name(config)
    table = pq.read_table(path)
    pq.write_table(pa.Table.from_pylist(edit(table.to_pylist()), schema=table.schema), path)
    reseal(copy, config)


def tiny_copy(folder: Path, rows: list[dict[str, Any]], config: str = "tiny", version: str = "1.0.0") -> Path:
    """A published copy written by hand: one `train` shard of `rows` and the manifest that describes it."""
    known = {**schema.ROW_FEATURES, **schema.DEDUP_FEATURES}
    features = datasets.Features({key: known[key] for key in rows[0]})
    shard = folder / shard_name(config)
    shard.parent.mkdir(parents=True, exist_ok=True)
    # pyarrow writes the rows as given (`Dataset.to_parquet` would embed the files that paths name).
    pq.write_table(pa.Table.from_pylist(rows, schema=features.arrow_schema), shard)
    entry = {"name": config, "images": "bytes", "splits": {"train": {"files": [shard_name(config)]}}, "files": {}}
    manifest = {"format": 1, "default": config, "configs": {config: entry}, "versions": [{"version": version}]}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    reseal(folder, config)
    return folder
