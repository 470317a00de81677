"""A second dedup build at another threshold against the first build, same run, same caches.

Playground: LLaVA layout, `--images` distinct photo-like 640x480 JPEGs over six image groups, two rows per image
on average (as in the 665K mix), a tenth of the images re-encoded copies of others. First build:
`mix665k-dedup-0.8` from empty caches (normalise, check every image, embed every image with `thumbnail`, search,
write). Second build: `mix665k-dedup-0.9` (plain config reused, embeddings from the cache: no image is read;
search and write only), `--rounds` times, its folder deleted before each; the median counts, as the same build
varies by a few tenths of a second from run to run. Each build runs in a fresh process. With a ViT embedder the
first build costs far more, so `thumbnail` gives the least favourable ratio. A third cache-hit build
(`mix665k-dedup-0.7`) runs under cProfile, and the bench prints where its time goes.

usage: python bench/bench_second_build.py [--images 4000] [--results bench/RESULTS.md] [--playground DIR] [--rounds 5]

`--playground DIR` keeps the playground in DIR (written there when DIR holds none for `--images`) so that
later runs skip writing it; the caches are new in every run.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from machine_info import host, worker_result
from PIL import Image

from llava_mixes.playground.synthetic import photo_jpeg

FOLDERS = ["coco/train2017", "gqa/images", "ocr_vqa/images", "textvqa/train_images", "vg/VG_100K", "vg/VG_100K_2"]


def image_bytes(number: int) -> bytes:
    if number % 10 == 9:  # a re-encoded copy of the previous picture
        buffer = io.BytesIO()
        Image.open(io.BytesIO(photo_jpeg(number - 1))).save(buffer, "JPEG", quality=60)
        return buffer.getvalue()
    return photo_jpeg(number)


def write_playground(folder: Path, images: int) -> int:
    with Pool(os.cpu_count()) as pool:
        blobs = pool.map(image_bytes, range(images), chunksize=32)
    paths = []
    for number, blob in enumerate(blobs):
        paths.append(f"{FOLDERS[number % len(FOLDERS)]}/{number:09d}.jpg")
        (folder / paths[-1]).parent.mkdir(parents=True, exist_ok=True)
        (folder / paths[-1]).write_bytes(blob)
    rng = np.random.default_rng(0)
    rows = [paths[index] for index in range(images)] + [paths[int(i)] for i in rng.integers(0, images, images)]
    records = [
        {
            "id": f"row{index}",
            "image": path,
            "conversations": [
                {"from": "human", "value": f"<image>\nWhat is in picture {index}?"},
                {"from": "gpt", "value": "A smooth field of colour."},
            ],
        }
        for index, path in enumerate(rows)
    ]
    (folder / "llava_v1_5_mix665k.json").write_text(json.dumps(records))
    return len(records)


def playground(folder: Path, images: int) -> int:
    """The rows of the playground of `images` images in `folder`, written there unless it is already."""
    done = folder / "written.json"
    if done.is_file() and json.loads(done.read_text())["images"] == images:
        return json.loads(done.read_text())["rows"]
    folder.mkdir(parents=True, exist_ok=True)
    done.unlink(missing_ok=True)
    rows = write_playground(folder, images)
    done.write_text(json.dumps({"images": images, "rows": rows}))
    return rows


# Where a cache-hit build spends its time: functions of the build, by cumulative time under cProfile.
PROFILED = {
    "fill_cache": "embedding-cache check (nothing embedded)",
    "decide": "dedup decisions: reading rows and vectors, and the search",
    "greedy_keep_first": "of which the exact search",
    "_prepare_split": "writing the train and removed splits",
    "dedup_group_stats": "per-group statistics",
}


def worker(config: str, folder: str, cache: str, profile: bool = False) -> str:
    import cProfile
    import pstats

    import datasets

    import llava_mixes  # noqa: F401 - registers the builder

    datasets.disable_progress_bars()
    os.environ["LLAVA_MIXES_CACHE"] = str(Path(cache) / "content")
    profiler = cProfile.Profile() if profile else None
    start = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    datasets.load_dataset("llava_mixes", config, data_dir=folder, cache_dir=cache, embedder="thumbnail")
    seconds = time.perf_counter() - start
    if profiler is None:
        return json.dumps({"seconds": seconds})
    profiler.disable()
    cumulative: dict[str, float] = {}
    for (_, _, name), (_, _, _, total, _) in pstats.Stats(profiler).stats.items():
        if name in PROFILED:
            cumulative[name] = cumulative.get(name, 0.0) + total
    return json.dumps({"seconds": seconds, "functions": cumulative})


def run(config: str, folder: Path, cache: Path, profile: bool = False) -> dict:
    arguments = ["--worker", config, "--folder", str(folder), "--cache", str(cache)]
    return worker_result(__file__, arguments + (["--profile"] if profile else []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--results", default=str(Path(__file__).with_name("RESULTS.md")))
    parser.add_argument("--playground", help="a folder to keep the playground in and reuse it from")
    parser.add_argument(
        "--rounds", type=int, default=5, help="second builds, each in a fresh process after its folder is deleted"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        sys.stdout.write(f"{worker(args.worker, args.folder, args.cache, args.profile)}\n")
        return
    with tempfile.TemporaryDirectory() as scratch:
        folder, cache = Path(args.playground or Path(scratch) / "playground"), Path(scratch) / "cache"
        rows = playground(folder, args.images)
        first = run("mix665k-dedup-0.8", folder, cache)["seconds"]
        seconds = []
        for _ in range(args.rounds):
            for built in (cache / "llava_mixes").glob("mix665k-dedup-0.9-*"):
                shutil.rmtree(built)
            seconds.append(run("mix665k-dedup-0.9", folder, cache)["seconds"])
        second = statistics.median(seconds)
        profiled = run("mix665k-dedup-0.7", folder, cache, profile=True)
    each = ", ".join(f"{value:.2f}" for value in seconds)
    ratio = second / first
    line = f"| {args.images:,} images, {rows:,} rows | {first:.1f} s | {each} s | {second:.2f} s | {ratio:.1%} |"
    breakdown = [
        "",
        f"A third cache-hit build (`-dedup-0.7`) under cProfile: {profiled['seconds']:.1f} s in all; cumulative time:",
        "",
        "| part | seconds |",
        "| --- | --- |",
        *(f"| {label} | {profiled['functions'].get(name, 0.0):.2f} |" for name, label in PROFILED.items()),
    ]
    sys.stdout.write("\n".join([line, *breakdown]) + "\n")
    header = [
        f"\n### Second build at another threshold, {datetime.date.today()}: "
        f"`python bench/bench_second_build.py --images {args.images} --rounds {args.rounds}`",
        f"Machine: {host()}; embedder `thumbnail`.",
        "",
        "| playground | first build (`-dedup-0.8`, empty caches) | second build (`-dedup-0.9`), each round | median "
        "| second / first |",
        "| --- | --- | --- | --- | --- |",
    ]
    with open(args.results, "a") as handle:
        handle.write("\n".join([*header, line, *breakdown]) + "\n")


if __name__ == "__main__":
    main()
