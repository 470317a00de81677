"""Normalising a full-size 665K file: the `mix665k` builder against `load_dataset("json")` on the same file.

The file is the real sample rows (../shared/samples/llava_v1_5_mix665k.sample.json, every 500th row)
repeated to 665,298 rows with unique ids (strings, so that the JSON baseline can load it at all: the real
file's mixed int/str ids make `load_dataset("json")` fail). Images: a small JPEG at each referenced path,
so the builder's image checks run (each distinct file is read, hashed and decoded once). Each side runs
in a fresh process with an empty cache; peak memory is the process's peak RSS.

usage: python bench/bench_normalise.py [--rows 665298] [--samples PATH] [--results bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine_info import host, peak_rss_bytes
from PIL import Image

DEFAULT_SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "llava_v1_5_mix665k.sample.json"


def write_playground(folder: Path, samples: Path, rows: int) -> Path:
    records = json.loads(samples.read_text())
    for number, path in enumerate(sorted({record["image"] for record in records if "image" in record})):
        buffer = io.BytesIO()
        Image.new("RGB", (64, 48), (number % 256, number // 256, 90)).save(buffer, "JPEG")
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(buffer.getvalue())
    target = folder / "llava_v1_5_mix665k.json"
    with target.open("w") as handle:
        handle.write("[")
        for index in range(rows):
            record = dict(records[index % len(records)])
            record["id"] = f"{record['id']}_{index // len(records)}"
            handle.write(("," if index else "") + json.dumps(record))
        handle.write("]")
    return target


def worker(kind: str, folder: str, cache: str) -> dict[str, float]:
    import datasets

    datasets.disable_progress_bars()
    start = time.perf_counter()
    if kind == "json":
        dataset = datasets.load_dataset(
            "json", data_files=str(Path(folder) / "llava_v1_5_mix665k.json"), split="train", cache_dir=cache
        )
    else:
        import llava_mixes  # noqa: F401 - registers the builder

        os.environ["LLAVA_MIXES_CACHE"] = str(Path(cache) / "content")
        dataset = datasets.load_dataset("llava_mixes", "mix665k", data_dir=folder, split="train", cache_dir=cache)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "rows": len(dataset),
        "peak_bytes": peak_rss_bytes(),
    }


def run(kind: str, folder: Path, cache: Path) -> dict[str, float]:
    command = [sys.executable, __file__, "--worker", kind, "--folder", str(folder), "--cache", str(cache)]
    output = subprocess.run(
        command, check=True, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    return json.loads(output.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=665_298)
    parser.add_argument("--samples", default=str(DEFAULT_SAMPLES))
    parser.add_argument("--results", default=str(Path(__file__).with_name("RESULTS.md")))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        sys.stdout.write(json.dumps(worker(args.worker, args.folder, args.cache)) + "\n")
        return
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "playground"
        folder.mkdir()
        annotation = write_playground(folder, Path(args.samples), args.rows)
        size_mb = annotation.stat().st_size / 2**20
        baseline = run("json", folder, Path(scratch) / "cache-json")
        ours = run("llava_mixes", folder, Path(scratch) / "cache-ours")
    ratio = ours["seconds"] / baseline["seconds"]
    line = (
        f"| {args.rows:,} ({size_mb:,.0f} MB) | {baseline['seconds']:.1f} s, {baseline['peak_bytes'] / 2**30:.2f} GiB "
        f"| {ours['seconds']:.1f} s, {ours['peak_bytes'] / 2**30:.2f} GiB ({ours['rows']:,} rows) | {ratio:.2f}x |"
    )
    sys.stdout.write(line + "\n")
    header = [
        f"\n### Normalising the 665K file, {datetime.date.today()}: "
        f"`python bench/bench_normalise.py --rows {args.rows}`",
        f"Machine: {host()}, Python {platform.python_version()}.",
        "",
        '| rows (file size) | `load_dataset("json")`: time, peak memory | `mix665k` builder: time, peak memory '
        "| builder / json |",
        "| --- | --- | --- | --- |",
    ]
    with open(args.results, "a") as handle:
        handle.write("\n".join([*header, line]) + "\n")


if __name__ == "__main__":
    main()
