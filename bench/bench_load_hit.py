"""What a cache-hit `load_dataset` of a built config costs beyond opening its Arrow files.

Playground: as in `bench_second_build.py` (`--images` distinct photo-like JPEGs over six image groups, two rows per
image). The config (`mix665k-dedup-0.8`, embedder `thumbnail`) is built once; then, each in a fresh process and
`--repeats` times, alternating:
- `load_dataset`: `datasets.load_dataset("llava_mixes", CONFIG, data_dir=...)` on the built cache: the build record
  and the freshness check (the steps of the dedup config and of its plain base, the base's record of every image
  it read, one `stat` each), then the splits opened from the Arrow files;
- `arrow`: `datasets.Dataset.from_file` on each Arrow file of the same build folder, then `concatenate_datasets`
  per split: the floor any loader pays.
Both are timed from after their imports (`import llava_mixes` or `import datasets`). The issue's bar: the first
costs at most 1 s more than the second.

usage: python bench/bench_load_hit.py [--images 20000] [--repeats 5] [--playground DIR] [--results bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_second_build import playground
from machine_info import host, worker_result

CONFIG = "mix665k-dedup-0.8"


def worker(mode: str, folder: str, cache: str) -> str:
    import datasets

    if mode == "arrow":
        start = time.perf_counter()
        build = Path(json.loads(Path(cache, "folder.json").read_text())["folder"])
        splits: dict[str, list[Path]] = {}
        for path in sorted(build.glob("*.arrow")):
            if not path.name.startswith("cache-"):
                splits.setdefault(path.name.split("-")[1].split(".")[0], []).append(path)
        rows = {
            split: len(datasets.concatenate_datasets([datasets.Dataset.from_file(str(path)) for path in paths]))
            for split, paths in splits.items()
        }
        return json.dumps({"seconds": time.perf_counter() - start, "rows": rows})
    import llava_mixes  # noqa: F401 - registers the builder

    datasets.disable_progress_bars()
    os.environ["LLAVA_MIXES_CACHE"] = str(Path(cache) / "content")
    start = time.perf_counter()
    dataset = datasets.load_dataset("llava_mixes", CONFIG, data_dir=folder, cache_dir=cache, embedder="thumbnail")
    seconds = time.perf_counter() - start
    folder_of = Path(dataset["train"].cache_files[0]["filename"]).parent
    Path(cache, "folder.json").write_text(json.dumps({"folder": str(folder_of)}))
    return json.dumps({"seconds": seconds, "rows": {split: len(rows) for split, rows in dataset.items()}})


def run(mode: str, folder: Path, cache: Path) -> dict:
    return worker_result(__file__, ["--worker", mode, "--folder", str(folder), "--cache", str(cache)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--results", default=str(Path(__file__).with_name("RESULTS.md")))
    parser.add_argument("--playground", help="a folder to keep the playground in and reuse it from")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        sys.stdout.write(f"{worker(args.worker, args.folder, args.cache)}\n")
        return
    with tempfile.TemporaryDirectory() as scratch:
        folder, cache = Path(args.playground or Path(scratch) / "playground"), Path(scratch) / "cache"
        rows = playground(folder, args.images)
        built = run("load_dataset", folder, cache)
        times: dict[str, list[float]] = {"load_dataset": [], "arrow": []}
        for _ in range(args.repeats):
            for mode in times:
                result = run(mode, folder, cache)
                assert result["rows"] == built["rows"], (result, built)
                times[mode].append(result["seconds"])
    load, arrow = statistics.median(times["load_dataset"]), statistics.median(times["arrow"])
    line = (
        f"| {args.images:,} images, {rows:,} rows | {built['seconds']:.1f} s | {load:.2f} s | {arrow:.2f} s | "
        f"{load - arrow:+.2f} s | {load / arrow:.1f}x |"
    )
    header = [
        f"\n### Cache-hit load against opening the Arrow files, {datetime.date.today()}: "
        f"`python bench/bench_load_hit.py --images {args.images} --repeats {args.repeats}`",
        f"Machine: {host()}; config `{CONFIG}`, embedder `thumbnail`; medians of {args.repeats} fresh processes each.",
        "",
        "| playground | first build | cache-hit `load_dataset` | Arrow files opened | difference | ratio |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    sys.stdout.write("\n".join([*header, line]) + "\n")
    with open(args.results, "a") as handle:
        handle.write("\n".join([*header, line]) + "\n")


if __name__ == "__main__":
    main()
