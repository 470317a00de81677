"""Normalising full-size ShareGPT4V and SVIT files: the builder against `load_dataset("json")` on the same files.

Synthetic files in the formats the builders read (see their module docstrings), `--rows` rows each:
- `sharegpt4v-mix665k`: one JSON array in LLaVA's format. The real 665K sample rows
  (../shared/samples/llava_v1_5_mix665k.sample.json) with every sixth row replaced by a GPT-4V caption row
  on ShareGPT4V's own folders (`sam/images`, `llava/llava_pretrain/images`, `data/web-celebrity/images`,
  ...); ids made unique strings (the real mixed int/str ids make `load_dataset("json")` fail).
- `svit-core`: SVIT's four files (`conversation.json`, `complex_reasoning.json`, `referring_qa.json`,
  `detail_description.json`), JSON arrays of `{"image_id", "conversations": [{"topic"?, "content": [...]}]}`;
  a row is one block, four blocks per record in the first two files and one in the others.
Images: a small JPEG at each distinct referenced path (`--images` of them), so the builder's image checks
run. Each side runs in a fresh process with an empty cache; peak memory is the process's peak RSS. The
JSON baseline holds a whole JSON array in memory, so on a small machine pass fewer `--rows` (the report
then projects linearly, and says so). With `--profile` only the builder runs, under cProfile, and the
functions with the most time of their own are reported.

usage: python bench/bench_normalise_sources.py --config sharegpt4v-mix665k|svit-core [--rows N] [--images N]
                                               [--profile [--top N]] [--results bench/RESULTS.md]
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

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "llava_v1_5_mix665k.sample.json"
FULL_ROWS = {"sharegpt4v-mix665k": 1_250_000, "svit-core": 3_200_000}
CAPTION_PATHS = (
    "sam/images/sa_{n}.jpg",
    "llava/llava_pretrain/images/00{n:03d}/00{n:03d}{n:04d}.jpg",
    "data/web-celebrity/images/Person_{n}.jpg",
    "data/wikiart/images/painter_{n}.jpg",
    "share_textvqa/images/{n:016x}.jpg",
)
SVIT_FILES = {
    "conversation.json": 4,
    "complex_reasoning.json": 4,
    "referring_qa.json": 1,
    "detail_description.json": 1,
}


def jpeg(number: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (number % 256, number // 256 % 256, 90)).save(buffer, "JPEG")
    return buffer.getvalue()


def write_images(folder: Path, paths: list[str]) -> None:
    for number, path in enumerate(paths):
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(jpeg(number))


def write_sharegpt4v(folder: Path, rows: int, images: int) -> list[Path]:
    records = [record for record in json.loads(SAMPLES.read_text()) if "image" in record]
    sample_paths = sorted({record["image"] for record in records})[: images // 2]
    records = [record for record in records if record["image"] in set(sample_paths)]
    caption_paths = [CAPTION_PATHS[n % len(CAPTION_PATHS)].format(n=n) for n in range(images - len(sample_paths))]
    write_images(folder, sample_paths + caption_paths)
    target = folder / "sharegpt4v_mix665k_cap23k_coco-ap9k_lcs3k_sam9k_div2k.json"
    with target.open("w") as handle:
        handle.write("[")
        for index in range(rows):
            if index % 6 == 5:
                path = caption_paths[index % len(caption_paths)]
                record = {
                    "id": Path(path).stem,
                    "image": path,
                    "conversations": [
                        {"from": "human", "value": "<image>\nDescribe the image in detail."},
                        {"from": "gpt", "value": f"A detailed GPT-4V caption, number {index}. " * 8},
                    ],
                }
            else:
                record = dict(records[index % len(records)])
            record["id"] = f"{record['id']}_{index}"
            handle.write(("," if index else "") + json.dumps(record))
        handle.write("]")
    return [target]


def write_svit_core(folder: Path, rows: int, images: int) -> list[Path]:
    ids = [1_000_000 + number for number in range(images)]
    write_images(folder, [f"vg/VG_100K/{image_id}.jpg" for image_id in ids])
    blocks_per_file = rows // len(SVIT_FILES)
    targets = []
    for name, blocks in SVIT_FILES.items():
        target = folder / name
        with target.open("w") as handle:
            handle.write("[")
            for record_number in range(-(-blocks_per_file // blocks)):
                conversations = []
                for block in range(blocks):
                    content = [
                        {"from": "user", "value": f"What is object {block} next to in picture {record_number}?"},
                        {"from": "gpt", "value": f"It is next to a <st>red chair<ed> [0.1, 0.2, 0.3, 0.4], {block}."},
                    ]
                    topic = {"topic": f"topic {block}"} if blocks > 1 else {}
                    conversations.append({**topic, "content": content})
                record = {"image_id": ids[record_number % len(ids)], "conversations": conversations}
                handle.write(("," if record_number else "") + json.dumps(record))
            handle.write("]")
        targets.append(target)
    return targets


def worker(kind: str, config: str, files: list[str], folder: str, cache: str, top_functions: int) -> dict[str, float]:
    import datasets

    datasets.disable_progress_bars()
    start = time.perf_counter()
    if kind == "profile":
        import cProfile
        import pstats

        import llava_mixes  # registers the builder (used below as well)

        os.environ["LLAVA_MIXES_CACHE"] = str(Path(cache) / "content")
        profile = cProfile.Profile()
        profile.runcall(datasets.load_dataset, "llava_mixes", config, data_dir=folder, split="train", cache_dir=cache)
        stats = pstats.Stats(profile).stats.items()
        top = sorted(stats, key=lambda item: -item[1][2])[:top_functions]
        rows = [
            f"| `{Path(f).name}:{line}({name})` | {calls:,} | {own:.2f} |"
            for (f, line, name), (_, calls, own, *_) in top
        ]
        return {"seconds": time.perf_counter() - start, "rows": rows}
    if kind == "json":
        dataset = datasets.load_dataset("json", data_files=files, split="train", cache_dir=cache)
    else:
        import llava_mixes  # noqa: F401 - registers the builder

        os.environ["LLAVA_MIXES_CACHE"] = str(Path(cache) / "content")
        dataset = datasets.load_dataset("llava_mixes", config, data_dir=folder, split="train", cache_dir=cache)
    return {"seconds": time.perf_counter() - start, "rows": len(dataset), "peak_bytes": peak_rss_bytes()}


def run(kind: str, config: str, files: list[Path], folder: Path, cache: Path, top: int = 15) -> dict[str, float]:
    command = [
        sys.executable,
        __file__,
        "--worker",
        kind,
        "--config",
        config,
        "--folder",
        str(folder),
        "--top",
        str(top),
    ]
    command += ["--cache", str(cache), "--files", *map(str, files)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    output = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    return json.loads(output.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(FULL_ROWS), required=True)
    parser.add_argument("--rows", type=int, help="default: the config's full size")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--profile", action="store_true", help="run only the builder, under cProfile")
    parser.add_argument("--top", type=int, default=15, help="with --profile: how many functions to list")
    parser.add_argument("--results", default=str(Path(__file__).with_name("RESULTS.md")))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    parser.add_argument("--files", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        sys.stdout.write(
            json.dumps(worker(args.worker, args.config, args.files, args.folder, args.cache, args.top)) + "\n"
        )
        return
    rows = args.rows or FULL_ROWS[args.config]
    write = write_sharegpt4v if args.config == "sharegpt4v-mix665k" else write_svit_core
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "playground"
        folder.mkdir()
        files = write(folder, rows, args.images)
        size_mb = sum(path.stat().st_size for path in files) / 2**20
        if args.profile:
            profiled = run("profile", args.config, files, folder, Path(scratch) / "cache-profile", args.top)
            text = [
                f"\n### The {args.config} builder under cProfile, {rows:,} rows, {datetime.date.today()}: "
                f"`python bench/bench_normalise_sources.py --config {args.config} --rows {rows} --profile "
                f"--top {args.top}`",
                f"Machine: {host()}. {profiled['seconds']:.1f} s under the profiler; functions by own time:",
                "",
                "| function | calls | own seconds |",
                "| --- | --- | --- |",
                *profiled["rows"],
            ]
            sys.stdout.write("\n".join(text) + "\n")
            with open(args.results, "a") as handle:
                handle.write("\n".join(text) + "\n")
            return
        baseline = run("json", args.config, files, folder, Path(scratch) / "cache-json")
        ours = run("llava_mixes", args.config, files, folder, Path(scratch) / "cache-ours")
    ratio = ours["seconds"] / baseline["seconds"]
    full = FULL_ROWS[args.config]
    projected = ours["seconds"] * full / rows
    projection = "" if rows >= full else f"; at {full:,} rows, projected linearly: {projected:.0f} s"
    line = (
        f"| {args.config} | {rows:,} ({size_mb:,.0f} MB) | {baseline['seconds']:.1f} s, "
        f"{baseline['peak_bytes'] / 2**30:.2f} GiB ({baseline['rows']:,} rows) | {ours['seconds']:.1f} s, "
        f"{ours['peak_bytes'] / 2**30:.2f} GiB ({ours['rows']:,} rows){projection} | **{ratio:.2f}x** |"
    )
    sys.stdout.write(line + "\n")
    header = [
        f"\n### Normalising {args.config} at {rows:,} rows, {datetime.date.today()}: "
        f"`python bench/bench_normalise_sources.py --config {args.config} --rows {rows} --images {args.images}`",
        f"Machine: {host()}, Python {platform.python_version()}.",
        "",
        '| config | rows (file size) | `load_dataset("json")`: time, peak memory | builder: time, peak memory '
        "| builder / json |",
        "| --- | --- | --- | --- | --- |",
    ]
    with open(args.results, "a") as handle:
        handle.write("\n".join([*header, line]) + "\n")


if __name__ == "__main__":
    main()
