"""The copy-detection benchmark: distinct pictures of every kind a LLaVA mix holds, and planted copies of some.

Kinds: `photo` (landscape-like scenes: fractal colour texture, a horizon, shapes and grain) and the document
kinds of `playground.documents` (text pages, charts, tables, diagrams, slides, UI screenshots, book covers).
Each kind has `singles` unrelated pictures and `sibling_pairs` pairs of look-alikes (one template, other
content; for photos one palette, horizon and coarse layout, new texture and shapes): every picture is distinct.
Photos and covers are JPEG files, as in the wild; the other kinds PNG.

A planted copy is one transformation of an original, then a JPEG re-encode (quality 70-95 unless the
transformation is the re-encode itself). `TRANSFORMATIONS`:
- `reencode`: JPEG quality 40-90;
- `resize`: to 50-90% of each side;
- `crop`: 0-10% off each side, drawn per side;
- `brightness`, `contrast`: a factor within +-15% (at least 3% away from 1);
- `grey`: saved as a grey JPEG;
- `combined`: a crop (0-6% per side), a resize (60-100%), a brightness or contrast factor (+-10%) and quality
  50-90, all at once.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from llava_mixes.playground.documents import KINDS as DOCUMENT_KINDS
from llava_mixes.playground.documents import document

KINDS = ("photo", *DOCUMENT_KINDS)
TRANSFORMATIONS = ("reencode", "resize", "crop", "brightness", "contrast", "grey", "combined")
JPEG_KINDS = ("photo", "cover")
PHOTO_SIZES = ((640, 480), (480, 640), (600, 400), (512, 512))


@dataclass(frozen=True)
class Picture:
    """A distinct picture of the benchmark: its kind, its family (look-alike siblings share one), its bytes."""

    kind: str
    family: int
    data: bytes


@dataclass(frozen=True)
class Copy:
    """A planted copy: which original (index into the distinct pictures), how it was made, its bytes."""

    original: int
    transformation: str
    detail: str
    data: bytes


@dataclass(frozen=True)
class CopyBenchmark:
    """The distinct pictures (every kind, in order) and the planted copies."""

    pictures: list[Picture]
    copies: list[Copy]

    def kind_of(self, index: int) -> str:
        return self.pictures[index].kind


def spectrum_field(rng: np.random.Generator, height: int, width: int, low: float, high: float) -> np.ndarray:
    """Zero-mean unit-variance noise with a 1/f^2 power spectrum between `low` and `high` cycles per picture."""
    fy = np.fft.fftfreq(height)[:, None] * height
    fx = np.fft.rfftfreq(width)[None, :] * width
    radius = np.hypot(fy, fx)
    amplitude = np.where((radius > max(low, 0.5)) & (radius <= high), 1.0 / np.maximum(radius, 0.5), 0.0)
    spectrum = amplitude * (rng.standard_normal(radius.shape) + 1j * rng.standard_normal(radius.shape))
    field = np.fft.irfft2(spectrum, s=(height, width))
    return (field - field.mean()) / (field.std() + 1e-9)


def scene(seed: int, variant: int = 0) -> Image.Image:
    """A landscape-like photo; variants of one seed share palette, horizon and coarse layout (module docstring)."""
    shared = np.random.default_rng(seed)
    width, height = PHOTO_SIZES[int(shared.integers(len(PHOTO_SIZES)))]
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
    texture = spectrum_field(own, height, width, 3.0, np.inf)
    pixels += (
        own.uniform(15, 40) * texture[..., None] * own.uniform(0.7, 1.3, size=3) * np.where(below, 1.0, 0.5)[..., None]
    )
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    draw_shapes(image, own, float(np.mean(line)))
    noisy = np.asarray(image, dtype=np.float32) + own.normal(0, own.uniform(2, 6), size=(height, width, 1))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def draw_shapes(image: Image.Image, rng: np.random.Generator, horizon: float) -> None:
    """Draw 3-8 shapes near the horizon or on the ground, some blurred in place."""
    width, height = image.size
    for _ in range(int(rng.integers(3, 9))):
        layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        colour = (*(int(c) for c in rng.integers(0, 256, 3)), 255)
        cx = rng.uniform(0.05, 0.95) * width
        cy = rng.uniform(horizon - 0.2 * height, min(height, horizon + 0.4 * height))
        size = rng.uniform(0.04, 0.22) * min(width, height)
        kind = int(rng.integers(3))
        if kind == 0:
            draw.ellipse((cx - size, cy - size * rng.uniform(0.4, 1.2), cx + size, cy + size), fill=colour)
        elif kind == 1:
            angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 7))))
            radii = size * rng.uniform(0.5, 1.2, len(angles))
            draw.polygon(
                [(cx + r * np.cos(a), cy + r * np.sin(a)) for a, r in zip(angles, radii, strict=True)], fill=colour
            )
        else:
            draw.rectangle((cx - size * 0.12, cy - size * 2, cx + size * 0.12, cy), fill=colour)
            draw.ellipse((cx - size * 0.8, cy - size * 2.8, cx + size * 0.8, cy - size * 1.6), fill=colour)
        if rng.random() < 0.4:
            layer = layer.filter(ImageFilter.GaussianBlur(rng.uniform(1, 4)))
        image.paste(layer, (0, 0), layer)


def picture(kind: str, seed: int, variant: int = 0) -> Image.Image:
    """The distinct picture of `kind` for `seed` and `variant`."""
    return scene(seed, variant) if kind == "photo" else document(kind, seed, variant)


def encode(image: Image.Image, kind: str) -> bytes:
    """A distinct picture's file: JPEG (quality 92) for photos and covers, PNG for the other kinds."""
    buffer = io.BytesIO()
    if kind in JPEG_KINDS:
        image.save(buffer, "JPEG", quality=92)
    else:
        image.save(buffer, "PNG", optimize=False, compress_level=1)
    return buffer.getvalue()


def jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _factor(rng: np.random.Generator, spread: float) -> float:
    """A factor within 1 +- `spread`, at least 0.03 away from 1."""
    return float(1 + rng.choice([-1, 1]) * rng.uniform(0.03, spread))


def _crop(image: Image.Image, sides: np.ndarray) -> Image.Image:
    width, height = image.size
    left, top, right, bottom = (float(side) for side in sides)
    return image.crop(
        (round(left * width), round(top * height), round((1 - right) * width), round((1 - bottom) * height))
    )


def _resize(image: Image.Image, scale: float) -> Image.Image:
    width, height = image.size
    return image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.LANCZOS)


def plant(original: Image.Image, transformation: str, rng: np.random.Generator) -> tuple[str, bytes]:
    """A copy of `original` made by `transformation` (module docstring): its description and bytes."""
    quality = int(rng.integers(70, 96))
    if transformation == "reencode":
        quality = int(rng.integers(40, 91))
        return f"quality {quality}", jpeg(original, quality)
    if transformation == "resize":
        scale = float(rng.uniform(0.5, 0.9))
        return f"{scale:.0%}", jpeg(_resize(original, scale), quality)
    if transformation == "crop":
        sides = rng.uniform(0.0, 0.10, 4)
        return "/".join(f"{side:.1%}" for side in sides), jpeg(_crop(original, sides), quality)
    if transformation in ("brightness", "contrast"):
        factor = _factor(rng, 0.15)
        enhance = ImageEnhance.Brightness if transformation == "brightness" else ImageEnhance.Contrast
        return f"x{factor:.2f}", jpeg(enhance(original).enhance(factor), quality)
    if transformation == "grey":
        return "grey", jpeg(original.convert("L"), quality)
    if transformation == "combined":
        sides = rng.uniform(0.0, 0.06, 4)
        scale = float(rng.uniform(0.6, 1.0))
        factor = _factor(rng, 0.10)
        enhance = ImageEnhance.Brightness if rng.random() < 0.5 else ImageEnhance.Contrast
        quality = int(rng.integers(50, 91))
        edited = enhance(_resize(_crop(original, sides), scale)).enhance(factor)
        detail = f"crop {'/'.join(f'{side:.1%}' for side in sides)}, {scale:.0%}, x{factor:.2f}, quality {quality}"
        return detail, jpeg(edited, quality)
    raise ValueError(f"unknown transformation {transformation!r}; use one of {TRANSFORMATIONS}")


def copy_benchmark(
    kinds: tuple[str, ...] = KINDS,
    singles: int = 40,
    sibling_pairs: int = 10,
    copies_per_transformation: int = 5,
    seed: int = 0,
    transformations: tuple[str, ...] = TRANSFORMATIONS,
) -> CopyBenchmark:
    """For every kind, `singles` unrelated pictures and `sibling_pairs` pairs of look-alikes (all distinct), and
    for every kind and transformation `copies_per_transformation` copies of distinct pictures of that kind,
    drawn without replacement (module docstring)."""
    pictures: list[Picture] = []
    copies: list[Copy] = []
    rng = np.random.default_rng([seed, 1])
    for kind_index, kind in enumerate(kinds):
        start = len(pictures)
        originals: list[Image.Image] = []
        for family in range(singles + sibling_pairs):
            for variant in range(1 if family < singles else 2):
                image = picture(kind, (seed * 1_000_003 + family) * 16 + kind_index, variant)
                data = encode(image, kind)
                pictures.append(Picture(kind, start + family, data))
                originals.append(Image.open(io.BytesIO(data)).convert("RGB"))
        for transformation in transformations:
            chosen = rng.choice(len(originals), size=min(copies_per_transformation, len(originals)), replace=False)
            for index in chosen.tolist():
                detail, data = plant(originals[index], transformation, rng)
                copies.append(Copy(start + index, transformation, detail, data))
    return CopyBenchmark(pictures, copies)
