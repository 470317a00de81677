"""LLaVA-NeXT's instruction data (lmms-lab/LLaVA-NeXT-Data): 779,289 rows in LLaVA's format with the pictures
inside, as Parquet files `data/train-*.parquet` (features `id`, `conversations`, `data_source`, `image`; the
card's `dataset_info`). Read from the user's download (about 92 GB), never fetched; each row's `data_source` is
its image group. See `builders.hub_llava` for the row rules.
"""

from __future__ import annotations

from llava_mixes.builders.hub_llava import HubParquetSource

REPO_ID = "lmms-lab/LLaVA-NeXT-Data"
RELEASE_DIR = "LLaVA-NeXT-Data"


class LlavaNext779k(HubParquetSource):
    name = "llava_next_779k"
    config_name = "llava-next-779k"
    hub_repo = None
    release_dir = RELEASE_DIR
    data_folders = ("data",)
    single_image_group = "llava_next"
    description = "LLaVA-NeXT-Data: 779K rows of LLaVA-NeXT's instruction tuning, pictures inside the Parquet files."
    homepage = f"https://huggingface.co/datasets/{REPO_ID}"
    license = "apache-2.0 (the card); pictures and upstream sets under their own licences"
    commercial_use = True
    citation = (
        "@misc{liu2024llavanext, title={LLaVA-NeXT: Improved reasoning, OCR, and world knowledge}, "
        "author={Liu, Haotian and Li, Chunyuan and Li, Yuheng and Li, Bo and Zhang, Yuanhan and Shen, Sheng and "
        "Lee, Yong Jae}, year={2024}, url={https://llava-vl.github.io/blog/2024-01-30-llava-next/}}"
    )
    download_hint = (
        f"Download the release (about 92 GB, never fetched implicitly) with `hf download {REPO_ID} --repo-type "
        f'dataset --include "data/*" --local-dir <data_dir>/{RELEASE_DIR}`.'
    )
