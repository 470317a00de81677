"""The remembered bfloat16 speed probe (`llava_mixes.dedup.speed`, issue 25 part 4), attacked.

The record is a file in the content cache root that anyone with write access to it can edit, replace or
damage. Whatever it holds, the search's decisions stay exact (the record picks only how tiles are scored), a
record that is not a well-formed, checksummed answer for this machine is measured again and rewritten
(`repaired`), and nothing the record holds can hang, crash or slow the read beyond one small bounded read.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from llava_mixes.dedup import search, speed
from llava_mixes.dedup.search import brute_force_keep_first, greedy_keep_first
from llava_mixes.playground.synthetic import clustered_vectors

FEATURE = "caches and build folders"


@pytest.fixture(autouse=True)
def probe(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """No answer in this process yet; a CPU with bfloat16 instructions; the measurement stubbed at 3.0x and
    counted."""
    calls: list[int] = []
    speed.cpu_bfloat16_speedup.cache_clear()
    monkeypatch.setattr(speed, "x86_has_bfloat16", lambda: True)
    monkeypatch.setattr(speed, "measure_bfloat16_speedup", lambda: calls.append(1) or 3.0)
    yield calls
    speed.cpu_bfloat16_speedup.cache_clear()


def path() -> Path:
    return speed.record_path(speed.machine_key())


def forged(value: object, key: dict | None = None) -> bytes:
    """A record with a correct checksum for `value` (what someone who read this module could write)."""
    key = key or speed.machine_key()
    digest = speed._checksum(key, value)  # type: ignore[arg-type]
    return json.dumps({"key": key, "speedup": value, "sha256": digest}).encode()


def again() -> float:
    speed.cpu_bfloat16_speedup.cache_clear()
    return speed.cpu_bfloat16_speedup()


def plant(data: bytes) -> None:
    path().parent.mkdir(parents=True, exist_ok=True)
    path().write_bytes(data)


def assert_rewritten() -> None:
    record = json.loads(path().read_text())
    assert record["speedup"] == 3.0 and record["sha256"] == speed._checksum(speed.machine_key(), 3.0)


@pytest.mark.adversarial("repaired")
@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(b"", id="emptied"),
        pytest.param(b"\x00\xff" * 300, id="random-bytes"),
        pytest.param(b'{"key": {"version": 1}, "speedup": 4.0', id="truncated"),
        pytest.param(b"[1, 2, 3]", id="a-list"),
        pytest.param(b"4.0", id="a-bare-number"),
        pytest.param(b"[" * 100000 + b"]" * 100000, id="nested-past-the-size-cap"),
        pytest.param(b'{"a":' * 3000 + b"1" + b"}" * 3000, id="nested-deep"),
        pytest.param(b'{"speedup": 4.0}', id="no-key-no-checksum"),
    ],
)
def test_a_damaged_record_is_measured_again_and_rewritten(probe: list[int], damage: bytes) -> None:
    plant(damage)
    assert again() == 3.0
    assert probe == [1]
    assert_rewritten()


@pytest.mark.adversarial("repaired")
@pytest.mark.parametrize(
    "value",
    [
        pytest.param(float("nan"), id="nan"),
        pytest.param(float("inf"), id="infinite"),
        pytest.param(-2.0, id="negative"),
        pytest.param(1e9, id="absurdly-large"),
        pytest.param("4.0", id="a-string"),
        pytest.param(True, id="a-boolean"),
        pytest.param(None, id="null"),
    ],
)
def test_a_forged_record_with_a_correct_checksum_but_no_sane_number_is_not_believed(
    probe: list[int], value: object
) -> None:
    plant(forged(value))
    assert again() == 3.0
    assert probe == [1]


@pytest.mark.adversarial("repaired")
def test_an_edited_number_fails_its_checksum(probe: list[int]) -> None:
    speed.cpu_bfloat16_speedup()
    record = json.loads(path().read_text())
    record["speedup"] = 50.0
    plant(json.dumps(record).encode())
    assert again() == 3.0 and probe == [1, 1]


@pytest.mark.adversarial("repaired")
def test_another_machines_record_copied_here_is_not_used(probe: list[int]) -> None:
    other = {**speed.machine_key(), "cpu": "Some Other CPU"}
    plant(forged(7.0, other))
    assert again() == 3.0 and probe == [1]
    assert_rewritten()


@pytest.mark.adversarial("correct")
def test_a_well_formed_record_is_read_without_measuring(probe: list[int]) -> None:
    plant(forged(5.0))
    assert again() == 5.0 and probe == []


@pytest.mark.adversarial("correct")
@pytest.mark.parametrize("lie", [0.0, 999.0], ids=["says-bfloat16-is-slow", "says-bfloat16-is-fast"])
def test_a_lying_record_changes_the_speed_never_the_decisions(monkeypatch: pytest.MonkeyPatch, lie: float) -> None:
    vectors = clustered_vectors(1500, dim=64)
    monkeypatch.setattr(search, "CPU_BFLOAT16_MIN_ITEMS", 500)
    monkeypatch.setattr(search, "CPU_BFLOAT16_BLOCK", 128)
    monkeypatch.setattr(search, "CPU_BFLOAT16_TILE", 256)
    monkeypatch.setattr(search, "cpu_bfloat16_speedup", speed.cpu_bfloat16_speedup)
    plant(forged(lie))
    result = greedy_keep_first(vectors, 0.8, prune=False)
    assert result.work.precision == ("bfloat16" if lie > 1 else "float32")
    expected = brute_force_keep_first(vectors, 0.8)
    assert np.array_equal(result.kept, expected.kept)
    assert np.array_equal(result.duplicate_of, expected.duplicate_of)


@pytest.mark.adversarial("correct")
def test_a_fifo_at_the_record_path_does_not_hang_the_search(probe: list[int]) -> None:
    path().parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path())
    answer: list[float] = []
    reader = threading.Thread(target=lambda: answer.append(again()), daemon=True)
    reader.start()
    reader.join(timeout=20)
    assert answer == [3.0]


@pytest.mark.adversarial("correct")
def test_a_folder_at_the_record_path_costs_a_measurement_and_a_warning(
    probe: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    path().mkdir(parents=True)
    with caplog.at_level(logging.WARNING, logger=speed.__name__):
        assert again() == 3.0
    assert path().is_dir() and "could not remember" in caplog.text


@pytest.mark.adversarial("correct")
def test_a_symlinked_record_is_replaced_not_written_through(probe: list[int], tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("not yours")
    path().parent.mkdir(parents=True, exist_ok=True)
    path().symlink_to(outside)
    assert again() == 3.0
    assert outside.read_text() == "not yours"
    assert not path().is_symlink()
    assert_rewritten()


@pytest.mark.adversarial("correct")
def test_a_cache_root_that_cannot_hold_the_record_measures_and_carries_on(
    probe: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    path().parent.parent.mkdir(parents=True, exist_ok=True)
    path().parent.write_bytes(b"a file where the folder should be")
    with caplog.at_level(logging.WARNING, logger=speed.__name__):
        assert again() == 3.0
        assert again() == 3.0
    assert probe == [1, 1] and "could not remember" in caplog.text


@pytest.mark.adversarial("correct")
def test_a_leftover_temporary_file_from_a_killed_writer_is_ignored(probe: list[int]) -> None:
    speed.cpu_bfloat16_speedup()
    (path().parent / f".tmp-dead-{path().name}").write_bytes(b'{"speedup": 9')
    assert again() == 3.0 and probe == [1]


@pytest.mark.adversarial("correct")
def test_concurrent_writers_leave_one_whole_record(probe: list[int]) -> None:
    key = speed.machine_key()
    writers = [threading.Thread(target=speed.write_record, args=(path(), key, 3.0)) for _ in range(8)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert speed.read_record(path(), key) == 3.0
    assert [entry.name for entry in path().parent.iterdir()] == [path().name]
