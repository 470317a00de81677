"""Reading the raw instruction sets: annotation readers, image resolution and checks, normalisation into the
common schema, and the record of what a build read."""

from llava_mixes.sources.base import Source, SourceRow
from llava_mixes.sources.normalise import SourceNormaliser, normalise_sources

__all__ = ["Source", "SourceNormaliser", "SourceRow", "normalise_sources"]
