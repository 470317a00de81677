"""Property tests of the annotation readers (`readers.py`, `json_guard.py`) on random and mutated files.

The rule for every input: the reader gives the records Python's `json` reads from the same bytes (where they are
valid JSON), or a record rejected with its reason (over a limit of `json_guard`, or a bad JSON line), or it stops
with `MalformedSourceError`; never another exception, never other records, in bounded time. Read chunks are made
small so that records, strings and escape sequences cross chunk edges.
"""

from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from llava_mixes.errors import MalformedSourceError
from llava_mixes.sources import json_guard
from llava_mixes.sources.readers import iter_json_array, iter_json_lines, iter_parquet

SECONDS = 5.0  # per example: inputs here are a few KB, so this is a bound on a hang, not a benchmark
SURROGATE = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
TEXT = st.text(st.one_of(st.characters(), SURROGATE, st.sampled_from('"\\/\b\f\n\r\t[]{},:')), max_size=12)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63) + 1, 2**63 - 1),  # what yajl holds (wider ones: see the test below)
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=20,
)
RECORDS = st.lists(VALUES, max_size=8)
LAYOUT = st.fixed_dictionaries(
    {"indent": st.sampled_from([None, 0, 1, 2, "\t"]), "ensure_ascii": st.booleans(), "bom": st.booleans()}
)
CHUNK = st.sampled_from([16, 17, 31, 64, 1 << 20])


def document(records: list[Any], layout: dict[str, Any]) -> bytes:
    """`records` as a JSON array file; lone surrogates written as `\\u` escapes (as UTF-8 cannot hold them)."""
    ascii_only = layout["ensure_ascii"] or not all(_encodable(record) for record in records)
    text = json.dumps(records, indent=layout["indent"], ensure_ascii=ascii_only)
    return (b"\xef\xbb\xbf" if layout["bom"] else b"") + text.encode("utf-8")


def _encodable(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def python_reading(data: bytes) -> list[Any] | None:
    """What Python's `json` reads from the bytes of a JSON array file (a UTF-8 BOM allowed, NaN and Infinity not,
    the text strict UTF-8), or None where that is not a JSON array."""
    try:
        text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
        value = json.loads(text, parse_constant=_refuse)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, list) else None


def _refuse(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def read_array(path: Path) -> tuple[list[Any], MalformedSourceError | None]:
    """The records `iter_json_array` yields before it ends or stops, and the error it stops with."""
    records: list[Any] = []
    began = time.perf_counter()
    try:
        for index, record in iter_json_array(path):
            assert index == len(records)
            records.append(record)
    except MalformedSourceError as error:
        return records, error
    finally:
        assert time.perf_counter() - began < SECONDS
    return records, None


def depth(value: Any) -> int:
    """Nesting levels of a JSON value (a scalar is 0)."""
    if isinstance(value, dict):
        return 1 + max((depth(item) for item in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(item) for item in value), default=0)
    return 0


def same(left: Any, right: Any) -> bool:
    """Equal as JSON values (floats as their bits: -0.0 is not 0.0, and an int is not a float)."""
    if isinstance(left, float) or isinstance(right, float):
        return type(left) is type(right) and math.copysign(1, left) == math.copysign(1, right) and left == right
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(same(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(same(left[key], right[key]) for key in left)
    return type(left) is type(right) and left == right


def rejected(record: Any) -> bool:
    return isinstance(record, tuple) and len(record) == 2 and record[0] == "malformed" and bool(record[1])


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(records=RECORDS, layout=LAYOUT, chunk=CHUNK)
def test_a_valid_array_gives_the_records_python_reads(
    tmp_path: Path, records: list[Any], layout: dict[str, Any], chunk: int
) -> None:
    data = document(records, layout)
    path = tmp_path / "valid.json"
    path.write_bytes(data)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(json_guard, "_CHUNK_BYTES", chunk)
        read, error = read_array(path)
    assert error is None
    expected = python_reading(data)
    assert expected is not None and len(read) == len(expected)
    assert all(same(got, want) for got, want in zip(read, expected, strict=True))


def nested(value: Any, levels: int, in_list: bool) -> Any:
    for _ in range(levels):
        value = [value] if in_list else {"k": value}
    return value


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    levels=st.lists(st.integers(0, 70), min_size=1, max_size=4),
    in_list=st.booleans(),
    chunk=CHUNK,
    limit=st.sampled_from([None, 1, 5, 64]),
)
def test_records_over_the_depth_limit_are_rejected_and_the_rest_read(
    tmp_path: Path, levels: list[int], in_list: bool, chunk: int, limit: int | None
) -> None:
    records = [nested("x", count, in_list) for count in levels]
    path = tmp_path / "deep.json"
    path.write_bytes(json.dumps(records).encode())
    allowed = json_guard.MAX_DEPTH if limit is None else limit
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(json_guard, "_CHUNK_BYTES", chunk)
        if limit is not None:
            patch.setattr(json_guard, "MAX_DEPTH", limit)
        read, error = read_array(path)
    assert error is None and len(read) == len(records)
    for record, got in zip(records, read, strict=True):
        if 1 + depth(record) > allowed:  # the array holding the records is level 1
            assert rejected(got) and f"deeper than {allowed} levels" in got[1]
        else:
            assert same(got, record)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(0, 300), min_size=1, max_size=5), chunk=CHUNK, limit=st.integers(8, 200))
