"""Source builders, one module per instruction set, and the registries that name them and their mixes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets

from llava_mixes.builders.llava_next import LlavaNext779k
from llava_mixes.builders.mix665k import Mix665k
from llava_mixes.builders.onevision import SUBSET_SOURCES, OneVisionSingleImage
from llava_mixes.builders.pretrain558k import Pretrain558k
from llava_mixes.builders.sharegpt4v import ShareGpt4vMix665k
from llava_mixes.builders.svit_core import SvitCore
from llava_mixes.builders.svit_mix665k import SvitMix665k
from llava_mixes.builders.textocr_gpt4v import TextOcrGpt4v
from llava_mixes.builders.zh600k import Zh600k
from llava_mixes.errors import ConfigError, MissingDataError
from llava_mixes.sources.base import Source

HUB_SOURCES: tuple[type[Source], ...] = (LlavaNext779k, OneVisionSingleImage, *SUBSET_SOURCES)
"""The Hub releases with their pictures inside (see `builders.hub_llava`)."""

FILE_SOURCES = (Mix665k, Pretrain558k, ShareGpt4vMix665k, SvitMix665k, SvitCore, TextOcrGpt4v, Zh600k)
"""The instruction sets read from annotation files (their pictures in folders, or inside for zh600k)."""

SOURCES: dict[str, type[Source]] = {source.config_name: source for source in (*FILE_SOURCES, *HUB_SOURCES)}
"""Every source, keyed by its config name."""

MIXES: dict[str, tuple[str, ...]] = {
    **{name: (name,) for name in SOURCES},
    # Bilingual: the English 665K mix plus the Chinese set, which its card says it is made to be mixed with.
    "mix665k+zh600k": (Mix665k.config_name, Zh600k.config_name),
}
"""Every plain (not deduplicated) config, as the sources it concatenates in order."""


def extra_features(names: tuple[str, ...]) -> dict[str, datasets.Value]:
    """The source-specific columns of the sources `names`, in source order."""
    extra: dict[str, datasets.Value] = {}
    for name in names:
        extra.update(SOURCES[name].extra_features)
    return extra


def info_fields(names: tuple[str, ...]) -> dict[str, Any]:
    """The `DatasetInfo` fields that come from the sources `names`: description, homepage, licence, citation."""
    sources = [SOURCES[name] for name in names]
    return {
        "description": " + ".join(source.description for source in sources),
        "homepage": " ".join(source.homepage for source in sources),
        "license": "; ".join(f"{source.name}: {source.license}" for source in sources),
        "citation": "\n".join(source.citation for source in sources),
    }


def check_data_dir_name(data_dir: object) -> None:
    """Refuse a `data_dir` whose name is not text (bytes from a folder name in another encoding, which Python keeps
    as lone surrogates): `datasets` writes it into the build's cache name as UTF-8."""
    if isinstance(data_dir, str):
        try:
            data_dir.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigError(
                f"data_dir {data_dir!r} is not valid UTF-8 (a folder name in another encoding); rename the folder "
                "or give it through a link with a UTF-8 name"
            ) from None


def check_data_dir(names: tuple[str, ...], data_dir: str | None) -> Path:
    """`data_dir` as a folder path; `MissingDataError` saying what to download when it is not given or absent."""
    hints = " ".join(SOURCES[name].download_hint for name in names)
    if not data_dir:
        raise MissingDataError(f"llava_mixes builds from your local downloads: pass data_dir=<folder>. {hints}")
    folder = Path(data_dir).expanduser()
    if not folder.is_dir():
        raise MissingDataError(f"data_dir {str(folder)!r} is not a folder. {hints}")
    return folder
