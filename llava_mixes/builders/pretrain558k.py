"""LLaVA's pretraining captions, `blip_laion_cc_sbu_558k.json` (liuhaotian/LLaVA-Pretrain).

Every row is one instruction from a small pool ("Describe the image concisely.", …) and a raw web caption:
exactly two turns, `<image>` before or after the instruction. Images sit in LLaVA's pretrain layout,
`LLaVA-Pretrain/images/<first 5 digits of the id>/<id>.jpg`, and form one group, `llava_pretrain`. The
`blip_laion_cc_sbu_558k_meta.json` beside the file (url, blip_caption) is not conversation data and is
never read.
"""

from __future__ import annotations

from typing import Any

from llava_mixes import schema
from llava_mixes.errors import RecordRejected
from llava_mixes.sources.base import Source, SourceRow
from llava_mixes.sources.llava_format import llava_row

PRETRAIN_GROUP = "llava_pretrain"


class Pretrain558k(Source):
    name = "blip_laion_cc_sbu_558k"
    config_name = "pretrain558k"
    annotation_files = ("blip_laion_cc_sbu_558k.json",)
    annotation_dirs = ("", "LLaVA-Pretrain")
    hub_repo = "liuhaotian/LLaVA-Pretrain"
    image_prefixes = ("LLaVA-Pretrain/images", "images")
    single_image_group = PRETRAIN_GROUP
    description = "LLaVA pretraining captions: 558K LAION/CC/SBU images with BLIP captions, one instruction each."
    homepage = "https://huggingface.co/datasets/liuhaotian/LLaVA-Pretrain"
    license = "other: LAION, CC and SBU image terms; captions under OpenAI's terms of use"
    citation = (
        "@inproceedings{liu2023llava, title={Visual Instruction Tuning}, author={Liu, Haotian and Li, Chunyuan "
        "and Wu, Qingyang and Lee, Yong Jae}, booktitle={NeurIPS}, year={2023}}"
    )
    download_hint = (
        "Download blip_laion_cc_sbu_558k.json (not the _meta.json beside it) from the Hub dataset "
        "liuhaotian/LLaVA-Pretrain into data_dir or data_dir/LLaVA-Pretrain, and unzip its images.zip into "
        "data_dir/LLaVA-Pretrain/images (folders 00000 … 00659)."
    )

    def normalise(self, record: Any) -> SourceRow:
        row = llava_row(record, lambda image_path, turns: "caption")
        if len(row.conversations) != 2:
            raise RecordRejected(
                schema.UNEXPECTED_TURN_COUNT, f"{len(row.conversations)} turns; every pretraining row has 2"
            )
        return row
