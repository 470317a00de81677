"""Copy verification: the second stage of copy detection, which confirms a candidate pair only when the two
pictures really match, pixel region by pixel region, once aligned.

A global descriptor (`gradients`, SSCD) proposes candidate pairs; it cannot read text, so distinct pages, charts,
screens and covers of one layout look alike to it. The verifier looks at the pixels, with no weights:

1. Each picture becomes a grey square of `size` pixels (its aspect ratio set aside), with a pyramid of halves.
2. Alignment: a copy may be cropped (up to about 10% per side) and resized. The central part of one picture is
   matched (normalised cross-correlation over every offset, OpenCV's `matchTemplate`) inside the other at a
   ladder of scales at 64 px, keeping the `candidates` best matches, refined at 128 px. Scales follow the two
   pictures' aspect ratios (a crop then a uniform resize keeps them), and, for pictures squashed to another
   shape, the same scale on both axes. That alignment is then made exact by OpenCV's enhanced-correlation
   maximisation (`findTransformECC`, an affine map, at most `refine_iterations` steps at 128 px, then a third as
   many at 256 px), which a ladder cannot be: a scale off by 1% moves the edges of a 512-px picture by 5 px,
   enough to part the glyphs of a line of text. Every ladder map within `ALIAS_MARGIN` of the best is refined
   so, and the best-correlating one kept: a screen of repeated cards, a table of repeated rows, matches one
   period off almost as well as in place. Where ECC fails or strays far from its start, the start is kept.
3. Decision: at `size` pixels (256 where the smaller picture is no larger: `judged_at`), after removing each
   picture's local mean (so brightness and contrast drop out), the aligned pair is cut into windows of `window`
   pixels, the frame's outer 1/64 left out (a crop cuts glyphs there, leaving slivers no alignment
   reproduces). A window is textured when either picture has structure there; it agrees when the two
   correlate at `agree_ncc` or more. The pair is a copy when at least `min_windows` windows are textured (in
   proportion to the area at 256 px, 3 at least) and at least `agree_share` (0.95) of them agree. Exactly
   aligned, a copy's windows all agree (all 1,232 planted copies of three seeds of the benchmark, crops
   included); shared furniture (a header bar, axes, a sidebar, a screen's chrome) covers up to 0.90 of the
   windows of two distinct screens of one template, and the text, values and pictures that differ cover the
   rest.

Pictures with too little structure (blank pages, flat colours, a 1x1 pixel) are never confirmed as copies:
nothing in them can tell a copy from a coincidence. Byte-identical pictures are matched by their SHA-256
before this stage. A verdict is deterministic: the same two files and settings give the same verdict.
`embedding.verify_runs` runs the verifier over candidate pairs (each picture read, checked and decoded once).
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

from llava_mixes.embedding.preprocess import PIXELS_VERSION, to_8bit
from llava_mixes.errors import ConfigError

logger = logging.getLogger(__name__)

VERIFIER_VERSION = 4
"""Bumped on every change to how a verdict is reached; part of `CopyVerifier.identity()`."""
COARSE = 64
ALIGNED = 128
"""The finest level the scale ladder works at; `findTransformECC` takes over from there."""
EXACT = 256
"""The level `findTransformECC` works at."""
ECC_STRAY = 0.1
"""How far (in each coefficient of the linear part) the exact map may differ from the ladder's and be kept."""
ALIAS_MARGIN = 0.1
"""Ladder maps whose correlation is within this of the best are each made exact; the best exact one is judged."""
FEWEST_WINDOWS = 3
"""The fewest textured windows any pair must show to be confirmed (`CopyVerifier.fewest_windows`)."""
SAME_PLACE = 0.02
"""Two ladder maps closer than this (in every scale and offset, fractions of the side) are one."""
TEMPLATE = (0.12, 0.88)
"""The central part of one picture (as fractions of each side) looked for inside the other."""
PAD = 0.2
"""How far (as a fraction of the side) the template may stick out of the other picture."""


def _cv2() -> Any:
    import cv2

    return cv2


