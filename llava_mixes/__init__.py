"""llava_mixes: LLaVA-style instruction sets as clean, deduplicated, versioned `datasets` configs.

Importing the package registers the `llava_mixes` builder with `datasets`, so that
`datasets.load_dataset("llava_mixes", "mix665k-dedup-0.8", data_dir=DIR)` builds from local raw downloads;
`llava_mixes.load_dataset("mix665k-dedup-0.8", data_dir=DIR)` does the same with no registration to forget.
`datasets` has no discovery of third-party builders, so without `import llava_mixes` it looks for a Hub dataset
named `llava_mixes` instead. The build stage is `llava_mixes.building`; its one build entry, `build(name, data_dir,
**kwargs)`, is also `llava_mixes.build`.
"""

from llava_mixes.building import BuildReport, Built, LlavaMixes, LlavaMixesConfig, build, load_dataset, load_report
from llava_mixes.decontam import decontaminate
from llava_mixes.dedup.deduplicate import deduplicate
from llava_mixes.embedding.transform import add_embeddings
from llava_mixes.plugin import register

__version__ = "0.1.0"
__all__ = [
    "BuildReport",
    "Built",
    "LlavaMixes",
    "LlavaMixesConfig",
    "add_embeddings",
    "build",
    "decontaminate",
    "deduplicate",
    "load_dataset",
    "load_report",
    "register",
]

register()
