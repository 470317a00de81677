"""Exact duplicate rows: the Arrow-built keys group rows exactly as the rule says (the picture's hash, each turn's
role, and its text with whitespace runs made one space and the ends stripped, as `str.split` does), whatever
the batch, the slice, nulls and characters that look like the key's own separators."""

from __future__ import annotations

import json
import random

import datasets
import pyarrow as pa

from llava_mixes import schema
from llava_mixes.dedup.rows import WHITESPACE, duplicate_rows, row_keys

TURN = pa.struct([("from", pa.string()), ("value", pa.string())])


def rule(sha: str | None, conversations: list[dict[str, str | None]] | None) -> str:
    """The rule, written the plain way: two rows are copies when these strings are equal."""
    turns = [[turn["from"], " ".join((turn["value"] or "").split())] for turn in conversations or []]
    return json.dumps([sha, turns])


def first_of(keys: list) -> list[int]:
    seen: dict = {}
    return [seen.setdefault(key, row) for row, key in enumerate(keys)]


def random_rows(count: int, seed: int) -> list[tuple[str | None, list[dict[str, str | None]] | None]]:
    rng = random.Random(seed)
    alphabet = ["a", "b", "|", ":", "+", "-", "1", "0", "\x00", "é", "中", *WHITESPACE]

    def text() -> str | None:
        return None if rng.random() < 0.05 else "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 4)))

    rows = []
    for _ in range(count):
        sha = rng.choice([None, "", "ab", "a", "b", "+1:a"])
        turns = [
            {"from": rng.choice([None, "", "human", "gpt", "h:1", "+"]), "value": text()}
            for _ in range(rng.randint(0, 3))
        ]
        rows.append((sha, None if rng.random() < 0.05 else turns))
    return rows


def table_of(rows: list) -> pa.Table:
    return pa.table(
        {
            schema.IMAGE_SHA256: pa.array([sha for sha, _ in rows], pa.string()),
            schema.CONVERSATIONS: pa.array([turns for _, turns in rows], pa.list_(TURN)),
        }
    )


def test_keys_group_rows_exactly_as_the_rule_does_in_whole_tables_and_slices() -> None:
    rows = random_rows(12000, seed=1)
    table = table_of(rows)
    assert first_of(row_keys(table)) == first_of([rule(*row) for row in rows])
    assert len(set(row_keys(table))) > 1000
    part = table.slice(777, 4000)
    assert first_of(row_keys(part)) == first_of([rule(*row) for row in rows[777:4777]])


def test_whitespace_is_what_str_split_splits_on() -> None:
    assert set(WHITESPACE) == {chr(code) for code in range(0x110000) if chr(code).isspace()}
    text = "\u3000a\u2028\x1c b\xa0\xa0c\t\n"
    rows = [("s", [{"from": "human", "value": text}]), ("s", [{"from": "human", "value": "a b c"}])]
    assert first_of(row_keys(table_of(rows))) == [0, 0]


def test_a_null_value_is_an_empty_text_but_a_null_role_is_not_an_empty_role() -> None:
    rows = [
        ("s", [{"from": "gpt", "value": None}]),
        ("s", [{"from": "gpt", "value": "  "}]),
        ("s", [{"from": None, "value": "x"}]),
        ("s", [{"from": "", "value": "x"}]),
        ("s", None),
        ("s", []),
        (None, []),
    ]
    assert first_of(row_keys(table_of(rows))) == [0, 0, 2, 3, 4, 4, 6]


def test_duplicate_rows_on_a_dataset_with_several_batches() -> None:
    rows = random_rows(40000, seed=2)
    dataset = datasets.Dataset(table_of(rows))
    expected = {row: first for row, first in enumerate(first_of([rule(*row) for row in rows])) if first != row}
    assert duplicate_rows(dataset) == expected
