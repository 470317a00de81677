"""Turn normalisation: role names, alternation, and the single `<image>` placeholder rule.

The rule for image rows: every `<image>` token is taken out of the first human turn (together with the
line break or spaces that joined it to the text), and one `<image>\\n` is put at the start of that turn.
The rest of the text is kept verbatim. A token anywhere else, or more than one token, rejects the row.
Text-only rows must not contain the token at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from llava_mixes import schema
from llava_mixes.errors import RecordRejected

ROLE_ALIASES: dict[str, str] = {
    "human": schema.HUMAN,
    "user": schema.HUMAN,
    "gpt": schema.GPT,
    "assistant": schema.GPT,
}


def read_turns(raw_turns: Any, *, from_key: str = "from", value_key: str = "value") -> list[dict[str, str]]:
    """Turn a source's list of turn objects into `{from, value}` dicts with canonical role names."""
    if type(raw_turns) is not list:
        raise RecordRejected(schema.MALFORMED_RECORD, f"conversations is {type(raw_turns).__name__}, not a list")
    if not raw_turns:
        raise RecordRejected(schema.EMPTY_CONVERSATION, "the conversation has no turns")
    turns = []
    aliases = ROLE_ALIASES
    for position, turn in enumerate(raw_turns):
        if not isinstance(turn, Mapping):
            raise RecordRejected(schema.MALFORMED_RECORD, f"turn {position} is {type(turn).__name__}, not an object")
        role, value = turn.get(from_key), turn.get(value_key)
        if type(value) is not str:
            raise RecordRejected(schema.MALFORMED_RECORD, f"turn {position} has no string {value_key!r}")
        canonical = aliases.get(role) if type(role) is str else None
        if canonical is None:
            canonical = aliases.get(role.lower()) if type(role) is str else None
        if canonical is None:
            raise RecordRejected(schema.BAD_ROLE, f"turn {position} has role {role!r}; allowed: {sorted(aliases)}")
        turns.append({"from": canonical, "value": value})
    return turns


def check_alternation(turns: list[dict[str, str]]) -> None:
    """Require human/gpt alternation starting with human, ending with gpt, and no empty turn."""
    expected = schema.HUMAN
    for position, turn in enumerate(turns):
        if turn["from"] != expected:
            raise RecordRejected(
                schema.TURNS_NOT_ALTERNATING, f"turn {position} is {turn['from']!r} where {expected!r} was expected"
            )
        if not turn["value"] or turn["value"].isspace():
            raise RecordRejected(schema.EMPTY_TURN, f"turn {position} ({turn['from']}) is empty")
        expected = schema.GPT if expected == schema.HUMAN else schema.HUMAN
    if turns[-1]["from"] != schema.GPT:
        raise RecordRejected(schema.LAST_TURN_NOT_GPT, f"the last of {len(turns)} turns is a human turn")


def _join_around_token(left: str, right: str) -> str:
    """Join the text on both sides of a removed token, dropping the whitespace that surrounded it."""
    stripped_left = left.rstrip(" \t\n")
    stripped_right = right.lstrip(" \t\n")
    if not stripped_left or not stripped_right:
        return stripped_left + stripped_right
    gap = left[len(stripped_left) :] + right[: len(right) - len(stripped_right)]
    return stripped_left + ("\n" if "\n" in gap else " ") + stripped_right


def strip_image_tokens(text: str) -> str:
    """Remove every `<image>` token from `text`, keeping the rest verbatim."""
    pieces = text.split(schema.IMAGE_TOKEN)
    joined = pieces[0]
    for piece in pieces[1:]:
        joined = _join_around_token(joined, piece)
    return joined


def place_image_token(turns: list[dict[str, str]], *, has_image: bool) -> list[dict[str, str]]:
    """Apply the placeholder rule (module docstring); returns the turns, the first one replaced if needed."""
    token = schema.IMAGE_TOKEN
    counts = [turn["value"].count(token) for turn in turns]
    total = sum(counts)
    if not has_image:
        if total:
            raise RecordRejected(
                schema.IMAGE_TOKEN_IN_TEXT_ONLY_ROW, f"{total} {token} token(s) in a row without image"
            )
        return turns
    if total > 1:
        raise RecordRejected(schema.MULTIPLE_IMAGE_TOKENS, f"{total} {token} tokens for one image")
    if total == 1 and counts[0] != 1:
        where = next(position for position, count in enumerate(counts) if count)
        raise RecordRejected(schema.IMAGE_TOKEN_MISPLACED, f"{token} is in turn {where}, not turn 0")
    first = turns[0]["value"]
    if first.startswith(token + "\n") or first == token:
        return turns
    rest = strip_image_tokens(first)
    return [{"from": turns[0]["from"], "value": token + ("\n" + rest if rest else "")}, *turns[1:]]


def _common_turns(raw_turns: Any, has_image: bool, from_key: str, value_key: str) -> list[dict[str, str]] | None:
    """The turns of the common well-formed shape (human and gpt alternating under role names `ROLE_ALIASES`
    knows as written, every text non-blank, at most one `<image>`, opening the first turn as placed), as the
    full pipeline returns them; None for anything else, which the full pipeline then reads."""
    if type(raw_turns) is not list or not raw_turns or len(raw_turns) % 2:
        return None
    aliases = ROLE_ALIASES
    human, gpt, token = schema.HUMAN, schema.GPT, schema.IMAGE_TOKEN
    turns = []
    expected = human
    for turn in raw_turns:
        if type(turn) is not dict:
            return None
        role, value = turn.get(from_key), turn.get(value_key)
        if type(role) is not str or type(value) is not str or aliases.get(role) != expected:
            return None
        if not value or value.isspace() or (token in value and turns):
            return None
        turns.append({"from": expected, "value": value})
        expected = gpt if expected == human else human
    first = turns[0]["value"]
    if token not in first:
        if has_image:
            turns[0] = {"from": human, "value": token + "\n" + first}
        return turns
    if has_image and first.count(token) == 1 and (first == token or first.startswith(token + "\n")):
        return turns
    return None


def normalise_turns(
    raw_turns: Any, *, has_image: bool, from_key: str = "from", value_key: str = "value"
) -> list[dict[str, str]]:
    """Read, check and place the image token: the full turn pipeline for one record."""
    common = _common_turns(raw_turns, has_image, from_key, value_key)
    if common is not None:
        return common
    turns = read_turns(raw_turns, from_key=from_key, value_key=value_key)
    placed = place_image_token(turns, has_image=has_image)
    check_alternation(placed)
    return placed


def first_human_text(turns: Iterable[Mapping[str, str]]) -> str:
    """The first human turn's text without the image token (what task heuristics look at)."""
    for turn in turns:
        if turn["from"] == schema.HUMAN:
            return strip_image_tokens(turn["value"])
    return ""


def check_text(fields: Iterable[tuple[str, Any]]) -> None:
    """Reject a row whose strings (`(field name, value)` pairs) hold a lone UTF-16 surrogate, which UTF-8
    cannot store: written out it would become `?` or fail the write."""
    for name, value in fields:
        if type(value) is not str or value.isascii():
            continue
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise RecordRejected(
                schema.INVALID_TEXT,
                f"{name} holds a lone surrogate U+{ord(value[error.start]):04X} at character {error.start}",
            ) from None
