"""How fast this CPU runs the search's products in torch bfloat16 against NumPy float32: measured once per machine
and remembered in the content cache root.

The answer only picks how the exact search scores its tiles (`search.greedy_keep_first`); both ways re-check
every score near the threshold in float64, so a wrong, stale or forged answer can make a search slower, never
different. It is still validated when read: the record names the machine it was measured on (CPU model and
flags, torch and NumPy versions, the cores this process may use and the thread settings in the environment),
carries a SHA-256 of its content, and holds one finite number in a sane range; anything else is measured again
and rewritten. Measuring costs about a second (plus importing torch); reading the record, a millisecond, without
importing torch where the answer says bfloat16 is not worth it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import logging
import math
import os
import platform
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from llava_mixes.errors import LlavaMixesError
from llava_mixes.store import default_cache_root, write_atomic

logger = logging.getLogger(__name__)

PROBE_VERSION = 2
PROBE_FOLDER = "machine"
MAX_SPEEDUP = 1000.0
"""A recorded speed-up above this (or negative, or not finite) is not believed."""
_MAX_RECORD_BYTES = 65536
_THREAD_SETTINGS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "ATEN_CPU_CAPABILITY")


def _cpu_info() -> tuple[str, list[str] | None]:
    """The CPU model name and flags from `/proc/cpuinfo` (`"?"` and None where it cannot be read)."""
    model, flags = "?", None
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name") and model == "?":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and flags is None:
                    flags = line.split(":", 1)[1].split()
                if model != "?" and flags is not None:
                    break
    except OSError:
        pass
    return model, flags


def x86_has_bfloat16() -> bool:
    """False only on an x86-64 Linux CPU whose flags list neither `avx512_bf16` nor `amx_bf16`."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return True
    flags = _cpu_info()[1]
    return flags is None or "avx512_bf16" in flags or "amx_bf16" in flags


def machine_key() -> dict[str, Any]:
    """Everything the measured speed-up depends on, read without importing torch."""
    model, flags = _cpu_info()
    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = None
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return {
        "version": PROBE_VERSION,
        "arch": platform.machine(),
        "cpu": model,
        "flags": hashlib.sha256(" ".join(sorted(flags or [])).encode()).hexdigest(),
        "torch": torch_version,
        "numpy": np.__version__,
        "cores": cores,
        "threads": {name: os.environ.get(name) for name in _THREAD_SETTINGS},
    }


def _checksum(key: dict[str, Any], speedup: float) -> str:
    return hashlib.sha256(json.dumps({"key": key, "speedup": speedup}, sort_keys=True).encode()).hexdigest()


def record_path(key: dict[str, Any], cache_root: Path | None = None) -> Path:
    """Where the speed-up measured on the machine `key` describes is remembered."""
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return (cache_root or default_cache_root()) / PROBE_FOLDER / f"bfloat16-speedup-{name}.json"


def _read_small_file(path: Path) -> bytes | None:
    """The bytes of a regular file of at most `_MAX_RECORD_BYTES`; None for anything else (absent, a folder, a
    pipe or device, too large, unreadable). Opened without blocking, so a FIFO planted there cannot hang it."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            return None
        data = os.read(descriptor, _MAX_RECORD_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(descriptor)
    return data if len(data) <= _MAX_RECORD_BYTES else None


def read_record(path: Path, key: dict[str, Any]) -> float | None:
    """The speed-up recorded at `path` for the machine `key`, or None (with the reason logged) when the record is
    absent, damaged, measured on another machine, or holds a number outside [0, `MAX_SPEEDUP`]."""
    data = _read_small_file(path)
    if data is None:
        return None
    try:
        record = json.loads(data)
        speedup = record["speedup"]
        valid = (
            isinstance(record, dict)
            and record.get("key") == key
            and isinstance(speedup, float)
            and math.isfinite(speedup)
            and 0.0 <= speedup <= MAX_SPEEDUP
            and record.get("sha256") == _checksum(key, speedup)
        )
    except (ValueError, TypeError, KeyError, RecursionError):
        valid = False
    if not valid:
        logger.info("the bfloat16 speed record %s is damaged or not this machine's; measuring again", path)
        return None
    return speedup


def write_record(path: Path, key: dict[str, Any], speedup: float) -> None:
    """Remember `speedup` for the machine `key` (atomically); a cache that cannot be written is logged, not raised:
    the next process measures again."""
    body = {"key": key, "speedup": float(speedup), "sha256": _checksum(key, float(speedup))}
    try:
        write_atomic(path, json.dumps(body, sort_keys=True, indent=1).encode())
    except (LlavaMixesError, OSError) as error:
        logger.warning("could not remember the bfloat16 speed-up in %s: %s", path, error)


def measure_bfloat16_speedup() -> float:
    """How many times faster torch multiplies bfloat16 matrices than NumPy float32 here, on a 512 x 4096 x 1024
    product (best of three after one warm-up each: 0.5 s on a 2-core EPYC, where 512 x 8192 after two warm-ups took
    1.1 s for the same ratio within the noise); 0.0 without torch."""
    try:
        import torch
    except ImportError:
        return 0.0
    rng = np.random.default_rng(0)
    left = rng.standard_normal((512, 1024), dtype=np.float32)
    right = rng.standard_normal((4096, 1024), dtype=np.float32)
    left16, right16 = torch.from_numpy(left).bfloat16(), torch.from_numpy(right).bfloat16()

    def best_of_three(product: Callable[[], object]) -> float:
        product()
        times = []
        for _ in range(3):
            start = time.perf_counter()
            product()
            times.append(time.perf_counter() - start)
        return min(times)

    numpy_seconds = best_of_three(lambda: left @ right.T)
    torch_seconds = best_of_three(lambda: torch.matmul(left16, right16.T))
    return numpy_seconds / torch_seconds


@functools.cache
def cpu_bfloat16_speedup() -> float:
    """The speed-up of torch bfloat16 over NumPy float32 products on this CPU (AMX or AVX-512 bf16 make it 2-6x;
    without bfloat16 units torch emulates it, far slower): 0.0 on an x86-64 Linux CPU whose flags lack bfloat16
    instructions (measuring took 19 s on such a 2-core EPYC) and without torch; else the record remembered for
    this machine (module docstring), measured and recorded when there is none. Once per process."""
    if not x86_has_bfloat16():
        return 0.0
    key = machine_key()
    if key["torch"] is None:
        return 0.0
    path = record_path(key)
    remembered = read_record(path, key)
    if remembered is not None:
        return remembered
    measured = measure_bfloat16_speedup()
    write_record(path, key, measured)
    return measured
