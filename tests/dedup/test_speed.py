"""The bfloat16 speed probe, remembered per machine (`llava_mixes.dedup.speed`), and the BLAS thread cap."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from llava_mixes.dedup import speed
from llava_mixes.devices import blas_threads


@pytest.fixture(autouse=True)
def fresh_probe(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Each test starts with no answer in this process, on a CPU with bfloat16 instructions, and counts how often
    the (stubbed, 3.0x) measurement runs."""
    calls: list[int] = []
    speed.cpu_bfloat16_speedup.cache_clear()
    monkeypatch.setattr(speed, "x86_has_bfloat16", lambda: True)
    monkeypatch.setattr(speed, "measure_bfloat16_speedup", lambda: calls.append(1) or 3.0)
    yield calls
    speed.cpu_bfloat16_speedup.cache_clear()


def record_file() -> Path:
    return speed.record_path(speed.machine_key())


def test_the_first_process_measures_and_the_next_reads_the_record(fresh_probe: list[int]) -> None:
    assert speed.cpu_bfloat16_speedup() == 3.0
    assert len(fresh_probe) == 1 and record_file().is_file()
    speed.cpu_bfloat16_speedup.cache_clear()
    assert speed.cpu_bfloat16_speedup() == 3.0
    assert len(fresh_probe) == 1


def test_the_record_lives_in_the_content_cache_root(tmp_path: Path) -> None:
    speed.cpu_bfloat16_speedup()
    assert record_file().parent == tmp_path / "content_cache" / speed.PROBE_FOLDER


def test_the_key_names_what_the_speed_depends_on(monkeypatch: pytest.MonkeyPatch) -> None:
    key = speed.machine_key()
    assert {"cpu", "flags", "torch", "numpy", "cores", "threads", "arch", "version"} <= set(key)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    other = speed.machine_key()
    assert other != key and speed.record_path(other) != speed.record_path(key)


def test_a_record_for_another_thread_setting_is_not_used(
    fresh_probe: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    speed.cpu_bfloat16_speedup()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    speed.cpu_bfloat16_speedup.cache_clear()
    speed.cpu_bfloat16_speedup()
    assert len(fresh_probe) == 2


def test_an_edited_number_is_measured_again_and_rewritten(fresh_probe: list[int]) -> None:
    speed.cpu_bfloat16_speedup()
    record = json.loads(record_file().read_text())
    record["speedup"] = 9.0
    record_file().write_text(json.dumps(record))
    speed.cpu_bfloat16_speedup.cache_clear()
    assert speed.cpu_bfloat16_speedup() == 3.0
    assert len(fresh_probe) == 2
    assert json.loads(record_file().read_text())["speedup"] == 3.0


def test_without_torch_there_is_nothing_to_measure(fresh_probe: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speed, "machine_key", lambda: {"torch": None})
    assert speed.cpu_bfloat16_speedup() == 0.0
    assert fresh_probe == []


def test_blas_threads_caps_numpy_blas_inside_the_block_only() -> None:
    np.ones((4, 4)) @ np.ones((4, 4))
    before = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    with blas_threads(1):
        assert all(pool["num_threads"] == 1 for pool in threadpool_info() if pool["user_api"] == "blas")
    assert [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"] == before
