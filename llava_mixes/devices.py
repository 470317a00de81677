"""Which torch devices to use, answered without importing torch where no GPU can be there; how many threads
NumPy's BLAS may use."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


def cuda_available() -> bool:
    """Whether torch sees a GPU; without an NVIDIA driver, answered without importing torch (slow)."""
    if "torch" not in sys.modules and not os.path.exists("/proc/driver/nvidia/version"):
        return False
    import torch

    return torch.cuda.is_available()


def parse_devices(device: str | None) -> list[str]:
    """Devices to embed on: a comma-separated list, `cuda` for every visible GPU, or None for auto."""
    if device and "," in device:
        return [part.strip() for part in device.split(",") if part.strip()]
    if device in (None, "cuda"):
        if cuda_available():
            import torch

            count = torch.cuda.device_count()
            return [f"cuda:{index}" for index in range(count)] if count > 1 else ["cuda"]
        return ["cuda"] if device == "cuda" else ["cpu"]
    return [device]


@contextlib.contextmanager
def blas_threads(limit: int) -> Iterator[None]:
    """Cap NumPy's BLAS (OpenBLAS, MKL) at `limit` threads inside the block. Its threads spin while they wait
    for each other; on a busy 2-core machine a 1024 x 96 QR factorisation took 0.2-1.7 s with two of them and
    4 ms with one. Small factorisations and passes that already run on their own threads want one."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=limit, user_api="blas"):
        yield
