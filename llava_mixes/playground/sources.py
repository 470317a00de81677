"""The playground's other instruction sets, written beside the 665K mix in each one's own on-disk format.

Where real sources share pictures, the playground shares files: ShareGPT4V's and SVIT's mixes are the
665K mix with rows replaced (so their COCO, GQA, OCR-VQA, TextVQA and VG pictures are the 665K's),
ShareGPT4V's `llava/llava_pretrain` picture is byte for byte a 558K picture, SVIT core points at the
665K's VG pictures, and textOCR-GPT-4v at its TextVQA pictures. Each set plants near-duplicates of its
own and carries rows that must be rejected; `SourceFixture` records both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageEnhance

from llava_mixes.playground.pictures import encode, synthetic_photo, write_file


@dataclass
class SourceFixture:
    """One source's part of the playground: its row count, planted near-duplicates and expected rejections."""

    source: str
    """The `source` column value; row ids are `<source>-<row index>`."""
    rows: int = 0
    planted: dict[str, tuple[str, str]] = field(default_factory=dict)
    """copy image_path -> (original image_path, kind of copy)."""
    expected_rejections: dict[str, str] = field(default_factory=dict)
    """row id -> reject reason."""


class FixtureWriter:
    """Writes one source's images and collects its records, counting rows and the rejections planted."""

    def __init__(self, root: Path, source: str) -> None:
        self.root = root
        self.fixture = SourceFixture(source)
        self.records: list[Any] = []
        self.reasons: list[str | None] = []

    def image(self, relative: str, data: bytes) -> None:
        write_file(self.root, relative, data)

    def next_row(self, reject: str | None = None) -> None:
        """Count one output row (a record, or one of several rows a record makes)."""
        if reject is not None:
            self.fixture.expected_rejections[f"{self.fixture.source}-{self.fixture.rows:07d}"] = reject
        self.fixture.rows += 1

    def row(self, record: Any, reject: str | None = None) -> None:
        self.records.append(record)
        self.reasons.append(reject)
        self.next_row(reject)


def _turns(*values: str) -> list[dict[str, str]]:
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": value} for i, value in enumerate(values)]


def _near_copy(photo: Image.Image) -> bytes:
    return encode(ImageEnhance.Brightness(photo.resize((150, 112), Image.Resampling.BILINEAR)).enhance(1.1))


PRETRAIN_PROMPTS = (
    "Describe the image concisely.",
    "Render a clear and concise summary of the photo.",
    "Give a brief description of the image.",
    "What is this?",
)
PRETRAIN_IMAGES = "LLaVA-Pretrain/images"


def write_pretrain558k(root: Path, rng: np.random.Generator) -> tuple[SourceFixture, bytes, str]:
    """`blip_laion_cc_sbu_558k.json`, its `_meta.json`, and images; returns one picture's bytes and path."""
    writer = FixtureWriter(root, "blip_laion_cc_sbu_558k")
    meta = []
    photos = []
    for number in range(8):
        image_id = f"{4539375 + number * 104729:09d}"
        written = f"{image_id[:5]}/{image_id}.jpg"
        photos.append(synthetic_photo(rng))
        writer.image(f"{PRETRAIN_IMAGES}/{written}", encode(photos[-1]))
        prompt = PRETRAIN_PROMPTS[number % len(PRETRAIN_PROMPTS)]
        human = f"{prompt}\n<image>" if number % 2 else f"<image>\n{prompt}"
        caption = f"select luxury furniture {number} - inch gel memory foam mattress topper"
        writer.row({"id": image_id, "image": written, "conversations": _turns(human, caption)})
        meta.append({"id": image_id, "image": written, "blip_caption": caption, "url": f"http://x/{image_id}.jpg"})
    copy = "00999/009990001.jpg"
    writer.image(f"{PRETRAIN_IMAGES}/{copy}", _near_copy(photos[2]))
    writer.fixture.planted[copy] = (writer.records[2]["image"], "resized and brightened")
    writer.row({"id": "009990001", "image": copy, "conversations": _turns("<image>\nWhat is this?", "a copy")})
    four = _turns("<image>\nWhat is this?", "a sofa", "And the colour?", "grey")
    writer.row(
        {"id": "004000001", "image": writer.records[0]["image"], "conversations": four}, "unexpected_turn_count"
    )
    missing = {
        "id": "006590001",
        "image": "00659/006590001.jpg",
        "conversations": _turns("What is this?\n<image>", "x"),
    }
    writer.row(missing, "missing_image")
    (root / "blip_laion_cc_sbu_558k.json").write_text(json.dumps(writer.records))
    (root / "blip_laion_cc_sbu_558k_meta.json").write_text(json.dumps(meta))
    shared = writer.records[5]["image"]
    return writer.fixture, (root / PRETRAIN_IMAGES / shared).read_bytes(), shared


