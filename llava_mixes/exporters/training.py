"""Rows of this schema in the shape TRL's vision SFT takes: `messages` (structured content) and `images`.

A row's `human`/`gpt` turns become `user`/`assistant` messages whose `content` is a list of parts. The
`<image>` placeholder is removed from the text and becomes one `{"type": "image"}` part at the front of the
turn that carried it (the first user turn), and the row's picture is the one entry of `images`; a
text-only row has no image part and an empty `images` list. Works with `Dataset.map` and, for streaming,
with `IterableDataset.map` (see `as_trl`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets

from llava_mixes import schema
from llava_mixes.errors import ConfigError

ROLES = {schema.HUMAN: "user", schema.GPT: "assistant"}
MESSAGES = "messages"
IMAGES = "images"
CONTENT_PART = {"type": datasets.Value("string"), "text": datasets.Value("string")}
TRL_FEATURES = datasets.Features(
    {
        MESSAGES: datasets.List({"role": datasets.Value("string"), "content": datasets.List(CONTENT_PART)}),
        IMAGES: datasets.List(datasets.Image()),
    }
)
"""The output columns; pass them as `features=` to `map` so text-only batches keep the image type."""


def _strip_placeholder(text: str) -> str:
    return text.replace(schema.IMAGE_TOKEN, "").strip()


def _image(row: dict[str, Any], image_root: str | Path | None) -> Any:
    """The row's picture: the `image` column, else `image_root / image_path` for repos published with paths only."""
    image = row.get(schema.IMAGE)
    if image is not None or row.get(schema.IMAGE_PATH) is None:
        return image
    if image_root is None:
        raise ConfigError(
            f"row {row.get(schema.ID)!r} has no `image` column (a repo published with images='paths'): "
            "pass image_root=<folder the image paths are relative to>"
        )
    return {"path": str(Path(image_root) / row[schema.IMAGE_PATH]), "bytes": None}


def to_trl(row: dict[str, Any], image_root: str | Path | None = None) -> dict[str, Any]:
    """One row's `messages` and `images` (see the module docstring); unknown roles raise `ConfigError`."""
    image = _image(row, image_root)
    messages = []
    for turn in row[schema.CONVERSATIONS]:
        if turn["from"] not in ROLES:
            raise ConfigError(f"turn role {turn['from']!r} is not allowed; choose one of {list(ROLES)}")
        content: list[dict[str, str | None]] = [{"type": "text", "text": _strip_placeholder(turn["value"])}]
        if image is not None and schema.IMAGE_TOKEN in turn["value"]:
            content.insert(0, {"type": "image", "text": None})
        messages.append({"role": ROLES[turn["from"]], "content": content})
    return {MESSAGES: messages, IMAGES: [image] if image is not None else []}


def as_trl(
    dataset: datasets.Dataset | datasets.IterableDataset, image_root: str | Path | None = None, **map_kwargs: Any
) -> datasets.Dataset | datasets.IterableDataset:
    """`dataset` mapped by `to_trl`, keeping only `messages` and `images` (PIL images when read).

    A `Dataset`'s pictures pass through as their stored bytes (no decode and re-encode while `map` writes);
    a streaming `IterableDataset` decodes each picture as it is read. `map_kwargs` go to `map`.
    """
    columns = dataset.column_names or []
    if isinstance(dataset, datasets.Dataset) and schema.IMAGE in columns:
        dataset = dataset.cast_column(schema.IMAGE, datasets.Image(decode=False))
    return dataset.map(
        to_trl,
        fn_kwargs={"image_root": image_root},
        remove_columns=columns,
        features=TRL_FEATURES,
        **map_kwargs,
    )
