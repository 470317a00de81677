"""textOCR-GPT-4v, `train.jsonl` (jimmycarter/textocr-gpt4v): GPT-4V captions of TextVQA's images, with
emphasis on the text in them.

A record is `{filename, caption, caption_image, caption_text, caption_condensed}`, with no id and no
prompt. The human turn is one of `PROMPTS`, chosen by the SHA-256 of the file name (so a row keeps its
prompt whatever the file order); the answer is the full `caption` (`DESCRIPTION\\n…\\n\\nTEXT\\n…`). The
other three fields stay available as the columns `caption_image`, `caption_text` and `caption_condensed`.
`source_id` is the file name without its extension (the Open Images id). Images are TextVQA's training
images, `textvqa/train_images/<filename>`, the same files the 665K mix uses. Rows whose caption says no
text was found are kept.
"""

from __future__ import annotations

import hashlib
from typing import Any

from llava_mixes import schema
from llava_mixes.errors import RecordRejected
from llava_mixes.sources.base import Source, SourceRow
from llava_mixes.sources.conversation import check_alternation, place_image_token

IMAGE_FOLDER = "textvqa/train_images"
PROMPTS = (
    "Describe the image, then transcribe the text in it and say where each piece of text is.",
    "What does this image show? Describe it, then read out all of its text and where it appears.",
    "Give a description of the picture followed by a transcription of every piece of text in it, with locations.",
    "Describe this image and write down the text visible in it, noting where each piece is.",
)


def prompt_for(filename: str) -> str:
    """The human turn of a row: a fixed choice among `PROMPTS` by the file name's SHA-256."""
    digest = hashlib.sha256(filename.encode()).digest()
    return PROMPTS[int.from_bytes(digest[:8], "big") % len(PROMPTS)]


def _text(record: dict[str, Any], key: str) -> str | None:
    value = record.get(key)
    if value is not None and not isinstance(value, str):
        raise RecordRejected(schema.MALFORMED_RECORD, f"{key} is {type(value).__name__}, not a string")
    return value


class TextOcrGpt4v(Source):
    name = "textocr_gpt4v"
    config_name = "textocr-gpt4v"
    annotation_files = ("train.jsonl",)
    annotation_dirs = ("textocr-gpt4v", "")
    hub_repo = "jimmycarter/textocr-gpt4v"
    extra_features = schema.TEXTOCR_CAPTION_FEATURES
    description = "textOCR-GPT-4v: 25K GPT-4V captions of TextVQA images that describe them and transcribe their text."
    homepage = "https://huggingface.co/datasets/jimmycarter/textocr-gpt4v"
    license = "cc-by-nc-4.0 (non-commercial); images under TextOCR's and Open Images' terms"
    commercial_use = False
    citation = (
        "@misc{carter2024textocrgpt4v, title={TextOCR-GPT4V}, author={Carter, Jimmy}, year={2024}, "
        "howpublished={https://huggingface.co/datasets/jimmycarter/textocr-gpt4v}}"
    )
    download_hint = (
        "Download train.jsonl from the Hub dataset jimmycarter/textocr-gpt4v into data_dir/textocr-gpt4v (or "
        "data_dir), and TextVQA's train_val_images.zip into data_dir/textvqa/train_images as LLaVA lays it out."
    )

    def raw_source_id(self, record: Any) -> str | None:
        filename = record.get("filename") if isinstance(record, dict) else None
        return filename.rsplit(".", 1)[0] if isinstance(filename, str) and filename else None

    def raw_image_path(self, record: Any) -> str | None:
        filename = record.get("filename") if isinstance(record, dict) else None
        return f"{IMAGE_FOLDER}/{filename}" if isinstance(filename, str) and filename else None

    def normalise(self, record: Any) -> SourceRow:
        if not isinstance(record, dict):
            raise RecordRejected(schema.MALFORMED_RECORD, f"record is {type(record).__name__}, not an object")
        filename = _text(record, "filename")
        if not filename or not filename.strip():
            raise RecordRejected(schema.MALFORMED_RECORD, f"filename is {filename!r}; keys are {sorted(record)}")
        caption = _text(record, "caption")
        if caption is None:
            raise RecordRejected(schema.MALFORMED_RECORD, f"no caption; keys are {sorted(record)}")
        turns = place_image_token(
            [{"from": schema.HUMAN, "value": prompt_for(filename)}, {"from": schema.GPT, "value": caption}],
            has_image=True,
        )
        check_alternation(turns)
        extra = {name: _text(record, name) for name in schema.TEXTOCR_CAPTION_FEATURES}
        stem = filename.rsplit(".", 1)[0]
        return SourceRow(stem, turns, f"{IMAGE_FOLDER}/{filename}", "ocr_caption", extra=extra)
