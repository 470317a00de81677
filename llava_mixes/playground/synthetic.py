"""Synthetic data for benchmarks and tests: embedding vectors for the search, photo-like JPEG files.

- `clustered_vectors`: isotropic, the worst case for pruning. Random cluster centres in 1024-d, each
  item a centre plus noise; a quarter of the items share a centre with an earlier one (cosine ~0.92).
- `clip_like_vectors`: anisotropic like ViT class embeddings. A shared mean direction, a 48-d latent
  part with a decaying spectrum and a little isotropic noise, plus near-duplicates made by perturbing an
  earlier item's latent code. Calibrated on the seed study's COCO figures: unrelated pairs have cosine
  ~0.64, and greedy keep-first at 0.9 removes about a quarter (26% at 20K; the study removed 26%). A wider
  `spread` of the latent part (1.0 instead of 0.75) matches the study at 0.8 as well: 17.8% kept at 40K, 12.1%
  at 90K, where the study kept 17.8% of COCO (and 78% and 77% at 0.9).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

DIM = 1024
CHUNK = 65536  # vectors are generated a chunk at a time: memory stays near the float16 result, even at 1M


def clustered_vectors(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    """Isotropic clustered unit vectors, float16 (module docstring)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((int(n * 0.75), dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    members = np.concatenate([np.arange(len(centres)), rng.integers(0, len(centres), n - len(centres))])
    rng.shuffle(members)
    vectors = np.empty((n, dim), dtype=np.float16)
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        points = centres[members[start:stop]] + rng.standard_normal((stop - start, dim), dtype=np.float32) * (
            0.3 / np.sqrt(dim)
        )
        vectors[start:stop] = points / np.linalg.norm(points, axis=1, keepdims=True)
    return vectors


def clip_like_vectors(
    n: int,
    seed: int = 0,
    dim: int = DIM,
    latent: int = 48,
    noise: float = 0.14,
    duplicates: float = 0.22,
    spread: float = 0.75,
) -> np.ndarray:
    """Anisotropic unit vectors with planted near-duplicates, float16 (module docstring)."""
    rng = np.random.default_rng(seed)
    mean = rng.standard_normal(dim)
    mean /= np.linalg.norm(mean)
    basis, _ = np.linalg.qr(rng.standard_normal((dim, latent)))
    scales = np.arange(1, latent + 1) ** -0.5
    scales *= spread / np.linalg.norm(scales)
    codes = rng.standard_normal((n, latent)) * scales
    for item in np.flatnonzero(rng.random(n) < duplicates):
        if item > 0:
            source = max(item - 1 - int(rng.integers(0, 500)), 0)
            codes[item] = codes[source] + 0.25 * rng.standard_normal(latent) * scales
    vectors = np.empty((n, dim), dtype=np.float16)
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        points = mean + codes[start:stop] @ basis.T + noise * rng.standard_normal((stop - start, dim)) / np.sqrt(dim)
        vectors[start:stop] = points / np.linalg.norm(points, axis=1, keepdims=True)
    return vectors


def photo_jpeg(seed: int, width: int = 640, height: int = 480, quality: int = 90) -> bytes:
    """A photo-like JPEG: a smooth random colour field with grain, so it compresses like a photo
    (about 110 KB at 640x480, quality 90)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, size=(6, 8, 3)).astype(np.uint8)
    base = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)
    grain = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(grain).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()
