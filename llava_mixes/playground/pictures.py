"""Generated pictures for the playground and the tests: smooth random colour fields with a few shapes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def synthetic_photo(rng: np.random.Generator, width: int = 160, height: int = 120) -> Image.Image:
    """A smooth random colour field with a few shapes: unrelated images correlate weakly."""
    coarse = rng.uniform(0, 255, size=(4, 5, 3)).astype(np.uint8)
    image = Image.fromarray(coarse, "RGB").resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x0, y0 = int(rng.integers(0, width - 20)), int(rng.integers(0, height - 20))
        x1, y1 = x0 + int(rng.integers(10, 60)), y0 + int(rng.integers(10, 50))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    return image


def encode(image: Image.Image, fmt: str = "JPEG", quality: int = 92) -> bytes:
    """The image's file bytes in `fmt` (JPEG at `quality`)."""
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.convert("RGB").save(buffer, fmt, quality=quality)
    else:
        image.save(buffer, fmt)
    return buffer.getvalue()


def write_file(root: Path, relative: str, data: bytes) -> None:
    """Write `data` at `root/relative`, creating its folders."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
