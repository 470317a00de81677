"""Evaluation folders for the playground, in LLaVA's `playground/data/eval/` layout, with planted copies of
training pictures: what decontamination must find.

- `pope/`: `llava_pope_test.jsonl` naming pictures in `val2014/` (COCO val2014 names): a byte-identical and a
  re-encoded copy of two COCO training pictures, and three pictures seen nowhere in training;
- `textvqa/`: `llava_textvqa_val_v051_ocr.jsonl` naming pictures in `train_images/`: a resized copy of a
  TextVQA training picture and a brightened copy of a GQA one, and two unseen pictures;
- `mmbench/`: `mmbench_dev_20230712.tsv` with base64 pictures: a resized, re-encoded copy of a VG picture, two
  unseen pictures, and a row whose `image` is the `index` of another row (as VLMEvalKit writes repeats).

The training pictures copied have no planted near-duplicate of their own in the playground.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from llava_mixes.playground.layout import GROUP_FOLDERS, _image_name
from llava_mixes.playground.pictures import encode, synthetic_photo, write_file

EVAL_FOLDER = "eval"


def _training(group: str, number: int) -> str:
    return f"{GROUP_FOLDERS[group]}/{_image_name(group, number * 7919 % 100000 + number)}"


@dataclass
class EvalPlayground:
    """Where the eval folders are, and per benchmark the planted copies: reference id -> training picture path
    (relative to the playground), and how many reference pictures each benchmark has in all."""

    root: Path
    planted: dict[str, dict[str, str]] = field(default_factory=dict)
    reference_images: dict[str, int] = field(default_factory=dict)

    @property
    def training_pictures(self) -> set[str]:
        """The training pictures some benchmark holds a copy of."""
        return {path for copies in self.planted.values() for path in copies.values()}


def _open(root: Path, relative: str) -> Image.Image:
    return Image.open(io.BytesIO((root / relative).read_bytes())).convert("RGB")


def write_eval_playground(playground_root: Path, seed: int = 12) -> EvalPlayground:
    """Write `eval/` under the playground at `playground_root` (written by `write_playground`)."""
    playground_root = Path(playground_root)
    root = playground_root / EVAL_FOLDER
    rng = np.random.default_rng(seed)
    result = EvalPlayground(root)

    pope = {"pope": {}}
    coco_byte, coco_reencoded = _training("coco", 2), _training("coco", 4)
    pictures = {
        "COCO_val2014_000000000042.jpg": ((playground_root / coco_byte).read_bytes(), coco_byte),
        "COCO_val2014_000000000073.jpg": (encode(_open(playground_root, coco_reencoded), quality=35), coco_reencoded),
    }
    for number in (101, 102, 103):
        pictures[f"COCO_val2014_{number:012d}.jpg"] = (encode(synthetic_photo(rng)), None)
    questions = []
    for question_id, (name, (data, training)) in enumerate(pictures.items()):
        write_file(root, f"pope/val2014/{name}", data)
        questions.append({"question_id": question_id, "image": name, "text": "Is there a shape in the image?"})
        if training:
            pope["pope"][f"val2014/{name}"] = training
    (root / "pope" / "llava_pope_test.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    result.planted.update(pope)
    result.reference_images["pope"] = len(pictures)

    textvqa_resized, gqa_bright = _training("textvqa", 2), _training("gqa", 1)
    pictures = {
        "0054c91397f2fe05.jpg": (
            encode(_open(playground_root, textvqa_resized).resize((240, 180), Image.Resampling.BICUBIC)),
            textvqa_resized,
        ),
        "00685bc495504d61.jpg": (
            encode(ImageEnhance.Brightness(_open(playground_root, gqa_bright)).enhance(1.2)),
            gqa_bright,
        ),
        "0a0bc91825468c45.jpg": (encode(synthetic_photo(rng)), None),
        "0a2a3b5f0c0e9f00.jpg": (encode(synthetic_photo(rng)), None),
    }
    questions = []
    result.planted["textvqa"] = {}
    for question_id, (name, (data, training)) in enumerate(pictures.items()):
        write_file(root, f"textvqa/train_images/{name}", data)
        questions.append({"question_id": question_id, "image": name, "text": "What is written here?"})
        if training:
            result.planted["textvqa"][f"train_images/{name}"] = training
    (root / "textvqa" / "llava_textvqa_val_v051_ocr.jsonl").write_text(
        "".join(json.dumps(q) + "\n" for q in questions)
    )
    result.reference_images["textvqa"] = len(pictures)

    vg = _training("VG_100K_2", 1)
    copy = encode(_open(playground_root, vg).resize((128, 96), Image.Resampling.BILINEAR), quality=60)
    images = [copy, encode(synthetic_photo(rng)), encode(synthetic_photo(rng))]
    lines = ["index\tquestion\tA\tB\tanswer\tcategory\timage"]
    for index, data in enumerate(images):
        lines.append(f"{index}\tWhich shape is larger?\tleft\tright\tA\tspatial\t{base64.b64encode(data).decode()}")
    lines.append("3\tIs the picture bright?\tyes\tno\tA\tattribute\t1")
    write_file(root, "mmbench/mmbench_dev_20230712.tsv", ("\n".join(lines) + "\n").encode())
    result.planted["mmbench"] = {"mmbench_dev_20230712.tsv:0": vg}
    result.reference_images["mmbench"] = len(images)
    return result
