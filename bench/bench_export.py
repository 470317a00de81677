"""Exporting a 665K-row config for LLaVA: `export(ds, "llava", ...)` against a `json.dump` of the same records.

The rows are the real sample rows (../shared/samples/llava_v1_5_mix665k.sample.json, every 500th row of the
665K file) repeated to 665,298 rows in this package's schema, with each image row's picture a path under a
folder (as a built config stores it; the export does not open pictures it references). Each side runs in a
fresh process on the same Arrow file:
- `export`: the whole export, reading Arrow batches from disk, with its progress bar;
- `json.dump`: the baseline the issue names: the same LLaVA records, already built as Python objects in
  memory (not timed), dumped by `json.dump` into one file (timed). Also reported: reading the rows into
  those records first (`to_list` and the record comprehension), which the baseline needs and the export does
  as it goes.
Peak memory is each process's peak RSS.

usage: python bench/bench_export.py [--rows 665298] [--samples PATH] [--results bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine_info import host, peak_rss_bytes

DEFAULT_SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "llava_v1_5_mix665k.sample.json"


def make_dataset(samples: Path, rows: int, folder: Path) -> Path:
    import datasets

    from llava_mixes import schema

    datasets.disable_progress_bars()
    records = json.loads(samples.read_text())
    features = schema.output_features(dedup=True)

    def generate():
        for index in range(rows):
            record = records[index % len(records)]
            image = record.get("image")
            yield {
                schema.ID: f"llava_v1_5_mix665k-{index:07d}",
                schema.SOURCE_ID: f"{record['id']}-{index // len(records)}",
                schema.SOURCE: "llava_v1_5_mix665k",
                schema.IMAGE_GROUP: image.split("/")[0] if image else None,
                schema.IMAGE_PATH: image,
                schema.IMAGE: {"path": str(folder / "images" / image), "bytes": None} if image else None,
                schema.IMAGE_SHA256: "0" * 64 if image else None,
                schema.CONVERSATIONS: [{"from": t["from"], "value": t["value"]} for t in record["conversations"]],
                schema.LANGUAGE: "en",
                schema.TASK: None,
                schema.DUPLICATE_OF: None,
                schema.SIMILARITY: None,
            }

    dataset = datasets.Dataset.from_generator(generate, features=features, cache_dir=str(folder / "cache"))
    return Path(dataset.cache_files[0]["filename"])


def run_export(saved: str, out: str, image_folder: str) -> dict:
    import datasets

    from llava_mixes.exporters import export

    dataset = datasets.Dataset.from_file(saved)
    start = time.perf_counter()
    result = export(dataset, "llava", out, image_folder=image_folder)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows": result.rows, "bytes": result.data_file.stat().st_size}


def run_dump(saved: str, out: str, image_folder: str) -> dict:
    import os

    import datasets

    dataset = datasets.Dataset.from_file(saved).select_columns(["source_id", "image", "conversations"])
    dataset = dataset.cast_column("image", datasets.Image(decode=False))
    start = time.perf_counter()
    records = [
        {
            "id": row["source_id"],
            "image": os.path.relpath(row["image"]["path"], image_folder),
            "conversations": row["conversations"],
        }
        if row["image"]
        else {"id": row["source_id"], "conversations": row["conversations"]}
        for row in dataset.to_list()
    ]
    build = time.perf_counter() - start
    start = time.perf_counter()
    with open(Path(out) / "dump.json", "w") as handle:
        json.dump(records, handle)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "build_seconds": build,
        "rows": len(records),
        "bytes": (Path(out) / "dump.json").stat().st_size,
    }


def child(kind: str, saved: str, out: str, image_folder: str) -> dict:
    command = [sys.executable, __file__, "--child", kind, saved, out, image_folder]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=665_298)
    parser.add_argument("--samples", type=Path, default=DEFAULT_SAMPLES)
    parser.add_argument("--results", type=Path)
    parser.add_argument("--child", nargs=4, metavar=("KIND", "SAVED", "OUT", "FOLDER"))
    args = parser.parse_args()
    if args.child:
        kind, saved, out, folder = args.child
        measured = (run_export if kind == "export" else run_dump)(saved, out, folder)
        measured["peak_rss_gib"] = peak_rss_bytes() / 2**30
        print(json.dumps(measured))
        return
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        saved = str(make_dataset(args.samples, args.rows, folder))
        (folder / "out").mkdir()
        (folder / "images").mkdir()
        image_folder = str(folder / "images")
        exported = child("export", saved, str(folder / "out"), image_folder)
        dumped = child("dump", saved, str(folder / "out"), image_folder)
    ratio = exported["seconds"] / dumped["seconds"]
    lines = [
        f"### Export to LLaVA's JSON, {args.rows:,} rows, {datetime.date.today()}",
        "",
        f"`python bench/bench_export.py --rows {args.rows}` on {host()}",
        "",
        "| step | seconds | peak RSS (GiB) | file (MB) |",
        "| --- | --- | --- | --- |",
        f'| `export(ds, "llava", ...)` (reads Arrow, writes the file) | {exported["seconds"]:.1f} | '
        f"{exported['peak_rss_gib']:.2f} | {exported['bytes'] / 1e6:.0f} |",
        f"| `json.dump` of the same records, already in memory | {dumped['seconds']:.1f} | "
        f"{dumped['peak_rss_gib']:.2f} | {dumped['bytes'] / 1e6:.0f} |",
        f"| (reading the rows into those records first) | {dumped['build_seconds']:.1f} | | |",
        "",
        f"export / json.dump: {ratio:.2f}x; export / (read + json.dump): "
        f"{exported['seconds'] / (dumped['seconds'] + dumped['build_seconds']):.2f}x",
        "",
    ]
    print("\n".join(lines))
    if args.results:
        with args.results.open("a") as handle:
            handle.write("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