INSTRUCT_OPENINGS = ("Describe the image in detail.\n<image>", "<image>\nWhat colour is the largest shape?")


def _inherit_planted(writer: FixtureWriter, mix: FixtureWriter) -> None:
    """The 665K's planted copies that are still near-duplicates in a mix derived from it: both rows kept."""
    images = {record.get("image") for record in writer.records}
    for copy, (original, kind) in mix.fixture.planted.items():
        if copy in images and original in images:
            writer.fixture.planted[copy] = (original, kind)


def _instruct_rows(records: list[Any], coco_originals: set[str]) -> list[int]:
    """Positions of the 665K rows that play LLaVA-Instruct's part (COCO conversations and descriptions)."""
    return [
        position
        for position, record in enumerate(records)
        if record.get("image") in coco_originals and record["conversations"][0]["value"] in INSTRUCT_OPENINGS
    ]


def write_sharegpt4v(
    root: Path,
    rng: np.random.Generator,
    mix: FixtureWriter,
    coco_originals: set[str],
    pretrain_picture: tuple[bytes, str],
) -> SourceFixture:
    """The 665K mix with its COCO descriptions replaced by GPT-4V caption rows on COCO and new folders."""
    writer = FixtureWriter(root, "sharegpt4v_mix665k")
    sam = [synthetic_photo(rng) for _ in range(2)]
    write_file(root, "sam/images/sa_10296.jpg", encode(sam[0]))
    write_file(root, "sam/images/sa_10297.jpg", encode(sam[1]))
    write_file(root, "sam/images/sa_10298.jpg", _near_copy(sam[0]))
    lcs = f"llava/llava_pretrain/images/{pretrain_picture[1]}"
    write_file(root, lcs, pretrain_picture[0])
    web = {
        "share_textvqa/images/9b97b5220745cb90.jpg": "share_textvqa/images/9b97b5220745cb90.jpg",
        "web-celebrity/images/Maggie_Grace2.jpg": "data/web-celebrity/images/Maggie_Grace2.jpg",
        "web-landmark/images/Okavango_Delta.jpg": "data/web-landmark/images/Okavango_Delta.jpg",
        "wikiart/images/arnold-b#U00e3#U00b6cklin_island.jpg": "data/wikiart/images/arnold-bã¶cklin_island.jpg",
    }
    for on_disk in web.values():
        write_file(root, on_disk, encode(synthetic_photo(rng)))
    captions = [
        ("sa_10296", "sam/images/sa_10296.jpg", None),
        ("sa_10297", "sam/images/sa_10297.jpg", None),
        ("sa_10298", "sam/images/sa_10298.jpg", None),
        ("sa_10299", "sam/images/sa_10299.jpg", "missing_image"),
        (lcs.rsplit("/", 1)[1][:-4], lcs, None),
        *((written.rsplit("/", 1)[1][:-4], written, None) for written in web),
    ]
    writer.fixture.planted["sam/images/sa_10298.jpg"] = ("sam/images/sa_10296.jpg", "resized and brightened")
    replaced = _instruct_rows(mix.records, coco_originals)
    details = [p for p in replaced if mix.records[p]["conversations"][0]["value"] == INSTRUCT_OPENINGS[0]]
    for position, (record, reason) in enumerate(zip(mix.records, mix.reasons, strict=True)):
        if position == details[0]:
            ap = (
                f"What do you think is going on in this snapshot?\n<image> In a style that echoes artistry {position}."
            )
            writer.row({**record, "conversations": _turns(ap, "The image captures a calm, geometric scene.")})
        elif position == details[1]:
            for source_id, image, reject in captions:
                text = _turns("<image>\nDescribe the image in detail.", f"A detailed GPT-4V caption of {source_id}.")
                writer.row({"id": source_id, "image": image, "conversations": text}, reject)
        elif position not in details:
            writer.row(record, reason)
    _inherit_planted(writer, mix)
    (root / "sharegpt4v_mix665k_cap23k_coco-ap9k_lcs3k_sam9k_div2k.json").write_text(json.dumps(writer.records))
    return writer.fixture


