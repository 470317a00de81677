"""The Hub dataset card (`README.md`) of a published repo, from its manifest and the `publish/templates/` templates.

The YAML header lists every config in the manifest (`configs` with `data_files` per split and one
`default`; `dataset_info` with features and split sizes, written by `datasets`' own metadata classes),
licences, languages, task and size categories, a pretty name and tags. The body has the configs, how to
load them at a release, a TRL snippet, the schema, the sources with licences and citations, the dedup
method and per-group statistics of every deduplicated config, each recipe config's settings (as YAML, with
their digest), per-source and per-benchmark tables, and the changelog. The card is a function
of the manifest alone, so publishing one config keeps every other config on the card.
"""

from __future__ import annotations

from importlib import resources
from string import Template
from typing import Any

import datasets
import yaml
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCardData

from llava_mixes import schema
from llava_mixes.builders import SOURCES
from llava_mixes.building.report import BuildReport
from llava_mixes.building.tables import format_benchmark_table, format_recipe_table, format_table, format_task_lines
from llava_mixes.publish.tool import tool_line

PRETTY_NAME = "LLaVA mixes"
TASK_CATEGORIES = ["image-text-to-text", "visual-question-answering"]
TAGS = ["llava", "visual-instruction-tuning", "multimodal", "deduplication", "llava_mixes"]
HUB_LICENSES = ("cc-by-4.0", "cc-by-nc-4.0", "cc-by-sa-4.0", "apache-2.0", "mit", "odc-by")
SIZE_CATEGORIES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
)
COLUMN_NOTES = {
    schema.ID: "`<source>-<row index>`, unique within a config",
    schema.SOURCE_ID: "the record's own id in its source, as a string",
    schema.SOURCE: "the instruction set the row comes from",
    schema.IMAGE_GROUP: "image folder / dataset (`coco`, `gqa`, `VG_100K`, …): the statistics line and dedup scope",
    schema.IMAGE_PATH: "the image path as written in the source (relative to its data layout)",
    schema.IMAGE: "the picture (bytes embedded in the Parquet files)",
    schema.IMAGE_SHA256: "SHA-256 of the image bytes",
    schema.CONVERSATIONS: "`human`/`gpt` turns; image rows have one `<image>` at the start of the first human turn",
    schema.LANGUAGE: "`en` or `zh`",
    schema.TASK: "instruction kind, e.g. `vqa`, `conversation`, `detail_description`, `caption`",
    schema.CAPTION_IMAGE: "textOCR-GPT-4v only: the image part of its caption",
    schema.CAPTION_TEXT: "textOCR-GPT-4v only: the text part of its caption",
    schema.CAPTION_CONDENSED: "textOCR-GPT-4v only: its condensed caption",
    schema.EMBEDDING: "the image embedding used for dedup",
    schema.DUPLICATE_OF: "`removed` split: the `image_path` of the kept image this one duplicates; `duplicate_row` "
    "split (recipes): the `id` of the earlier row this one repeats",
    schema.SIMILARITY: "`removed` split: cosine similarity to that kept image",
}


def template(name: str) -> Template:
    """A template from `publish/templates/` (shipped as the package `llava_mixes.publish.templates`)."""
    return Template(resources.files("llava_mixes.publish.templates").joinpath(name).read_text(encoding="utf-8"))


def hub_license(text: str) -> str:
    """The Hub licence id a source's licence text starts with, or `other`."""
    first = text.split()[0].rstrip(",;:").lower() if text.strip() else ""
    return first if first in HUB_LICENSES else "other"


def size_category(rows: int) -> str:
    for limit, name in SIZE_CATEGORIES:
        if rows < limit:
            return name
    return "n>100M"


def _sources(manifest: dict[str, Any]) -> list[str]:
    """The source config names of every config in the manifest, each once, in first-use order."""
    names: dict[str, None] = {}
    for entry in manifest["configs"].values():
        names.update(dict.fromkeys(entry["sources"]))
    return list(names)


def _dataset_info(entry: dict[str, Any]) -> datasets.DatasetInfo:
    splits = datasets.SplitDict()
    for split, info in entry["splits"].items():
        splits.add(datasets.SplitInfo(name=split, num_bytes=info["num_bytes"], num_examples=info["num_examples"]))
    return datasets.DatasetInfo(
        features=datasets.Features.from_dict(entry["features"]),
        splits=splits,
        download_size=sum(file["size"] for file in entry["files"].values()),
        dataset_size=sum(info["num_bytes"] for info in entry["splits"].values()),
        config_name=entry["name"],
    )


