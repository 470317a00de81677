"""The whole run, rehearsed: real-size JPEGs in the 665K mix's layout, then the real commands a user runs, each stage
against its floor measured in the same run (issue 25).

Playground (`--images N` distinct pictures; kept with `--playground DIR` for later runs):
- LLaVA-1.5's layout and groups, in the 665K mix's shares of distinct pictures (`bench_report.GROUPS`: coco 54.7%,
  gqa 10.8%, ocr_vqa 12.0%, textvqa 3.3%, VG_100K 13.0%, VG_100K_2 6.2%);
- pixel and file sizes per group (`SIZES`): COCO train2017 640 px on the long side, about 160 KB (issue 25);
  GQA and Visual Genome 500 px (issue 25's brief: GQA's pictures are Visual Genome's); OCR-VQA's Amazon book
  covers small, 300 px; TextVQA's OpenImages pictures large, 1024 px (about 250 KB each: the HF TextVQA card's
  download size, 8,070,116,310 bytes, over its 28,408 train/val pictures and its test pictures). The pictures are
  photo-like (`synthetic.photo_jpeg`: a smooth colour field with grain), a quarter of each group portrait;
- planted copies: 2% of the pictures re-encoded (quality 70) from an earlier picture of their group, 0.2% byte
  copies of a picture of another group under their own path;
- `llava_v1_5_mix665k.json`: every picture in 1.79 rows on average (the mix: 624,610 image rows over 349K distinct
  pictures) and 6.1% text-only rows (40,688 of 665,298), each row three question-answer turns, about 1.2 KB of
  JSON as in the real file.

The run (each stage a fresh `llava-mixes` process, caches empty at the start; wall time, the peak RSS summed over
the stage's process tree, sampled every 0.2 s, and the bytes it wrote to storage, from `wait4`'s `ru_oublock`):
1. `build mix665k-dedup-0.8 --embedder gradients`: normalise, check every picture (SHA-256 and a decode), embed,
   dedup; 2. `build ... --embedder thumbnail` (the plain build reused: embed and dedup again); 3. `report` (gradients,
   default cross-group pass); 4. `publish --local-dir --images bytes`; 5. `export --format llava`.

Floors, measured in the same run over the same files, on every core: a full PIL decode of each picture; a `draft`
decode (what `gradients` and `thumbnail` need: JPEG scaled down in the decoder); a SHA-256 of each file; a
sequential write (page cache) at the size each stage must write; the machine's product rate
(`machine_info.matmul_ceiling`); the CLI's start (`llava-mixes list`). Each stage's floor:
- build: start + SHA-256 of every file + one draft decode of every picture + writing its Arrow output + the search's
  products (each group's pictures against its kept ones, n x kept / 2 pairs, at the product rate);
- report: start + every pair of a group, and with the cross-group pass every pair, scored once at the product rate;
- publish: start + SHA-256 of the kept pictures (reading them) + writing the release;
- export: start + writing its files.

usage: python bench/bench_full_run.py --images N [--playground DIR] [--results bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from bench_report import GROUPS
from machine_info import host, matmul_ceiling
from PIL import Image

from llava_mixes.playground.layout import GROUP_FOLDERS
from llava_mixes.playground.synthetic import photo_jpeg

HERE = Path(__file__).resolve().parent
CONFIG = "mix665k-dedup-0.8"
SIZES = {  # long side, short side, JPEG quality (module docstring)
    "coco": (640, 480, 94),
    "gqa": (500, 375, 90),
    "ocr_vqa": (300, 200, 85),
    "textvqa": (1024, 768, 90),
    "VG_100K": (500, 375, 90),
    "VG_100K_2": (500, 375, 90),
}
NEAR_COPIES = 0.02
BYTE_COPIES = 0.002
ROWS_PER_PICTURE = 624610 / 349000
TEXT_ROWS = 40688 / 665298
MIX_PICTURES = 349000
GPU_NODE = {"pictures": 5_000_000, "cores": 16}


@dataclass(frozen=True)
class Picture:
    number: int
    group: str
    path: str
    copy_of: int = -1
    byte_copy_of: int = -1


def plan(images: int, seed: int = 0) -> list[Picture]:
    """Which picture goes where, and which are copies (module docstring)."""
    rng = np.random.default_rng(seed)
    names = list(GROUPS)
    share = np.asarray(list(GROUPS.values()))
    labels = rng.choice(len(names), images, p=share / share.sum())
    pictures = []
    for number, label in enumerate(labels):
        group = names[label]
        path = f"{GROUP_FOLDERS[group]}/{number:012d}.jpg"
        copy_of = byte_copy_of = -1
        if number > images // 10 and rng.random() < NEAR_COPIES:
            same = [earlier for earlier in rng.integers(0, number, 16) if labels[earlier] == label]
            copy_of = int(same[0]) if same else -1
        elif number > images // 10 and rng.random() < BYTE_COPIES:
            other = [earlier for earlier in rng.integers(0, number, 16) if labels[earlier] != label]
            byte_copy_of = int(other[0]) if other else -1
        pictures.append(Picture(number, group, path, copy_of, byte_copy_of))
    for index, picture in enumerate(pictures):  # a copy of a copy copies that one's original
        source = picture.copy_of if picture.copy_of >= 0 else picture.byte_copy_of
        while source >= 0 and (pictures[source].copy_of >= 0 or pictures[source].byte_copy_of >= 0):
            source = max(pictures[source].copy_of, pictures[source].byte_copy_of)
        if picture.copy_of >= 0:
            pictures[index] = Picture(picture.number, picture.group, picture.path, copy_of=source)
        elif picture.byte_copy_of >= 0:
            pictures[index] = Picture(picture.number, picture.group, picture.path, byte_copy_of=source)
    return pictures


def picture_bytes(picture: Picture) -> bytes:
    long, short, quality = SIZES[picture.group]
    width, height = (short, long) if picture.number % 4 == 3 else (long, short)
    if picture.copy_of >= 0:
        source = Image.open(io.BytesIO(photo_jpeg(picture.copy_of, width, height, quality)))
        buffer = io.BytesIO()
        source.save(buffer, "JPEG", quality=70)
        return buffer.getvalue()
    return photo_jpeg(picture.number, width, height, quality)


def _write_pictures(job: tuple[str, list[Picture]]) -> int:
    root, pictures = job
    written = 0
    for picture in pictures:
        if picture.byte_copy_of >= 0:
            continue
        target = Path(root) / picture.path
        target.parent.mkdir(parents=True, exist_ok=True)
        data = picture_bytes(picture)
        target.write_bytes(data)
        written += len(data)
    return written


def _answer(rng: np.random.Generator, words: list[str], count: int) -> str:
    return " ".join(rng.choice(words, count)).capitalize() + "."


def write_playground(root: Path, images: int) -> dict[str, int]:
    """The pictures and the annotation file (module docstring); returns counts."""
    pictures = plan(images)
    root.mkdir(parents=True, exist_ok=True)
    jobs = [(str(root), pictures[start : start + 256]) for start in range(0, len(pictures), 256)]
    with Pool(os.cpu_count()) as pool:
        total = sum(pool.imap_unordered(_write_pictures, jobs))
    for picture in pictures:
        if picture.byte_copy_of >= 0:
            shutil.copyfile(root / pictures[picture.byte_copy_of].path, root / picture.path)
    rng = np.random.default_rng(1)
    words = ["the", "a", "man", "woman", "dog", "street", "red", "blue", "car", "table", "window", "tree", "sky"]
    words += ["building", "sign", "book", "cover", "two", "of", "on"]
    image_rows = round(images * ROWS_PER_PICTURE)
    shown = np.concatenate([np.arange(images), rng.integers(0, images, image_rows - images)])
    rng.shuffle(shown)
    text_rows = round(image_rows * TEXT_ROWS / (1 - TEXT_ROWS))
    slots = np.sort(rng.choice(image_rows + text_rows, text_rows, replace=False))
    is_text = np.zeros(image_rows + text_rows, dtype=bool)
    is_text[slots] = True
    records = []
    pictures_iter = iter(shown.tolist())
    for index, text in enumerate(is_text.tolist()):
        turns = []
        for turn in range(3):
            question = _answer(rng, words, 12).rstrip(".") + "?"
            if turn == 0 and not text:
                question = "<image>\n" + question
            turns += [{"from": "human", "value": question}, {"from": "gpt", "value": _answer(rng, words, 45)}]
        record = {"id": f"{index:012d}", "conversations": turns}
        if not text:
            record["image"] = pictures[next(pictures_iter)].path
        records.append(record)
    with open(root / "llava_v1_5_mix665k.json", "w") as handle:
        json.dump(records, handle)
    counts = {
        "images": images,
        "rows": len(records),
        "text_rows": text_rows,
        "near_copies": sum(picture.copy_of >= 0 for picture in pictures),
        "byte_copies": sum(picture.byte_copy_of >= 0 for picture in pictures),
        "picture_bytes": total + sum((root / p.path).stat().st_size for p in pictures if p.byte_copy_of >= 0),
        "annotation_bytes": (root / "llava_v1_5_mix665k.json").stat().st_size,
    }
    (root / "written.json").write_text(json.dumps(counts))
    return counts


def playground(root: Path, images: int) -> dict[str, int]:
    done = root / "written.json"
    if done.is_file() and json.loads(done.read_text())["images"] == images:
        return json.loads(done.read_text())
    shutil.rmtree(root, ignore_errors=True)
    return write_playground(root, images)


def picture_files(root: Path) -> list[Path]:
    return sorted(path for folder in GROUP_FOLDERS.values() for path in (root / folder).glob("*.jpg"))


def _threads(work: object, items: list) -> float:
    began = time.perf_counter()
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        for _ in pool.map(work, items, chunksize=64):
            pass
    return time.perf_counter() - began


def _sha(path: Path) -> None:
    hashlib.sha256(path.read_bytes()).digest()


def _full(path: Path) -> None:
    with Image.open(path) as image:
        image.load()


def _draft(path: Path) -> None:
    with Image.open(path) as image:
        image.draft("L", (96, 96))
        image.load()


def write_rate(folder: Path, size: int = 1 << 30) -> float:
    """Bytes per second of one sequential write of `size` bytes into the page cache (no fsync), in 8 MiB writes."""
    chunk = os.urandom(8 << 20)
    target = folder / "write-floor.bin"
    began = time.perf_counter()
    with open(target, "wb") as handle:
        for _ in range(size // len(chunk)):
            handle.write(chunk)
    seconds = time.perf_counter() - began
    target.unlink()
    return size / seconds


@dataclass
class Floors:
    sha: float
    full: float
    draft: float
    write_rate: float
    product_rate: dict[int, float]
    start: float
    picture_bytes: int
    files: int
    extra: dict[str, float] = field(default_factory=dict)


def measure_floors(root: Path, scratch: Path, cli: list[str]) -> Floors:
    files = picture_files(root)
    sizes = sum(path.stat().st_size for path in files)
    sha, full, draft = _threads(_sha, files), _threads(_full, files), _threads(_draft, files)
    rate = write_rate(scratch)
    products = {dim: matmul_ceiling(1024, 16384, dim)["best"] for dim in (128, 1024)}
    began = time.perf_counter()
    subprocess.run([*cli, "list"], check=True, capture_output=True)
    start = time.perf_counter() - began
    return Floors(sha, full, draft, rate, products, start, sizes, len(files))


def _tree_rss(root_pid: int) -> int:
    """Summed RSS (bytes) of `root_pid` and its descendants."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    parents[int(entry)] = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {root_pid}, [root_pid]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/statm") as handle:
                total += int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    return total


