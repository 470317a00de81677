"""Hostile or careless `[project.urls]` entries (issue 23, item 8): the card links the project's page only for an
https URL that is a clean Markdown link target under Homepage, Repository or Source; anything else leaves the tool
named without a link, never a broken or injected link."""

from __future__ import annotations

from email.message import Message
from importlib.metadata import PackageNotFoundError

import pytest

from llava_mixes.publish import tool

FEATURE = "publish"


def _metadata(monkeypatch: pytest.MonkeyPatch, *entries: str) -> None:
    message = Message()
    for entry in entries:
        message["Project-URL"] = entry
    monkeypatch.setattr(tool, "metadata", lambda name: message)


@pytest.mark.adversarial("rejected")
@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "http://example.org/plain",
        "data:text/html,<b>x</b>",
        "https://example.org/a) and [more](https://evil.example",
        "https://example.org/a b",
        "https://example.org/<script>",
        'https://example.org/"quoted"',
        "https://example.org/`code`",
        "https://example.org/" + "a" * 5000,
        "https://example.org/\x07bell",
        "",
        "ftp://example.org/x",
    ],
    ids=lambda url: url[:30] or "empty",
)
def test_a_url_that_is_no_clean_https_link_is_not_linked(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _metadata(monkeypatch, f"Homepage, {url}")
    assert tool.project_url() is None
    assert tool.tool_line("0.1.0") == "llava_mixes 0.1.0"


@pytest.mark.adversarial("correct")
@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        (("HomePage , https://example.org/h",), "https://example.org/h"),
        (("Repository, https://example.org/r", "Homepage, https://example.org/h"), "https://example.org/h"),
        (("Homepage, https://example.org/1", "Homepage, https://example.org/2"), "https://example.org/1"),
        (("Homepage, http://example.org/h", "Source, https://example.org/s"), "https://example.org/s"),
        (("Bug Tracker, https://example.org/issues",), None),
        (("no comma https://example.org",), None),
    ],
)
def test_the_preferred_clean_project_page_is_chosen(
    entries: tuple[str, ...], expected: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _metadata(monkeypatch, *entries)
    assert tool.project_url() == expected


@pytest.mark.adversarial("correct")
def test_a_package_without_metadata_names_the_tool_without_a_link(monkeypatch: pytest.MonkeyPatch) -> None:
    def absent(name: str) -> Message:
        raise PackageNotFoundError(name)

    monkeypatch.setattr(tool, "metadata", absent)
    assert tool.tool_line("0.1.0") == "llava_mixes 0.1.0"