def card_data(manifest: dict[str, Any]) -> DatasetCardData:
    """The card's YAML metadata for every config in the manifest."""
    sources = [SOURCES[name] for name in _sources(manifest)]
    licenses = sorted({hub_license(source.license) for source in sources})
    languages = sorted({source.language for source in sources})
    largest = max(entry["splits"][schema.TRAIN_SPLIT]["num_examples"] for entry in manifest["configs"].values())
    data = DatasetCardData(
        pretty_name=PRETTY_NAME,
        license=licenses[0] if len(licenses) == 1 else licenses,
        language=languages,
        multilinguality="multilingual" if len(languages) > 1 else "monolingual",
        task_categories=TASK_CATEGORIES,
        size_categories=[size_category(largest)],
        tags=TAGS,
    )
    if "other" in licenses:
        data["license_details"] = "Each config keeps its sources' licences: see 'Sources and licences' in this card."
    configs = {
        name: {
            "data_files": [
                {"split": split, "path": f"{name}/{split}-*"} for split in manifest["configs"][name]["splits"]
            ],
            **({"default": True} if name == manifest["default"] else {}),
        }
        for name in sorted(manifest["configs"])
    }
    MetadataConfigs(configs).to_dataset_card_data(data)
    datasets.info.DatasetInfosDict(
        {name: _dataset_info(entry) for name, entry in sorted(manifest["configs"].items())}
    ).to_dataset_card_data(data)
    return data


def _configs_table(manifest: dict[str, Any]) -> str:
    lines = ["| config | sources | deduplication | rows per split | last changed |", "| --- | --- | --- | --- | --- |"]
    changed = _last_changed(manifest)
    for name, entry in sorted(manifest["configs"].items()):
        sources = ", ".join(SOURCES[source].name for source in entry["sources"])
        dedup = entry["dedup"]
        scope = "per image group" if dedup and dedup["scope"] == "group" else "across the config"
        how = f"cosine ≥ {dedup['threshold']} {scope}" if dedup else "none"
        rows = ", ".join(f"{split}: {info['num_examples']:,}" for split, info in entry["splits"].items())
        default = " (default)" if name == manifest["default"] else ""
        lines.append(f"| `{name}`{default} | {sources} | {how} | {rows} | v{changed[name]} |")
    return "\n".join(lines)


def _last_changed(manifest: dict[str, Any]) -> dict[str, str]:
    """For each config, the version in which its data last changed."""
    changed: dict[str, str] = {}
    previous: dict[str, str] = {}
    for version in manifest["versions"]:
        for name, digest in version["configs"].items():
            if previous.get(name) != digest:
                changed[name] = version["version"]
        previous = version["configs"]
    return changed


def _schema_table(manifest: dict[str, Any]) -> str:
    columns: dict[str, str] = {}
    for entry in manifest["configs"].values():
        for column, feature in datasets.Features.from_dict(entry["features"]).items():
            columns.setdefault(column, _type_name(feature))
    lines = ["| column | type | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{column}` | {kind} | {COLUMN_NOTES.get(column, '')} |" for column, kind in columns.items()]
    return "\n".join(lines)


def _type_name(feature: Any) -> str:
    if isinstance(feature, datasets.Image):
        return "image"
    if isinstance(feature, datasets.Value):
        return feature.dtype
    if isinstance(feature, datasets.List) and isinstance(feature.feature, dict):
        return "list of {" + ", ".join(feature.feature) + "}"
    if isinstance(feature, datasets.List):
        return f"list of {_type_name(feature.feature)}" + (f" (length {feature.length})" if feature.length > 0 else "")
    return type(feature).__name__


def _licence_note(manifest: dict[str, Any]) -> str:
    """Which of the published sources forbid commercial use (`Source.commercial_use`, registry data)."""
    closed = [SOURCES[name].name for name in _sources(manifest) if not SOURCES[name].commercial_use]
    if not closed:
        return "Each config keeps its sources' licences; no source here is marked non-commercial."
    verb = "is" if len(closed) == 1 else "are"
    names = ", ".join(closed)
    return f"Each config keeps its sources' licences, and {len(closed)} of them {verb} non-commercial: {names}."


def _sources_section(manifest: dict[str, Any]) -> str:
    parts = []
    for name in _sources(manifest):
        source = SOURCES[name]
        parts.append(
            f"### {source.name}\n\n{source.description}\n\n- homepage: {source.homepage}\n"
            f"- licence: {source.license}\n\n```bibtex\n{source.citation}\n```"
        )
    return "\n\n".join(parts)