@dataclass
class Stage:
    name: str
    seconds: float
    peak_rss: int
    largest_rss: int
    written: int
    output: str


def run_stage(name: str, command: list[str], environment: dict[str, str]) -> Stage:
    """Run one command as a user would, sampling its process tree's memory; its stdout tail is kept."""
    began = time.perf_counter()
    child = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss(child.pid))
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = child.stdout.read().decode(errors="replace") if child.stdout is not None else ""
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - began
    done.set()
    sampler.join()
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"{name} failed ({child.returncode}):\n{output[-3000:]}")
    written = usage.ru_oublock * 512
    sys.stdout.write(f"{name}: {seconds:.1f} s, peak {peak[0] / 2**30:.2f} GiB, wrote {written / 1e9:.2f} GB\n")
    sys.stdout.flush()
    return Stage(name, seconds, peak[0], usage.ru_maxrss * 1024, usage.ru_oublock * 512, output[-2000:])


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())


def search_flops(stats_path: Path, dim: int) -> float:
    """Products the exact search cannot avoid: each group's pictures against its kept ones, n x kept / 2 pairs."""
    groups = json.loads(stats_path.read_text())["groups"]
    return sum(2.0 * dim * group["images"] * group["kept_images"] / 2 for group in groups)


def report_flops(stats_path: Path, dim: int, cross_group: bool) -> float:
    """Every pair of a group (and with the cross-group pass, every pair) scored once."""
    sizes = [group["images"] for group in json.loads(stats_path.read_text())["groups"]]
    pairs = sum(size * size / 2 for size in sizes) + (sum(sizes) ** 2 / 2 if cross_group else 0.0)
    return 2.0 * dim * pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, required=True)
    parser.add_argument("--playground", help="a folder to keep the playground in and reuse it from")
    parser.add_argument("--work", help="a folder for the caches and outputs (default: a temporary one)")
    parser.add_argument("--results", default=str(HERE / "RESULTS.md"))
    args = parser.parse_args()
    cli = [str(Path(sys.executable).with_name("llava-mixes"))]
    with tempfile.TemporaryDirectory(dir=args.work) as scratch_name:
        scratch = Path(scratch_name)
        root = Path(args.playground) if args.playground else scratch / "playground"
        began = time.perf_counter()
        counts = playground(root, args.images)
        sys.stdout.write(f"playground: {json.dumps(counts)} ({time.perf_counter() - began:.0f} s)\n")
        floors = measure_floors(root, scratch, cli)
        sys.stdout.write(f"floors: {floors}\n")
        sys.stdout.flush()
        stages = run_all(cli, root, scratch, floors)
        table = results(args, counts, floors, stages)
    sys.stdout.write("\n".join(table) + "\n")
    with open(args.results, "a") as handle:
        handle.write("\n".join(table) + "\n")


