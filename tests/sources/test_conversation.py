from __future__ import annotations

import pytest

from llava_mixes import schema
from llava_mixes.errors import RecordRejected
from llava_mixes.sources.conversation import normalise_turns, strip_image_tokens


def turns(*values: str, roles: tuple[str, ...] = ("human", "gpt")) -> list[dict[str, str]]:
    return [{"from": roles[i % len(roles)], "value": value} for i, value in enumerate(values)]


@pytest.mark.parametrize(
    ("first", "expected"),
    [
        ("<image>\nWhat is it?", "<image>\nWhat is it?"),
        ("What is it?\n<image>", "<image>\nWhat is it?"),
        (
            "What is going on?\n<image> In a style that echoes artistry.",
            "<image>\nWhat is going on?\nIn a style that echoes artistry.",
        ),
        ("Two lines\nhere\n<image>\nthen more", "<image>\nTwo lines\nhere\nthen more"),
        ("<image>", "<image>"),
        ("  <image>  Describe.", "<image>\nDescribe."),
        ("Q <image>", "<image>\nQ"),
        # At the start but with no line break after it: the break is put in, whatever joined the text.
        ("<image>Describe.", "<image>\nDescribe."),
        ("<image> Describe.", "<image>\nDescribe."),
        ("<image>\tDescribe.", "<image>\nDescribe."),
        ("<image> \n Describe.", "<image>\nDescribe."),
        ("<image>Describe.\nThen more.", "<image>\nDescribe.\nThen more."),
    ],
)
def test_image_token_moves_to_the_start_and_text_stays_verbatim(first: str, expected: str) -> None:
    placed = normalise_turns(turns(first, "answer"), has_image=True)
    assert placed[0]["value"] == expected
    assert placed[1] == {"from": "gpt", "value": "answer"}


def test_image_row_without_token_gets_one() -> None:
    assert normalise_turns(turns("Describe.", "A cat."), has_image=True)[0]["value"] == "<image>\nDescribe."


def test_text_only_row_is_kept_verbatim() -> None:
    raw = turns("  how to apply AAOIFI standards ?", "The Accounting ... ")
    assert normalise_turns(raw, has_image=False) == raw


@pytest.mark.parametrize(
    ("raw", "has_image", "reason"),
    [
        (turns("<image>\n<image>\nTwo?", "No."), True, schema.MULTIPLE_IMAGE_TOKENS),
        (turns("Q", "<image>\nA"), True, schema.IMAGE_TOKEN_MISPLACED),
        (turns("Q", "A", "<image> later", "B"), True, schema.IMAGE_TOKEN_MISPLACED),
        (turns("<image>\nQ", "A"), False, schema.IMAGE_TOKEN_IN_TEXT_ONLY_ROW),
        (turns("A", "Q", roles=("gpt", "human")), False, schema.TURNS_NOT_ALTERNATING),
        (turns("Q", "A", "Q2", roles=("human", "gpt", "human")), False, schema.LAST_TURN_NOT_GPT),
        (turns("Q", "", roles=("human", "gpt")), False, schema.EMPTY_TURN),
        ([], False, schema.EMPTY_CONVERSATION),
        ("not a list", False, schema.MALFORMED_RECORD),
        ([{"from": "human"}], False, schema.MALFORMED_RECORD),
        ([{"from": "system", "value": "x"}, {"from": "gpt", "value": "y"}], False, schema.BAD_ROLE),
    ],
)
def test_bad_conversations_are_rejected_with_their_reason(raw: object, has_image: bool, reason: str) -> None:
    with pytest.raises(RecordRejected) as caught:
        normalise_turns(raw, has_image=has_image)
    assert caught.value.reason == reason


def test_role_aliases_are_canonicalised() -> None:
    placed = normalise_turns(turns("Q", "A", roles=("user", "assistant")), has_image=False)
    assert [turn["from"] for turn in placed] == ["human", "gpt"]


def test_strip_image_tokens_removes_every_token() -> None:
    assert strip_image_tokens("a <image> b <image>\nc") == "a b\nc"
