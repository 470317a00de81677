"""What an SSCD-shaped TorchScript model costs on this CPU, through `TorchScriptEmbedder`.

SSCD's weights are Meta's (MIT licence): https://dl.fbaipublicfiles.com/sscd-copy-detection/ serves
`sscd_disc_mixup.torchscript.pt` (ResNet-50, 512-d), linked from the README of
github.com/facebookresearch/sscd-copy-detection. No weights are downloaded here: the models are built
with random weights, which cost exactly what trained ones do. Each is a torchvision-style ResNet trunk
(ResNet-18 with basic blocks, ResNet-50 with bottlenecks), GeM pooling (p=3), a linear layer to 512 and
L2 normalisation, as SSCD's `.torchvision.pt` models are; it is scripted, saved and loaded by path.

Measured: `prepare` (decode a 640x480 JPEG, resize to 320x320) per image on one thread, and `embed`
(normalise, forward, check) of batches of `--batch` images with torch's threads (one per core).

usage: python bench/bench_sscd_cpu.py [--images 32] [--batch 16]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine_info import host
from torch import nn

from llava_mixes.embedding.copy import TorchScriptEmbedder
from llava_mixes.playground.synthetic import photo_jpeg


class Block(nn.Module):
    """A residual block: basic (two 3x3 convolutions) or bottleneck (1x1, 3x3, 1x1 with 4x expansion)."""

    def __init__(self, inputs: int, width: int, stride: int, bottleneck: bool) -> None:
        super().__init__()
        outputs = width * 4 if bottleneck else width
        if bottleneck:
            layers = [nn.Conv2d(inputs, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            layers += [nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            layers += [nn.Conv2d(width, outputs, 1, bias=False), nn.BatchNorm2d(outputs)]
        else:
            layers = [nn.Conv2d(inputs, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            layers += [nn.Conv2d(width, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width)]
        self.body = nn.Sequential(*layers)
        self.skip = (
            nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs))
            if stride != 1 or inputs != outputs
            else nn.Identity()
        )
        self.outputs = outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


class SSCDShaped(nn.Module):
    """A ResNet trunk, GeM pooling, a linear layer to `dim` and L2 normalisation."""

    def __init__(self, depths: list[int], bottleneck: bool, dim: int = 512) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU()]
        layers.append(nn.MaxPool2d(3, 2, 1))
        channels = 64
        for stage, depth in enumerate(depths):
            for index in range(depth):
                block = Block(channels, 64 * 2**stage, 2 if index == 0 and stage > 0 else 1, bottleneck)
                layers.append(block)
                channels = block.outputs
        self.trunk = nn.Sequential(*layers)
        self.fc = nn.Linear(channels, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.trunk(x).clamp(min=1e-6).pow(3.0).mean(dim=(2, 3)).pow(1.0 / 3.0)
        return nn.functional.normalize(self.fc(features))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    files = [photo_jpeg(seed) for seed in range(args.images)]
    lines = [
        f"Machine: {host()}; torch {torch.__version__}, {torch.get_num_threads()} threads; 320x320 inputs.",
        "",
        "| model | prepare (1 thread) | embed | embed, per core |",
        "| --- | ---: | ---: | ---: |",
    ]
    with tempfile.TemporaryDirectory() as scratch:
        for name, depths, bottleneck in (("ResNet-18", [2, 2, 2, 2], False), ("ResNet-50", [3, 4, 6, 3], True)):
            path = Path(scratch) / f"{name}.torchscript.pt"
            torch.jit.script(SSCDShaped(depths, bottleneck).eval()).save(str(path))
            embedder = TorchScriptEmbedder(path, "cpu")
            embedder.load()
            start = time.perf_counter()
            prepared = np.stack([embedder.prepare(data) for data in files])
            prepare_ms = (time.perf_counter() - start) / len(files) * 1e3
            embedder.embed(prepared[: args.batch])  # warm-up
            start = time.perf_counter()
            for first in range(0, len(prepared), args.batch):
                embedder.embed(prepared[first : first + args.batch])
            rate = len(prepared) / (time.perf_counter() - start)
            cores = os.cpu_count() or 1
            lines.append(f"| {name} | {prepare_ms:.1f} ms/img | {rate:.2f} img/s | {rate / cores:.2f} img/s |")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