def _report(entry: dict[str, Any]) -> BuildReport:
    """The entry's build report; the manifest keeps its counts, not its per-row rejection list."""
    return BuildReport.from_json({**entry["report"], "config_name": entry["name"], "rejected": []})


def _embedder(identity: dict[str, Any]) -> str:
    name = identity.get("model") or identity.get("kind") or "unknown"
    details = ", ".join(f"{key} {value}" for key, value in identity.items() if key not in ("model", "kind"))
    return f"`{name}`" + (f" ({details})" if details else "")


def _pair_image(side: dict[str, Any]) -> str:
    picture = f"![{side['id']}]({side['file']})<br>" if side["file"] else ""
    return f"{picture}`{side['image_path']}`"


def _views(entry: dict[str, Any]) -> str:
    """The threshold sweep and the near-duplicate pairs of a dedup config, where the publish computed them."""
    views = entry.get("views")
    if not views:
        return ""
    parts = [
        "Distinct images kept per image group at other thresholds, from one pass over the same embeddings "
        "(`llava-mixes report` draws the whole sweep from 0.5 to 1.0):",
        views["sweep_table"],
    ]
    if views["pairs"]:
        thresholds = [f"{value:g}" for value in views["thresholds"]]
        rows = [
            f"| earlier image | later image | cosine | later image at {' / '.join(thresholds)} |",
            "| --- | --- | ---: | --- |",
        ]
        for pair in views["pairs"]:
            fates = " / ".join("kept" if pair["later"]["kept"][value] else "removed" for value in thresholds)
            rows.append(
                f"| {_pair_image(pair['earlier'])} | {_pair_image(pair['later'])} | {pair['similarity']:.4f} "
                f"| {fates} |"
            )
        parts += ["Near-duplicate pairs, one per score band, highest first:", "\n".join(rows)]
    return "\n\n" + "\n\n".join(parts)


def _is_recipe(entry: dict[str, Any]) -> bool:
    return bool(entry["report"].get("recipe"))


def _dedup_section(manifest: dict[str, Any]) -> str:
    """The dedup method and per-group statistics of every deduplicated config but the recipes (see `_recipes`)."""
    entries = [entry for _, entry in sorted(manifest["configs"].items())]
    deduplicated = [entry for entry in entries if entry["dedup"] and not _is_recipe(entry)]
    if not deduplicated:
        if any(entry["dedup"] for entry in entries):
            return "No config of this release but its recipes (see Recipes) is deduplicated."
        return "No config of this release is deduplicated."
    rule = deduplicated[0]["dedup"]["rule"]
    parts = [
        f"Keep rule (greedy keep-first): {rule}. A removed row's `duplicate_of` is the kept image it is most "
        "similar to. Statistics per image group, in the shape of the LLaVA-665K dedup study's tables "
        "(rejected rows are input rows that failed validation, e.g. an undecodable image):"
    ]
    for entry in deduplicated:
        report = _report(entry)
        total = report.total()
        reasons = entry["report"].get("reject_reasons") or {}
        parts.append(
            template("dedup_config.md").substitute(
                config=entry["name"],
                embedder=_embedder(entry["dedup"]["embedder"]),
                threshold=entry["dedup"]["threshold"],
                scope="image group" if entry["dedup"]["scope"] == "group" else "whole config",
                search=entry["dedup"]["search"],
                rows_in=f"{report.rows_in:,}",
                kept_rows=f"{total.kept_rows:,}",
                removed_rows=f"{total.removed_rows:,}",
                rejected_rows=f"{total.rejected_rows:,}",
                reasons=" (" + ", ".join(f"{k}: {v:,}" for k, v in reasons.items()) + ")" if reasons else "",
                table=format_table(report),
                views=_views(entry),
            )
        )
    return "\n\n".join(parts)


def _recipe_section(entry: dict[str, Any]) -> str:
    """One recipe config: its settings as YAML with their digest, its per-source table, its dedup and its
    per-benchmark table."""
    report = _report(entry)
    recipe = entry["report"]["recipe"]
    dedup = ""
    if entry["dedup"]:
        where = "across the recipe" if entry["dedup"]["scope"] == "global" else "within each image group"
        dedup = (
            f"\n\nNear-duplicate pictures removed {where}, earlier sources first: cosine ≥ "
            f"{entry['dedup']['threshold']} with {_embedder(entry['dedup']['embedder'])}."
        )
    decontamination = f"\n\n{_benchmark_lines(report.decontamination)}" if report.decontamination else ""
    section = template("recipe_config.md").substitute(
        config=entry["name"],
        recipe=recipe["name"],
        digest=recipe["digest"],
        settings=yaml.safe_dump(recipe["settings"], sort_keys=False, allow_unicode=True).strip(),
        sources_table=format_recipe_table(report) + format_task_lines(report),
        dedup=dedup,
        decontamination=decontamination,
    )
    return section.strip()


