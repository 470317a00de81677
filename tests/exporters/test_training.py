from __future__ import annotations

import io
from pathlib import Path

import datasets
import pytest
from PIL import Image

from llava_mixes.errors import ConfigError
from llava_mixes.exporters.training import TRL_FEATURES, as_trl, to_trl


def png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), color).save(buffer, format="PNG")
    return buffer.getvalue()


MULTI_TURN = [
    {"from": "human", "value": "<image>\nWhat is in the picture?"},
    {"from": "gpt", "value": "A red square."},
    {"from": "human", "value": "And its size?"},
    {"from": "gpt", "value": "Eight by six."},
]
TEXT_ONLY = [{"from": "human", "value": "Explain recursion."}, {"from": "gpt", "value": "See recursion."}]


def rows() -> dict[str, list[object]]:
    """Two text-only rows first (so a typed `map` is needed), then an image row."""
    return {
        "id": ["t-0", "t-1", "i-0"],
        "image_path": [None, None, "coco/1.png"],
        "image": [None, None, {"bytes": png((255, 0, 0)), "path": "1.png"}],
        "conversations": [TEXT_ONLY, TEXT_ONLY, MULTI_TURN],
    }


def dataset() -> datasets.Dataset:
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "image_path": datasets.Value("string"),
            "image": datasets.Image(),
            "conversations": datasets.List({"from": datasets.Value("string"), "value": datasets.Value("string")}),
        }
    )
    return datasets.Dataset.from_dict(rows(), features=features)


def test_an_image_row_becomes_messages_with_one_image_part_and_no_placeholder() -> None:
    picture = Image.new("RGB", (8, 6))
    out = to_trl({"image": picture, "conversations": MULTI_TURN})
    assert out["images"] == [picture]
    assert [message["role"] for message in out["messages"]] == ["user", "assistant", "user", "assistant"]
    assert out["messages"][0]["content"] == [
        {"type": "image", "text": None},
        {"type": "text", "text": "What is in the picture?"},
    ]
    assert out["messages"][2]["content"] == [{"type": "text", "text": "And its size?"}]
    assert not any("<image>" in str(message) for message in out["messages"])


def test_a_text_only_row_has_no_image_part_and_no_images() -> None:
    out = to_trl({"image": None, "image_path": None, "conversations": TEXT_ONLY})
    assert out["images"] == []
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Explain recursion."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "See recursion."}]},
    ]


def test_an_unknown_role_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"role 'system' is not allowed; choose one of \['human', 'gpt'\]"):
        to_trl({"conversations": [{"from": "system", "value": "x"}, *TEXT_ONLY]})


def test_as_trl_maps_a_dataset_keeping_the_stored_image_bytes() -> None:
    out = as_trl(dataset(), writer_batch_size=1)
    assert out.features == TRL_FEATURES and out.column_names == ["messages", "images"]
    assert out[0]["images"] == [] and isinstance(out[2]["images"][0], Image.Image)
    stored = out.cast_column("images", datasets.List(datasets.Image(decode=False)))[2]["images"][0]["bytes"]
    assert stored == png((255, 0, 0))


def test_as_trl_streams() -> None:
    streamed = list(as_trl(dataset().to_iterable_dataset()))
    assert [len(row["images"]) for row in streamed] == [0, 0, 1]
    assert isinstance(streamed[2]["images"][0], Image.Image)
    assert streamed[2]["messages"][0]["content"][0] == {"type": "image", "text": None}


def test_rows_published_with_paths_only_need_an_image_root(tmp_path: Path) -> None:
    (tmp_path / "coco").mkdir()
    (tmp_path / "coco" / "1.png").write_bytes(png((0, 0, 255)))
    paths_only = dataset().remove_columns("image")
    with pytest.raises(ConfigError, match="pass image_root="):
        as_trl(paths_only)
    out = as_trl(paths_only, image_root=tmp_path)
    assert out[2]["images"][0].getpixel((0, 0)) == (0, 0, 255) and out[0]["images"] == []
