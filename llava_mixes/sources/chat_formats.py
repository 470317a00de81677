"""Conversations written other than as LLaVA's turn list: chat messages, and a dialogue as one generated text.

`messages_to_turns` reads `[{"role", "content"}, …]`, where `content` is a string or a list of parts
(`{"type": "text", "text": …}`, `{"type": "image"}`): text parts are joined by line breaks and an image
part becomes `<image>` in its place, so the placeholder rule applies as to any other row.

`parse_labelled_dialogue` reads text as a model writes it when told to answer in the form
`用户:…\\n\\n助手:…` or `问题:…\\n\\n回答:…`: a label at the start of a line (bold or not), a half- or
full-width colon, then the turn's text up to the next label of the same pair. The first label decides the
pair, so a `问题:` line inside a dialogue's answer stays text. Text with no label at the start of a line,
or text before the first label, does not parse and is rejected with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from llava_mixes import schema
from llava_mixes.errors import RecordRejected

LABEL_PAIRS = {"用户": ("用户", "助手"), "助手": ("用户", "助手"), "问题": ("问题", "回答"), "回答": ("问题", "回答")}
LABEL_ROLES = {"用户": schema.HUMAN, "问题": schema.HUMAN, "助手": schema.GPT, "回答": schema.GPT}


def _label_pattern(labels: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(labels)
    return re.compile(rf"^[ \t]*(?:\*\*)?({alternatives})(?:\*\*)?[ \t]*[:：](?:\*\*)?[ \t]*", re.MULTILINE)


ANY_LABEL = _label_pattern(tuple(LABEL_ROLES))
PAIR_PATTERNS = {pair: _label_pattern(pair) for pair in set(LABEL_PAIRS.values())}


def label_pair(text: str) -> tuple[str, str] | None:
    """The label pair of a generated dialogue (`("用户", "助手")` or `("问题", "回答")`), or None if it has none."""
    first = ANY_LABEL.search(text)
    return None if first is None else LABEL_PAIRS[first.group(1)]


def parse_labelled_dialogue(text: str) -> list[dict[str, str]]:
    """Split a generated dialogue into `{from, value}` turns (see the module docstring)."""
    first = ANY_LABEL.search(text)
    if first is None:
        raise RecordRejected(
            schema.UNPARSEABLE_CONVERSATION, "no 用户:/助手: or 问题:/回答: label at the start of a line"
        )
    preamble = text[: first.start()].strip()
    if preamble:
        raise RecordRejected(schema.UNPARSEABLE_CONVERSATION, f"text before the first label: {preamble[:60]!r}")
    labels = list(PAIR_PATTERNS[LABEL_PAIRS[first.group(1)]].finditer(text))
    turns = []
    for label, following in zip(labels, [*labels[1:], None], strict=True):
        end = following.start() if following is not None else len(text)
        turns.append({"from": LABEL_ROLES[label.group(1)], "value": text[label.end() : end].strip()})
    return turns


def _join_parts(parts: list[Any], position: int) -> str:
    pieces = []
    for part in parts:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text" and isinstance(part.get("text"), str):
            pieces.append(part["text"])
        elif kind == "image":
            pieces.append(schema.IMAGE_TOKEN)
        else:
            raise RecordRejected(
                schema.MALFORMED_RECORD, f"message {position} has a content part {part!r}; expected text or image"
            )
    return "\n".join(pieces)


def messages_to_turns(messages: Any) -> list[dict[str, Any]]:
    """Chat messages as `{from, value}` turns with the roles as written (`read_turns` checks them)."""
    if not isinstance(messages, list):
        raise RecordRejected(schema.MALFORMED_RECORD, f"messages is {type(messages).__name__}, not a list")
    turns = []
    for position, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise RecordRejected(
                schema.MALFORMED_RECORD, f"message {position} is {type(message).__name__}, not an object"
            )
        content = message.get("content")
        if isinstance(content, list):
            content = _join_parts(content, position)
        turns.append({"from": message.get("role"), "value": content})
    return turns
