"""Copy detection in two stages, shared by decontamination, overlap and a recipe's copy dedup.

1. A copy embedder's vectors propose candidate pairs: every pair at cosine >= the embedder's
   `candidate_threshold` (a threshold tuned for recall), found by `decontam.candidates` (the exact blocked range
   search), which counts them against a budget and stops before verifying anything when there are too many.
2. `embedding.verify` confirms a candidate only when the two pictures match region by region once aligned.

Which embedders use the second stage (`verifies`): those whose `Embedder.verifies_pairs` says so, the copy
embedders (`gradients`, TorchScript models such as SSCD), in every step, a dedup config's dedup included. A ViT
keeps its one-stage meaning (cosine >= threshold), as near-duplicate dedup by ViT is defined. Byte-identical
pictures always count as copies, with no verification.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import datasets
import numpy as np
import pyarrow as pa

from llava_mixes import schema
from llava_mixes.decontam.candidates import CandidateBudget, CandidateTally, candidate_pairs
from llava_mixes.decontam.search import Matches
from llava_mixes.embedding.cache import read_image_bytes
from llava_mixes.embedding.embedders import Embedder
from llava_mixes.embedding.transform import distinct_images
from llava_mixes.embedding.verify import CopyVerifier
from llava_mixes.embedding.verify_runs import PictureSource, VerifyStats, ordered_pairs, verify_pairs
from llava_mixes.progress import quiet

logger = logging.getLogger(__name__)

RECIPE_THRESHOLD = "dedup.threshold in the recipe"
"""Where a recipe's copy dedup sets its threshold, for the budget's error."""


def verifies(model: Embedder) -> bool:
    """Whether copy detection and dedup with `model` confirm their candidates by verification (module docstring)."""
    return model.verifies_pairs is True


def picture_source(*parts: datasets.Dataset) -> PictureSource:
    """Where to read each distinct picture of `parts` (rows with `image` and `image_sha256`): its file, else
    its row's bytes."""
    readers = {}
    for part in parts:
        readable = part.cast_column(schema.IMAGE, datasets.Image(decode=False))
        for ref in distinct_images(part):
            readers.setdefault(ref.sha256, lambda ref=ref, readable=readable: read_image_bytes(ref, readable))
    return PictureSource(readers)


def confirm(
    matches: Matches,
    query_keys: Sequence[str],
    reference_keys: Sequence[str],
    verifier: CopyVerifier,
    source: PictureSource,
    workers: int | None = None,
) -> tuple[Matches, VerifyStats]:
    """The candidate `matches` that verification confirms (byte-identical pairs always), and what it did."""
    pairs = [
        (query_keys[query], reference_keys[reference])
        for query, reference in zip(matches.query.tolist(), matches.reference.tolist(), strict=True)
    ]
    distinct = ordered_pairs(pair for pair in pairs if pair[0] != pair[1])
    verdicts, stats = verify_pairs(verifier, distinct, source, workers)
    copies = {pair for pair, verdict in zip(distinct, verdicts, strict=True) if verdict.copy}
    keep = np.array([a == b or (min(a, b), max(a, b)) in copies for a, b in pairs], dtype=bool)
    logger.info(
        "verification: %d candidate pairs, %d confirmed, %d could not be compared",
        stats.pairs,
        stats.confirmed,
        sum(stats.unverified.values()),
    )
    kept = Matches(matches.query[keep], matches.reference[keep], matches.similarity[keep])
    return kept, stats


def verification_record(verifier: CopyVerifier, threshold: float, stats: VerifyStats) -> dict[str, object]:
    """What a report says about the verification stage: the verifier, the candidate threshold and the stats."""
    return {"verifier": verifier.identity(), "candidate_threshold": threshold, **stats.to_json()}


def picture_groups(dataset: datasets.Dataset) -> dict[str, str]:
    """Each distinct picture's SHA-256 -> the image group of its first row ("(no image group)" where none)."""
    columns = [column for column in (schema.IMAGE_SHA256, schema.IMAGE_GROUP) if column in dataset.column_names]
    groups: dict[str, str] = {}
    for table in dataset.select_columns(columns).with_format("arrow").iter(batch_size=65536):
        hashes = table.column(schema.IMAGE_SHA256).to_pylist()
        names = table.column(schema.IMAGE_GROUP).to_pylist() if len(columns) == 2 else [None] * len(hashes)
        for sha, group in zip(hashes, names, strict=True):
            if sha is not None:
                groups.setdefault(sha, group or "(no image group)")
    return groups


