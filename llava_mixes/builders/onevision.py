"""LLaVA-OneVision's single-image data (lmms-lab/LLaVA-OneVision-Data): about 3.2M rows in LLaVA's format with the
pictures inside, one folder of Parquet files per subset (`<subset>/train-*.parquet`, the subset's config name on
the Hub). Read from the user's download, never fetched. `onevision-si` reads every subset of `SUBSETS` (each must
be there); `onevision-<subset>` one of them. A row's image group is its `data_source`, else its subset's folder;
the language-only subsets (`magpie_pro(…)`, `mathqa`) hold text-only rows. See `builders.hub_llava`.

The subset names come from scripts that load each config by name (see `../shared/notes/source-formats.md` §7).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from llava_mixes.builders.hub_llava import HubParquetSource
from llava_mixes.sources import readers

REPO_ID = "lmms-lab/LLaVA-OneVision-Data"
RELEASE_DIR = "LLaVA-OneVision-Data"
ALL_CONFIG = "onevision-si"
SUBSETS = (
    "CLEVR-Math(MathV360K)", "FigureQA(MathV360K)", "GEOS(MathV360K)", "GeoQA+(MathV360K)",
    "Geometry3K(MathV360K)", "IconQA(MathV360K)", "MapQA(MathV360K)", "PMC-VQA(MathV360K)",
    "Super-CLEVR(MathV360K)", "TabMWP(MathV360K)", "UniGeo(MathV360K)", "VisualWebInstruct(filtered)",
    "VizWiz(MathV360K)", "ai2d(cauldron,llava_format)", "ai2d(gpt4v)", "ai2d(internvl)", "allava_instruct_laion4v",
    "allava_instruct_vflan4v", "aokvqa(cauldron,llava_format)", "chart2text(cauldron)",
    "chartqa(cauldron,llava_format)", "chrome_writting", "clevr(cauldron,llava_format)",
    "diagram_image_to_text(cauldron)", "dvqa(cauldron,llava_format)", "figureqa(cauldron,llava_format)",
    "geo170k(align)", "geo170k(qa)", "geo3k", "geomverse(cauldron)", "hateful_memes(cauldron,llava_format)",
    "hitab(cauldron,llava_format)", "hme100k", "iam(cauldron)", "iconqa(cauldron,llava_format)", "iiit5k",
    "image_textualization(filtered)", "infographic(gpt4v)", "infographic_vqa", "infographic_vqa_llava_format",
    "intergps(cauldron,llava_format)", "k12_printing", "llavar_gpt4_20k", "lrv_chart", "lrv_normal(filtered)",
    "magpie_pro(l3_80b_mt)", "magpie_pro(l3_80b_st)", "magpie_pro(qwen2_72b_st)", "mapqa(cauldron,llava_format)",
    "mathqa", "mavis_math_metagen", "mavis_math_rule_geo", "multihiertt(cauldron)", "orand_car_a",
    "raven(cauldron)", "rendered_text(cauldron)", "robut_sqa(cauldron)", "robut_wikisql(cauldron)",
    "robut_wtq(cauldron,llava_format)", "scienceqa(cauldron,llava_format)", "scienceqa(nona_context)",
    "screen2words(cauldron)", "sharegpt4o", "sharegpt4v(coco)", "sharegpt4v(knowledge)", "sharegpt4v(llava)",
    "sharegpt4v(sam)", "sroie", "st_vqa(cauldron,llava_format)", "tabmwp(cauldron)",
    "tallyqa(cauldron,llava_format)", "textcaps", "textocr(gpt4v)", "tqa(cauldron,llava_format)", "ureader_cap",
    "ureader_ie", "vision_flan(filtered)", "vistext(cauldron)", "visual7w(cauldron,llava_format)",
    "visualmrc(cauldron)", "vqarad(cauldron,llava_format)", "vsr(cauldron,llava_format)", "websight(cauldron)",
)  # fmt: skip
"""The single-image stage's subsets: the Hub's config names and folder names."""
LANGUAGE_ONLY = frozenset({"magpie_pro(l3_80b_mt)", "magpie_pro(l3_80b_st)", "magpie_pro(qwen2_72b_st)", "mathqa"})
LICENSE = (
    "apache-2.0 (the card's metadata; the card also limits use to academic research and education); text and "
    "pictures also under the licence of each subset's upstream set"
)


def slug(subset: str) -> str:
    """A subset's name in config names: lower case, runs of other characters as one `-`."""
    return re.sub(r"[^a-z0-9]+", "-", subset.lower()).strip("-")


