"""The threshold sweep: greedy keep-first decisions at many thresholds at once, from one blocked pass.

`deduplicate` applies the keep rule (see `llava_mixes.dedup.deduplicate`) at one threshold. Here one pass over a
scope's distinct images, in the same order, computes every similarity block once (a float32 GEMM of a
block of items against the earlier items, a tile at a time) and updates the decisions at every
threshold from that block. A threshold is one bit of a `uint64` per item, set where the item is kept:
item i is removed at threshold t when some earlier item j is kept at t and cos(i, j) >= t, so the
thresholds at which j removes i are `keep_bits[j] & below[level(cos(i, j))]`, where `level` counts
the thresholds <= the cosine. Scores within `FLOAT32_TOLERANCE` of a threshold are recomputed in
float64 with `search`'s own function, exactly as `greedy_keep_first` decides, so the bits equal
`deduplicate`'s result at each threshold. The same pass gives each item's nearest-neighbour
similarity and its most similar earlier item (the pair the gallery shows).

Pruning (`prune=True`, where a `LowRankBound` fits the vectors): a pair is scored only where its low-rank
upper bound reaches what it could change. For the column (an earlier item c): the lowest threshold c is
kept at (below it c removes nothing) or, for nearest neighbours, c's best score so far. For the row (an
item r of the block): the score of its match so far (below it no pair changes r's match or nearest
neighbour). Within a tile, each row's and each column's pair of highest bound raises that score first
(the pair's cosine is at least its bound less twice its residual norms' product, and the pair itself is
scored). `floor` adds a lower limit under both: matches and nearest neighbours below it are not looked for.
Every decision stays exact; only pairs that cannot change the result are skipped. The pairs left are scored
one by one, except a crowded column's (an item kept down to a low threshold has many), scored against the
whole block in one product.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from llava_mixes.dedup.search import FLOAT32_TOLERANCE, LowRankBound
from llava_mixes.devices import blas_threads
from llava_mixes.errors import ConfigError
from llava_mixes.vectors import checked_norms, exact_cosines

GRID = tuple(round(0.5 + step / 100, 2) for step in range(51))
"""The thresholds of the sweep table and plot: 0.50 to 1.00 in steps of 0.01."""
MAX_THRESHOLDS = 64


def sweep_thresholds(shown: Sequence[float]) -> tuple[float, ...]:
    """`GRID` and the `shown` thresholds, sorted; raises `ConfigError` for a value outside (0, 1] or too many."""
    for value in shown:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
            raise ConfigError(f"threshold {value!r} is not allowed; thresholds must be numbers in (0, 1]")
    merged = tuple(sorted({*GRID, *(float(value) for value in shown)}))
    if len(merged) > MAX_THRESHOLDS:
        extra = len(merged) - len(GRID)
        raise ConfigError(
            f"{extra} thresholds off the 0.01 grid are too many; give at most {MAX_THRESHOLDS - len(GRID)}"
        )
    return merged


@dataclass(frozen=True)
class PassResult:
    """Per item of one scope, in visiting order.

    `keep_bits`: bit k set where the item is kept at `thresholds[k]`. `nearest`: the highest similarity
    to any other item (-1 for a lone item). `match`/`match_similarity`: the most similar earlier item
    (among items of another group when the pass was given groups; -1 and -inf where there is none).
    Below `floor`, `nearest` and `match_similarity` are only lower bounds (and `match` may be -1).
    """

    thresholds: tuple[float, ...]
    keep_bits: np.ndarray
    nearest: np.ndarray
    match: np.ndarray
    match_similarity: np.ndarray
    floor: float = -np.inf

    def kept(self, threshold: float) -> np.ndarray:
        """Which items are kept at `threshold` (one of `thresholds`)."""
        return (self.keep_bits >> np.uint64(self.thresholds.index(threshold))) & np.uint64(1) == 1


def _below_masks(count: int) -> np.ndarray:
    """`masks[level]`: the bits of the `level` lowest thresholds."""
    masks = np.zeros(count + 1, dtype=np.uint64)
    for level in range(1, count + 1):
        masks[level] = masks[level - 1] | np.uint64(1 << (level - 1))
    return masks


def _best_floor(best_upper: np.ndarray, residuals: np.ndarray, other_residuals: np.ndarray) -> np.ndarray:
    """A floor under the float32 score of each row's pair with the highest bound (`best_upper`): that pair's
    cosine is at least its bound less twice its residual norms' product (Cauchy-Schwarz on the residuals), and
    the other side's widest residual norm stands in for its own."""
    widest = other_residuals.max(initial=0.0)
    return best_upper - 2 * residuals * widest - np.float32(LowRankBound.SLACK + FLOAT32_TOLERANCE)


