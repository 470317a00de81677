"""The steps of each kind of config (see `building.steps`): a plain config is one normalise step per source; a
deduplicated or decontaminated config is [decontaminate] -> [dedup] over its plain config's rows; a recipe is its
mix step over its sources' plain builds. Each step's code version covers the modules that run it and what they
import, and the builder module that wires it (read as it is, not followed)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from llava_mixes.builders import SOURCES
from llava_mixes.building.config import LlavaMixesConfig
from llava_mixes.building.freshness import build_digest
from llava_mixes.building.steps import Step, code_version
from llava_mixes.decontam.references import references_fingerprint
from llava_mixes.embedding.embedders import embedder_fingerprint

WIRING = "llava_mixes.building.builder"
"""The module that runs every step: its own source is part of each step's code version."""
NORMALISE_CODE = ("llava_mixes.sources.normalise", "llava_mixes.building.report")
"""Besides the source's own builder module: what normalises its rows and writes its part of the report."""
DECONTAMINATE_CODE = ("llava_mixes.decontam", "llava_mixes.building.derive", "llava_mixes.building.report")
"""`derive` runs both derived steps, so an edit of either stage's code makes both stale: never too few."""
DEDUP_CODE = (
    "llava_mixes.building.derive",
    "llava_mixes.dedup.deduplicate",
    "llava_mixes.embedding.transform",
    "llava_mixes.building.losses",
    "llava_mixes.building.report",
)
MIX_CODE = ("llava_mixes.building.mixing",)


def embedder_fingerprints(config: LlavaMixesConfig) -> dict[str, str | None]:
    """Each embedder `config` uses, by role, as `embedder_fingerprint` identifies it (None: it cannot tell)."""
    return {role: embedder_fingerprint(name) for role, name in config.embedders().items()}


def config_steps(config: LlavaMixesConfig, bases: Mapping[str, Path]) -> list[Step]:
    """The steps that build `config`, with the digests of their inputs as they are now; `bases`: the build folder
    of each plain config a derived config is made from, by name."""
    if not config.is_derived:
        return [
            Step(
                f"normalise:{name}",
                code_version(SOURCES[name].__module__, *NORMALISE_CODE, own=(WIRING,)),
                {"on_bad_records": config.on_bad_records},
            )
            for name in config.sources
        ]
    inputs: dict[str, str | None] = {f"base:{name}": build_digest(folder) for name, folder in bases.items()}
    embedders = {f"embedder:{role}": digest for role, digest in embedder_fingerprints(config).items()}
    if config.references():
        inputs["references"] = references_fingerprint(config.references())
    if config.is_recipe:
        settings = {"recipe": config.recipe_spec().digest()}
        return [Step("mix", code_version(*MIX_CODE, own=(WIRING,)), settings, {**inputs, **embedders})]
    steps = []
    if config.is_decontaminated:
        settings = {
            "benchmarks": list(config.decontaminate),
            "threshold": config.decontaminate_threshold,
            "embedder": config.decontaminate_embedder,
        }
        inputs["embedder:decontaminate"] = embedders.get("embedder:decontaminate")
        steps.append(Step("decontaminate", code_version(*DECONTAMINATE_CODE, own=(WIRING,)), settings, inputs))
        inputs = {f"step:{steps[-1].name}": steps[-1].digest()}
    if config.is_dedup:
        settings = {
            "threshold": config.dedup_threshold,
            "scope": config.dedup_scope,
            "search": config.dedup_search,
            "embedder": config.embedder,
            "embedder_revision": config.embedder_revision,
            "precision": config.precision,
            "keep_embeddings": config.keep_embeddings,
        }
        inputs["embedder:dedup"] = embedders.get("embedder:dedup")
        steps.append(Step("dedup", code_version(*DEDUP_CODE, own=(WIRING,)), settings, inputs))
    return steps
