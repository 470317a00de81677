"""Folders of generated documents in the 665K mix's layout, for the copy-detection tests."""

from __future__ import annotations

import json
from pathlib import Path

GROUP_FOLDERS = {"ocr_vqa": "ocr_vqa/images", "textvqa": "textvqa/train_images", "coco": "coco/train2017"}
PNG_MAGIC = b"\x89PNG"


def write_mix665k(root: Path, pictures: dict[str, list[bytes]]) -> dict[str, list[str]]:
    """Write each picture under its group's folder of `root`, one row of `llava_v1_5_mix665k.json` each; the
    paths written, by group, in order."""
    records, paths = [], {}
    for group, items in pictures.items():
        for number, data in enumerate(items):
            suffix = "png" if data.startswith(PNG_MAGIC) else "jpg"
            path = f"{GROUP_FOLDERS[group]}/{number:09d}.{suffix}"
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_bytes(data)
            paths.setdefault(group, []).append(path)
            turns = [{"from": "human", "value": "<image>\nWhat does it say?"}, {"from": "gpt", "value": "Words."}]
            records.append({"id": f"{group}-{number}", "image": path, "conversations": turns})
    (root / "llava_v1_5_mix665k.json").write_text(json.dumps(records))
    return paths
