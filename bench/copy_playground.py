"""A seeded playground for copy detection: photo-like scenes, similar-looking siblings, and planted copies.

A scene is a landscape-like picture: a sky and a ground split by a wavy horizon, each filled with fractal
(1/f^2 power spectrum, like natural photographs) colour texture, with a few shapes (ellipses, polygons,
trunks) that have hard or soft edges, and sensor grain. `scene(seed, variant)` for two variants of one seed
shares the palette, the horizon and the coarsest layout (the same kind of shot), while the texture, the
shapes and the grain are drawn anew: two distinct pictures that look alike, not a copy of each other.

A planted copy is one transformation of an original, then a JPEG re-encode (quality 85 unless the
transformation is the re-encode itself): `reencode` (quality 50-95), `resize` (50-150%), `crop` (2-10%
from each side, drawn per side), `brightness` and `contrast` (factor 0.8-1.2, at least 5% away from 1),
`grey` (saved as a grey JPEG).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance

from llava_mixes.playground.copies import draw_shapes, jpeg, spectrum_field

TRANSFORMATIONS = ("reencode", "resize", "crop", "brightness", "contrast", "grey")
SIZES = ((640, 480), (480, 640), (600, 400), (512, 512))


@dataclass(frozen=True)
class Copy:
    """A planted copy: which original (index into the distinct pictures), how it was made, its bytes."""

    original: int
    transformation: str
    detail: str
    data: bytes


def scene(seed: int, variant: int = 0) -> Image.Image:
    """The picture of `seed`; variants of one seed are similar-looking distinct pictures (module docstring)."""
    shared = np.random.default_rng(seed)
    width, height = SIZES[int(shared.integers(len(SIZES)))]
    sky, ground = shared.uniform(30, 225, size=(2, 3))
    horizon = shared.uniform(0.3, 0.7) * height
    tilt = shared.uniform(-0.15, 0.15)
    waves = spectrum_field(shared, 1, width, 0.0, 3.0)[0] * shared.uniform(5, 30)
    light = spectrum_field(shared, height, width, 0.0, 3.0)
    own = np.random.default_rng([seed, variant, 7])
    rows = np.arange(height)[:, None]
    line = horizon + tilt * (np.arange(width)[None, :] - width / 2) + waves[None, :]
    below = rows > line
    pixels = np.where(below[..., None], ground, sky).astype(np.float32)
    pixels += 25.0 * light[..., None]
    contrast = own.uniform(15, 40)
    texture = spectrum_field(own, height, width, 3.0, np.inf)
    tint = own.uniform(0.7, 1.3, size=3)
    pixels += contrast * texture[..., None] * tint * np.where(below, 1.0, 0.5)[..., None]
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    draw_shapes(image, own, float(np.mean(line)))
    grain = own.normal(0, own.uniform(2, 6), size=(height, width, 1))
    noisy = np.asarray(image, dtype=np.float32) + grain
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def _factor(rng: np.random.Generator) -> float:
    """A factor in 0.8-1.2, at least 0.05 away from 1."""
    return float(1 + rng.choice([-1, 1]) * rng.uniform(0.05, 0.2))


def plant(original: Image.Image, transformation: str, rng: np.random.Generator) -> tuple[str, bytes]:
    """A copy of `original` made by `transformation` (module docstring): its description and bytes."""
    width, height = original.size
    if transformation == "reencode":
        quality = int(rng.integers(50, 96))
        return f"quality {quality}", jpeg(original, quality)
    if transformation == "resize":
        scale = float(rng.uniform(0.5, 1.5))
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        return f"{scale:.0%}", jpeg(original.resize(size, Image.Resampling.LANCZOS), 85)
    if transformation == "crop":
        left, top, right, bottom = rng.uniform(0.02, 0.10, 4)
        box = (round(left * width), round(top * height), round((1 - right) * width), round((1 - bottom) * height))
        return f"{left:.0%}/{top:.0%}/{right:.0%}/{bottom:.0%}", jpeg(original.crop(box), 85)
    if transformation in ("brightness", "contrast"):
        factor = _factor(rng)
        enhance = ImageEnhance.Brightness if transformation == "brightness" else ImageEnhance.Contrast
        return f"x{factor:.2f}", jpeg(enhance(original).enhance(factor), 85)
    if transformation == "grey":
        return "grey", jpeg(original.convert("L"), 85)
    raise ValueError(f"unknown transformation {transformation!r}; use one of {TRANSFORMATIONS}")


def playground(
    singles: int, sibling_pairs: int, copies_per_transformation: int, seed: int = 0
) -> tuple[list[bytes], list[int], list[Copy]]:
    """The distinct pictures (JPEG bytes; `singles` unrelated scenes, then `sibling_pairs` pairs of
    look-alikes), the family of each (siblings share one), and the planted copies: for every
    transformation, `copies_per_transformation` copies of distinct pictures drawn without replacement."""
    pictures: list[bytes] = []
    families: list[int] = []
    originals: list[Image.Image] = []
    for family in range(singles + sibling_pairs):
        for variant in range(1 if family < singles else 2):
            data = jpeg(scene(seed * 1_000_003 + family, variant), 92)
            pictures.append(data)
            originals.append(Image.open(io.BytesIO(data)).convert("RGB"))
            families.append(family)
    rng = np.random.default_rng([seed, 1])
    copies = []
    for transformation in TRANSFORMATIONS:
        chosen = rng.choice(len(originals), size=copies_per_transformation, replace=False)
        for index in chosen:
            detail, data = plant(originals[int(index)], transformation, rng)
            copies.append(Copy(int(index), transformation, detail, data))
    return pictures, families, copies