def write_svit_mix665k(root: Path, mix: FixtureWriter, coco_originals: set[str], vg: list[str]) -> SourceFixture:
    """The 665K mix with its LLaVA-Instruct rows replaced by `svit_*` rows on the VG pictures."""
    writer = FixtureWriter(root, "svit_mix665k")
    replaced = _instruct_rows(mix.records, coco_originals)
    kinds = ("conversation", "complex", "detail", "referring")
    for position, (record, reason) in enumerate(zip(mix.records, mix.reasons, strict=True)):
        if position not in replaced:
            writer.row(record, reason)
            continue
        number = replaced.index(position)
        kind = kinds[number % len(kinds)]
        if kind == "conversation":
            turns = _turns("<image>\nWhat is on the left?", "A red ellipse.", "And on the right?", "A blue box.")
        elif kind == "referring":
            turns = _turns(
                "<image>\nWhat is the rail made of? Provide the bounding boxes of the mentioned objects.",
                "The rail [0.172, 0.61, 0.832, 0.67] is made of metal.",
            )
        else:
            turns = _turns("<image>\nDelve into the particulars of the image.", f"A {kind} answer.")
        writer.row({"id": f"svit_{kind}_{354912 + number}", "image": vg[number % len(vg)], "conversations": turns})
    empty = _turns("<image>\nWhy is the box there?", " ")
    writer.row({"id": "svit_complex_999999", "image": vg[0], "conversations": empty}, "empty_turn")
    _inherit_planted(writer, mix)
    (root / "SVIT_mix_665K.json").write_text(json.dumps(writer.records))
    return writer.fixture


def write_svit_core(root: Path, vg: list[str], planted: dict[str, tuple[str, str]]) -> SourceFixture:
    """SVIT core's four files in its own format (image ids, blocks of `user`/`gpt` turns) over the VG pictures.

    The 665K's VG folders hold the same names; ids only in `VG_100K_2` (a planted copy) test the fallback,
    and the byte-identical twin of a VG picture is this set's planted duplicate.
    """
    writer = FixtureWriter(root, "svit_core")
    ids = [int(path.rsplit("/", 1)[1][:-4]) for path in vg]
    only_second = next(int(path.rsplit("/", 1)[1][:-4]) for path in planted if path.startswith("vg/VG_100K_2/"))
    twin, (twin_of, kind) = next((path, value) for path, value in planted.items() if value[1] == "byte-identical")
    writer.fixture.planted[twin] = (twin_of, kind)
    conversation = []
    for image_id in ids[:3]:
        blocks = [
            {"topic": "shapes", "content": _turns("What is on the left?", "A red ellipse.", "Why?", "It was drawn.")},
            {"topic": "colours", "content": _turns("Which colour dominates?", "Green.")},
        ]
        for block in blocks:
            for turn in block["content"]:
                turn["from"] = "user" if turn["from"] == "human" else "gpt"
        conversation.append({"image_id": image_id, "conversations": blocks})
    conversation[2]["conversations"][1]["content"][0]["from"] = "system"
    complex_reasoning = [
        {"image_id": image_id, "conversations": [{"content": _user(f"Why might shape {n} be here?", "To test.")}]}
        for n, image_id in enumerate(ids[3:6])
    ]
    referring = [
        {
            "image_id": image_id,
            "conversations": [
                {"content": _user("What is the rail made of?", "The <st>rail<ed> [0.2, 0.6, 0.8, 0.7] is metal.")},
                {"content": _user("Where is the box?", "The <st>box<ed> [0.1, 0.1, 0.3, 0.4] is top left.")},
            ],
        }
        for image_id in (ids[6], only_second)
    ]
    detail = [
        {"image_id": ids[7], "conversations": [{"content": _user("Delve into the particulars of the image.", "It…")}]},
        {"image_id": 31415926, "conversations": [{"content": _user("Describe the image.", "Nothing.")}]},
        {"image_id": ids[8], "conversations": "not a list of blocks"},
        {
            "image_id": int(twin.rsplit("/", 1)[1][:-4]),
            "conversations": [{"content": _user("Describe it.", "Shapes.")}],
        },
    ]
    files = {
        "conversation.json": conversation,
        "complex_reasoning.json": complex_reasoning,
        "referring_qa.json": referring,
        "detail_description.json": detail,
    }
    rejects = {("conversation.json", 2, 1): "bad_role", ("detail_description.json", 1, 0): "missing_image"}
    rejects[("detail_description.json", 2, 0)] = "malformed_record"
    for name, records in files.items():
        for number, record in enumerate(records):
            blocks = record["conversations"] if isinstance(record["conversations"], list) else [None]
            for block in range(len(blocks)):
                writer.next_row(rejects.get((name, number, block)))
        (root / name).write_text(json.dumps(records))
    return writer.fixture


