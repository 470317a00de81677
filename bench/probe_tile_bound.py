"""Would a bound per tile let the report's sweep skip whole tiles? A probe on the report bench's vectors.

The sweep bounds every pair with the rank-64 bound (`LowRankBound`): upper(q, x) = <l_q, l_x> for the low
vectors l (projections with the residual norm appended). Stored clustered, a tile T of items with centre m and
radius R = max |l_x - m| bounds all its pairs with a query at once: upper(q, x) <= <l_q, m> + |l_q| R. This
probe clusters `--images` vectors of `bench_report.grouped_vectors` (k-means on the low vectors, `--tile`
items per cluster on average) and prints, for the similarities a pair must reach to matter in the sweep
(0.5 ... 0.95), the share of pairs that sit in tiles this bound cannot skip, next to the share of pairs that
truly reach it (from a sample of queries against every vector). A tile bound pays only where the first is far
below 1.

usage: python bench/probe_tile_bound.py [--images 100000] [--tile 256] [--queries 2000]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from bench_report import SPREAD, grouped_vectors
from machine_info import host

from llava_mixes.dedup.search import FLOAT32_TOLERANCE, LowRankBound
from llava_mixes.dedup.sweep import PRUNE_PROBE
from llava_mixes.vectors import checked_norms

NEEDS = (0.5, 0.7, 0.8, 0.85, 0.9, 0.95)


def kmeans(points: np.ndarray, clusters: int, rounds: int = 8, seed: int = 0) -> np.ndarray:
    """Each point's cluster after `rounds` of Lloyd's algorithm from `clusters` random points."""
    rng = np.random.default_rng(seed)
    centres = points[rng.choice(len(points), clusters, replace=False)].copy()
    for _ in range(rounds):
        labels = (points @ centres.T - 0.5 * (centres * centres).sum(axis=1)[None, :]).argmax(axis=1)
        for cluster in range(clusters):
            members = labels == cluster
            if members.any():
                centres[cluster] = points[members].mean(axis=0)
    return (points @ centres.T - 0.5 * (centres * centres).sum(axis=1)[None, :]).argmax(axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100000)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--queries", type=int, default=2000)
    args = parser.parse_args()
    vectors, _, _ = grouped_vectors(args.images, spread=SPREAD)
    vectors = vectors.astype(np.float32)
    norms = checked_norms(vectors)
    units = vectors / norms[:, None]
    bound = LowRankBound.fit(vectors, norms, PRUNE_PROBE - FLOAT32_TOLERANCE)
    if bound is None:
        sys.exit("the low-rank bound does not fit these vectors")
    projected, residual = bound.project(units)
    low = np.concatenate([projected, residual[:, None]], axis=1)
    labels = kmeans(low, max(args.images // args.tile, 1))
    clusters = labels.max() + 1
    centres = np.stack([low[labels == cluster].mean(axis=0) for cluster in range(clusters)])
    sizes = np.bincount(labels, minlength=clusters)
    radius = np.zeros(clusters)
    np.maximum.at(radius, labels, np.linalg.norm(low - centres[labels], axis=1))
    queries = np.random.default_rng(1).choice(args.images, args.queries, replace=False)
    tile_bound = low[queries] @ centres.T + np.linalg.norm(low[queries], axis=1)[:, None] * radius[None, :]
    scores = units[queries] @ units.T
    sys.stdout.write(
        f"{host()}: {args.images:,} vectors (spread {SPREAD:g}), {clusters} clusters (sizes "
        f"{np.quantile(sizes, 0.1):.0f}-{np.quantile(sizes, 0.9):.0f}, 10th-90th percentile), radius "
        f"{np.quantile(radius, 0.1):.2f}-"
        f"{np.quantile(radius, 0.9):.2f}; residual norm mean {residual.mean():.3f}\n\n"
        "| similarity a pair must reach | pairs in tiles the tile bound cannot skip | pairs that reach it |\n"
        "| --- | --- | --- |\n"
    )
    for need in NEEDS:
        unskipped = ((tile_bound >= need) * sizes[None, :]).sum() / (sizes.sum() * len(queries))
        sys.stdout.write(f"| {need:g} | {unskipped:.1%} | {(scores >= need).mean():.3%} |\n")


if __name__ == "__main__":
    main()
