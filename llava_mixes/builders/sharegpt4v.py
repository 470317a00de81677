"""ShareGPT4V's instruction mix, `sharegpt4v_mix665k_cap23k_coco-ap9k_lcs3k_sam9k_div2k.json` (Lin-Chen/ShareGPT4V).

It is LLaVA-1.5's 665K mix with LLaVA's 23K detailed-description rows replaced by GPT-4V captions of
COCO (9K), LLaVA-Pretrain (3K), SAM (9K) and hand-picked web pictures (2K: `share_textvqa`,
`web-celebrity`, `web-landmark`, `wikiart`). Rows keep LLaVA's format and its quirks (integer GQA ids,
text-only rows); a caption prompt can carry a style clause after a mid-string `<image>`.

Images use the 665K folders plus `sam/images`, `llava/llava_pretrain/images`, `share_textvqa/images`,
`web-celebrity/images`, `web-landmark/images` and `wikiart/images`; the web-data zips unpack under
`data/<folder>/images`, so `data/` is searched too. Groups are the first folder (`llava_pretrain` for
`llava/llava_pretrain`). A wikiart name written with `#Uxxxx` escapes is also looked up with the
characters they stand for (one LLaVA-derived loader does this; not confirmed by the authors).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from llava_mixes.builders.mix665k import DETAIL_PROMPTS
from llava_mixes.builders.mix665k import task_of as mix665k_task_of
from llava_mixes.sources.base import Source, SourceRow
from llava_mixes.sources.conversation import first_human_text
from llava_mixes.sources.llava_format import llava_row

CAPTION_FOLDERS = ("sam/", "llava/", "share_textvqa/", "web-celebrity/", "web-landmark/", "wikiart/")
UNICODE_ESCAPE = re.compile(r"#U([0-9a-fA-F]{4})")


def task_of(image_path: str | None, turns: list[dict[str, str]]) -> str | None:
    """665K's rule, plus `detail_description` for the GPT-4V caption rows (by folder, or by COCO prompt)."""
    if image_path is not None and image_path.startswith(CAPTION_FOLDERS):
        return "detail_description"
    if image_path is not None and image_path.startswith("coco/") and len(turns) == 2:
        first_line = first_human_text(turns).split("\n", 1)[0]
        if first_line.strip().rstrip(".?").lower() in DETAIL_PROMPTS:
            return "detail_description"
    return mix665k_task_of(image_path, turns)


def unescape_name(path: str) -> str:
    """`wikiart/images/arnold-b#U00e3#U00b6cklin.jpg` -> `wikiart/images/arnold-bã¶cklin.jpg`."""
    return UNICODE_ESCAPE.sub(lambda match: chr(int(match.group(1), 16)), path)


class ShareGpt4vMix665k(Source):
    name = "sharegpt4v_mix665k"
    config_name = "sharegpt4v-mix665k"
    annotation_files = ("sharegpt4v_mix665k_cap23k_coco-ap9k_lcs3k_sam9k_div2k.json",)
    annotation_dirs = ("", "sharegpt4v")
    hub_repo = "Lin-Chen/ShareGPT4V"
    image_prefixes = ("", "data")
    description = "ShareGPT4V's 665K instruction mix: LLaVA-1.5's mix with 23K GPT-4V detailed captions."
    homepage = "https://huggingface.co/datasets/Lin-Chen/ShareGPT4V"
    license = "cc-by-nc-4.0 (non-commercial; text also under OpenAI's terms of use); images under their own licences"
    commercial_use = False
    citation = (
        "@article{chen2023sharegpt4v, title={ShareGPT4V: Improving Large Multi-Modal Models with Better Captions}, "
        "author={Chen, Lin and Li, Jinsong and Dong, Xiaoyi and Zhang, Pan and He, Conghui and Wang, Jiaqi and "
        "Zhao, Feng and Lin, Dahua}, journal={arXiv preprint arXiv:2311.12793}, year={2023}}"
    )
    download_hint = (
        "Download sharegpt4v_mix665k_cap23k_coco-ap9k_lcs3k_sam9k_div2k.json from the Hub dataset "
        "Lin-Chen/ShareGPT4V into data_dir (or data_dir/sharegpt4v), and the images as ShareGPT4V's Data.md lays "
        "them out: the 665K folders, sam/images, llava/llava_pretrain/images, and the web-data zips "
        "(share_textvqa, web-celebrity, web-landmark, wikiart) unpacked into data_dir or data_dir/data."
    )

    def image_group(self, image_path: str) -> str:
        parts = image_path.replace("\\", "/").lstrip("./").split("/")
        if parts[0] == "llava" and len(parts) > 2:
            return parts[1]
        return super().image_group(image_path)

    def normalise(self, record: Any) -> SourceRow:
        row = llava_row(record, task_of)
        if row.image_path is not None and UNICODE_ESCAPE.search(row.image_path):
            return replace(row, image_alternatives=(unescape_name(row.image_path),))
        return row