def _benchmark_lines(data: dict[str, Any]) -> str:
    """How a decontamination compared pictures, and its per-benchmark table."""
    return (
        f"Benchmark pictures taken out (cosine ≥ {data['threshold']} with {_embedder(data['embedder'])}), "
        f"per benchmark:\n\n{format_benchmark_table(data)}"
    )


def _decontaminated(manifest: dict[str, Any]) -> str:
    """The card's section on the decontaminated configs but the recipes (with its trailing blank line), or nothing."""
    entries = [
        entry
        for _, entry in sorted(manifest["configs"].items())
        if not _is_recipe(entry) and entry["report"].get("decontamination")
    ]
    if not entries:
        return ""
    intro = (
        "A `…-decontaminated` config had the rows whose picture copies an evaluation benchmark's moved out of "
        "`train` into a `contaminated` split (with `matched_reference` and `similarity`) before deduplication."
    )
    parts = [f"### `{entry['name']}`\n\n{_benchmark_lines(entry['report']['decontamination'])}" for entry in entries]
    return "## Benchmark pictures taken out\n\n" + "\n\n".join([intro, *parts]) + "\n\n"


def _recipes(manifest: dict[str, Any]) -> str:
    """The card's Recipes section (with its trailing blank line), or nothing when no config is a recipe's."""
    recipes = [entry for _, entry in sorted(manifest["configs"].items()) if _is_recipe(entry)]
    if not recipes:
        return ""
    intro = (
        "A `recipe-<name>` config mixes several sources by a recipe (llava_mixes' `llava_mixes/recipes/recipe.py`): "
        "each source sampled, exact duplicate rows removed, benchmark pictures taken out and near-duplicate "
        "pictures removed across sources, as the recipe says. Its splits are `train` and, where a step applies, "
        "`removed` (near duplicates), `duplicate_row` (exact duplicate rows, with `duplicate_of`) and "
        "`contaminated` (with `matched_reference` and `similarity`)."
    )
    return "## Recipes\n\n" + "\n\n".join([intro, *(_recipe_section(entry) for entry in recipes)]) + "\n\n"


def _changelog(manifest: dict[str, Any]) -> str:
    parts = []
    previous: dict[str, str] = {}
    for version in manifest["versions"]:
        lines = []
        for name in sorted(version["configs"]):
            digest = version["configs"][name]
            if name not in previous:
                lines.append(f"- added `{name}`")
            elif previous[name] != digest:
                lines.append(f"- updated `{name}` (new data)")
        if not lines:
            lines.append("- no data changed")
        parts.append(f"### v{version['version']} ({version['date']})\n\n" + "\n".join(lines))
        previous = version["configs"]
    return "\n\n".join(reversed(parts))


def _images_note(manifest: dict[str, Any]) -> str:
    paths_only = [name for name, entry in sorted(manifest["configs"].items()) if entry["images"] == "paths"]
    if not paths_only:
        return "the image is embedded in the Parquet files"
    names = ", ".join(f"`{name}`" for name in paths_only)
    return (
        f"the image is embedded in the Parquet files, except in {names}, whose rows name it by `image_path` "
        "only (relative to the source's own data layout)"
    )


def render_card(manifest: dict[str, Any], repo_id: str) -> str:
    """The whole `README.md` of a repo whose manifest is `manifest`."""
    latest = manifest["versions"][-1]
    body = template("card.md").substitute(
        pretty_name=PRETTY_NAME,
        images_note=_images_note(manifest),
        tool=tool_line(latest["package_version"]),
        version=latest["version"],
        repo_id=repo_id,
        example_config=manifest["default"],
        configs_table=_configs_table(manifest),
        schema_table=_schema_table(manifest),
        licence_note=_licence_note(manifest),
        sources=_sources_section(manifest),
        dedup=_dedup_section(manifest),
        decontaminated=_decontaminated(manifest),
        recipes=_recipes(manifest),
        changelog=_changelog(manifest),
    )
    return f"---\n{card_data(manifest).to_yaml()}\n---\n\n{body}"
