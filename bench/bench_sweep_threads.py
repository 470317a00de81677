"""The report's sweep on 1 and 2 threads, against what 2 threads can give on this machine at that moment.

Data: `bench_report.grouped_vectors(--images)` (CLIP-like 1024-d vectors over the 665K mix's six groups); the
pass is `sweep_pass` over the coco group (55% of the images) at the report's thresholds, as `llava-mixes report`'s
group pass runs it, or with `--global` the cross-group pass over every image. Round after round, interleaved:
the pass with `workers=1`, with `workers=2`, and a control: the same amount of single-threaded BLAS work (float32
products) on 1 and on 2 threads, which releases the GIL throughout, so its speed-up is what this machine's load
leaves to 2 threads. The sweep's speed-up is reported beside the control's, with the load average: on a machine
shared with other jobs, only the two together mean anything.

usage: python bench/bench_sweep_threads.py [--images 100000] [--rounds 3] [--global] [--results bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
from bench_report import grouped_vectors
from machine_info import host

from llava_mixes.dedup.sweep import sweep_pass, sweep_thresholds
from llava_mixes.devices import blas_threads

THRESHOLDS = sweep_thresholds((0.7, 0.8, 0.9))


def control(threads: int, products: int) -> float:
    """Seconds for `products` single-threaded 1024 x 1024 x 1024 float32 products spread over `threads` threads."""
    matrix = np.random.default_rng(0).standard_normal((1024, 1024), dtype=np.float32)

    def work(count: int) -> None:
        for _ in range(count):
            matrix @ matrix

    shares = [products // threads + (index < products % threads) for index in range(threads)]
    with blas_threads(1):
        began = time.perf_counter()
        workers = [threading.Thread(target=work, args=(share,)) for share in shares]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--global", dest="global_pass", action="store_true", help="the cross-group pass instead")
    parser.add_argument("--results", default=str(Path(__file__).with_name("RESULTS.md")))
    args = parser.parse_args()
    vectors, labels, _ = grouped_vectors(args.images)
    if args.global_pass:
        options = {"groups": labels, "want_nearest": False, "floor": 0.7}
    else:
        vectors, options = vectors[labels == 0], {"floor": 0.5}
    times: dict[str, list[float]] = {"sweep 1": [], "sweep 2": [], "control 1": [], "control 2": []}
    cpu: dict[str, list[float]] = {"sweep 1": [], "sweep 2": []}
    loads = []
    for round_number in range(args.rounds):
        for workers in (1, 2):
            began, used = time.perf_counter(), time.process_time()
            sweep_pass(vectors, THRESHOLDS, workers=workers, **options)
            times[f"sweep {workers}"].append(time.perf_counter() - began)
            cpu[f"sweep {workers}"].append(time.process_time() - used)
            times[f"control {workers}"].append(control(workers, 60))
        loads.append(os.getloadavg()[0])
        line = ", ".join(f"{name} {values[-1]:.1f} s" for name, values in times.items())
        sys.stdout.write(f"round {round_number + 1}: {line}; load {loads[-1]:.1f}\n")
        sys.stdout.flush()
    rows = []
    for round_number in range(args.rounds):
        sweep = times["sweep 1"][round_number] / times["sweep 2"][round_number]
        ideal = times["control 1"][round_number] / times["control 2"][round_number]
        rows.append(
            f"| {round_number + 1} | {times['sweep 1'][round_number]:.1f} s | {times['sweep 2'][round_number]:.1f} s "
            f"(CPU {cpu['sweep 2'][round_number] / times['sweep 2'][round_number]:.2f} cores) | **{sweep:.2f}x** "
            f"| {ideal:.2f}x | {sweep / ideal:.0%} | {loads[round_number]:.1f} |"
        )
    best = max(range(args.rounds), key=lambda index: times["control 1"][index] / times["control 2"][index])
    medians = {name: statistics.median(values) for name, values in times.items()}
    scope = "the cross-group pass over every image" if args.global_pass else "the coco group's pass"
    text = [
        f"\n### The report's sweep on 1 and 2 threads, {datetime.date.today()}: "
        f"`python bench/bench_sweep_threads.py --images {args.images} --rounds {args.rounds}"
        f"{' --global' if args.global_pass else ''}`",
        f"Machine: {host()}, numpy {np.__version__}. {scope} ({len(vectors):,} of {args.images:,} CLIP-like 1024-d "
        "vectors), the report's thresholds; the control is 60 single-threaded 1024^3 float32 products on 1 and 2 "
        "threads in the same round (what the machine's load leaves to a second thread).",
        "",
        "| round | sweep, 1 thread | sweep, 2 threads | sweep speed-up | control speed-up | sweep / control "
        "| load average (1 min) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        f"Medians: sweep {medians['sweep 1']:.1f} s -> {medians['sweep 2']:.1f} s "
        f"({medians['sweep 1'] / medians['sweep 2']:.2f}x); control "
        f"{medians['control 1'] / medians['control 2']:.2f}x."
        f" In the quietest round (control {times['control 1'][best] / times['control 2'][best]:.2f}x) the sweep "
        f"gained {times['sweep 1'][best] / times['sweep 2'][best]:.2f}x.",
    ]
    sys.stdout.write("\n".join(text) + "\n")
    with open(args.results, "a") as handle:
        handle.write("\n".join(text) + "\n")


if __name__ == "__main__":
    main()
