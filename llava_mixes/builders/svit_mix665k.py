"""SVIT's instruction mix, `SVIT_mix_665K.json` (BAAI/SVIT, `format/llava-v1.5/`).

It is LLaVA-1.5's 665K mix with LLaVA-Instruct-158K replaced by SVIT core-150K: rows with ids
`svit_conversation_<n>`, `svit_complex_<n>`, `svit_detail_<n>` and `svit_referring_<n>` on Visual Genome
images (`vg/VG_100K`, `vg/VG_100K_2`). Their task comes from the id (`conversation`,
`complex_reasoning`, `detail_description`, `referring_qa`); every other row follows the 665K rule.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from llava_mixes.builders.mix665k import task_of
from llava_mixes.sources.base import Source, SourceRow
from llava_mixes.sources.llava_format import llava_row

ID_TASKS = (
    ("svit_conversation_", "conversation"),
    ("svit_complex_", "complex_reasoning"),
    ("svit_detail_", "detail_description"),
    ("svit_referring_", "referring_qa"),
)


class SvitMix665k(Source):
    name = "svit_mix665k"
    config_name = "svit-mix665k"
    annotation_files = ("SVIT_mix_665K.json",)
    annotation_dirs = ("", "SVIT/format/llava-v1.5")
    hub_repo = "BAAI/SVIT"
    hub_files = ("format/llava-v1.5/SVIT_mix_665K.json",)
    description = "SVIT's 665K instruction mix: LLaVA-1.5's mix with SVIT core-150K in place of LLaVA-Instruct."
    homepage = "https://huggingface.co/datasets/BAAI/SVIT"
    license = "cc-by-4.0, gated (SVIT usage notice); images under their own licences"
    citation = (
        "@article{zhao2023svit, title={SVIT: Scaling up Visual Instruction Tuning}, author={Zhao, Bo and Wu, Boya "
        "and He, Muyang and Huang, Tiejun}, journal={arXiv preprint arXiv:2307.04087}, year={2023}}"
    )
    download_hint = (
        "Accept the terms of the gated Hub dataset BAAI/SVIT, download format/llava-v1.5/SVIT_mix_665K.json into "
        "data_dir, and lay out the images as LLaVA's README does (coco/train2017, gqa/images, ocr_vqa/images, "
        "textvqa/train_images, vg/VG_100K, vg/VG_100K_2)."
    )

    def normalise(self, record: Any) -> SourceRow:
        row = llava_row(record, task_of)
        for prefix, task in ID_TASKS:
            if row.source_id is not None and row.source_id.startswith(prefix):
                return replace(row, task=task)
        return row
