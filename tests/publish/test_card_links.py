"""The published card links only to pages that configured data names (issue 23, item 8): the sources' own pages
and, where pyproject.toml's `[project.urls]` sets one, the project's page; never a package index page that may not
exist. The tool is named with its version either way."""

from __future__ import annotations

import json
import re
from email.message import Message
from pathlib import Path

import pytest

from llava_mixes.builders import SOURCES
from llava_mixes.playground.layout import Playground
from llava_mixes.publish import tool
from llava_mixes.publish.card import render_card
from llava_mixes.publish.manifest import MANIFEST_FILE
from llava_mixes.publish.publish import CARD_FILE
from llava_mixes.workflows.release import release

URL = re.compile(r"https?://[^\s)>\]\"'`}]+")
REPO = "demo/llava_mixes"


def _configured_text() -> str:
    """Every text a card may take a link from: what each source declares about itself."""
    fields = ("homepage", "citation", "description", "download_hint", "license")
    return "\n".join(str(getattr(source, field, "")) for source in SOURCES.values() for field in fields)


def _metadata(monkeypatch: pytest.MonkeyPatch, *urls: str) -> None:
    message = Message()
    for url in urls:
        message["Project-URL"] = url
    monkeypatch.setattr(tool, "metadata", lambda name: message)


@pytest.fixture
def published(playground: Playground, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    kwargs = {"local_dir": out, "config_kwargs": {"embedder": "thumbnail"}}
    release(["mix665k-dedup-0.8", "zh600k"], REPO, "1.0.0", str(playground.root), **kwargs)
    return out


def test_every_link_of_the_card_comes_from_configured_data(published: Path) -> None:
    text = (published / CARD_FILE).read_text()
    configured = _configured_text()
    assert [url for url in URL.findall(text) if url not in configured] == []
    assert "pypi.org" not in text
    assert "Built with\nllava_mixes 0.1.0; the current release is **v1.0.0**." in text


def test_the_card_links_the_project_page_that_pyproject_sets(published: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _metadata(monkeypatch, "Documentation, https://docs.example.org", "Repository, https://example.org/llava_mixes")
    manifest = json.loads((published / MANIFEST_FILE).read_text())
    text = render_card(manifest, REPO)
    assert "Built with\n[llava_mixes](https://example.org/llava_mixes) 0.1.0; the current release" in text
    assert "docs.example.org" not in text


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ((), None),
        (("Homepage, https://example.org/a", "Repository, https://example.org/b"), "https://example.org/a"),
        (("Source, https://example.org/s",), "https://example.org/s"),
        (("Homepage, http://example.org/plain",), None),
        (("Homepage, https://example.org/a) [x](https://evil.example",), None),
        (("Homepage https://example.org/no-comma",), None),
        (("Changelog, https://example.org/changes",), None),
    ],
)
def test_only_an_https_project_page_from_the_metadata_is_linked(
    entries: tuple[str, ...], expected: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _metadata(monkeypatch, *entries)
    assert tool.project_url() == expected


def test_this_checkout_sets_no_project_page() -> None:
    """pyproject.toml has no [project.urls]: the card then links nothing for the tool (this test tells when that
    changes, so that the card's link is checked to exist)."""
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert ("[project.urls]" in pyproject) == (tool.project_url() is not None)
