"""Annotation files fetched from their Hugging Face Hub dataset repos.

Only annotation files are fetched, into the Hub cache (`HF_HOME`), never images and never into
`data_dir`. Offline (`HF_HUB_OFFLINE=1`, or no connection) a file already in the Hub cache is still
used; otherwise the error says what to download and where to put it.

Before a download, one short request checks that the Hub endpoint answers at all (`network.unreachable`),
and an unreachable endpoint is named in the project's error, with the ways out (`network.OFFLINE_HINT`).
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
from llava_mixes.network import NETWORK_ERRORS, OFFLINE_HINT, unreachable

logger = logging.getLogger(__name__)


def _why(repo_id: str, error: Exception) -> str:
    """One line on why the Hub could not give us a file of `repo_id`."""
    if isinstance(error, GatedRepoError):
        return (
            f"the Hub dataset {repo_id} is gated: accept its terms on https://huggingface.co/datasets/{repo_id} "
            "and log in (`hf auth login`) to fetch it"
        )
    if isinstance(error, (LocalEntryNotFoundError, OfflineModeIsEnabled, *NETWORK_ERRORS)):
        return f"the Hub is not reachable (offline) and {repo_id} is not in the Hub cache"
    if isinstance(error, (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError)):
        return f"the Hub dataset {repo_id} has no such file"
    return f"fetching from the Hub dataset {repo_id} failed: {type(error).__name__}: {error}"


def fetch_annotation(repo_id: str, filename: str) -> Path:
    """The local copy of `filename` in the Hub dataset `repo_id`, downloaded into the Hub cache if needed;
    with the endpoint unreachable, the copy already in the Hub cache."""
    down = unreachable()
    try:
        cached_only = {"local_files_only": True} if down else {}
        local = Path(hf_hub_download(repo_id, filename, repo_type="dataset", **cached_only))
    except (HfHubHTTPError, EntryNotFoundError, OSError, *NETWORK_ERRORS) as error:
        why = f"{down}, and {repo_id} is not in the Hub cache. {OFFLINE_HINT}" if down else _why(repo_id, error)
        raise MissingDataError(f"{filename}: {why}") from error
    logger.info("using %s from the Hub dataset %s (%s)", filename, repo_id, local)
    return local


def repo_files(repo_id: str) -> list[str]:
    """The file names of the Hub dataset `repo_id`."""
    down = unreachable()
    if down is not None:
        raise MissingDataError(f"{down}, so the files of {repo_id} cannot be listed. {OFFLINE_HINT}")
    try:
        return list(list_repo_files(repo_id, repo_type="dataset"))
    except (HfHubHTTPError, EntryNotFoundError, OSError, *NETWORK_ERRORS) as error:
        raise MissingDataError(_why(repo_id, error)) from error
