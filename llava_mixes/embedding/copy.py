"""Copy-detection embedders: `gradients` (weight-free, crop-tolerant) and SSCD TorchScript checkpoints.

`gradients` describes a picture by where its edges run. The picture becomes a 48x48 grey square; each
pixel's gradient votes, by magnitude, into the two nearest of 8 unsigned orientation bins and, with
bilinear weights, into the four nearest cells of a 4x4 grid whose cells overlap their neighbours by half.
The 128 sums are square-rooted (so strong edges do not drown the rest), centred and L2-normalised.
Brightness, contrast, grey conversion, re-encoding and resizing barely move it; the soft cells keep crops
of a few percent per side within reach. Flat pictures have no edges: they all get one direction,
orthogonal to every centred vector. Its copy threshold is 0.80: on the held-out seeded playground of
`bench/bench_copy_detection.py` it finds 99% of planted copies there (96% of crops) and removes none of
600 distinct pictures, look-alike shots included.

`TorchScriptEmbedder` runs a scripted model such as SSCD's `sscd_disc_mixup.torchscript.pt` (ResNet-50,
512-d) with SSCD's own preprocessing: RGB resized to a 320x320 square (SSCD's batched recipe, "skew_320"),
scaled to 0-1 and normalised with the ImageNet mean and std. SSCD's models L2-normalise their output; the
vectors are normalised again so that any model's can be compared by cosine.
"""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from llava_mixes.embedding.base import Embedder
from llava_mixes.embedding.preprocess import PIXELS_VERSION, to_8bit
from llava_mixes.embedding.weights import file_digest
from llava_mixes.errors import BadEmbeddingError, ConfigError, EmbedderUnavailableError

logger = logging.getLogger(__name__)

GRADIENTS = "gradients"
TORCHSCRIPT = "torchscript"
TORCHSCRIPT_SUFFIXES = (".pt", ".torchscript")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FLAT_GRADIENT = 0.25
"""Mean gradient magnitude (grey levels per pixel of the small square) below which a picture is flat."""


def _positive_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name}={value!r} is not allowed; give an integer of at least {low}")
    return value


def _cell_weights(length: int, cells: int) -> np.ndarray:
    """`(cells, length)` bilinear weights: each pixel is shared between the two nearest cell centres."""
    position = np.arange(length, dtype=np.float32) + 0.5
    centres = (np.arange(cells, dtype=np.float32) + 0.5) * length / cells
    return np.clip(1.0 - np.abs(position[None, :] - centres[:, None]) * cells / length, 0.0, None)


def _gradient(image: np.ndarray, axis: int) -> np.ndarray:
    """`np.gradient(image, axis=axis)` (central differences, one-sided at the edges), without its overhead."""
    pixels = np.moveaxis(image, axis, 0)
    out = np.empty_like(pixels)
    out[1:-1] = (pixels[2:] - pixels[:-2]) * 0.5
    out[0], out[-1] = pixels[1] - pixels[0], pixels[-1] - pixels[-2]
    return np.moveaxis(out, 0, axis)