def copy_deduplicate(
    rows: datasets.Dataset,
    vectors_of: dict[str, np.ndarray],
    threshold: float,
    scope: str,
    verifier: CopyVerifier,
    workers: int | None = None,
    budget: CandidateBudget | None = None,
    threshold_setting: str = RECIPE_THRESHOLD,
) -> tuple[datasets.DatasetDict, VerifyStats]:
    """Keep-first copy dedup with verification: visiting pictures in row order, a picture is removed when it is a
    confirmed copy (candidate at cosine >= `threshold`, then verified) of a picture already kept in its scope
    (`global`, or `group`: per image group). Rows with the path of a removed picture, and rows with another path
    to a kept picture's bytes, go to `removed` with `duplicate_of` (the kept path) and `similarity` (the cosine; 1.0
    for the same bytes); `train` holds the rest, with those columns null. `vectors_of` maps each picture's
    SHA-256 to its vector; rows whose picture has none are kept. Every group's candidates are counted before any
    is verified: past `budget` (default `CandidateBudget.of()`), `TooManyCandidatesError` names the groups and,
    as the way to a higher threshold, `threshold_setting` (where the caller's threshold is set)."""
    table = rows.select_columns([schema.IMAGE_PATH, schema.IMAGE_SHA256, schema.IMAGE_GROUP]).with_format("arrow")[:]
    paths = table.column(schema.IMAGE_PATH).to_pylist()
    hashes = table.column(schema.IMAGE_SHA256).to_pylist()
    groups = table.column(schema.IMAGE_GROUP).to_pylist() if scope == "group" else [None] * len(paths)
    first_path: dict[tuple[object, str], str] = {}
    order: dict[object, list[str]] = {}
    for path, sha, group in zip(paths, hashes, groups, strict=True):
        if path is None or sha is None or (group, sha) in first_path:
            continue
        first_path[(group, sha)] = path
        if sha in vectors_of:
            order.setdefault(group, []).append(sha)
    budget = budget or CandidateBudget.of()
    tally = CandidateTally()
    found: dict[object, Matches] = {}
    for group, members in order.items():
        vectors = np.stack([vectors_of[sha] for sha in members]).astype(np.float32)
        labels = [str(group) if scope == "group" else "(all groups)"] * len(members)
        found[group] = candidate_pairs(vectors, vectors, threshold, labels, labels, budget, tally, earlier_only=True)
    budget.check(tally, f"cosine >= {threshold}", threshold_setting)
    source = picture_source(rows)
    stats = VerifyStats()
    removed_content: dict[tuple[object, str], tuple[str, float]] = {}
    for group, members in order.items():
        confirmed, part = confirm(found[group], members, members, verifier, source, workers)
        stats.pairs += part.pairs
        stats.confirmed += part.confirmed
        stats.pictures += part.pictures
        for reason, count in part.unverified.items():
            stats.unverified[reason] = stats.unverified.get(reason, 0) + count
        partners: dict[int, list[tuple[float, int]]] = {}
        for query, reference, cosine in zip(
            confirmed.query.tolist(), confirmed.reference.tolist(), confirmed.similarity.tolist(), strict=True
        ):
            partners.setdefault(query, []).append((-cosine, reference))
        kept = np.ones(len(members), dtype=bool)
        for index in range(len(members)):
            for negative, partner in sorted(partners.get(index, [])):
                if kept[partner]:
                    kept[index] = False
                    removed_content[(group, members[index])] = (first_path[(group, members[partner])], -negative)
                    break
    duplicate_of: list[str | None] = []
    similarity: list[float | None] = []
    for path, sha, group in zip(paths, hashes, groups, strict=True):
        target: tuple[str, float] | None = None
        if path is not None and sha is not None:
            if (group, sha) in removed_content:
                target = removed_content[(group, sha)]
            elif first_path[(group, sha)] != path:
                target = (first_path[(group, sha)], 1.0)
        duplicate_of.append(target[0] if target else None)
        similarity.append(target[1] if target else None)
    with quiet(len(rows)):
        annotated = rows.add_column(
            schema.DUPLICATE_OF,
            pa.array(duplicate_of, pa.string()),
            feature=schema.DEDUP_FEATURES[schema.DUPLICATE_OF],
        ).add_column(
            schema.SIMILARITY, pa.array(similarity, pa.float32()), feature=schema.DEDUP_FEATURES[schema.SIMILARITY]
        )
    gone = np.array([value is not None for value in duplicate_of], dtype=bool)
    splits = {
        schema.TRAIN_SPLIT: annotated.select(np.flatnonzero(~gone)),
        schema.REMOVED_SPLIT: annotated.select(np.flatnonzero(gone)),
    }
    return datasets.DatasetDict(splits), stats
