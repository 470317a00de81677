"""Optional dependencies: import them on first use, with an error that names the extra installing them."""

from __future__ import annotations

import importlib
from types import ModuleType

from llava_mixes.errors import MissingExtraError

REPORT_EXTRA = "report"


def require(module: str, extra: str = REPORT_EXTRA) -> ModuleType:
    """Import `module`, or raise `MissingExtraError` saying which extra of llava_mixes installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(
            f"{module.split('.')[0]} is not installed; it comes with the `{extra}` extra: "
            f"pip install 'llava_mixes[{extra}]'"
        ) from error
