"""The real rows in ../shared/samples load with zero rejects (images generated at their paths)."""

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

SHARED = Path(os.environ.get("LLAVA_MIXES_SHARED", Path(__file__).resolve().parents[2] / "shared"))
SAMPLE = SHARED / "samples" / "llava_v1_5_mix665k.sample.json"


@pytest.mark.skipif(not SAMPLE.exists(), reason=f"no real sample rows at {SAMPLE}")
def test_real_665k_rows_load_with_zero_rejects(tmp_path: Path) -> None:
    rows = json.loads(SAMPLE.read_text())
    data_dir = tmp_path / "playground"
    data_dir.mkdir()
    shutil.copy(SAMPLE, data_dir / "llava_v1_5_mix665k.json")
    for number, path in enumerate(sorted({row["image"] for row in rows if "image" in row})):
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8), (number % 256, number // 256 % 256, 7)).save(buffer, "JPEG")
        (data_dir / path).parent.mkdir(parents=True, exist_ok=True)
        (data_dir / path).write_bytes(buffer.getvalue())
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
