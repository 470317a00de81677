"""The `Embedder` interface every embedder implements: `prepare(bytes)` decodes and preprocesses one image
(thread-safe, run in decode workers), `embed(batch)` turns a stacked batch into L2-normalised float32 vectors,
and `identity()` describes everything that changes the vectors (the embedding cache is keyed by it)."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np


class Embedder(ABC):
    """Image bytes to vectors (see the module docstring)."""

    dim: int
    decode_in_processes = False
    """Whether `prepare` is heavy enough to run in worker processes rather than threads."""
    verifies_pairs = False
    """Whether its pairs at a threshold are only candidates, which `embedding.verify` confirms or rejects before
    anything is removed (dedup, recipe copy dedup, decontamination, overlap): true for the copy embedders, whose
    cosine alone cannot tell distinct documents apart. The one place this rule lives (`decontam.copies.verifies`)."""
    near_duplicate_threshold: float | None = None
    """The cosine this embedder's dedup is measured and documented at (`llava-mixes list --embedders`); None where
    the project has not measured one (a ViT: 0.8-0.9 by the seed study)."""

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """A JSON-serialisable description of everything that changes the vectors."""

    def key(self) -> str:
        """A short, filesystem-safe digest of `identity()`."""
        digest = hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:20]
        return f"{self.identity()['kind']}-{digest}"

    def load(self, expected_images: int = 0) -> None:  # noqa: B027 - only embedders with weights act here
        """Load weights; called only when some image is not cached yet (`expected_images` of them)."""

    def on_device(self, device: str) -> Embedder:
        """An unloaded embedder with the same identity that runs on `device` (for another process)."""
        del device
        return self

    @abstractmethod
    def prepare(self, data: bytes) -> np.ndarray:
        """Decode and preprocess one image."""

    @abstractmethod
    def embed(self, batch: np.ndarray) -> np.ndarray:
        """Vectors (float32, shape `(len(batch), dim)`, unit length) for a stack of prepared images."""

    def submit(self, batch: Any) -> Callable[[], np.ndarray]:
        """Start embedding a stack of prepared images; the returned function waits for their vectors.
        Engines submit the next batch before waiting for the last, so a device never waits for the host."""
        vectors = self.embed(np.asarray(batch))
        return lambda: vectors