@dataclass(frozen=True)
class VerifierSettings:
    """What the verifier compares and when it calls a pair a copy (see the module docstring)."""

    size: int = 512
    max_scale: float = 1.3
    scales: int = 13
    candidates: int = 3
    window: int = 32
    agree_ncc: float = 0.5
    agree_share: float = 0.95
    min_windows: int = 6
    texture: float = 4.0
    blur: float = 1.0
    refine_iterations: int = 15

    def __post_init__(self) -> None:
        if self.size not in (256, 512, 1024):
            raise ConfigError(f"size={self.size!r} is not allowed; choose one of [256, 512, 1024]")
        if self.window not in (16, 32, 64) or self.window * 4 > self.size:
            raise ConfigError(f"window={self.window!r} is not allowed; choose 16, 32 or 64, at most size / 4")
        if not 1.0 < self.max_scale <= 2.0:
            raise ConfigError(f"max_scale={self.max_scale!r} is not allowed; give a number in (1, 2]")
        for name in ("scales", "candidates", "min_windows", "refine_iterations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r} is not allowed; give an integer of at least 1")
        for name in ("agree_ncc", "agree_share"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
                raise ConfigError(f"{name}={value!r} is not allowed; give a number in (0, 1]")


@dataclass(frozen=True)
class Prepared:
    """One picture as the verifier sees it: its size in pixels and grey squares by side (`size` down to 64)."""

    width: int
    height: int
    levels: dict[int, np.ndarray]
    padded: dict[int, np.ndarray]
    """Each level with `PAD` of its side added around it (edge pixels repeated), where templates are sought."""


@dataclass(frozen=True)
class Verdict:
    """The verifier's answer for one pair: copy or not, the share of textured windows that agree, how many
    windows were textured, the alignment's correlation, and why a pair could not be compared (else None)."""

    copy: bool
    agreement: float
    windows: int
    alignment: float
    problem: str | None = None


def _resize(pixels: np.ndarray, side: int) -> np.ndarray:
    cv2 = _cv2()
    shrink = pixels.shape[0] >= side and pixels.shape[1] >= side
    mode = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(pixels, (side, side), interpolation=mode)


def _affine(mapping: tuple[float, float, float, float], side: int) -> np.ndarray:
    """`mapping` (y scale, y offset, x scale, x offset; fractions of the side) as a 2 x 3 map of pixel centres of
    b to pixel centres of a, both `side` pixels square."""
    scale_y, offset_y, scale_x, offset_x = mapping
    return np.array(
        [
            [scale_x, 0.0, (offset_x + scale_x * 0.5 / side) * side - 0.5],
            [0.0, scale_y, (offset_y + scale_y * 0.5 / side) * side - 0.5],
        ],
        dtype=np.float32,
    )


def _rescale(affine: np.ndarray, side: int, to: int) -> np.ndarray:
    """A 2 x 3 map of pixel centres between squares of `side` pixels, for squares of `to` pixels."""
    scaled = affine.astype(np.float64).copy()
    scaled[:, 2] = (scaled[:, 2] + 0.5) * (to / side) - 0.5
    return scaled.astype(np.float32)


def _through(pixels: np.ndarray, native: tuple[int, int]) -> np.ndarray:
    """`pixels` (a square) as it looks once brought down to `native` (width, height) and back: the detail the
    lower-resolution picture of a pair cannot have is taken out of the other one too."""
    side = pixels.shape[0]
    if native[0] >= side and native[1] >= side:
        return pixels
    cv2 = _cv2()
    small = cv2.resize(
        pixels, (max(1, min(native[0], side)), max(1, min(native[1], side))), interpolation=cv2.INTER_AREA
    )
    return cv2.resize(small, (side, side), interpolation=cv2.INTER_LINEAR)


class CopyVerifier:
    """Confirms or rejects candidate copy pairs by aligned local correlation (see the module docstring)."""

    def __init__(self, settings: VerifierSettings | None = None) -> None:
        self.settings = settings or VerifierSettings()
        self.levels = [side for side in (1024, 512, 256, 128, COARSE) if side <= self.settings.size]
        ratio = np.log(self.settings.max_scale)
        self.scale_ladder = np.exp(np.linspace(-ratio, ratio, self.settings.scales))

    def identity(self) -> dict[str, Any]:
        """Everything that changes a verdict: the version, the settings and the pixel conversion."""
        return {
            "kind": "aligned-windows",
            "version": VERIFIER_VERSION,
            "pixels": PIXELS_VERSION,
            **asdict(self.settings),
        }

    def key(self) -> str:
        """A short digest of `identity()`."""
        text = repr(sorted(self.identity().items())).encode()
        return f"verify-{hashlib.sha256(text).hexdigest()[:20]}"

    def prepare(self, data: bytes) -> Prepared:
        """Decode one picture into the grey pyramid; PIL's errors (not a picture, truncated) pass through."""
        side = self.settings.size
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if image.format == "JPEG":
                image.draft("L", (side, side))
            grey = np.asarray(to_8bit(image, "L"), dtype=np.uint8)
        top = _resize(grey, side).astype(np.float32)
        levels = {side: top}
        for level in self.levels[1:]:
            levels[level] = _resize(top, level)
        cv2 = _cv2()
        padded = {}
        for level, pixels in levels.items():
            pad = round(PAD * level)
            padded[level] = cv2.copyMakeBorder(pixels, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        return Prepared(width, height, levels, padded)

    def _families(self, a: Prepared, b: Prepared) -> list[tuple[float, float]]:
        """The (y, x) scales of b's content in a's frame to try: aspect-preserving, then the same on both axes."""
        ratio = (b.width / b.height) / (a.width / a.height)
        low, high = 1 / self.settings.max_scale - 1e-9, self.settings.max_scale + 1e-9
        pairs = [(float(s), float(s * ratio)) for s in self.scale_ladder if low <= s * ratio <= high]
        if abs(np.log(ratio)) > 0.02:
            pairs += [(float(s), float(s)) for s in self.scale_ladder]
        return pairs

    def _match(
        self, a: Prepared, b: Prepared, side: int, scale: tuple[float, float], near: tuple[int, int] | None, reach: int
    ) -> tuple[float, tuple[float, float, float, float]]:
        """Where b's central part, scaled by `scale`, best matches inside padded a (within `reach` pixels of
        `near` when given): the correlation, and the map (y scale, y offset, x scale, x offset) from b's
        frame to a's, in fractions of the side."""
        cv2 = _cv2()
        start, stop = round(TEMPLATE[0] * side), round(TEMPLATE[1] * side)
        template = b.levels[side][start:stop, start:stop]
        length = stop - start
        rows, cols = max(4, round(length * scale[0])), max(4, round(length * scale[1]))
        mode = cv2.INTER_AREA if rows < length and cols < length else cv2.INTER_LINEAR
        template = cv2.resize(template, (cols, rows), interpolation=mode)
        pad = round(PAD * side)
        field_ = a.padded[side]
        top = left = 0
        if near is not None:
            top, left = max(0, near[0] - reach), max(0, near[1] - reach)
            field_ = field_[top : near[0] + reach + rows, left : near[1] + reach + cols]
        if field_.shape[0] < rows or field_.shape[1] < cols:
            return -1.0, (1.0, 0.0, 1.0, 0.0)
        scores = cv2.matchTemplate(field_, template, cv2.TM_CCOEFF_NORMED)
        _, best, _, where = cv2.minMaxLoc(scores)
        y, x = where[1] + top, where[0] + left
        scale_y, scale_x = rows / length, cols / length
        mapping = ((y - pad) / side - scale_y * start / side, (x - pad) / side - scale_x * start / side)
        return float(best) if np.isfinite(best) else -1.0, (scale_y, mapping[0], scale_x, mapping[1])

    def _position(self, mapping: tuple[float, float, float, float], side: int) -> tuple[int, int]:
        """Where, in padded a at `side` pixels, the template's corner lands under `mapping`."""
        start = round(TEMPLATE[0] * side) / side
        pad = round(PAD * side)
        scale_y, offset_y, scale_x, offset_x = mapping
        return round((offset_y + scale_y * start) * side) + pad, round((offset_x + scale_x * start) * side) + pad

    def align(self, a: Prepared, b: Prepared) -> list[tuple[float, tuple[float, float, float, float]]]:
        """The ladder's maps from b's frame to a's (see the module docstring), each with its correlation at
        `ALIGNED` pixels, best first: the `candidates` best coarse matches refined, those that land within
        `SAME_PLACE` of a better one left out."""
        coarse = [self._match(a, b, COARSE, scale, None, 0) for scale in self._families(a, b)]
        order = sorted(range(len(coarse)), key=lambda index: (-coarse[index][0], index))
        step = float(self.scale_ladder[1] / self.scale_ladder[0]) if len(self.scale_ladder) > 1 else 1.02
        found = [coarse[index] for index in order[: self.settings.candidates]]
        found = [self._refine(a, b, ALIGNED, mapping, step**0.5, 1) for _, mapping in found]
        found.sort(key=lambda item: -item[0])
        kept: list[tuple[float, tuple[float, float, float, float]]] = []
        for score, mapping in found:
            if all(np.abs(np.subtract(mapping, other)).max() > SAME_PLACE for _, other in kept):
                kept.append((score, mapping))
        return kept

    def _ecc(self, a: Prepared, b: Prepared, start: np.ndarray, side: int, steps: int) -> tuple[float, np.ndarray]:
        """`findTransformECC` (an affine map, at most `steps` steps) from `start` at `side` pixels: its
        correlation and map; -1 and `start` where it fails or strays (`ECC_STRAY`) from `start`."""
        cv2 = _cv2()
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, steps, 1e-3)
        try:
            score, found = cv2.findTransformECC(
                b.levels[side], a.levels[side], start.copy(), cv2.MOTION_AFFINE, criteria, None, 5
            )
        except cv2.error:
            return -1.0, start
        if (
            not (np.isfinite(score) and np.all(np.isfinite(found)))
            or np.abs(found[:, :2] - start[:, :2]).max() > ECC_STRAY
        ):
            return -1.0, start
        return float(score), found.astype(np.float32)

    def best_map(self, a: Prepared, b: Prepared) -> tuple[float, np.ndarray]:
        """The exact map (2 x 3, pixels of b at `size` -> pixels of a at `size`) of b's frame into a's, and the
        ladder's correlation for it. The ladder's maps within `ALIAS_MARGIN` of its best (a screen of repeated
        cards, a table of repeated rows, match one period off almost as well as in place) are each refined by
        `findTransformECC` at `ALIGNED` pixels; the one that correlates best is refined again at `EXACT` (in a third
        as many steps: it starts within a pixel or so)."""
        found = self.align(a, b)
        near = [item for item in found if item[0] >= found[0][0] - ALIAS_MARGIN]
        steps = self.settings.refine_iterations
        refined = [(self._ecc(a, b, _affine(mapping, ALIGNED), ALIGNED, steps), score) for score, mapping in near]
        (_, coarse), score = max(refined, key=lambda item: item[0][0])
        _, found_map = self._ecc(a, b, _rescale(coarse, ALIGNED, EXACT), EXACT, max(1, steps // 3))
        return score, _rescale(found_map, EXACT, self.settings.size)

    def _refine(
        self,
        a: Prepared,
        b: Prepared,
        side: int,
        mapping: tuple[float, float, float, float],
        step: float,
        steps: int,
    ) -> tuple[float, tuple[float, float, float, float]]:
        """The best of the scales within `steps` ladder steps of `mapping` on each axis, each sought within 3
        pixels of where it predicts."""
        factors = [step**power for power in range(-steps, steps + 1)]
        found = []
        for factor_y in factors:
            for factor_x in factors:
                scale = (mapping[0] * factor_y, mapping[2] * factor_x)
                near = self._position((scale[0], mapping[1], scale[1], mapping[3]), side)
                found.append(self._match(a, b, side, scale, near, 3))
        return max(found, key=lambda item: item[0])

    def judged_at(self, a: Prepared, b: Prepared) -> int:
        """The side at which a pair is judged: `size`, or the smallest level (`EXACT` at least) that holds the
        smaller picture's longer side. A 128-px picture blown up to 512 px is all interpolation, and its JPEG
        blocks are 32 px wide, a window's width; nearer its own resolution its windows hold what it shows."""
        smaller = min(max(a.width, a.height), max(b.width, b.height))
        return min(level for level in self.levels if level >= min(max(smaller, EXACT), self.settings.size))

    def fewest_windows(self, side: int) -> int:
        """The textured windows a pair judged at `side` pixels must show: `min_windows` at `size`, as much of
        the picture's area at a smaller side (a window there covers more of it), and never fewer than
        `FEWEST_WINDOWS`."""
        return max(FEWEST_WINDOWS, math.ceil(self.settings.min_windows * (side / self.settings.size) ** 2))

    def _windows(self, a: Prepared, b: Prepared, affine: np.ndarray) -> tuple[int, int]:
        """Textured windows, and those that agree, with a warped into b's frame by `affine` (pixels at `size`),
        judged at `judged_at` pixels. Texture is read from the pictures as they are; agreement from both brought
        to the lower of their two resolutions (`_through`), so a small copy is not faulted for its blur."""
        cv2 = _cv2()
        side, window = self.judged_at(a, b), self.settings.window
        affine = _rescale(affine, self.settings.size, side)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        warped = cv2.warpAffine(a.levels[side], affine, (side, side), flags=flags, borderMode=cv2.BORDER_REPLICATE)
        inside = cv2.warpAffine(
            np.ones((side, side), np.float32), affine, (side, side), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
        )
        radius = max(1, side // 128)
        count = side // window

        def cut(pixels: np.ndarray) -> np.ndarray:
            return pixels.reshape(count, window, count, window).transpose(0, 2, 1, 3).reshape(count * count, -1)

        edge = side // 64

        def detail(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """Each window's local detail, centred, and its spread; the outer `edge` pixels of the frame left out
            (a crop cuts glyphs and lines there, and a sliver a pixel or two high cannot be aligned)."""
            fine = pixels - cv2.blur(pixels, (2 * radius + 1, 2 * radius + 1), borderType=cv2.BORDER_REFLECT)
            fine = cv2.GaussianBlur(fine, (0, 0), self.settings.blur * side / 512)
            fine[:edge], fine[-edge:], fine[:, :edge], fine[:, -edge:] = 0, 0, 0, 0
            windows = cut(fine)
            windows = windows - windows.mean(1, keepdims=True)
            return windows, np.sqrt((windows * windows).mean(1))

        coarser = (min(a.width, b.width), min(a.height, b.height))
        (left, spread_left), (right, spread_right) = detail(warped), detail(b.levels[side])
        textured = (cut(inside).min(1) > 0) & (np.maximum(spread_left, spread_right) >= self.settings.texture)
        if coarser[0] < side or coarser[1] < side:
            (left, spread_left), (right, spread_right) = (
                detail(_through(warped, coarser)),
                detail(_through(b.levels[side], coarser)),
            )
        correlation = (left * right).mean(1) / np.maximum(spread_left * spread_right, 1e-6)
        agree = textured & (correlation >= self.settings.agree_ncc)
        return int(textured.sum()), int(agree.sum())

    def verify(self, a: Prepared, b: Prepared) -> Verdict:
        """Whether a and b are copies of each other: b's centre is sought in a, and b's frame judged."""
        alignment, affine = self.best_map(a, b)
        textured, agree = self._windows(a, b, affine)
        share = agree / textured if textured else 0.0
        copy = textured >= self.fewest_windows(self.judged_at(a, b)) and share >= self.settings.agree_share
        return Verdict(copy, round(share, 6), textured, round(alignment, 6))
