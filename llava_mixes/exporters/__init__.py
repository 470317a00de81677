"""Hand a built config to the training code people run: LLaVA, LLaMA-Factory, ms-swift, or plain JSON Lines.

`export(dataset, format, out)` writes a config's `train` rows as the file that tool reads (see `formats`);
`llava_mixes.workflows.run_export` is what `llava-mixes export` calls, from a data folder (through the one build
entry) or a published copy (`load_published` / `read_published`: untrusted input, read through its checksummed
manifest; its pictures are checked by `pictures`).
"""

from llava_mixes.exporters.core import IMAGE_TAG_MISMATCH, REMOVED_BY_DEDUP, ExportError, ExportResult, export
from llava_mixes.exporters.formats import FORMATS, llamafactory_entry, llamafactory_hub_entry
from llava_mixes.exporters.published import Published, PublishedCopyError, load_published, read_published

__all__ = [
    "FORMATS",
    "IMAGE_TAG_MISMATCH",
    "REMOVED_BY_DEDUP",
    "ExportError",
    "ExportResult",
    "Published",
    "PublishedCopyError",
    "export",
    "llamafactory_entry",
    "llamafactory_hub_entry",
    "load_published",
    "read_published",
]
