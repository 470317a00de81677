"""Checks and exact arithmetic on embedding vectors, shared by the embedding cache (which refuses to store a
vector that cannot be compared) and every search (which refuses to take one as input)."""

from __future__ import annotations

import numpy as np

from llava_mixes.errors import BadEmbeddingError


def vector_norms(vectors: np.ndarray) -> np.ndarray:
    """Float64 norms (each coordinate squared and summed in float64, no float64 copy of the vectors): NaN or
    infinite where a coordinate is, zero for a zero vector."""
    return np.sqrt(np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64))


def unusable_vectors(vectors: np.ndarray) -> np.ndarray:
    """Which rows of `vectors` cannot be compared by cosine: a coordinate NaN or infinite, or all zero."""
    if vectors.dtype == np.float16 and vectors.shape[1]:
        # From the bits, ten times faster than float16 arithmetic: without the sign bit, a float16 is 0 only
        # for a zero and at least 0x7C00 (all exponent bits set) only for an infinity or a NaN.
        magnitude = (vectors.view(np.uint16) & 0x7FFF).max(axis=1)
        return (magnitude >= 0x7C00) | (magnitude == 0)
    norms = vector_norms(vectors)
    return ~np.isfinite(norms) | (norms == 0)


def checked_norms(vectors: np.ndarray) -> np.ndarray:
    """The float64 norms of `vectors` (see `vector_norms`); raises `BadEmbeddingError` naming the items whose
    vector is not finite or is zero, so that no such vector ever enters a search."""
    norms = vector_norms(vectors)
    bad = np.flatnonzero(~np.isfinite(norms) | (norms == 0))
    if bad.size:
        shown = bad[:10].tolist()
        raise BadEmbeddingError(
            f"{bad.size} of {len(vectors)} vectors cannot be compared (a coordinate NaN or infinite, or all zero), "
            f"at item indices {shown}{' ...' if bad.size > len(shown) else ''}: re-embed or drop those items",
            bad.tolist(),
        )
    return norms


def exact_cosines(vectors: np.ndarray, norms: np.ndarray, item: int, others: np.ndarray) -> np.ndarray:
    """The float64 cosines of item `item` with each of `others`, from the vectors and their float64 norms."""
    dots = vectors[others].astype(np.float64) @ vectors[item].astype(np.float64)
    return dots / (norms[others] * norms[item])
