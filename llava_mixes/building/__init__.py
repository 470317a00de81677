"""The build stage: a config's name and kwargs to its built splits and report, cached and checked for freshness.

`build(name, data_dir, **kwargs)` is the one build entry (= `prepare(configure(...))`), giving `Built`; `verify`
hashes every file of a cached build. `LlavaMixes` is the `datasets` builder behind `load_dataset("llava_mixes",
...)`, `LlavaMixesConfig` its config; `BuildReport` and `load_report` are what a build did to its rows.
"""

from llava_mixes.building.builder import LlavaMixes
from llava_mixes.building.config import CONFIG_NAMES, RECIPE_CONFIG, LlavaMixesConfig, check_config_name
from llava_mixes.building.entry import Built, build, configure, load_dataset, prepare, verify
from llava_mixes.building.report import BuildReport, load_report

__all__ = [
    "CONFIG_NAMES",
    "RECIPE_CONFIG",
    "BuildReport",
    "Built",
    "LlavaMixes",
    "LlavaMixesConfig",
    "build",
    "check_config_name",
    "configure",
    "load_dataset",
    "load_report",
    "prepare",
    "verify",
]