class GradientsEmbedder(Embedder):
    """Soft-binned gradient-orientation histograms on a small grey square (see the module docstring)."""

    VERSION = 1
    verifies_pairs = True
    copy_threshold = 0.80
    """Cosine at or above which two pictures are copies when the vectors decide alone (module docstring)."""
    candidate_threshold = 0.70
    """Cosine at or above which two pictures are a candidate pair for verification (`embedding.verify`): on the
    copy benchmark (`bench/bench_copy_verification.py`) every planted copy of every kind scores 0.70 or more."""
    near_duplicate_threshold = candidate_threshold
    """Its dedup's default, verified: on the copy benchmark (bench/bench_near_duplicate_defaults.py) no distinct
    picture of any kind removed and every planted copy found from 0.70 to 0.80; alone, without verification, 0.80
    removes 70-98% of distinct pages, charts, tables, slides, screenshots and covers."""

    def __init__(self, size: int = 48, grid: int = 4, bins: int = 8) -> None:
        self.size = _positive_int("size", size, 8)
        self.grid = _positive_int("grid", grid, 1)
        self.bins = _positive_int("bins", bins, 2)
        if self.grid * 2 > self.size:
            raise ConfigError(f"grid={grid!r} is not allowed for size={size!r}; give a grid of at most size // 2")
        self.dim = self.grid * self.grid * self.bins
        self._cells = _cell_weights(self.size, self.grid)
        self._pixels = np.arange(self.size * self.size)

    def identity(self) -> dict[str, Any]:
        return {
            "kind": GRADIENTS,
            "size": self.size,
            "grid": self.grid,
            "bins": self.bins,
            "version": self.VERSION,
            "pixels": PIXELS_VERSION,
        }

    def grey(self, data: bytes) -> np.ndarray:
        """The picture as a `(size, size)` float32 grey square (JPEGs decoded at reduced scale)."""
        with Image.open(io.BytesIO(data)) as image:
            if image.format == "JPEG":
                image.draft("L", (self.size * 2, self.size * 2))
            grey = to_8bit(image, "L").resize((self.size, self.size), Image.Resampling.BOX)
        return np.asarray(grey, dtype=np.float32)

    def describe(self, grey: np.ndarray) -> np.ndarray:
        """The unit vector of a `(size, size)` grey square (see the module docstring)."""
        grad_y, grad_x = _gradient(grey, 0), _gradient(grey, 1)
        magnitude = np.hypot(grad_x, grad_y)
        if float(magnitude.mean()) < FLAT_GRADIENT:
            return np.full(self.dim, 1.0 / np.sqrt(self.dim), dtype=np.float32)
        orientation = (np.arctan2(grad_y, grad_x) * np.float32(self.bins / np.pi)).ravel()
        orientation[orientation < 0] += self.bins  # unsigned: opposite directions share a bin
        lower = np.floor(orientation)
        upper_share = (orientation - lower) * magnitude.ravel()
        lower_bin = lower.astype(np.intp) % self.bins
        votes = np.zeros((self.bins, self.size * self.size), dtype=np.float32)
        votes[lower_bin, self._pixels] = magnitude.ravel() - upper_share
        votes[(lower_bin + 1) % self.bins, self._pixels] += upper_share
        cells = self._cells @ votes.reshape(self.bins, self.size, self.size) @ self._cells.T
        histogram = np.sqrt(np.moveaxis(cells, 0, -1).ravel())
        histogram = histogram - histogram.mean()
        norm = float(np.linalg.norm(histogram))
        if not np.isfinite(norm) or norm < 1e-6:
            return np.full(self.dim, 1.0 / np.sqrt(self.dim), dtype=np.float32)
        return (histogram / norm).astype(np.float32)

    def prepare(self, data: bytes) -> np.ndarray:
        return self.describe(self.grey(data))

    def embed(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(batch, dtype=np.float32)


def _file_digest(path: Path) -> str:
    """The model file's SHA-256 (20 hex digits), read only when its stat moved (see `weights.file_digest`)."""
    return file_digest(path)[:20]


def checked_unit_vectors(vectors: np.ndarray, rows: int, source: str) -> np.ndarray:
    """`vectors` as float32 `(rows, dim)` unit vectors; BadEmbeddingError naming the rows that are not
    finite or have zero length, or the shape when it is not one vector per image."""
    if vectors.ndim != 2 or vectors.shape[0] != rows:
        raise BadEmbeddingError(f"{source} returned shape {tuple(vectors.shape)} for {rows} images; want (n, dim)")
    values = vectors.astype(np.float32)
    norms = np.linalg.norm(values, axis=1)
    bad = ~np.isfinite(values).all(axis=1) | ~np.isfinite(norms) | (norms < 1e-12)
    if bad.any():
        positions = [int(row) for row in np.flatnonzero(bad)]
        raise BadEmbeddingError(
            f"{source} returned vectors that are not finite or have zero length for batch rows {positions}",
            positions,
        )
    return values / norms[:, None]


class TorchScriptEmbedder(Embedder):
    """A TorchScript image model, such as an SSCD checkpoint, with SSCD's preprocessing (module docstring)."""

    decode_in_processes = True
    verifies_pairs = True
    copy_threshold = 0.75
    """SSCD's README: `sscd_disc_mixup` pairs at or above 0.75 are copies with 90% precision on DISC."""
    candidate_threshold = 0.60
    """Cosine at or above which a pair goes to verification: below SSCD's copy threshold, for recall."""

    def __init__(self, path: str | Path, device: str | None = None, size: int = 320) -> None:
        self.path = Path(path).expanduser().resolve()
        if not self.path.is_file():
            raise EmbedderUnavailableError(
                f"cannot use the TorchScript embedder {str(path)!r}: no such file. SSCD checkpoints are at "
                "https://dl.fbaipublicfiles.com/sscd-copy-detection/sscd_disc_mixup.torchscript.pt (ResNet-50, 512-d)"
            )
        self.size = _positive_int("size", size, 16)
        self.device = device or self._default_device()
        self.digest = _file_digest(self.path)
        self.dim = -1
        self._model: Any = None

    @staticmethod
    def _default_device() -> str:
        from llava_mixes.devices import cuda_available

        return "cuda" if cuda_available() else "cpu"

    def identity(self) -> dict[str, Any]:
        return {
            "kind": TORCHSCRIPT,
            "model": str(self.path),
            "digest": self.digest,
            "precision": "fp32",
            "preprocess": f"rgb-bilinear-{self.size}x{self.size}+imagenet-mean-std",
            "pixels": PIXELS_VERSION,
        }

    def on_device(self, device: str) -> TorchScriptEmbedder:
        twin = TorchScriptEmbedder.__new__(TorchScriptEmbedder)
        twin.__dict__.update(self.__dict__)
        twin.device, twin._model = device, None
        return twin

    def load(self, expected_images: int = 0) -> None:
        if self._model is not None:
            return
        import torch

        try:
            with warnings.catch_warnings():
                # SSCD publishes TorchScript files; torch's deprecation of the format is no news to the user.
                warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated", DeprecationWarning)
                model = torch.jit.load(str(self.path), map_location=self.device)
        except (RuntimeError, ValueError) as error:
            raise EmbedderUnavailableError(
                f"cannot load {str(self.path)!r} as a TorchScript model: {str(error).splitlines()[0]}"
            ) from error
        self._model = model.eval()
        probe = np.zeros((1, 3, self.size, self.size), dtype=np.uint8)
        self.dim = int(self._forward(probe).shape[1])
        logger.info("loaded %s (%d-d) on %s", self.path, self.dim, self.device)

    def prepare(self, data: bytes) -> np.ndarray:
        """The picture as uint8 `(3, size, size)` RGB, resized with bilinear (antialiased) filtering."""
        with Image.open(io.BytesIO(data)) as image:
            if image.format == "JPEG":
                image.draft("RGB", (self.size, self.size))
            rgb = to_8bit(image, "RGB").resize((self.size, self.size), Image.Resampling.BILINEAR)
        return np.ascontiguousarray(np.moveaxis(np.asarray(rgb), -1, 0))

    def _forward(self, batch: Any) -> np.ndarray:
        import torch

        with torch.inference_mode():
            pixels = torch.as_tensor(np.asarray(batch)).to(self.device).float().div_(255.0)
            mean = torch.tensor(IMAGENET_MEAN, device=self.device)[None, :, None, None]
            std = torch.tensor(IMAGENET_STD, device=self.device)[None, :, None, None]
            output = self._model((pixels - mean) / std)
            if isinstance(output, (tuple, list)):
                output = output[0]
            return output.float().cpu().numpy()

    def embed(self, batch: np.ndarray) -> np.ndarray:
        self.load()
        rows = len(batch)
        return checked_unit_vectors(self._forward(batch), rows, f"the TorchScript model {str(self.path)!r}")
