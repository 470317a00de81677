"""LLaVA-1.5's `llava_v1_5_mix665k.json` (liuhaotian/LLaVA-Instruct-150K).

Tasks come from where the record points and how its first question is phrased, following the mix's
construction (LLaVA issue #702): `vqa` (VQAv2, OKVQA, GQA, OCR-VQA short answers), `multiple_choice`
(A-OKVQA), `referring` and `region_caption` (RefCOCO, VG), `caption` (TextCaps), `conversation`,
`detail_description` and `complex_reasoning` (LLaVA-Instruct), `text` (ShareGPT, no image).
"""

from __future__ import annotations

from typing import Any

from llava_mixes.sources.base import Source, SourceRow
from llava_mixes.sources.conversation import first_human_text
from llava_mixes.sources.llava_format import llava_row

# The prompts LLaVA-Instruct's detail_23k questions are drawn from (LLaVA paper, Table 9).
DETAIL_PROMPTS = frozenset(
    prompt.rstrip(".?").lower()
    for prompt in (
        "Describe the following image.",
        "What is this photo about'?",
        "Write a detailed description of the given image.",
        "Explain the visual content of the image in great detail.",
        "What do you see happening in this image?",
        "Can you elaborate on the elements of the picture provided?",
        "Analyze the image in a comprehensive and detailed manner.",
        "What's happening in the scene?",
        "Can you describe the main features of this image for me?",
        "What are the key elements in this picture?",
        "What do you think is going on in this snapshot?",
        "Describe the image in detail.",
        "Describe the following image in detail.",
        "What is happening in this image?",
        "Explain the visual content of the image in detail.",
    )
)

PROMPT_TASKS = (
    ("Answer with the option's letter from the given choices directly.", "multiple_choice"),
    ("Answer the question using a single word or phrase.", "vqa"),
    ("Please provide a short description for this region", "region_caption"),
    ("Please provide the bounding box coordinate of the region this sentence describes", "referring"),
    ("Reference OCR token", "caption"),
)


def task_of(image_path: str | None, turns: list[dict[str, str]]) -> str | None:
    """Name the instruction kind of one 665K row (see the module docstring)."""
    if image_path is None:
        return "text"
    question = first_human_text(turns)
    for marker, task in PROMPT_TASKS:
        if marker in question:
            return task
    if image_path.startswith("coco/"):
        if len(turns) > 2:
            return "conversation"
        return "detail_description" if question.strip().rstrip(".?").lower() in DETAIL_PROMPTS else "complex_reasoning"
    return None


class Mix665k(Source):
    name = "llava_v1_5_mix665k"
    config_name = "mix665k"
    annotation_files = ("llava_v1_5_mix665k.json",)
    hub_repo = "liuhaotian/LLaVA-Instruct-150K"
    description = "LLaVA-1.5 visual instruction tuning mix: 665K rows over COCO, GQA, OCR-VQA, TextVQA, VG, ShareGPT."
    homepage = "https://huggingface.co/datasets/liuhaotian/LLaVA-Instruct-150K"
    license = "cc-by-4.0 (text also under OpenAI's terms of use); images under their own licences"
    citation = (
        "@misc{liu2023improvedllava, title={Improved Baselines with Visual Instruction Tuning}, "
        "author={Liu, Haotian and Li, Chunyuan and Li, Yuheng and Lee, Yong Jae}, year={2023}, "
        "eprint={2310.03744}, archivePrefix={arXiv}}"
    )
    download_hint = (
        "Download llava_v1_5_mix665k.json from the Hub dataset liuhaotian/LLaVA-Instruct-150K into data_dir, and "
        "the images as LLaVA's README lays them out: coco/train2017, gqa/images, ocr_vqa/images, "
        "textvqa/train_images, vg/VG_100K and vg/VG_100K_2."
    )

    def normalise(self, record: Any) -> SourceRow:
        return llava_row(record, task_of)
