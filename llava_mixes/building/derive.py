"""The derived steps, run: decontaminate and dedup over a build's rows. The one wiring of both, shared by the
chains of a deduplicated or decontaminated config (`builder`) and of a recipe (`mixing`); the chains differ only in
their settings and in what they do with the rows whose picture has no vector."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from llava_mixes import schema
from llava_mixes.decontam import CONTAMINATED_SPLIT, find_contamination, split_contaminated
from llava_mixes.decontam.copies import copy_deduplicate, verification_record, verifies
from llava_mixes.dedup.deduplicate import KEEP_RULE, deduplicate
from llava_mixes.devices import parse_devices
from llava_mixes.embedding.embedders import resolve_embedder
from llava_mixes.embedding.transform import attach_embeddings, fill_cache
from llava_mixes.embedding.verify import CopyVerifier


@dataclass(frozen=True)
class Embedding:
    """Where and how pictures are embedded: the cache, the device(s), batches, decoding threads and the engine."""

    cache_root: Path
    device: str | None = None
    batch_size: int = 64
    num_workers: int | None = None
    engine: str = "local"


CONFIG_THRESHOLD = (
    "dedup_threshold=N, or `--threshold N` on the command line, e.g. 0.9 as in the config mix665k-dedup-0.9; a ViT "
    "embedder, e.g. --embedder openai/clip-vit-large-patch14-336, instead removes near duplicates by cosine alone, "
    "unverified"
)
"""Where a dedup config sets a higher threshold, for the candidate budget's error."""


@dataclass(frozen=True)
class DedupSettings:
    """One dedup step: threshold, scope (`group` or `global`), search, embedder (with its revision and precision),
    whether the kept rows keep their `embedding` column, and where the user sets its threshold (named by the
    candidate budget's error: a dedup config's kwarg, or a recipe's key). Whether pairs at the threshold are
    verified before removal is the embedder's (`decontam.copies.verifies`), the same for every caller."""

    threshold: float
    scope: str
    embedder: str
    search: str = "exact"
    revision: str | None = None
    precision: str = "auto"
    keep_embeddings: bool = False
    threshold_setting: str = CONFIG_THRESHOLD


@dataclass(frozen=True)
class Deduplicated:
    """A dedup step's result: the `train` and `removed` splits, and what the build report records of the dedup and
    of the embedding."""

    splits: datasets.DatasetDict
    dedup: dict[str, Any]
    embedding: dict[str, Any]


def decontaminate_rows(
    rows: datasets.Dataset, references: list[str], threshold: float | None, embedder: str, embedding: Embedding
) -> tuple[datasets.Dataset, datasets.Dataset, dict[str, Any]]:
    """`rows` split into those kept and those whose picture copies a benchmark's (`contaminated`), and the record
    of the decontamination."""
    found = find_contamination(
        rows,
        references,
        threshold,
        embedder,
        cache_dir=embedding.cache_root,
        device=embedding.device,
        batch_size=embedding.batch_size,
        num_workers=embedding.num_workers,
    )
    parts = split_contaminated(rows, found)
    return parts[schema.TRAIN_SPLIT], parts[CONTAMINATED_SPLIT], found.to_json()


def deduplicate_rows(
    rows: datasets.Dataset,
    settings: DedupSettings,
    embedding: Embedding,
    set_aside: Callable[[datasets.Dataset, Mapping[str, str]], datasets.Dataset],
) -> Deduplicated:
    """`rows` split into `train` and `removed` by `settings`; `set_aside(rows, failed)` takes out (and accounts for)
    the rows whose picture has no vector (`failed`: SHA-256 -> why) and returns the rest."""
    devices = parse_devices(embedding.device)
    model = resolve_embedder(settings.embedder, settings.revision, devices[0], settings.precision)
    cache, stats = fill_cache(
        rows,
        model,
        embedding.cache_root,
        embedding.batch_size,
        embedding.num_workers,
        devices,
        embedding.engine,
        keep_failures=True,
    )
    kept = set_aside(rows, stats.failed)
    if settings.keep_embeddings:
        kept = attach_embeddings(kept, cache)
    record: dict[str, Any] = {
        "threshold": settings.threshold,
        "scope": settings.scope,
        "search": settings.search,
        "rule": KEEP_RULE,
        "embedder": model.identity(),
    }
    if verifies(model):
        # A copy embedder: its pairs at the threshold are candidates, removed only once verification confirms them.
        hashes = sorted({sha for sha in kept[schema.IMAGE_SHA256] if sha is not None})
        vectors, errors = cache.vectors(hashes)
        usable = {sha: vectors[i] for i, (sha, error) in enumerate(zip(hashes, errors, strict=True)) if error is None}
        verifier = CopyVerifier()
        result, verified = copy_deduplicate(
            kept,
            usable,
            settings.threshold,
            settings.scope,
            verifier,
            embedding.num_workers,
            threshold_setting=settings.threshold_setting,
        )
        record["search"] = "exact"  # candidates come from the exact range search (`decontam.candidates`)
        record["verification"] = verification_record(verifier, settings.threshold, verified)
    else:
        result = deduplicate(kept, settings.threshold, settings.scope, search=settings.search, embeddings=cache)
        record["verification"] = None
    stored = {"cache_key": stats.embedder, "images": stats.images, "embedded": stats.embedded}
    return Deduplicated(result, record, stored)
