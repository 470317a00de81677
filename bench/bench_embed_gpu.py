"""ViT-L/14-336 embedding on a GPU: end-to-end throughput from JPEG files against the model alone.

The model is CLIP ViT-L/14-336's vision tower with random weights (the same compute as
`openai/clip-vit-large-patch14-336`, which cannot be downloaded here) and the real checkpoint's processor
settings (336 shortest edge, 336 centre crop, bicubic, CLIP mean/std), saved to a folder and loaded by the
production `HFVisionEmbedder`. The files are photo-like 640x480 JPEGs (COCO's typical size, with noise so
that they compress like photos). Baseline, measured in the same run: the model alone on random pixel
tensors already on the GPU. End to end: `engines.embed_in_process` (read, SHA-256 check, decode with
`draft`, resize and crop in decode threads, pinned host-to-device copy, normalise on the GPU, bf16 forward,
float16 vectors committed to the embedding cache), for several decode-thread counts.

usage: python bench/bench_embed_gpu.py [--images 8192] [--workers 2 4 8 16] [--batch-size 256] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import platform
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path
from typing import Any

from PIL import Image

from llava_mixes.playground.synthetic import photo_jpeg


def write_images(folder: Path, count: int) -> list[Path]:
    with Pool(os.cpu_count()) as pool:
        blobs = pool.map(photo_jpeg, range(count), chunksize=64)
    paths = []
    for index, blob in enumerate(blobs):
        paths.append(folder / f"{index:07d}.jpg")
        paths[-1].write_bytes(blob)
    return paths


def save_vit_l_336(folder: Path) -> None:
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    config = CLIPVisionConfig(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
        image_size=336, patch_size=14, projection_dim=768,
    )  # fmt: skip
    CLIPVisionModel(config).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}).save_pretrained(folder)


def model_only(embedder: Any, batch_size: int, batches: int = 10) -> float:
    import torch

    embedder.load()
    pixels = torch.randn(batch_size, 3, 336, 336, device="cuda", dtype=embedder._model.dtype)
    with torch.inference_mode():
        for _ in range(3):
            embedder._model(pixel_values=pixels).pooler_output.float()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(batches):
            torch.nn.functional.normalize(embedder._model(pixel_values=pixels).pooler_output.float(), dim=-1).cpu()
        torch.cuda.synchronize()
    return batch_size * batches / (time.perf_counter() - start)


def decode_only(paths: list[Path], workers: int) -> float:
    from concurrent.futures import ThreadPoolExecutor

    def decode(path: Path) -> tuple[int, int]:
        with Image.open(path) as image:
            image.load()
            return image.size

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(decode, paths))
    return len(paths) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8192)
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", default=str(Path(__file__).with_name("RESULTS.md")))
    args = parser.parse_args()

    import torch

    from llava_mixes.embedding.cache import EmbeddingCache, ImageRef
    from llava_mixes.embedding.embedders import HFVisionEmbedder
    from llava_mixes.embedding.engines import embed_in_process

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        (root / "images").mkdir()
        paths = write_images(root / "images", args.images)
        mean_kb = sum(path.stat().st_size for path in paths) / len(paths) / 1024
        refs = [ImageRef(hashlib.sha256(p.read_bytes()).hexdigest(), str(p), i) for i, p in enumerate(paths)]
        save_vit_l_336(root / "model")
        embedder = HFVisionEmbedder(str(root / "model"), device="cuda", precision="bf16")
        embedder.load()
        eager = model_only(embedder, args.batch_size)
        start = time.perf_counter()
        embedder.load(expected_images=len(refs))
        model_only(embedder, args.batch_size, batches=1)
        compile_seconds = time.perf_counter() - start
        baseline = model_only(embedder, args.batch_size)
        lines = []
        for workers in args.workers:
            decode_rate = decode_only(paths, workers)
            cache = EmbeddingCache(root / f"cache-{workers}", embedder)
            start = time.perf_counter()
            embedded, _ = embed_in_process(cache, refs, None, args.batch_size, workers)
            rate = embedded / (time.perf_counter() - start)
            lines.append(f"| {workers} | {decode_rate:,.0f} | {rate:,.0f} | {baseline:,.0f} | {rate / baseline:.0%} |")
            sys.stdout.write(lines[-1] + "\n")
            sys.stdout.flush()
    gpu = torch.cuda.get_device_name(0)
    header = [
        f"\n### ViT-L/14-336 embedding on a GPU, {datetime.date.today()}: "
        f"`python bench/bench_embed_gpu.py --images {args.images} --batch-size {args.batch_size}`",
        f"Machine: {gpu}, {os.cpu_count()} CPU cores, torch {torch.__version__}, Python {platform.python_version()}. "
        f"{args.images} JPEGs of 640x480, {mean_kb:.0f} KB on average; bf16; batch {args.batch_size}. "
        f"Model alone: {eager:,.0f} img/s eager, {baseline:,.0f} img/s compiled (torch.compile, done once per "
        f"process for runs of 4,096+ images: {compile_seconds:.0f} s, not in the rates below).",
        "",
        "| decode threads | bare decode (img/s, full JPEG decode only) | end to end from JPEG files (img/s) "
        "| model alone, compiled, on random tensors (img/s) | end to end / model alone |",
        "| --- | --- | --- | --- | --- |",
    ]
    with open(args.out, "a") as handle:
        handle.write("\n".join(header + lines) + "\n")


if __name__ == "__main__":
    main()