@dataclass
class Measured:
    stage: Stage
    floor: float
    parts: str
    output_bytes: int = 0


def run_all(cli: list[str], root: Path, scratch: Path, floors: Floors) -> list[Measured]:
    cache, content = scratch / "hf_cache", scratch / "content_cache"
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TQDM_DISABLE": "1"}
    common = ["--data-dir", str(root), "--cache-dir", str(cache), "--content-cache-dir", str(content)]
    stats = {name: scratch / f"{name}.stats.json" for name in ("gradients", "thumbnail")}
    measured = []
    per_byte_sha = floors.sha / floors.picture_bytes
    for number, embedder in enumerate(("gradients", "thumbnail")):
        before = folder_bytes(cache) + (folder_bytes(content) if content.exists() else 0) if cache.exists() else 0
        command = [*cli, "build", CONFIG, *common, "--embedder", embedder, "--stats-json", str(stats[embedder])]
        stage = run_stage(f"build ({embedder})", command, environment)
        output = folder_bytes(cache) + folder_bytes(content) - before
        dim = 128 if embedder == "gradients" else 1024
        search = search_flops(stats[embedder], dim) / floors.product_rate[dim]
        check = floors.sha if number == 0 else 0.0
        floor = floors.start + check + floors.draft + output / floors.write_rate + search
        parts = (
            f"start {floors.start:.1f} + SHA-256 {check:.1f} + draft decode {floors.draft:.1f} + write "
            f"{output / floors.write_rate:.1f} + products {search:.2f}"
        )
        if number == 1:
            parts += " (the plain build and its check reused)"
        measured.append(Measured(stage, floor, parts, output))
    report = scratch / "report"
    command = [*cli, "report", CONFIG, *common, "--embedder", "gradients", "--out", str(report)]
    stage = run_stage("report", command, environment)
    products = report_flops(stats["gradients"], 128, True) / floors.product_rate[128]
    output = folder_bytes(report)
    floor = floors.start + products + output / floors.write_rate
    parts = f"start {floors.start:.1f} + every pair once {products:.1f} + write {output / floors.write_rate:.2f}"
    measured.append(Measured(stage, floor, parts, output))
    release = scratch / "release"
    command = [*cli, "publish", CONFIG, *common, "--embedder", "gradients", "--repo", "bench/rehearsal"]
    command += ["--version", "1.0.0", "--local-dir", str(release), "--images", "bytes"]
    stage = run_stage("publish", command, environment)
    output = folder_bytes(release)
    kept_bytes = kept_picture_bytes(root, stats["gradients"], floors)
    floor = floors.start + kept_bytes * per_byte_sha + output / floors.write_rate
    parts = (
        f"start {floors.start:.1f} + SHA-256 of the kept pictures {kept_bytes * per_byte_sha:.1f} + write "
        f"{output / floors.write_rate:.1f}"
    )
    measured.append(Measured(stage, floor, parts, output))
    exported = scratch / "export"
    command = [*cli, "export", CONFIG, *common, "--embedder", "gradients", "--format", "llava", "--out", str(exported)]
    stage = run_stage("export", command, environment)
    output = folder_bytes(exported)
    floor = floors.start + output / floors.write_rate
    parts = f"start {floors.start:.1f} + write {output / floors.write_rate:.2f}"
    measured.append(Measured(stage, floor, parts, output))
    return measured


