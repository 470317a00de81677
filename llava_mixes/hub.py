"""The network edge: annotation files fetched from their Hugging Face Hub dataset repos.

Only annotation files are fetched, into the Hub cache (`HF_HOME`), never images and never into
`data_dir`. Offline (`HF_HUB_OFFLINE=1`, or no connection) a file already in the Hub cache is still
used; otherwise the error says what to download and where to put it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from huggingface_hub import hf_hub_download, list_repo_files
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from llava_mixes.errors import MissingDataError

logger = logging.getLogger(__name__)


def _why(repo_id: str, error: Exception) -> str:
    """One line on why the Hub could not give us a file of `repo_id`."""
    if isinstance(error, GatedRepoError):
        return (
            f"the Hub dataset {repo_id} is gated: accept its terms on https://huggingface.co/datasets/{repo_id} "
            "and log in (`hf auth login`) to fetch it"
        )
    if isinstance(error, (LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError)):
        return f"the Hub is not reachable (offline) and {repo_id} is not in the Hub cache"
    if isinstance(error, (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError)):
        return f"the Hub dataset {repo_id} has no such file"
    return f"fetching from the Hub dataset {repo_id} failed: {type(error).__name__}: {error}"


def fetch_annotation(repo_id: str, filename: str) -> Path:
    """The local copy of `filename` in the Hub dataset `repo_id`, downloaded into the Hub cache if needed."""
    try:
        local = Path(hf_hub_download(repo_id, filename, repo_type="dataset"))
    except (HfHubHTTPError, EntryNotFoundError, OSError) as error:
        raise MissingDataError(f"{filename}: {_why(repo_id, error)}") from error
    logger.info("using %s from the Hub dataset %s (%s)", filename, repo_id, local)
    return local


def repo_files(repo_id: str) -> list[str]:
    """The file names of the Hub dataset `repo_id`."""
    try:
        return list(list_repo_files(repo_id, repo_type="dataset"))
    except (HfHubHTTPError, EntryNotFoundError, OSError) as error:
        raise MissingDataError(_why(repo_id, error)) from error
