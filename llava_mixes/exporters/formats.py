"""The four export formats: each row of this schema as the record its training tool reads.

Checked against each tool's own reading code and demo files:

- `llava`: LLaVA's `LazySupervisedDataset` (`llava/train/train.py`) `json.load`s one JSON list of
  `{id, image, conversations}`; a row is an image row exactly when it has an `image` key, opened as
  `os.path.join(--image_folder, image)`; `preprocess_multimodal` moves `<image>` to the start of its turn
  followed by `\\n`, as this schema already stores it. Text-only rows have no `image` key (as in the 665K file).
- `llamafactory`: `data/mllm_demo.json` and `data/README.md`: a JSON list of `{messages: [{role, content}],
  images: [paths]}` with `user`/`assistant` roles, one `<image>` in the text per entry of `images`, paths
  joined to `media_dir` (default: `dataset_dir`) by `converter.py`'s `_find_medias`; registered by a
  `dataset_info.json` entry with `formatting: sharegpt`, `columns` and `tags`.
- `swift`: ms-swift's `docs/source_en/Customization/Custom-dataset.md`: JSON Lines of `{messages, images}`,
  `<image>` tags in the text, image paths "preferably absolute" (relative ones resolve against the working
  directory or `ROOT_IMAGE_DIR`), so this format writes absolute paths.
- `jsonl`: this package's schema, one row per line, without the picture's bytes: `image` is the picture's
  path relative to the export's image root.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llava_mixes import schema

ROLES = {schema.HUMAN: "user", schema.GPT: "assistant"}

LLAMAFACTORY_COLUMNS = {"messages": "messages", "images": "images"}
LLAMAFACTORY_TAGS = {
    "role_tag": "role",
    "content_tag": "content",
    "user_tag": "user",
    "assistant_tag": "assistant",
}


def _messages(turns: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{"role": ROLES[turn["from"]], "content": turn["value"]} for turn in turns]


def llava_record(row: dict[str, Any], image: str | None) -> dict[str, Any]:
    """`{id, image, conversations}`; no `image` key on a text-only row. `id` is the source's own id."""
    record: dict[str, Any] = {"id": row[schema.SOURCE_ID]}
    if image is not None:
        record["image"] = image
    record["conversations"] = [{"from": turn["from"], "value": turn["value"]} for turn in row[schema.CONVERSATIONS]]
    return record


def messages_record(row: dict[str, Any], image: str | None) -> dict[str, Any]:
    """`{messages, images}` with `user`/`assistant` roles and the text verbatim (`<image>` tags included)."""
    return {"messages": _messages(row[schema.CONVERSATIONS]), "images": [image] if image is not None else []}


def schema_record(row: dict[str, Any], image: str | None) -> dict[str, Any]:
    """Every column of the row except the picture's bytes; `image` is the picture's exported path."""
    record = {key: value for key, value in row.items() if key != schema.IMAGE}
    record[schema.IMAGE] = image
    return record


@dataclass(frozen=True)
class Format:
    """One export format: its record, file layout and how picture paths are written."""

    name: str
    record: Callable[[dict[str, Any], str | None], dict[str, Any]]
    suffix: str
    """The file is `<name><suffix>`: distinct per format, so that every format can share one output folder."""
    json_list: bool
    """True: one JSON list (`[` rows `]`); False: JSON Lines."""
    paths: str
    """`root`: relative to the image root; `media`: relative to the output folder when the pictures lie there,
    else to the image root (LLaMA-Factory's `dataset_dir` / `media_dir`); `absolute`."""
    image_key: str
    """The record key holding the picture path(s), for counting."""

    def image_path(self, picture: str, base: str | None) -> str:
        """How this format writes the path of `picture` (an absolute path): relative to `base` when it lies
        inside it (as the consuming tool joins it), else absolute, so that moving the export keeps it valid."""
        if base is None or not (picture == base or picture.startswith(base.rstrip(os.sep) + os.sep)):
            return picture
        return os.path.relpath(picture, base).replace(os.sep, "/")


FORMATS: dict[str, Format] = {
    "llava": Format("llava", llava_record, ".llava.json", True, "root", "image"),
    "llamafactory": Format("llamafactory", messages_record, ".llamafactory.json", True, "media", "images"),
    "swift": Format("swift", messages_record, ".swift.jsonl", False, "absolute", "images"),
    "jsonl": Format("jsonl", schema_record, ".jsonl", False, "root", "image"),
}


def record_images(fmt: Format, record: dict[str, Any]) -> list[str]:
    """The picture paths one written record names."""
    value = record.get(fmt.image_key)
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def record_texts(fmt: Format, record: dict[str, Any]) -> list[str]:
    """The turn texts one written record holds."""
    if fmt.record is messages_record:
        return [message["content"] for message in record["messages"]]
    return [turn["value"] for turn in record[schema.CONVERSATIONS]]


def image_tags(texts: list[str]) -> int:
    """How many `<image>` tags the texts hold."""
    return sum(text.count(schema.IMAGE_TOKEN) for text in texts)


def llamafactory_entry(file_name: str) -> dict[str, Any]:
    """The `dataset_info.json` entry that registers an exported `llamafactory` file (LLaMA-Factory data/README.md)."""
    return {
        "file_name": file_name,
        "formatting": "sharegpt",
        "columns": dict(LLAMAFACTORY_COLUMNS),
        "tags": dict(LLAMAFACTORY_TAGS),
    }


def llamafactory_hub_entry(repo_id: str, config: str) -> dict[str, Any]:
    """The `dataset_info.json` entry with which LLaMA-Factory reads a published copy from the Hub.

    LLaMA-Factory loads it with `load_dataset(hf_hub_url, subset, split=...)` and takes this schema's own
    columns: `conversations` with `from`/`value` turns and `human`/`gpt` tags, and the `image` column (one
    decoded picture, or none on a text-only row). It reads the repo's default branch: the entry has no
    revision field. Needs the `image` column, so not for copies published with `images="paths"`.
    """
    return {
        "hf_hub_url": repo_id,
        "subset": config,
        "split": schema.TRAIN_SPLIT,
        "formatting": "sharegpt",
        "columns": {"messages": schema.CONVERSATIONS, "images": schema.IMAGE},
        "tags": {"role_tag": "from", "content_tag": "value", "user_tag": schema.HUMAN, "assistant_tag": schema.GPT},
    }
