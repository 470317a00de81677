"""Verification over many candidate pairs: where each picture's bytes are read (and checked against the SHA-256
its vectors were made from), each picture decoded once while it stays among the most recently used, the pairs
judged by `embedding.verify.CopyVerifier` in a thread pool, and what the pass did (`VerifyStats`)."""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from PIL import Image

from llava_mixes.embedding.verify import CopyVerifier, Prepared, Verdict
from llava_mixes.errors import LlavaMixesError


class ChangedPictureError(LlavaMixesError, RuntimeError):
    """A picture read for verification no longer has the SHA-256 its vectors were made from."""


@dataclass
class VerifyStats:
    """What a verification pass did: pairs looked at, confirmed, and those that could not be compared (with
    why, by reason); `pictures` decoded."""

    pairs: int = 0
    confirmed: int = 0
    pictures: int = 0
    unverified: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class PictureSource:
    """Where the verifier reads pictures: SHA-256 -> a function returning the bytes. Every read is checked
    against the SHA-256, so a file edited since its vectors were made raises `ChangedPictureError`."""

    def __init__(self, readers: dict[str, Callable[[], bytes]]) -> None:
        self.readers = readers

    def read(self, sha: str) -> bytes:
        """The bytes of the picture `sha`; `ChangedPictureError` if they are gone or are other bytes now."""
        try:
            data = self.readers[sha]()
        except OSError as error:
            raise ChangedPictureError(
                f"the picture with SHA-256 {sha[:12]}... cannot be read any more ({error}); rebuild the dataset"
            ) from error
        if hashlib.sha256(data).hexdigest() != sha:
            raise ChangedPictureError(
                f"the picture with SHA-256 {sha[:12]}... changed since it was embedded; rebuild the dataset "
                "(download_mode='force_redownload') so that its image_sha256 matches the file again"
            )
        return data


def verify_pairs(
    verifier: CopyVerifier,
    pairs: Sequence[tuple[str, str]],
    source: PictureSource,
    workers: int | None = None,
    memory: int = 512,
) -> tuple[list[Verdict], VerifyStats]:
    """The verdict of every (SHA-256, SHA-256) pair, in order. Pictures are decoded once each while they stay
    among the `memory` most recently used; a picture that does not decode gives its pairs a verdict with a
    `problem` (not a copy), counted in the stats by reason. Raises `ChangedPictureError` as `source` does."""
    stats = VerifyStats(pairs=len(pairs))
    prepared: OrderedDict[str, Prepared | str] = OrderedDict()

    def decode(sha: str) -> Prepared | str:
        data = source.read(sha)
        try:
            return verifier.prepare(data)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
            return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'cannot decode'}"

    verdicts: list[Verdict] = []
    chunk = max(1, memory // 4)
    with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool:
        for start in range(0, len(pairs), chunk):
            part = list(pairs[start : start + chunk])
            wanted = list(dict.fromkeys(sha for pair in part for sha in pair))
            for sha in wanted:
                if sha in prepared:
                    prepared.move_to_end(sha)
            missing = [sha for sha in wanted if sha not in prepared]
            for sha, value in zip(missing, pool.map(decode, missing), strict=True):
                prepared[sha] = value
            stats.pictures += len(missing)
            sides = [(prepared[a], prepared[b]) for a, b in part]
            while len(prepared) > max(memory, len(wanted)):
                prepared.popitem(last=False)
            verdicts.extend(pool.map(lambda pair: verdict_of(verifier, *pair), sides))
    for verdict in verdicts:
        stats.confirmed += int(verdict.copy)
        if verdict.problem:
            stats.unverified[verdict.problem] = stats.unverified.get(verdict.problem, 0) + 1
    return verdicts, stats


def verdict_of(verifier: CopyVerifier, a: Prepared | str, b: Prepared | str) -> Verdict:
    """The verdict of two prepared pictures, or of a pair where one could not be decoded (its reason)."""
    for side in (a, b):
        if isinstance(side, str):
            return Verdict(False, 0.0, 0, 0.0, f"a picture does not decode: {side}")
    assert isinstance(a, Prepared) and isinstance(b, Prepared)
    return verifier.verify(a, b)


def ordered_pairs(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Each unordered pair once, smaller SHA-256 first, sorted (the order verification visits them in)."""
    return sorted({(a, b) if a <= b else (b, a) for a, b in pairs if a != b})
