"""A small, deterministic LLaVA playground: generated images in every group, planted near-duplicates,
and the quirks of the real files, for the demo and the tests. Every source has its files here, in its
own format (`playground_sources`); this module writes the 665K mix, which the others build on.

The 665K mix's planted near-duplicates (all found by the `thumbnail` embedder at 0.8): re-encoded, resized, cropped and
brightened copies, and a byte-identical copy under another path. Quirks: integer GQA ids, a repeated id,
`<image>` at the end and in the middle of a turn, text-only rows with `"model": ""`, GIF and PNG bytes
behind `.jpg` names, an OCR-VQA image saved as `.gif`, and rows that must be rejected (missing,
truncated and undecodable images, a path that leaves `data_dir`, turns that do not alternate).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from llava_mixes.builders import SOURCES
from llava_mixes.playground.generic import write_generic
from llava_mixes.playground.hub import write_llava_next, write_onevision
from llava_mixes.playground.pictures import encode, synthetic_photo
from llava_mixes.playground.sources import (
    FixtureWriter,
    SourceFixture,
    write_pretrain558k,
    write_sharegpt4v,
    write_svit_core,
    write_svit_mix665k,
    write_textocr,
    write_zh600k,
)

__all__ = ["ANNOTATION_FILE", "Playground", "synthetic_photo", "write_playground"]

ANNOTATION_FILE = "llava_v1_5_mix665k.json"
GROUP_FOLDERS = {
    "coco": "coco/train2017",
    "gqa": "gqa/images",
    "ocr_vqa": "ocr_vqa/images",
    "textvqa": "textvqa/train_images",
    "VG_100K": "vg/VG_100K",
    "VG_100K_2": "vg/VG_100K_2",
}
IMAGES_PER_GROUP = {"coco": 10, "gqa": 6, "ocr_vqa": 6, "textvqa": 5, "VG_100K": 5, "VG_100K_2": 5}


@dataclass
class Playground:
    """What was written: the folder and, for each source's config name, what its files hold.

    `rows`, `planted` and `expected_rejections` are the 665K mix's.
    """

    root: Path
    sources: dict[str, SourceFixture] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return self.sources["mix665k"].rows

    @property
    def planted(self) -> dict[str, tuple[str, str]]:
        """copy path -> (original path, kind of copy), paths as written in the annotation file."""
        return self.sources["mix665k"].planted

    @property
    def expected_rejections(self) -> dict[str, str]:
        """row id -> reject reason."""
        return self.sources["mix665k"].expected_rejections


def _image_name(group: str, number: int) -> str:
    if group == "coco":
        return f"{number:012d}.jpg"
    if group == "ocr_vqa":
        return f"{number:09d}X.jpg"
    if group == "textvqa":
        return f"{number:016x}.jpg"
    return f"{number}.jpg"


def _image_id(group: str, name: str) -> str | int:
    stem = name.rsplit(".", 1)[0]
    if group == "gqa":
        return int(stem)
    if group.startswith("VG"):
        return f"{group}/{stem}"
    return stem


def _questions(group: str, number: int) -> list[dict[str, str]]:
    if group == "coco" and number % 2 == 0:
        return [
            {"from": "human", "value": "<image>\nWhat colour is the largest shape?"},
            {"from": "gpt", "value": f"The largest shape is colour number {number}."},
            {"from": "human", "value": "How many shapes are there?"},
            {"from": "gpt", "value": "There are four shapes."},
        ]
    if group == "coco":
        return [
            {"from": "human", "value": "Describe the image in detail.\n<image>"},
            {"from": "gpt", "value": f"A smooth gradient with four shapes, picture {number}."},
        ]
    if group.startswith("VG"):
        prompt = "Please provide a short description for this region: [0.12, 0.2, 0.5, 0.61]."
        return [{"from": "human", "value": f"<image>\n{prompt}"}, {"from": "gpt", "value": "A coloured shape."}]
    suffix = "\nAnswer the question using a single word or phrase."
    return [
        {"from": "human", "value": f"<image>\nIs there an ellipse?{suffix}"},
        {"from": "gpt", "value": "Yes" if number % 3 else "No"},
    ]


def write_playground(root: Path, seed: int = 0) -> Playground:
    """Write the playground under `root` (see the module docstring) and describe it."""
    root = Path(root)
    mix, originals = _write_mix665k(root, seed)
    coco = {path for path, (group, _) in originals.items() if group == "coco"}
    vg = [path for path, (group, _) in originals.items() if group.startswith("VG")]
    textvqa = [path for path in [*originals, *mix.fixture.planted] if path.startswith(GROUP_FOLDERS["textvqa"])]
    pretrain, picture, picture_path = write_pretrain558k(root, np.random.default_rng(seed + 558))
    sources = {
        "mix665k": mix.fixture,
        "pretrain558k": pretrain,
        "sharegpt4v-mix665k": write_sharegpt4v(
            root, np.random.default_rng(seed + 4), mix, coco, (picture, picture_path)
        ),
        "svit-mix665k": write_svit_mix665k(root, mix, coco, vg),
        "svit-core": write_svit_core(root, vg, mix.fixture.planted),
        "textocr-gpt4v": write_textocr(root, textvqa, mix.fixture.planted),
        "zh600k": write_zh600k(root, np.random.default_rng(seed + 600)),
        "llava-next-779k": write_llava_next(root, np.random.default_rng(seed + 779), _mix_picture(originals)),
        **write_onevision(root, np.random.default_rng(seed + 320)),
    }
    for number, (name, source) in enumerate(SOURCES.items()):
        if name not in sources:
            sources[name] = write_generic(root, source(), np.random.default_rng(seed + 1000 + number))
    return Playground(root, sources)


def _mix_picture(originals: dict[str, tuple[str, Image.Image]]) -> tuple[str, Image.Image]:
    """The 665K picture that LLaVA-NeXT's playground release copies (`hub.next_cross_copy`): the first COCO one."""
    path = next(path for path, (group, _) in originals.items() if group == "coco")
    return path, originals[path][1]


