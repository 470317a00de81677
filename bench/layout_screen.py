"""A weight-free second screen for copy candidates, measured by `bench_copy_verification.py --screen` (not in the
package): an edge-layout thumbnail compared under crop hypotheses, so that a cosine is a matrix product.

Each picture becomes a 64 x 64 map of edge strength (the square root of the Sobel gradient magnitude on a 256-px
grey square, area-averaged). Its *query* vector is the central 80% of the map resampled to `side` x `side`,
mean-centred and L2-normalised. Its *hypothesis* vectors are the regions where the query region of a copy cut
from it would fall: for crops of `CROPS` (fractions of a side) on each of the four sides, the region
[l + (1 - l - r) 0.1, l + (1 - l - r) 0.9] on each axis, resampled the same way (`len(CROPS) ** 4` of them).
Resampling is separable (area weights per axis), so all hypotheses of many pictures are two matrix products. A
pair scores the best cosine of either picture's query with the other's hypotheses.
"""

from __future__ import annotations

import cv2
import numpy as np

MAP = 64
MARGIN = 0.1
CROPS = (0.0, 1 / 30, 2 / 30, 0.1)


def _weights(start: float, stop: float, side: int) -> np.ndarray:
    """(side, MAP): each row averages the map over one of `side` equal parts of [start, stop) (area weights)."""
    weights = np.zeros((side, MAP), np.float32)
    edges = np.linspace(start, stop, side + 1) * MAP
    for row in range(side):
        low, high = edges[row], edges[row + 1]
        for cell in range(int(np.floor(low)), int(np.ceil(high))):
            if 0 <= cell < MAP:
                weights[row, cell] = max(0.0, min(high, cell + 1) - max(low, cell))
        weights[row] /= max(float(weights[row].sum()), 1e-9)
    return weights


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = vectors - vectors.mean(-1, keepdims=True)
    return (vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-6)).astype(np.float32)


def edge_map(grey: np.ndarray) -> np.ndarray:
    """The MAP x MAP edge-strength map of a grey square (any size)."""
    pixels = cv2.resize(grey.astype(np.float32), (256, 256), interpolation=cv2.INTER_AREA)
    gx, gy = cv2.Sobel(pixels, cv2.CV_32F, 1, 0), cv2.Sobel(pixels, cv2.CV_32F, 0, 1)
    return cv2.resize(np.sqrt(np.sqrt(gx * gx + gy * gy)), (MAP, MAP), interpolation=cv2.INTER_AREA)


class LayoutScreen:
    """Query and hypothesis vectors of edge maps (module docstring); `side` is the resampled region's side."""

    def __init__(self, side: int = 24) -> None:
        self.side = side
        spans = [
            (left + (1 - left - right) * MARGIN, left + (1 - left - right) * (1 - MARGIN))
            for left in CROPS
            for right in CROPS
        ]
        self.axes = np.stack([_weights(start, stop, side) for start, stop in spans])
        self.centre = _weights(MARGIN, 1 - MARGIN, side)

    @property
    def hypotheses(self) -> int:
        return len(self.axes) ** 2

    def vectors(self, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, side^2) query vectors and (n, hypotheses, side^2) hypothesis vectors of (n, MAP, MAP) maps."""
        query = np.einsum("ri,nij,sj->nrs", self.centre, maps, self.centre).reshape(len(maps), -1)
        rows = np.einsum("ari,nij->narj", self.axes, maps)
        regions = np.einsum("narj,bsj->nabrs", rows, self.axes).reshape(len(maps), self.hypotheses, -1)
        return _unit(query), _unit(regions)

    def scores(self, maps_a: np.ndarray, maps_b: np.ndarray, chunk: int = 64) -> np.ndarray:
        """(len(a), len(b)): each pair's best cosine of one's query with the other's hypotheses."""
        query_a, hypotheses_a = self.vectors(maps_a)
        query_b, hypotheses_b = self.vectors(maps_b)
        out = np.empty((len(maps_a), len(maps_b)), np.float32)
        for start in range(0, len(maps_b), chunk):
            part = hypotheses_b[start : start + chunk]
            out[:, start : start + chunk] = (
                (query_a @ part.reshape(-1, part.shape[-1]).T).reshape(len(maps_a), len(part), -1).max(2)
            )
        for start in range(0, len(maps_a), chunk):
            part = hypotheses_a[start : start + chunk]
            back = (query_b @ part.reshape(-1, part.shape[-1]).T).reshape(len(maps_b), len(part), -1).max(2)
            out[start : start + chunk] = np.maximum(out[start : start + chunk], back.T)
        return out

    def pair_scores(self, maps_a: np.ndarray, maps_b: np.ndarray) -> np.ndarray:
        """Row i of a against row i of b, for every i."""
        query_a, hypotheses_a = self.vectors(maps_a)
        query_b, hypotheses_b = self.vectors(maps_b)
        one = np.einsum("nd,nhd->nh", query_a, hypotheses_b).max(1)
        return np.maximum(one, np.einsum("nd,nhd->nh", query_b, hypotheses_a).max(1))
