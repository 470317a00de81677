"""What the benchmarks record about the machine they ran on, a process's own peak memory, and a measurement run in a
fresh process."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys


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


def matmul_ceiling(rows: int, columns: int, dim: int, repeats: int = 5, budget: float = 3.0) -> dict[str, float]:
    """This machine's matrix-product rate (FLOP/s) on one search tile, `(rows x dim) @ (dim x columns)`, best
    of `repeats` after a warm-up (fewer once a product has taken `budget` seconds: bfloat16 without bfloat16
    units is slow): torch float32, torch bfloat16 and NumPy float32, and `best` of the three."""
    import time

    import numpy as np
    import torch

    rng = np.random.default_rng(0)
    left = rng.standard_normal((rows, dim), dtype=np.float32)
    right = rng.standard_normal((columns, dim), dtype=np.float32)
    left32, right32 = torch.from_numpy(left), torch.from_numpy(right)
    left16, right16 = left32.bfloat16(), right32.bfloat16()
    products = {
        "torch float32": lambda: torch.matmul(left32, right32.T),
        "torch bfloat16": lambda: torch.matmul(left16, right16.T),
        "numpy float32": lambda: left @ right.T,
    }
    rates = {}
    for name, product in products.items():
        product()
        best, spent = float("inf"), 0.0
        for _ in range(repeats):
            began = time.perf_counter()
            product()
            took = time.perf_counter() - began
            best, spent = min(best, took), spent + took
            if spent > budget:
                break
        rates[name] = 2.0 * rows * columns * dim / best
    rates["best"] = max(rates.values())
    return rates


def roofline_line(work: object, seconds: float, ceiling: dict[str, float]) -> str:
    """One sentence: the search's counted work (`SearchWork`) against `ceiling` (`matmul_ceiling`)."""
    rate = work.flops / seconds
    outside = seconds - work.product_seconds - work.bound_seconds
    return (
        f"{work.flops / 1e12:.2f} TFLOP in {work.precision} products ({work.scored_pairs:,} pairs x 2 x {work.dim}; "
        f"{work.bounded_pairs:,} pairs pruned on the rank-{work.rank} bound left out); "
        f"{rate / 1e9:.0f} GFLOP/s = {rate / ceiling['best']:.0%} of the best measured product rate "
        f"({ceiling['best'] / 1e9:.0f} GFLOP/s); products {work.product_seconds:.1f} s, "
        f"bound {work.bound_seconds:.1f} s, "
        f"outside the products {outside:.1f} s ({outside / seconds:.0%})"
    )


def worker_result(script: str, arguments: list[str], offline: bool = True) -> dict:
    """Run `script` with `arguments` in a fresh Python process (with `HF_HUB_OFFLINE=1` where `offline`) and return
    the JSON object its last line of output holds: one measurement, free of what this process imported or cached."""
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"} if offline else None
    command = [sys.executable, script, *arguments]
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=environment)
    return json.loads(done.stdout.strip().splitlines()[-1])


def show_and_append(block: list[str], results: str | os.PathLike | None) -> None:
    """Print a results block, and append it to the Markdown file `results` when one is named."""
    sys.stdout.write("\n".join(block) + "\n")
    if results:
        with open(results, "a") as handle:
            handle.write("\n".join(block) + "\n")