def _write_mix665k(root: Path, seed: int) -> tuple[FixtureWriter, dict[str, tuple[str, Image.Image]]]:
    """`llava_v1_5_mix665k.json` and its images; returns its writer and the original pictures by path."""
    rng = np.random.default_rng(seed)
    writer = FixtureWriter(root, "llava_v1_5_mix665k")
    originals: dict[str, tuple[str, Image.Image]] = {}
    for group, count in IMAGES_PER_GROUP.items():
        for number in range(1, count + 1):
            name = _image_name(group, number * 7919 % 100000 + number)
            written = f"{GROUP_FOLDERS[group]}/{name}"
            photo = synthetic_photo(rng)
            fmt = (
                "GIF" if (group, number) == ("ocr_vqa", 2) else "PNG" if (group, number) == ("ocr_vqa", 3) else "JPEG"
            )
            on_disk = written[:-4] + ".gif" if (group, number) == ("ocr_vqa", 4) else written
            writer.image(on_disk, encode(photo, fmt))
            originals[written] = (group, photo)
            writer.row({"id": _image_id(group, name), "image": written, "conversations": _questions(group, number)})
    _plant_duplicates(writer, originals)
    _add_quirks(writer, originals)
    (writer.root / ANNOTATION_FILE).write_text(json.dumps(writer.records, indent=1))
    return writer, originals


def _plant_duplicates(writer: FixtureWriter, originals: dict[str, tuple[str, Image.Image]]) -> None:
    by_group: dict[str, list[str]] = {}
    for path, (group, _) in originals.items():
        by_group.setdefault(group, []).append(path)
    plans = [
        ("coco", 0, "re-encoded", lambda im: Image.open(io.BytesIO(encode(im, quality=40)))),
        ("coco", 2, "resized", lambda im: im.resize((96, 72), Image.Resampling.BILINEAR)),
        ("coco", 4, "cropped", lambda im: im.crop((4, 3, 156, 117))),
        ("gqa", 1, "brightened", lambda im: ImageEnhance.Brightness(im).enhance(1.25)),
        ("textvqa", 0, "resized", lambda im: im.resize((200, 150), Image.Resampling.BICUBIC)),
        ("VG_100K_2", 2, "re-encoded", lambda im: Image.open(io.BytesIO(encode(im, quality=50)))),
    ]
    for number, (group, index, kind, transform) in enumerate(plans, start=1):
        original = by_group[group][index]
        copy = f"{GROUP_FOLDERS[group]}/{_image_name(group, 90000 + number)}"
        writer.image(copy, encode(transform(originals[original][1])))
        writer.fixture.planted[copy] = (original, kind)
        conversation = _questions(group, number)
        writer.row({"id": _image_id(group, copy.rsplit("/", 1)[1]), "image": copy, "conversations": conversation})
    source = by_group["VG_100K"][0]
    twin = f"{GROUP_FOLDERS['VG_100K']}/{_image_name('VG_100K', 99999)}"
    writer.image(twin, (writer.root / source).read_bytes())
    writer.fixture.planted[twin] = (source, "byte-identical")
    writer.row({"id": f"VG_100K/{99999}", "image": twin, "conversations": _questions("VG_100K", 1)})


def _add_quirks(writer: FixtureWriter, originals: dict[str, tuple[str, Image.Image]]) -> None:
    coco = [path for path, (group, _) in originals.items() if group == "coco"]
    qa = [{"from": "human", "value": "What is shown?\n<image>"}, {"from": "gpt", "value": "Shapes."}]
    writer.row({"id": coco[1].rsplit("/", 1)[1][:-4], "image": coco[1], "conversations": qa})
    mid = [
        {"from": "human", "value": "What do you think is going on in this snapshot?\n<image> In a style that echoes."},
        {"from": "gpt", "value": "Shapes float on a gradient."},
    ]
    writer.row({"id": "mid-token", "image": coco[3], "conversations": mid})
    for number in range(3):
        text = [
            {"from": "human", "value": f"Explain recursion, example {number}."},
            {"from": "gpt", "value": "A function that calls itself."},
        ]
        writer.row({"id": f"sharegpt_{number}", "model": "", "conversations": text})
    good_photo = synthetic_photo(np.random.default_rng(12345))
    truncated = encode(good_photo)
    writer.image("coco/train2017/000000777777.jpg", truncated[: len(truncated) // 2])
    writer.row(
        {"id": "000000777777", "image": "coco/train2017/000000777777.jpg", "conversations": qa}, "undecodable_image"
    )
    writer.image("gqa/images/31337.jpg", bytes(np.random.default_rng(7).integers(0, 256, 2048, dtype=np.uint8)))
    writer.row({"id": 31337, "image": "gqa/images/31337.jpg", "conversations": qa}, "undecodable_image")
    writer.row(
        {"id": "0000000000", "image": "textvqa/train_images/ffffffffffffffff.jpg", "conversations": qa},
        "missing_image",
    )
    writer.row({"id": "escape", "image": "../outside.jpg", "conversations": qa}, "path_escapes_data_dir")
    backwards = [{"from": "gpt", "value": "<image>\nHello"}, {"from": "human", "value": "Hi"}]
    writer.row({"id": "backwards", "image": coco[5], "conversations": backwards}, "turns_not_alternating")
    double = [{"from": "human", "value": "<image>\n<image>\nTwo?"}, {"from": "gpt", "value": "No."}]
    writer.row({"id": "two-tokens", "image": coco[6], "conversations": double}, "multiple_image_tokens")
