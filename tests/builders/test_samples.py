"""The real rows in ../shared/samples load through their builders with zero rejects (images generated)."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import datasets
import pytest
from PIL import Image

import llava_mixes
from llava_mixes import schema


def _shared() -> Path:
    """`$LLAVA_MIXES_SHARED`, else the nearest `shared/` beside an ancestor of this checkout (worktrees included)."""
    if os.environ.get("LLAVA_MIXES_SHARED"):
        return Path(os.environ["LLAVA_MIXES_SHARED"])
    for parent in Path(__file__).resolve().parents:
        if (parent / "shared" / "samples").is_dir():
            return parent / "shared"
    return Path(__file__).resolve().parents[2] / "shared"


SHARED = _shared()
SAMPLE = SHARED / "samples" / "llava_v1_5_mix665k.sample.json"
PRETRAIN_SAMPLE = SHARED / "samples" / "blip_laion_cc_sbu_558k.sample.json"


def write_pictures(root: Path, paths: list[str]) -> None:
    """A small distinct JPEG at each path."""
    for number, path in enumerate(sorted(set(paths))):
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8), (number % 256, number // 256 % 256, 7)).save(buffer, "JPEG")
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(buffer.getvalue())


@pytest.mark.skipif(not SAMPLE.exists(), reason=f"no real sample rows at {SAMPLE}")
def test_real_665k_rows_load_with_zero_rejects(tmp_path: Path) -> None:
    rows = json.loads(SAMPLE.read_text())
    data_dir = tmp_path / "playground"
    data_dir.mkdir()
    shutil.copy(SAMPLE, data_dir / "llava_v1_5_mix665k.json")
    write_pictures(data_dir, [row["image"] for row in rows if "image" in row])
    dataset = datasets.load_dataset("llava_mixes", "mix665k", data_dir=str(data_dir), split="train")
    report = llava_mixes.load_report(dataset)
    assert report.rejected == [] and len(dataset) == len(rows) == report.rows_in
    groups = {stats.image_group: stats.rows for stats in report.groups}
    assert groups == {
        "coco": 729,
        "gqa": 144,
        "ocr_vqa": 160,
        "textvqa": 44,
        "VG_100K": 107,
        "VG_100K_2": 66,
        "(text only)": 81,
    }
    tasks = dict.fromkeys(dataset[schema.TASK])
    assert None not in tasks
    assert all(
        value.startswith("<image>\n") or value == "<image>"
        for value, path in zip(
            (turns[0]["value"] for turns in dataset[schema.CONVERSATIONS]), dataset[schema.IMAGE_PATH], strict=True
        )
        if path
    )


@pytest.mark.skipif(not PRETRAIN_SAMPLE.exists(), reason=f"no real sample rows at {PRETRAIN_SAMPLE}")
def test_real_558k_rows_load_with_zero_rejects(tmp_path: Path) -> None:
    rows = json.loads(PRETRAIN_SAMPLE.read_text())
    data_dir = tmp_path / "playground"
    (data_dir / "LLaVA-Pretrain").mkdir(parents=True)
    shutil.copy(PRETRAIN_SAMPLE, data_dir / "LLaVA-Pretrain" / "blip_laion_cc_sbu_558k.json")
    write_pictures(data_dir / "LLaVA-Pretrain" / "images", [row["image"] for row in rows])
    dataset = datasets.load_dataset("llava_mixes", "pretrain558k", data_dir=str(data_dir), split="train")
    report = llava_mixes.load_report(dataset)
    assert report.rejected == [] and len(dataset) == len(rows) == report.rows_in
    assert {stats.image_group: stats.rows for stats in report.groups} == {"llava_pretrain": len(rows)}
    first_turns = [turns[0]["value"] for turns in dataset[schema.CONVERSATIONS]]
    assert all(value.startswith("<image>\n") and value.count("<image>") == 1 for value in first_turns)
    assert dataset[schema.SOURCE_ID] == [row["id"] for row in rows]