class OneVisionSingleImage(HubParquetSource):
    name = "llava_onevision_si"
    config_name = ALL_CONFIG
    hub_repo = None
    release_dir = RELEASE_DIR
    data_folders = SUBSETS
    single_image_group = "onevision"
    description = "LLaVA-OneVision-Data, single-image stage: about 3.2M rows in 83 subsets, pictures inside."
    homepage = f"https://huggingface.co/datasets/{REPO_ID}"
    license = LICENSE
    commercial_use = False
    citation = (
        "@article{li2024llavaonevision, title={LLaVA-OneVision: Easy Visual Task Transfer}, author={Li, Bo and "
        "Zhang, Yuanhan and Guo, Dong and Zhang, Renrui and Li, Feng and Zhang, Hao and Zhang, Kaichen and Li, "
        "Yanwei and Liu, Ziwei and Li, Chunyuan}, journal={arXiv preprint arXiv:2408.03326}, year={2024}}"
    )
    download_hint = (
        f"Download the release (never fetched implicitly) with `hf download {REPO_ID} --repo-type dataset "
        f"--local-dir <data_dir>/{RELEASE_DIR}` (one subset: add `--include '<subset>/*'`)."
    )

    def iter_records(
        self, paths: list[Path], on_bytes: Callable[[int], None] | None = None
    ) -> Iterator[tuple[int, Any]]:
        """Yield `(row_index, raw_record)` over every file, a row without a `data_source` given its subset's."""
        offset = 0
        for path in paths:
            subset = _subset_of(path)
            count = 0
            for index, record in readers.reader_for(path)(path, on_bytes):
                if isinstance(record, dict) and subset is not None and record.get("data_source") is None:
                    record["data_source"] = subset
                yield offset + index, record
                count = index + 1
            offset += count


def _subset_of(path: Path) -> str | None:
    """The subset folder a file lies in (the first folder under the release that names a subset)."""
    for part in path.parts[::-1]:
        if part in SUBSETS:
            return part
    return None


def _subset_source(subset: str) -> type[OneVisionSingleImage]:
    attributes: dict[str, Any] = {
        "name": f"llava_onevision_{slug(subset).replace('-', '_')}",
        "config_name": f"onevision-{slug(subset)}",
        "data_folders": (subset,),
        "family": ALL_CONFIG,
        "description": f"LLaVA-OneVision-Data, subset {subset}, pictures inside the Parquet files.",
        "download_hint": (
            f"Download the subset with `hf download {REPO_ID} --repo-type dataset --include '{subset}/*' "
            f"--local-dir <data_dir>/{RELEASE_DIR}`."
        ),
        "__doc__": f"LLaVA-OneVision-Data's subset `{subset}`.",
        "__module__": __name__,
    }
    return type(f"OneVision_{slug(subset).replace('-', '_')}", (OneVisionSingleImage,), attributes)


SUBSET_SOURCES: tuple[type[OneVisionSingleImage], ...] = tuple(_subset_source(subset) for subset in SUBSETS)
"""One source per subset, in `SUBSETS` order."""
SUBSET_OF: dict[str, str] = {
    source.config_name: subset for source, subset in zip(SUBSET_SOURCES, SUBSETS, strict=True)
}
"""Subset config name -> the subset's folder."""
