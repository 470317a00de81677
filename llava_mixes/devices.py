"""Which torch devices to use, answered without importing torch where no GPU can be there."""

from __future__ import annotations

import os
import sys


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
