"""llava-instruct-zh-600k's plausible on-disk variants (its file layout is not confirmed): JSON, JSON Lines and
Parquet; images as paths or bytes; LLaVA turns, chat messages, or the generated text itself."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest

import llava_mixes
from llava_mixes import schema
from llava_mixes.builders.zh600k import DESCRIBE_PROMPT
from llava_mixes.errors import RecordRejected
from llava_mixes.playground.pictures import encode, synthetic_photo, write_file
from llava_mixes.sources.chat_formats import label_pair, messages_to_turns, parse_labelled_dialogue

DIALOGUE = "用户：图里有什么？\n\n助手：两个形状。\n问题：这一行属于回答。\n\n用户：什么颜色？\n\n助手：红色。"


def test_generated_dialogue_splits_on_its_own_label_pair() -> None:
    assert label_pair(DIALOGUE) == ("用户", "助手")
    assert parse_labelled_dialogue(DIALOGUE) == [
        {"from": "human", "value": "图里有什么？"},
        {"from": "gpt", "value": "两个形状。\n问题：这一行属于回答。"},
        {"from": "human", "value": "什么颜色？"},
        {"from": "gpt", "value": "红色。"},
    ]
    bold = "**问题**: 为什么？\n\n**回答**：因为。\n"
    assert parse_labelled_dialogue(bold) == [
        {"from": "human", "value": "为什么？"},
        {"from": "gpt", "value": "因为。"},
    ]


@pytest.mark.parametrize("text", ["好的，以下是对话：\n用户：你好\n\n助手：你好", "一段没有标签的描述。"])
def test_text_that_does_not_parse_is_rejected_with_the_reason(text: str) -> None:
    with pytest.raises(RecordRejected) as caught:
        parse_labelled_dialogue(text)
    assert caught.value.reason == schema.UNPARSEABLE_CONVERSATION


def test_chat_messages_with_content_parts() -> None:
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "这是什么？"}]},
        {"role": "assistant", "content": "一个形状。"},
    ]
    assert messages_to_turns(messages) == [
        {"from": "user", "value": "<image>\n这是什么？"},
        {"from": "assistant", "value": "一个形状。"},
    ]
    with pytest.raises(RecordRejected, match="content part"):
        messages_to_turns([{"role": "user", "content": [{"type": "video"}]}])


def picture(seed: int) -> bytes:
    return encode(synthetic_photo(np.random.default_rng(seed)))


def build(data_dir: Path) -> tuple[datasets.Dataset, llava_mixes.BuildReport]:
    train = datasets.load_dataset("llava_mixes", "zh600k", data_dir=str(data_dir), split="train")
    return train, llava_mixes.load_report(train)


def test_json_release_with_paths_and_generated_text(tmp_path: Path) -> None:
    release = tmp_path / "llava-instruct-zh-600k"
    for number in range(9):
        write_file(release, f"images/{number:04d}.jpg", picture(number))
    records = [
        {"id": 0, "image": "images/0000.jpg", "task": "日常对话", "conversations": DIALOGUE},
        {"id": 1, "image": "images/0001.jpg", "task": "复杂推理", "conversations": "问题: 为什么？\n\n回答: 因为。"},
        {"id": 2, "image": "images/0002.jpg", "task": "描述图片", "conversations": "图片中有两个形状。\n问题：无"},
        {"id": 3, "images": ["images/0003.jpg"], "conversations": "问题：为什么？\n\n回答：因为。"},
        {"id": 4, "image": "images/0004.jpg", "task": "其他", "conversations": "用户：你好\n\n助手：你好"},
        {"id": 5, "image": "images/0005.jpg", "task": "日常对话", "conversations": "没有标签。"},
        {"id": 6, "image": "images/0006.jpg", "task": "日常对话", "conversations": "好的：\n用户：你好\n\n助手：好"},
        {"id": 7, "images": ["images/0007.jpg", "images/0008.jpg"], "conversations": "用户：你好\n\n助手：好"},
        {"id": 8, "image": "images/0404.jpg", "conversations": "用户：你好\n\n助手：好"},
    ]
    (release / "llava_instruct_zh.json").write_text(json.dumps(records, ensure_ascii=False))
    train, report = build(tmp_path)
    rows = {row[schema.SOURCE_ID]: row for row in train}
    assert {r.source_id: r.reason for r in report.rejected} == {
        "5": "unparseable_conversation",
        "6": "unparseable_conversation",
        "7": "malformed_record",
        "8": "missing_image",
    }
    assert {r.image_group for r in report.rejected} == {"zh600k"}
    assert {source_id: row[schema.TASK] for source_id, row in rows.items()} == {
        "0": "conversation",
        "1": "complex_reasoning",
        "2": "detail_description",
        "3": "complex_reasoning",
        "4": "其他",
    }
    assert len(rows["0"][schema.CONVERSATIONS]) == 4
    assert rows["0"][schema.CONVERSATIONS][0]["value"] == "<image>\n图里有什么？"
    assert rows["2"][schema.CONVERSATIONS] == [
        {"from": "human", "value": f"<image>\n{DESCRIBE_PROMPT}"},
        {"from": "gpt", "value": "图片中有两个形状。\n问题：无"},
    ]
    assert rows["3"][schema.IMAGE_PATH] == "images/0003.jpg" and rows["3"][schema.LANGUAGE] == "zh"


def test_jsonl_messages_with_paths_under_data_dir_and_inferred_tasks(tmp_path: Path) -> None:
    write_file(tmp_path, "zh_images/a.jpg", picture(1))
    write_file(tmp_path, "zh_images/b.jpg", picture(2))
    lines = [
        {
            "image": "zh_images/a.jpg",
            "messages": [
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "详细描述这张照片。"}]},
                {"role": "assistant", "content": "两个形状。"},
            ],
        },
        {
            "image": "zh_images/b.jpg",
            "messages": [
                {"role": "user", "content": "<image>\n左边是什么？"},
                {"role": "assistant", "content": "圆。"},
                {"role": "user", "content": "右边呢？"},
                {"role": "assistant", "content": "方块。"},
            ],
        },
        {"image": "zh_images/b.jpg", "messages": [{"role": "system", "content": "你是助手。"}]},
    ]
    release = tmp_path / "llava-instruct-zh-600k"
    release.mkdir()
    (release / "train.jsonl").write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in lines))
    train, report = build(tmp_path)
    assert train[schema.TASK] == ["detail_description", "conversation"]
    assert train[0][schema.CONVERSATIONS][0]["value"] == "<image>\n详细描述这张照片。"
    assert [r.reason for r in report.rejected] == ["bad_role"]
