"""The network edge shared by every stage that talks to the Hub: which errors mean "no connection", a quick
check that the endpoint answers, and the ways out to name when it does not.

huggingface_hub retries a refused connection for about 25 s before it gives up, and some of its calls raise
the HTTP client's own `ConnectError`; one short request first (`unreachable`) makes an unreachable endpoint
a clear error within `PROBE_TIMEOUT_S`. Its answer is kept per endpoint for `PROBE_TTL_S`, so a build that
looks for many files probes once.
"""

from __future__ import annotations

import importlib
import time

from huggingface_hub import constants, get_session

PROBE_TIMEOUT_S = 3.0
PROBE_TTL_S = 60.0
OFFLINE_HINT = (
    "Check the network or HF_ENDPOINT; or work offline: set HF_HUB_OFFLINE=1 with the annotation files already in "
    "data_dir or the Hub cache"
)
"""The ways out when an annotation file cannot be fetched (the embedder is another matter, with its own error)."""


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


_probed: dict[str, tuple[float, str | None]] = {}
"""Each endpoint probed, with when and what `_probe` found."""


def _probe(endpoint: str) -> str | None:
    """One short request to `endpoint`: why it failed, or None when anything answered."""
    try:
        get_session().head(endpoint, timeout=PROBE_TIMEOUT_S, follow_redirects=False)
    except NETWORK_ERRORS as error:
        return f"the Hub at {endpoint} is unreachable ({type(error).__name__}: {error})"
    return None


def unreachable() -> str | None:
    """Why the Hub endpoint cannot be reached, or None when it answers (with any HTTP status) or when
    offline mode is on (huggingface_hub then serves its cache without trying). The endpoint is probed at
    most once per `PROBE_TTL_S`."""
    if constants.HF_HUB_OFFLINE:
        return None
    endpoint, now = constants.ENDPOINT, time.monotonic()
    known = _probed.get(endpoint)
    if known is None or now - known[0] >= PROBE_TTL_S:
        known = _probed[endpoint] = (now, _probe(endpoint))
    return known[1]