def _user(question: str, answer: str) -> list[dict[str, str]]:
    return [{"from": "user", "value": question}, {"from": "gpt", "value": answer}]


def write_textocr(root: Path, textvqa: list[str], planted: dict[str, tuple[str, str]]) -> SourceFixture:
    """`train.jsonl` over the TextVQA pictures: one caption per file, a bad line, an empty and a missing one."""
    writer = FixtureWriter(root, "textocr_gpt4v")
    writer.fixture.planted.update({copy: planted[copy] for copy in textvqa if copy in planted})
    lines = []
    for number, path in enumerate([*textvqa, "textvqa/train_images/0123456789abcdef.jpg"]):
        described = f"The image shows shapes on a gradient, picture {number}."
        said = "There is no discernible text within the image." if number == 1 else f'The sign says "OPEN {number}".'
        record = {
            "filename": path.rsplit("/", 1)[1],
            "caption": f"DESCRIPTION\n{described}\n\nTEXT\n{said}",
            "caption_image": described,
            "caption_text": said,
            "caption_condensed": f"{described} {said}",
        }
        lines.append(json.dumps(record, ensure_ascii=False))
        writer.next_row("missing_image" if number == len(textvqa) else None)
    lines.append('{"filename": "broken.jpg", "caption": ')
    writer.next_row("malformed_record")
    lines.append(json.dumps({**json.loads(lines[0]), "caption": ""}))
    writer.next_row("empty_turn")
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    return writer.fixture


ZH600K_FILE = "llava-instruct-zh-600k/data/train-00000-of-00001.parquet"
ZH_ROWS = (
    ("日常对话", ("图片里有什么？", "图片里有几个彩色的形状。", "左边是什么颜色？", "左边是红色的。")),
    ("复杂推理", ("为什么这些形状会出现在这里？", "它们可能是为了测试视觉模型而画的。")),
    ("描述图片", ("详细描述这张照片的场景。", "这是一张带有渐变背景和四个形状的图片。")),
)


def write_zh600k(root: Path, rng: np.random.Generator) -> SourceFixture:
    """A Parquet release in the Hub's image layout (`{bytes, path}`) with Chinese task labels."""
    writer = FixtureWriter(root, "llava_instruct_zh_600k")
    photos = [synthetic_photo(rng) for _ in range(7)]
    copy_of, copy_row, bad_row = 1, len(photos), len(photos) + 1
    blobs = [encode(photo) for photo in photos] + [_near_copy(photos[copy_of]), encode(photos[0])[:300]]
    for number, data in enumerate(blobs):
        task, texts = ZH_ROWS[number % len(ZH_ROWS)]
        turns = _turns(*texts)
        reject = None
        if number == bad_row:
            reject = "undecodable_image"
        elif number == 4:
            turns = [turns[1], turns[0]]
            reject = "turns_not_alternating"
        name = f"{number:06d}.jpg"
        record = {"id": f"zh_{number:06d}", "image": {"bytes": data, "path": name}, "conversations": turns}
        writer.row({**record, "task": task}, reject)
    image_path = "llava_instruct_zh_600k-{0:07d}/{0:06d}.jpg".format
    writer.fixture.planted[image_path(copy_row)] = (image_path(copy_of), "resized and brightened")
    turn = pa.struct([("from", pa.string()), ("value", pa.string())])
    table_schema = pa.schema(
        [
            ("id", pa.string()),
            ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
            ("conversations", pa.list_(turn)),
            ("task", pa.string()),
        ]
    )
    path = root / ZH600K_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(writer.records, schema=table_schema), path)
    return writer.fixture
