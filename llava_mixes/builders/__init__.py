"""Source builders, one module per instruction set, and the registries that name them and their mixes."""

from __future__ import annotations

from llava_mixes.builders.mix665k import Mix665k
from llava_mixes.builders.pretrain558k import Pretrain558k
from llava_mixes.builders.sharegpt4v import ShareGpt4vMix665k
from llava_mixes.builders.svit_core import SvitCore
from llava_mixes.builders.svit_mix665k import SvitMix665k
from llava_mixes.builders.textocr_gpt4v import TextOcrGpt4v
from llava_mixes.builders.zh600k import Zh600k
from llava_mixes.sources.base import Source

SOURCES: dict[str, type[Source]] = {
    source.config_name: source
    for source in (Mix665k, Pretrain558k, ShareGpt4vMix665k, SvitMix665k, SvitCore, TextOcrGpt4v, Zh600k)
}
"""Every source, keyed by its config name."""

MIXES: dict[str, tuple[str, ...]] = {
    **{name: (name,) for name in SOURCES},
    # Bilingual: the English 665K mix plus the Chinese set, which its card says it is made to be mixed with.
    "mix665k+zh600k": (Mix665k.config_name, Zh600k.config_name),
}
"""Every plain (not deduplicated) config, as the sources it concatenates in order."""