def kept_picture_bytes(root: Path, stats_path: Path, floors: Floors) -> float:
    """The kept pictures' bytes, estimated from the kept share of distinct pictures and the mean file size."""
    groups = json.loads(stats_path.read_text())["groups"]
    kept = sum(group["kept_images"] for group in groups) / max(1, sum(group["images"] for group in groups))
    return kept * floors.picture_bytes


def results(args: argparse.Namespace, counts: dict[str, int], floors: Floors, stages: list[Measured]) -> list[str]:
    load = os.getloadavg()
    total = sum(item.stage.seconds for item in stages)
    floor_total = sum(item.floor for item in stages)
    release = next(item for item in stages if item.stage.name == "publish").output_bytes
    written = sum(item.stage.written for item in stages)
    rows = []
    for item in stages:
        rows.append(
            f"| {item.stage.name} | {item.stage.seconds:.1f} s | {item.floor:.1f} s ({item.parts}) "
            f"| **{item.stage.seconds / item.floor:.2f}x** | {item.stage.peak_rss / 2**30:.2f} GiB "
            f"({item.stage.largest_rss / 2**30:.2f}) | {item.stage.written / 1e9:.2f} GB |"
        )
    rows.append(
        f"| **whole run** | {total:.1f} s | {floor_total:.1f} s | **{total / floor_total:.2f}x** "
        f"| {max(item.stage.peak_rss for item in stages) / 2**30:.2f} GiB | {written / 1e9:.2f} GB "
        f"({written / release:.2f}x the release's {release / 1e9:.2f} GB) |"
    )
    # Extrapolation: each stage's time past the CLI's start scales with the pictures, the report's as N^1.72.
    work = {item.stage.name: max(0.0, item.stage.seconds - floors.start) for item in stages}

    def projected(pictures: float, cores: float) -> float:
        scale, speed = pictures / args.images, cores / (os.cpu_count() or 1)
        linear = sum(value for name, value in work.items() if name != "report") * scale
        return len(stages) * floors.start + (linear + work["report"] * scale**1.72) / speed

    mix = projected(MIX_PICTURES, os.cpu_count() or 1)
    gpu = projected(GPU_NODE["pictures"], GPU_NODE["cores"])
    return [
        f"\n### The whole run, {datetime.date.today()}: `python bench/bench_full_run.py --images {args.images}`",
        f"Machine: {host()}; load average after the run {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}. Playground: "
        f"{counts['images']:,} pictures ({counts['picture_bytes'] / 1e9:.2f} GB, {counts['near_copies']:,} near "
        f"copies, {counts['byte_copies']:,} byte copies), {counts['rows']:,} rows ({counts['text_rows']:,} text-only; "
        f"annotation file {counts['annotation_bytes'] / 1e6:.0f} MB). Floors on {os.cpu_count()} threads: SHA-256 "
        f"{floors.sha:.1f} s, full decode {floors.full:.1f} s, draft decode {floors.draft:.1f} s, sequential write "
        f"{floors.write_rate / 1e6:.0f} MB/s, products {floors.product_rate[128] / 1e9:.0f} GFLOP/s (128-d) and "
        f"{floors.product_rate[1024] / 1e9:.0f} GFLOP/s (1024-d), CLI start {floors.start:.1f} s.",
        "",
        "| stage | wall | floor (its parts) | wall / floor | peak RSS, process tree (largest process) | written |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        f"Extrapolated from these per-stage rates (each stage's time past the CLI's start linear in the pictures, "
        f"the report's as N^1.72, its scaling from 200K to 665K in `bench_report.py`'s runs; all on CPU cores): the "
        f"665K mix ({MIX_PICTURES:,} distinct pictures) about {mix / 60:.0f} min on this machine; a "
        f"{GPU_NODE['pictures']:,}-picture recipe on a {GPU_NODE['cores']}-core node, every stage spread over its "
        f"cores, about {gpu / 3600:.1f} h.",
    ]


if __name__ == "__main__":
    main()
