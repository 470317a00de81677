"""The one-pass reading of well-formed turns gives what the full pipeline gives, on every shape tried."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from llava_mixes.errors import RecordRejected
from llava_mixes.sources.conversation import (
    _common_turns,
    check_alternation,
    normalise_turns,
    place_image_token,
    read_turns,
)

ROLES = ["human", "user", "gpt", "assistant", "USER", "Gpt", "system", 3, None]
VALUES = ["Q", "<image>\nQ", "<image>", "Q <image>", "<image><image>", "", "  ", "\n<image>", "é ✓", 5, None]


def _full_pipeline(raw_turns: Any, has_image: bool) -> list[dict[str, str]] | str:
    """The turns by the general path (read, place the token, check), or the reason it rejects them."""
    try:
        placed = place_image_token(read_turns(raw_turns), has_image=has_image)
        check_alternation(placed)
    except RecordRejected as error:
        return error.reason
    return placed


def _shapes() -> list[Any]:
    pairs = [{"from": role, "value": value} for role, value in itertools.product(ROLES, VALUES)]
    shapes: list[Any] = [[first, second] for first in pairs[::3] for second in pairs[1::4]]
    shapes += [[{"from": "user", "value": "Q"}, {"from": "gpt", "value": "A"}] * repeat for repeat in (1, 2, 3)]
    shapes += [[{"from": "user", "value": "Q"}], [], "turns", [5, 6], [{"from": ["user"], "value": "Q"}, {}]]
    shapes += [[{"role": "user", "value": "Q"}, {"from": "gpt", "value": "A"}]]
    # The token first, with no line break after it (the one-pass reading must leave these to the full pipeline).
    starts = ("<image>Q", "<image> Q", "<image>\tQ", "<image>\rQ", "<image>\n")
    shapes += [[{"from": "human", "value": value}, {"from": "gpt", "value": "A"}] for value in starts]
    return shapes


@pytest.mark.parametrize("has_image", [True, False])
def test_common_turns_agree_with_the_full_pipeline(has_image: bool) -> None:
    taken = 0
    for raw in _shapes():
        common = _common_turns(raw, has_image, "from", "value")
        expected = _full_pipeline(raw, has_image)
        if common is not None:
            taken += 1
            assert common == expected, raw
        result: list[dict[str, str]] | str
        try:
            result = normalise_turns(raw, has_image=has_image)
        except RecordRejected as error:
            result = error.reason
        assert result == expected, raw
    assert taken >= 5