def _crowded_columns(columns: np.ndarray, rows: int) -> np.ndarray:
    """Per column of a tile (up to the last one with a pair), whether at least 1/`_CROWDED` of the block's
    `rows` pair with it: an item kept down to a low threshold has many."""
    return np.bincount(columns) * _CROWDED >= rows if len(columns) else np.zeros(0, dtype=bool)


def _row_parts(size: int, count: int) -> list[slice]:
    """`range(size)` cut into `count` slices (fewer for a small size)."""
    step = max(1, -(-size // count))
    return [slice(first, min(first + step, size)) for first in range(0, size, step)]


@dataclass
class _Tile:
    """What one tile of decided items says about a block: removal bits (sure and possible), the pairs to
    recompute exactly, the block rows' highest scores, and their best matches in the tile."""

    sure: np.ndarray
    maybe: np.ndarray
    open_rows: np.ndarray
    open_columns: np.ndarray
    row_max: np.ndarray | None
    best: np.ndarray
    best_scores: np.ndarray


# A pair the bound rules out scores below its target by more than float32 rounding can hide.
_MARGIN = LowRankBound.SLACK + FLOAT32_TOLERANCE
# A tile is scored as a full product when scoring only the pairs its bound leaves would cost more than this
# fraction of its pairs, counted in gathered pairs (a crowded column's product counts as block rows / `_CROWDED`).
DENSE_FRACTION = 0.02
# The bound is fitted where it rules out 90% of sample pairs at this similarity (what most targets reach).
PRUNE_PROBE = 0.9
_GATHER = 512  # pairs scored at a time: their gathered rows stay in the CPU cache
# A column with at least 1/_CROWDED of the block's rows among its pairs is scored against the whole block: a
# gathered pair costs about as much as 32 pairs of a product.
_CROWDED = 32


class _Pass:
    """The state of one pass (see the module docstring)."""

    def __init__(
        self,
        vectors: np.ndarray,
        norms: np.ndarray,
        thresholds: tuple[float, ...],
        groups: np.ndarray | None,
        want_nearest: bool,
        floor: float,
        bound: LowRankBound | None,
    ) -> None:
        self.vectors = vectors
        self.norms = norms
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        self.masks = _below_masks(len(thresholds))
        self.all_bits = self.masks[-1]
        # level(s - tol) never overcounts, level(s + tol) never undercounts the thresholds <= the exact cosine.
        self.sure_edges = (self.thresholds + FLOAT32_TOLERANCE).astype(np.float32)
        self.maybe_edges = (self.thresholds - FLOAT32_TOLERANCE).astype(np.float32)
        self.groups = groups
        self.want_nearest = want_nearest
        self.floor = np.float32(floor)
        self.bound = bound
        n, dim = vectors.shape
        self.keep_bits = np.zeros(n, dtype=np.uint64)
        self.nearest = np.full(n, -1.0, dtype=np.float32)
        self.match = np.full(n, -1, dtype=np.int64)
        self.match_similarity = np.full(n, -np.inf, dtype=np.float32)
        # Filled block by block: untouched pages take no memory.
        self.units = np.empty((n, dim), dtype=np.float32)
        rank = bound.basis.shape[1] + 1 if bound is not None else 0
        self.low = np.empty((n, rank), dtype=np.float32)
        self.keep_need = np.full(n, np.inf, dtype=np.float32)
        self.block_floor = np.full(0, -np.inf, dtype=np.float32)

    def unit(self, start: int, stop: int) -> np.ndarray:
        """Items `start:stop` normalised in float32, as `greedy_keep_first` normalises its blocks."""
        return (self.vectors[start:stop].astype(np.float32) / self.norms[start:stop, None].astype(np.float32)).astype(
            np.float32
        )

    def prepare_rows(self, start: int, stop: int) -> None:
        """Store items `start:stop` as float32 unit vectors and, with a bound, their projections with the residual
        norm appended (so that one product gives the bound); thread-safe for disjoint rows."""
        block = self.unit(start, stop)
        self.units[start:stop] = block
        if self.bound is not None:
            projected, residual = self.bound.project(block)
            self.low[start:stop, :-1] = projected
            self.low[start:stop, -1] = residual

    def inner_products(
        self, block: np.ndarray, start: int, parts: list[slice], run: Callable
    ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """Each row's highest score against the other rows of the block, the block's scores against itself with
        the diagonal and later items -inf, and each row's best earlier match in the block, computed a row part at a
        time with `run` (the pool's `map`)."""
        size = len(block)
        row_groups = self.groups[start : start + size] if self.groups is not None else None

        def part_products(part: slice) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
            scores = block[part] @ block.T
            rows = np.arange(part.start, part.stop)
            scores[rows - part.start, rows] = -np.inf
            earlier = np.where(np.arange(size)[None, :] < rows[:, None], scores, -np.inf)
            groups = row_groups[part] if row_groups is not None else None
            return scores.max(axis=1), earlier, self.best_matches(earlier, groups, start)

        results = list(run(part_products, parts))
        best = tuple(np.concatenate([result[2][at] for result in results]) for at in (0, 1))
        row_max = np.concatenate([result[0] for result in results])
        return row_max, np.concatenate([result[1] for result in results]), best

    def exact_removals(self, item: int, others: np.ndarray) -> np.uint64:
        """The thresholds at which `others` (decided items) remove `item`, from exact cosines."""
        if not others.size:
            return np.uint64(0)
        exact = exact_cosines(self.vectors, self.norms, item, others)
        levels = np.searchsorted(self.thresholds, exact, side="right")
        return np.bitwise_or.reduce(self.keep_bits[others] & self.masks[levels])

    def best_matches(
        self, scores: np.ndarray, row_groups: np.ndarray | None, first: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per row, its most similar column (as an item index; columns are items `first:`) and the score."""
        if row_groups is not None and self.groups is not None:
            columns = self.groups[first : first + scores.shape[1]]
            scores = np.where(row_groups[:, None] != columns[None, :], scores, -np.inf)
        best = scores.argmax(axis=1)
        return best + first, scores[np.arange(len(scores)), best]

    def merge_matches(self, rows: np.ndarray, best: np.ndarray, best_scores: np.ndarray) -> None:
        """Keep, per row, the better of its match so far and `best` (the earlier item on a tie)."""
        better = best_scores > self.match_similarity[rows]
        self.match[rows[better]] = best[better]
        self.match_similarity[rows[better]] = best_scores[better]

    def hot_pairs(self, scores: np.ndarray, edges: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
        """The pairs of `scores` that may reach the lowest threshold, or per column `edges` (the lowest
        threshold its item is kept at, less the tolerance): rows (ascending), columns, and their sure and
        possible levels."""
        hot = scores >= (self.maybe_edges[0] if edges is None else edges[None, :])
        flat = np.flatnonzero(hot)  # 2-D nonzero costs ten times as much per pair
        rows, columns = np.divmod(flat, scores.shape[1])
        return self.levels(rows, columns, scores.reshape(-1)[flat])

    def levels(self, rows: np.ndarray, columns: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, ...]:
        """The pairs `(rows, columns)` with their float32 scores `values`, as `hot_pairs` gives them: rows,
        columns, and each pair's sure and possible levels."""
        sure = np.searchsorted(self.sure_edges, values, side="right")
        return rows, columns, sure, np.searchsorted(self.maybe_edges, values, side="right")

    def removals(
        self, size: int, tile_start: int, pairs: tuple[np.ndarray, ...]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """From `hot_pairs`' (row, column, sure level, possible level) against decided items `tile_start:`:
        per row the sure and possible removal bits, and the pairs (rows, item indices) to recompute exactly."""
        pair_rows, columns, sure_levels, maybe_levels = pairs
        sure = np.zeros(size, dtype=np.uint64)
        maybe = np.zeros(size, dtype=np.uint64)
        kept = self.keep_bits[columns + tile_start]
        sure_bits = self.masks[sure_levels] & kept
        maybe_bits = self.masks[maybe_levels] & kept
        if pair_rows.size:
            firsts = np.flatnonzero(np.r_[True, pair_rows[1:] != pair_rows[:-1]])
            sure[pair_rows[firsts]] = np.bitwise_or.reduceat(sure_bits, firsts)
            maybe[pair_rows[firsts]] = np.bitwise_or.reduceat(maybe_bits, firsts)
        unsettled = ((maybe_bits ^ sure_bits) & ~sure[pair_rows]) != 0
        return sure, maybe, pair_rows[unsettled], columns[unsettled] + tile_start

    def tile(self, block: np.ndarray, start: int, tile_start: int, tile_stop: int, low: np.ndarray | None) -> _Tile:
        """Score block rows (items `start:`) against decided items `tile_start:tile_stop`; thread-safe.
        With `low` (the block's projections and residual norms) the bound picks the pairs to score."""
        row_groups = self.groups[start : start + len(block)] if self.groups is not None else None
        if low is not None:
            rows, columns = self.bounded(start, tile_start, tile_stop, row_groups, low)
            crowded = _crowded_columns(columns, len(block))
            gathered = len(rows) - int(np.count_nonzero(crowded[columns])) if len(rows) else 0
            # Counted in gathered pairs: a crowded column's product over the block costs len(block) / _CROWDED.
            cost = gathered + int(np.count_nonzero(crowded)) * len(block) / _CROWDED
            if cost <= DENSE_FRACTION * len(block) * (tile_stop - tile_start):
                return self.sparse_tile(block, tile_start, row_groups, rows, columns, crowded)
        scores = block @ self.units[tile_start:tile_stop].T
        pairs = self.hot_pairs(scores, edges=self.keep_need[tile_start:tile_stop] - np.float32(FLOAT32_TOLERANCE))
        sure, maybe, open_rows, open_columns = self.removals(len(block), tile_start, pairs)
        row_max = None
        if self.want_nearest:
            row_max = scores.max(axis=1)
            np.maximum(self.nearest[tile_start:tile_stop], scores.max(axis=0), out=self.nearest[tile_start:tile_stop])
        best, best_scores = self.best_matches(scores, row_groups, tile_start)
        return _Tile(sure, maybe, open_rows, open_columns, row_max, best, best_scores)

    def bounded(
        self,
        start: int,
        tile_start: int,
        tile_stop: int,
        row_groups: np.ndarray | None,
        low: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The pairs of the tile that may change a result (module docstring), as rows (ascending) and columns
        of the tile, from the low-rank bound (`low`: the block's projections with the residual norm appended,
        so one product gives the bound). Without groups, each row's and each column's most promising pair in
        the tile gives a floor under its match and nearest neighbour first (`_best_floor`), so that a row
        with one near copy in the tile keeps only the pairs that could beat it."""
        tile_low = self.low[tile_start:tile_stop]
        upper = low @ tile_low.T
        found = np.maximum(self.match_similarity[start : start + len(low)], self.block_floor)
        column_need = self.keep_need[tile_start:tile_stop]
        if row_groups is None or self.groups is None:
            found = np.maximum(found, _best_floor(upper.max(axis=1), low[:, -1], tile_low[:, -1]))
        if self.want_nearest:
            nearest = np.maximum(self.nearest[tile_start:tile_stop], self.floor)
            if row_groups is None or self.groups is None:
                nearest = np.maximum(nearest, _best_floor(upper.max(axis=0), tile_low[:, -1], low[:, -1]))
            column_need = np.minimum(column_need, nearest)
        row_need = np.maximum(found, self.floor) - _MARGIN
        column_need = column_need - _MARGIN
        # A superset first, with one comparison per pair: each column against the lower of its need and the
        # block's lowest row need; then the exact rule on those pairs alone.
        width = tile_stop - tile_start
        flat = np.flatnonzero(upper >= np.minimum(column_need, row_need.min())[None, :])
        rows, columns = np.divmod(flat, width)
        values = upper.reshape(-1)[flat]
        need = column_need[columns]
        if row_groups is None or self.groups is None:
            need = np.minimum(need, row_need[rows])
        else:
            other = row_groups[rows] != self.groups[tile_start + columns]
            need = np.where(other, np.minimum(need, row_need[rows]), need)
        hot = values >= need
        return rows[hot], columns[hot]

    def pair_scores(
        self, block: np.ndarray, tile_start: int, rows: np.ndarray, columns: np.ndarray, crowded_columns: np.ndarray
    ) -> np.ndarray:
        """float32 scores of the pairs `(rows, columns)` (block rows, tile columns). A crowded column
        (`_crowded_columns`) is scored against the whole block in one product; the other pairs one by one,
        a few hundred gathered at a time."""
        values = np.empty(len(rows), dtype=np.float32)
        if not len(rows):
            return values
        crowded = np.flatnonzero(crowded_columns)
        rest = np.arange(len(rows))
        if crowded.size:
            slot = np.full(len(crowded_columns), -1, dtype=np.int64)
            slot[crowded] = np.arange(crowded.size)
            slots = slot[columns]
            in_crowded = slots >= 0
            dense = block @ self.units[tile_start + crowded].T
            values[in_crowded] = dense[rows[in_crowded], slots[in_crowded]]
            rest = np.flatnonzero(~in_crowded)
        for at in range(0, len(rest), _GATHER):
            part = rest[at : at + _GATHER]
            values[part] = np.einsum("ij,ij->i", block[rows[part]], self.units[tile_start + columns[part]])
        return values

    def sparse_tile(
        self,
        block: np.ndarray,
        tile_start: int,
        row_groups: np.ndarray | None,
        rows: np.ndarray,
        columns: np.ndarray,
        crowded: np.ndarray,
    ) -> _Tile:
        """The tile's results from the scores of the pairs `(rows, columns)` alone (rows ascending, and columns
        ascending within a row; `crowded`: `_crowded_columns`)."""
        size = len(block)
        values = self.pair_scores(block, tile_start, rows, columns, crowded)
        hot = values >= self.maybe_edges[0]
        pairs = self.levels(rows[hot], columns[hot], values[hot])
        sure, maybe, open_rows, open_columns = self.removals(size, tile_start, pairs)
        best = np.full(size, -1, dtype=np.int64)
        best_scores = np.full(size, -np.inf, dtype=np.float32)
        row_max = np.full(size, -np.inf, dtype=np.float32) if self.want_nearest else None
        if not len(rows):
            return _Tile(sure, maybe, open_rows, open_columns, row_max, best, best_scores)
        firsts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        if row_max is not None:
            row_max[rows[firsts]] = np.maximum.reduceat(values, firsts)
            np.maximum.at(self.nearest, tile_start + columns, values)
        eligible = values
        if row_groups is not None and self.groups is not None:
            eligible = np.where(row_groups[rows] != self.groups[tile_start + columns], values, -np.inf)
        # Each row's best pair, the earliest column on a tie (columns ascend within a row).
        segment = np.repeat(np.arange(len(firsts)), np.diff(np.r_[firsts, len(rows)]))
        top = np.flatnonzero(eligible == np.maximum.reduceat(eligible, firsts)[segment])
        top = top[np.r_[True, segment[top][1:] != segment[top][:-1]]]
        best[rows[top]] = tile_start + columns[top]
        best_scores[rows[top]] = eligible[top]
        return _Tile(sure, maybe, open_rows, open_columns, row_max, best, best_scores)

    def lowest(self, bits: np.ndarray) -> np.ndarray:
        """Per item, the lowest threshold of its set `bits` (float32; infinite where none is set)."""
        lowest = bits & (~bits + np.uint64(1))
        found = bits != 0
        levels = np.log2(lowest[found].astype(np.float64)).astype(np.int64)
        result = np.full(len(bits), np.inf, dtype=np.float32)
        result[found] = self.thresholds[levels]
        return result

    def block(self, start: int, stop: int, tile_size: int, pool: ThreadPoolExecutor | None, workers: int = 1) -> None:
        """Decide items `start:stop` at every threshold (tiles of earlier items, and the block's own products cut
        in `workers` row parts, scored on `pool`'s threads)."""
        size = stop - start
        rows = np.arange(start, stop)
        run = pool.map if pool is not None else map
        # The block's own products, split by rows across the pool (each worker's BLAS has one thread).
        parts = _row_parts(size, workers)
        list(run(lambda part: self.prepare_rows(start + part.start, start + part.stop), parts))
        block = self.units[start:stop]
        low = self.low[start:stop] if self.bound is not None else None
        sure = np.zeros(size, dtype=np.uint64)
        maybe = np.zeros(size, dtype=np.uint64)
        open_rows: list[np.ndarray] = [np.zeros(0, np.int64)]
        open_columns: list[np.ndarray] = [np.zeros(0, np.int64)]
        self.block_floor = np.full(size, -np.inf, dtype=np.float32)
        if size > 1:
            inner_max, earlier_only, block_best = self.inner_products(block, start, parts, run)
            # The block's own best earlier scores: a floor under each row's match before any tile is scored.
            self.block_floor = block_best[1]
        bounds_of_tiles = [(first, min(first + tile_size, start)) for first in range(0, start, tile_size)]
        for tile in run(lambda bounds: self.tile(block, start, *bounds, low), bounds_of_tiles):
            sure |= tile.sure
            maybe |= tile.maybe
            open_rows.append(tile.open_rows)
            open_columns.append(tile.open_columns)
            if tile.row_max is not None:
                np.maximum(self.nearest[start:stop], tile.row_max, out=self.nearest[start:stop])
            self.merge_matches(rows, tile.best, tile.best_scores)
        uncertain_rows, uncertain_columns = np.concatenate(open_rows), np.concatenate(open_columns)
        order = np.argsort(uncertain_rows, kind="stable")
        uncertain_columns = uncertain_columns[order]
        uncertain_bounds = np.searchsorted(uncertain_rows[order], np.arange(size + 1))
        # An item the tiles surely remove at the lower thresholds can remove nothing there.
        edges = self.lowest(self.all_bits & ~sure) - np.float32(FLOAT32_TOLERANCE)
        no_pairs = (np.zeros(0, np.int64),) * 4
        pair_rows, columns, sure_levels, maybe_levels = self.hot_pairs(earlier_only, edges) if size > 1 else no_pairs
        bounds = np.searchsorted(pair_rows, np.arange(size + 1))
        # Rows with no possible in-block remover are decided at once; the others in order, after them.
        linked = np.zeros(size, dtype=bool)
        linked[pair_rows] = True
        settled = ~linked & ((maybe & ~sure) == 0)
        self.keep_bits[start:stop][settled] = self.all_bits & ~sure[settled]
        for offset in [*np.flatnonzero(~linked & ~settled), *np.flatnonzero(linked)]:
            item = start + int(offset)
            pairs = slice(bounds[offset], bounds[offset + 1])
            earlier = columns[pairs] + start
            kept = self.keep_bits[earlier]
            removed = sure[offset] | np.bitwise_or.reduce(self.masks[sure_levels[pairs]] & kept)
            possible = maybe[offset] | np.bitwise_or.reduce(self.masks[maybe_levels[pairs]] & kept)
            if possible & ~removed:
                in_block = earlier[sure_levels[pairs] != maybe_levels[pairs]]
                across = uncertain_columns[uncertain_bounds[offset] : uncertain_bounds[offset + 1]]
                removed |= self.exact_removals(item, np.concatenate([across, in_block]))
            self.keep_bits[item] = self.all_bits & ~removed
        self.keep_need[start:stop] = self.lowest(self.keep_bits[start:stop])
        if size > 1:
            if self.want_nearest:
                np.maximum(self.nearest[start:stop], inner_max, out=self.nearest[start:stop])
            self.merge_matches(rows, *block_best)


def sweep_pass(
    vectors: np.ndarray,
    thresholds: tuple[float, ...],
    groups: np.ndarray | None = None,
    want_nearest: bool = True,
    block_size: int = 1024,
    tile_size: int = 2048,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    floor: float = -np.inf,
    prune: bool = True,
    bound: LowRankBound | None = None,
) -> PassResult:
    """Run the keep rule over `vectors` (n x d, in visiting order) at every one of `thresholds` (sorted).

    With `groups` (an int per item), `match` looks only at earlier items of another group (the
    cross-group duplicates of a global pass). Tiles are scored on `workers` threads (default: one per
    core); the result does not depend on them. `progress(done)` is called after each block.
    With `prune`, pairs are skipped where `bound` (default: a `LowRankBound` fitted as `greedy_keep_first`
    fits it, at `PRUNE_PROBE`) shows they cannot change a result; matches and nearest neighbours below
    `floor` are not looked for. The keep bits never depend on either.
    """
    if list(thresholds) != sorted(thresholds) or len(thresholds) > MAX_THRESHOLDS:
        raise ValueError(f"thresholds must be sorted and at most {MAX_THRESHOLDS}; got {thresholds}")
    norms = checked_norms(vectors)
    if prune and bound is None:
        bound = LowRankBound.fit(vectors, norms, PRUNE_PROBE - FLOAT32_TOLERANCE)
    state = _Pass(vectors, norms, tuple(thresholds), groups, want_nearest, floor, bound if prune else None)
    threads = workers or os.cpu_count() or 1
    # The workers are the parallelism: NumPy's BLAS gets one thread in each (its own threads, spinning on the same
    # cores, ran a 22K pass at half the speed on a busy 2-core EPYC, with one worker or two).
    with ThreadPoolExecutor(threads) if threads > 1 else contextlib.nullcontext() as pool, blas_threads(1):
        for start in range(0, len(vectors), block_size):
            stop = min(start + block_size, len(vectors))
            state.block(start, stop, tile_size, pool, threads)
            if progress is not None:
                progress(stop)
    return PassResult(
        tuple(thresholds), state.keep_bits, state.nearest, state.match, state.match_similarity, float(floor)
    )