@example(sizes=[2], chunk=16, limit=8)  # the limit falls inside "é": the guard once judged that prefix invalid
def test_records_over_the_size_limit_are_rejected_and_the_rest_read(
    tmp_path: Path, sizes: list[int], chunk: int, limit: int
) -> None:
    records = [{"t": "é" * (size // 2) + "a" * (size % 2)} for size in sizes]
    path = tmp_path / "big.json"
    path.write_bytes(b"[" + b",".join(json.dumps(record, ensure_ascii=False).encode() for record in records) + b"]")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(json_guard, "_CHUNK_BYTES", chunk)
        patch.setattr(json_guard, "MAX_RECORD_BYTES", limit)
        read, error = read_array(path)
    assert error is None and len(read) == len(records)
    for record, got in zip(records, read, strict=True):
        size = len(json.dumps(record, ensure_ascii=False).encode())
        if size + 1 > limit:  # the record's text and the comma or bracket after it
            assert rejected(got) and f"larger than the {limit:,}-byte limit" in got[1]
        else:
            assert same(got, record)


TRICKY_TEXT = st.text(st.sampled_from('"\\[]{},a'), max_size=10)  # quotes, backslashes, brackets inside strings


@given(
    value=st.recursive(
        TRICKY_TEXT | SCALARS,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TRICKY_TEXT, inner, max_size=3),
        max_leaves=12,
    )
)
def test_the_guards_depth_is_the_parsed_depth(value: Any) -> None:
    assert json_guard.max_depth(json.dumps(value).encode()) == depth(value)


def _lone(text: str) -> list[int]:
    """Indices of the surrogates in `text` that are not half of a high-low pair."""
    lone, at = [], 0
    while at < len(text):
        code = ord(text[at])
        if 0xD800 <= code < 0xDC00 and at + 1 < len(text) and 0xDC00 <= ord(text[at + 1]) <= 0xDFFF:
            at += 2
            continue
        if 0xD800 <= code <= 0xDFFF:
            lone.append(at)
        at += 1
    return lone


@given(text=TEXT, backslashes=st.integers(0, 3), lookalike=st.sampled_from(["", "ud800", "uDC00x"]))
def test_lone_surrogate_escapes_are_found_and_patched_in_place(text: str, backslashes: int, lookalike: str) -> None:
    """Backslashes and text that look like an escape (`\\\\ud800` is a backslash, then letters) are no surrogate."""
    data = "\\" * backslashes + lookalike + text
    data = data.encode("utf-16", "surrogatepass").decode("utf-16", "surrogatepass")  # pairs become characters
    encoded = json.dumps(data).encode()  # every surrogate as a \u escape
    assert len(json_guard.lone_surrogates(encoded)) == len(_lone(data))
    patched = json_guard.patch_lone_surrogates(encoded)
    assert len(patched) == len(encoded)
    expected = "".join("\ufffd" if at in set(_lone(data)) else char for at, char in enumerate(data))
    assert json.loads(patched) == expected


def mutate(data: bytes, kind: str, at: int, payload: bytes) -> bytes:
    """One careless edit of a file: a byte flipped or replaced, a cut, bytes inserted, a span deleted or doubled."""
    at = at % (len(data) + 1)
    if kind == "flip" and at < len(data):
        return data[:at] + bytes([data[at] ^ (payload[0] if payload else 0x80)]) + data[at + 1 :]
    if kind == "replace" and at < len(data):
        return data[:at] + payload[:1] + data[at + 1 :]
    if kind == "truncate":
        return data[:at]
    if kind == "insert":
        return data[:at] + payload + data[at:]
    if kind == "delete":
        return data[:at] + data[at + len(payload) :]
    return data[:at] + data[at : at + len(payload)] * 2 + data[at + len(payload) :]


EDITS = st.lists(
    st.tuples(
        st.sampled_from(["flip", "replace", "truncate", "insert", "delete", "double"]),
        st.integers(0, 10_000),
        st.binary(min_size=1, max_size=6) | st.sampled_from([b"\\", b'"', b"\\u", b"\\ud800", b"\xed\xa0\x80", b"]"]),
    ),
    min_size=1,
    max_size=3,
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(records=RECORDS, layout=LAYOUT, edits=EDITS, chunk=CHUNK)
@example(  # an encoded surrogate, which yajl passes and Python's UTF-8 decoder refuses: was a UnicodeDecodeError
    records=[{"": None, "0": None}],
    layout={"indent": None, "ensure_ascii": False, "bom": False},
    edits=[("insert", 13, b"\xed\xa0\x80")],
    chunk=16,
)
@example(
    records=[], layout={"indent": None, "ensure_ascii": False, "bom": False}, edits=[("insert", 0, b"\x0b")], chunk=16
)
@example(  # a string left open after the array: yajl ended without an error
    records=[], layout={"indent": None, "ensure_ascii": False, "bom": False}, edits=[("insert", 50, b'"')], chunk=16
)
def test_an_edited_array_gives_pythons_records_or_the_projects_error(
    tmp_path: Path, records: list[Any], layout: dict[str, Any], edits: list[tuple[str, int, bytes]], chunk: int
) -> None:
    data = document(records, layout)
    for edit in edits:
        data = mutate(data, *edit)
    path = tmp_path / "edited.json"
    path.write_bytes(data)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(json_guard, "_CHUNK_BYTES", chunk)
        read, error = read_array(path)
    expected = python_reading(data)
    if error is not None:
        assert str(path) in str(error)
        # Where Python reads the bytes, the reader may stop only on a value yajl cannot hold (a number over
        # float range), never on well-formed text.
        assert expected is None or "overflow" in str(error), str(error)
        return
    if expected is None:  # yajl also takes a vertical tab or form feed between tokens for whitespace (not in strings)
        expected = python_reading(data.replace(b"\x0b", b" ").replace(b"\x0c", b" "))
    assert expected is not None, "the reader finished a file Python's json refuses"
    assert len(read) == len(expected)
    for got, want in zip(read, expected, strict=True):
        assert rejected(got) or same(got, want)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(records=RECORDS, edits=st.lists(EDITS, max_size=1), blank=st.booleans())
@example(records=[{"": None}], edits=[[("insert", 2, b"\xed\xa0\x80")]], blank=False)  # was read as "\ud800"
@example(records=[1, 2, 3], edits=[[("insert", 4, b"{")]], blank=True)  # the reason named line 2, not line 3
def test_each_json_line_is_pythons_record_or_one_rejected_line(
    tmp_path: Path, records: list[Any], edits: list[list[tuple[str, int, bytes]]], blank: bool
) -> None:
    lines = [json.dumps(record, ensure_ascii=blank or not _encodable(record)).encode() for record in records]
    data = (b"\n\n" if blank else b"").join(line + b"\n" for line in lines)
    for edit in edits[0] if edits else []:
        data = mutate(data, *edit)
    path = tmp_path / "edited.jsonl"
    path.write_bytes(data)
    began = time.perf_counter()
    read = list(iter_json_lines(path))
    assert time.perf_counter() - began < SECONDS
    numbered = [(number, line) for number, line in enumerate(data.split(b"\n"), start=1) if line.strip()]
    assert [index for index, _ in read] == list(range(len(numbered)))
    for (_, got), (number, line) in zip(read, numbered, strict=True):
        try:
            want = json.loads(line.decode("utf-8-sig"), parse_constant=_refuse)
        except (ValueError, RecursionError):
            assert rejected(got) and f"line {number} " in got[1], (got, number)
            continue
        assert rejected(got) or same(got, want)


@pytest.mark.parametrize("cut", ['"a\\nb\\u00e9"', "true", "false", "null", "-12.5e+3", '"\\ud83d\\ude00"', '"日本"'])
@pytest.mark.parametrize("chunk", [16, 1 << 20])
def test_a_size_limit_inside_a_token_keeps_the_guard_on(tmp_path: Path, cut: str, chunk: int) -> None:
    """Records over the size limit, with the limit falling at each byte of a token (a character, an escape, a
    literal, a number). The guard once took such a cut prefix for a syntax error and handed the rest of the file
    to the parser unguarded: a record nested 300 deep after it was built in full."""
    for shift in range(len(cut.encode())):
        big = '{"t": [' + ", ".join([cut] * 8) + "]}"
        limit = len('{"t": [') + shift + 1
        path = tmp_path / f"cut{shift}.json"
        path.write_text(f"[0, {big}, {'[' * 300}{']' * 300}, 3]", encoding="utf-8")
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(json_guard, "_CHUNK_BYTES", chunk)
            patch.setattr(json_guard, "MAX_RECORD_BYTES", limit)
            read, error = read_array(path)
        assert error is None and len(read) == 4, shift
        assert read[0] == 0 and read[3] == 3
        assert rejected(read[1]) and "byte limit" in read[1][1], (shift, read[1])
        assert rejected(read[2]), shift  # not built: over either limit


@pytest.mark.parametrize("number", [b"9223372036854775808", b"-9223372036854775808", b"1e400", b"-1e999"])
def test_a_number_beyond_64_bit_range_stops_the_read_and_says_so(tmp_path: Path, number: bytes) -> None:
    """Python reads these (as a big int or infinity); yajl holds neither, so the read stops, naming the line and
    what to do, rather than reading another number."""
    path = tmp_path / "numbers.json"
    path.write_bytes(b'[{"id": 1},\n {"id": ' + number + b"}]")
    read, error = read_array(path)
    assert read == [{"id": 1}] and error is not None
    assert "line 2" in str(error) and "overflow" in str(error) and "write it as a string" in str(error)


@pytest.mark.parametrize("size", [5 << 20])
def test_a_huge_string_reads_in_bounded_time(tmp_path: Path, size: int) -> None:
    path = tmp_path / "huge.json"
    path.write_bytes(b'[{"a": "' + b"x\\n" * (size // 3) + b'"}, 1]')
    read, error = read_array(path)
    assert error is None and len(read[0]["a"]) == 2 * (size // 3) and read[1] == 1


COLUMNS = st.dictionaries(
    st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=4),
    st.sampled_from(["int", "text", "struct", "list", "binary"]),
    min_size=1,
    max_size=4,
)


def column(kind: str, rows: int) -> pa.Array:
    if kind == "int":
        return pa.array(list(range(rows)), pa.int64())
    if kind == "text":
        return pa.array([f"row {row} é" for row in range(rows)])
    if kind == "struct":
        return pa.array([{"path": f"{row}.jpg", "bytes": bytes([row % 256])} for row in range(rows)])
    if kind == "list":
        return pa.array([[{"from": "human", "value": "q"}] * (row % 3) for row in range(rows)])
    return pa.array([bytes([row % 256]) * (row % 5) for row in range(rows)], pa.binary())


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(columns=COLUMNS, rows=st.integers(0, 600), edit=st.none() | EDITS)
@example(columns={"a": "text"}, rows=2, edit=[("flip", 36, b"\x80")])  # text not UTF-8: was a UnicodeDecodeError
@example(columns={"a": "list", "b": "list", "aa": "list"}, rows=58, edit=[("flip", 555, b"\x80")])  # its footer
def test_parquet_gives_its_rows_or_the_projects_error(
    tmp_path: Path, columns: dict[str, str], rows: int, edit: list[tuple[str, int, bytes]] | None
) -> None:
    table = pa.table({name: column(kind, rows) for name, kind in columns.items()})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    data = buffer.getvalue()
    for change in edit or []:
        data = mutate(data, *change)
    path = tmp_path / "train.parquet"
    path.write_bytes(data)
    read: list[Any] = []
    began = time.perf_counter()
    try:
        read = [record for _, record in iter_parquet(path)]
    except MalformedSourceError as error:
        assert str(path) in str(error)
        assert edit, "an untouched file must read"
    assert time.perf_counter() - began < SECONDS
    if not edit:
        assert read == table.to_pylist()
