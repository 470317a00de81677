"""Source builders, one module per instruction set, and the registry that names them."""

from __future__ import annotations

from llava_mixes.builders.mix665k import Mix665k
from llava_mixes.sources import Source

SOURCES: dict[str, type[Source]] = {
    Mix665k.config_name: Mix665k,
}
"""Every source, keyed by its config name."""

MIXES: dict[str, tuple[str, ...]] = {name: (name,) for name in SOURCES}
"""Every plain (not deduplicated) config, as the sources it concatenates in order."""
