from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llava_mixes.errors import MalformedSourceError
from llava_mixes.sources.readers import iter_json_array, iter_json_lines, iter_parquet, reader_for

RECORDS = [{"id": i, "conversations": [{"from": "human", "value": "hi\nthere"}]} for i in range(3)]


def test_streams_every_record_with_mixed_id_types(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps([{"id": 1}, {"id": "x"}, {"id": 2.5}]))
    assert [record for _, record in iter_json_array(path)] == [{"id": 1}, {"id": "x"}, {"id": 2.5}]


def test_reports_bytes_read(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps(RECORDS))
    seen: list[int] = []
    list(iter_json_array(path, seen.append))
    assert sum(seen) == path.stat().st_size


@pytest.mark.parametrize("insert_at", ["conversations", "hi"])
def test_malformed_json_names_file_and_the_same_position_as_python(tmp_path: Path, insert_at: str) -> None:
    text = json.dumps(RECORDS, indent=2)
    at = text.index(f'"{insert_at}', 100)
    broken = text[:at] + "," + text[at:]
    path = tmp_path / "broken.json"
    path.write_text(broken)
    with pytest.raises(json.JSONDecodeError) as reference:
        json.loads(broken)
    with pytest.raises(MalformedSourceError) as caught:
        list(iter_json_array(path))
    message = str(caught.value)
    assert str(path) in message
    assert f"line {reference.value.lineno}, column {reference.value.colno} (byte {reference.value.pos})" in message
    assert "after 1 complete records" in message


def test_truncated_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.json"
    text = json.dumps(RECORDS)
    path.write_text(text[: text.rindex("}")])
    with pytest.raises(MalformedSourceError, match="premature EOF"):
        list(iter_json_array(path))


@pytest.mark.parametrize(("content", "match"), [("", "empty"), ('{"id": 1}', "expected a JSON array")])
def test_not_an_array_is_an_error(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "x.json"
    path.write_text(content)
    with pytest.raises(MalformedSourceError, match=match):
        list(iter_json_array(path))


def test_byte_order_mark_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(RECORDS).encode())
    assert len(list(iter_json_array(path))) == 3


def test_json_lines_bad_line_is_one_record_not_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"a": 1}\n{broken\n\n{"a": 3}\n')
    rows = list(iter_json_lines(path))
    assert rows[0] == (0, {"a": 1})
    assert rows[1][1][0] == "malformed" and "line 2" in rows[1][1][1]
    assert rows[2] == (2, {"a": 3})


def test_parquet_rows_stream_as_dicts_with_struct_columns(tmp_path: Path) -> None:
    records = [{"id": str(i), "image": {"bytes": i.to_bytes(2, "big"), "path": f"{i}.jpg"}} for i in range(600)]
    path = tmp_path / "train-00000.parquet"
    pq.write_table(pa.Table.from_pylist(records), path)
    seen: list[int] = []
    assert [record for _, record in iter_parquet(path, seen.append)] == records
    assert [index for index, _ in reader_for(path)(path, None)] == list(range(600))
    assert 0 < sum(seen) <= path.stat().st_size
    assert reader_for(tmp_path / "train.jsonl") is iter_json_lines
    assert reader_for(tmp_path / "a.json") is iter_json_array
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(MalformedSourceError, match=r"broken\.parquet: not a readable Parquet file"):
        list(iter_parquet(tmp_path / "broken.parquet"))
