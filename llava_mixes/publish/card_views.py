"""What a dataset card shows of a dedup config beyond its statistics: the threshold sweep and a few pairs.

The same one-pass analysis as `llava-mixes report` (`report.write.analyse_built`), over the embeddings
the build cached, run by the workflow (`workflows.release`), which hands publish its `report.analysis.CardSummary`
(plain data: publish never runs the analysis or reaches an embedder): kept images per image group at 0.7, 0.8,
0.9 and the config's own threshold, and up to
`CARD_PAIRS` near-duplicate pairs from distinct score bands, highest first, whose thumbnails are written
into the repo beside the config's shards (`<config>/pairs/<n>-earlier.jpg`, `-later.jpg`) so the card
can show them. The thumbnails are not part of the config's content digest: they never make a release
differ.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets

from llava_mixes.report.pairs import PairImage
from llava_mixes.report.thumbnails import thumbnails
from llava_mixes.store import write_atomic

if TYPE_CHECKING:
    from llava_mixes.report.analysis import CardSummary

CARD_PAIRS = 4
PAIRS_FOLDER = "pairs"


def _image(side: PairImage, shown: tuple[float, ...], path: str) -> dict[str, Any]:
    return {
        "id": side.id,
        "image_path": side.path,
        "group": side.group,
        "file": path,
        "kept": {f"{value:g}": kept for value, kept in zip(shown, side.kept, strict=True)},
    }


def dedup_views(
    summary: CardSummary, base: datasets.Dataset, entry_name: str, staging: Path
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The card's view of a dedup config (module docstring), from the card summary of the analysis of its plain
    rows `base`, and the thumbnail files written under `staging`."""
    rows = [row for pair in summary.pairs for row in (pair.earlier.row, pair.later.row)]
    pictures = thumbnails(base, rows)
    files: dict[str, dict[str, Any]] = {}
    pairs = []
    for number, pair in enumerate(summary.pairs):
        paths = {}
        for role, side in (("earlier", pair.earlier), ("later", pair.later)):
            data = pictures.get(side.row)
            if data is None:
                paths[role] = None
                continue
            repo_path = f"{entry_name}/{PAIRS_FOLDER}/{number}-{role}.jpg"
            write_atomic(staging / repo_path, data)
            files[repo_path] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            paths[role] = repo_path
        pairs.append(
            {
                "band": pair.band,
                "similarity": round(float(pair.similarity), 4),
                "earlier": _image(pair.earlier, summary.shown, paths["earlier"]),
                "later": _image(pair.later, summary.shown, paths["later"]),
            }
        )
    return {"sweep_table": summary.markdown, "thresholds": list(summary.shown), "pairs": pairs}, files
