"""The tool that built a release, as its card names it: `llava_mixes` and its version, linked to the project's page
only where the installed package's metadata gives one (`[project.urls]` in pyproject.toml: Homepage, Repository or
Source), so that a card never links to a page that may not exist."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, metadata

PACKAGE = "llava_mixes"
URL_LABELS = ("homepage", "repository", "source")
"""The `[project.urls]` labels that name the project's own page, in the order they are preferred."""
MAX_URL = 2000


def project_url() -> str | None:
    """The project's page from the package metadata (an https URL under one of `URL_LABELS`), or None."""
    try:
        entries = metadata(PACKAGE).get_all("Project-URL") or []
    except PackageNotFoundError:
        return None
    urls: dict[str, str] = {}
    for entry in entries:
        label, _, url = entry.partition(",")
        url = url.strip()
        if _linkable(url):
            urls.setdefault(label.strip().lower(), url)
    return next((urls[label] for label in URL_LABELS if label in urls), None)


def _linkable(url: str) -> bool:
    """Whether `url` can be a Markdown link target as it is: https, printable, short, and nothing that would end the
    link or open markup (brackets, quotes, backticks, spaces)."""
    return (
        url.startswith("https://")
        and len(url) <= MAX_URL
        and url.isprintable()
        and not any(char.isspace() or char in "()[]<>\"'`\\" for char in url)
    )


def tool_line(package_version: str) -> str:
    """`llava_mixes VERSION`, its name linked to `project_url()` where there is one."""
    url = project_url()
    return f"[{PACKAGE}]({url}) {package_version}" if url else f"{PACKAGE} {package_version}"
