"""The network edge: annotation files fetched from their Hugging Face Hub dataset repos.

Only annotation files are fetched, into the Hub cache (`HF_HOME`), never images and never into
`data_dir`. Offline (`HF_HUB_OFFLINE=1`, or no connection) a file already in the Hub cache is still
used; otherwise the error says what to download and where to put it.

Before a download, one short request checks that the Hub endpoint answers at all (`unreachable`):
huggingface_hub retries a refused connection for about 25 s before it gives up, and some of its calls
raise the HTTP client's own `ConnectError`. An unreachable endpoint is named in the project's error,
with the ways out (`OFFLINE_HINT`).
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

from huggingface_hub import constants, get_session, hf_hub_download, list_repo_files
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

PROBE_TIMEOUT_S = 5.0
OFFLINE_HINT = (
    "Check the network or HF_ENDPOINT; or work offline: set HF_HUB_OFFLINE=1 with the files already in place "
    "(annotation files in data_dir or the Hub cache, embedder weights in the HF cache or a local folder), and "
    "embedder='thumbnail' needs no weights"
)


def _network_errors() -> tuple[type[BaseException], ...]:
    """The exceptions of a connection that failed, from the HTTP clients huggingface_hub may use."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module_name, names in (("httpx2", ("TransportError",)), ("httpx", ("TransportError",))):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        errors.extend(getattr(module, name) for name in names)
    try:
        from requests.exceptions import ConnectionError as RequestsConnectionError
        from requests.exceptions import Timeout
    except ImportError:
        pass
    else:
        errors.extend([RequestsConnectionError, Timeout])
    return tuple(errors)


NETWORK_ERRORS = _network_errors()


def unreachable() -> str | None:
    """Why the Hub endpoint cannot be reached, or None when it answers (with any HTTP status) or when
    offline mode is on (huggingface_hub then serves its cache without trying)."""
    if constants.HF_HUB_OFFLINE:
        return None
    try:
        get_session().head(constants.ENDPOINT, timeout=PROBE_TIMEOUT_S, follow_redirects=False)
    except NETWORK_ERRORS as error:
        return f"the Hub at {constants.ENDPOINT} is unreachable ({type(error).__name__}: {error})"
    return None


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
