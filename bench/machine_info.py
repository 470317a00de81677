"""What the benchmarks record about the machine they ran on, and a process's own peak memory."""

from __future__ import annotations

import os
import platform


def host() -> str:
    """`<arch> <CPU model>, <n> cores`, for a results header."""
    with open("/proc/cpuinfo") as handle:
        cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "?")
    return f"{platform.machine()} {cpu}, {os.cpu_count()} cores"


def peak_rss_bytes() -> int:
    """This process's own peak RSS (`VmHWM`). Not `ru_maxrss`: Linux carries the parent's RSS at fork
    into it across exec, so a worker started by a big parent would report the parent's size."""
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmHWM:"))
