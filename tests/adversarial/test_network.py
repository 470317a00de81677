"""The network edge: an unreachable Hub endpoint, and Hub errors that echo the token back."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import datasets
import huggingface_hub.constants
import pytest
from fake_hub import RecordingHubApi, http_error

from llava_mixes import network
from llava_mixes.cli.main import main
from llava_mixes.embedding.embedders import resolve_embedder
from llava_mixes.errors import EmbedderUnavailableError, MissingDataError, PublishError
from llava_mixes.publish.repos import HubRepo
from llava_mixes.sources import fetch as hub
from llava_mixes.workflows.release import release

FEATURE = "disks and network"

REPO = "demo/llava_mixes"
QUICK_S = 5.0


@pytest.fixture
def dead_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The Hub endpoint is a closed local port and offline mode is off, for this test only."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    start = time.monotonic()
    yield endpoint
    assert time.monotonic() - start < QUICK_S, "the error took too long to come"


@pytest.mark.adversarial("error")
def test_annotation_fetch_from_an_unreachable_hub_names_endpoint_and_ways_out(
    tmp_path: Path, dead_endpoint: str
) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingDataError) as caught:
        datasets.load_dataset("llava_mixes", "mix665k", data_dir=str(tmp_path / "empty"))
    message = str(caught.value)
    assert f"the Hub at {dead_endpoint} is unreachable" in message
    assert "HF_HUB_OFFLINE=1" in message and "llava_v1_5_mix665k.json" in message


@pytest.mark.adversarial("error")
def test_the_endpoint_is_probed_once_for_every_file_of_a_build(
    tmp_path: Path, dead_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    probes: list[str] = []
    probe = network._probe
    monkeypatch.setattr(network, "_probe", lambda endpoint: probes.append(endpoint) or probe(endpoint))
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingDataError) as caught:  # SVIT's four annotation files, then the default embedder
        datasets.load_dataset("llava_mixes", "svit-core", data_dir=str(tmp_path / "empty"))
    assert str(caught.value).count(f"the Hub at {dead_endpoint} is unreachable") == 4
    with pytest.raises(EmbedderUnavailableError):
        resolve_embedder("openai/clip-vit-large-patch14-336", device="cpu")
    assert probes == [dead_endpoint]


@pytest.mark.adversarial("error")
def test_a_hub_warning_is_printed_once_by_the_cli(caplog: pytest.LogCaptureFixture) -> None:
    """Through our one handler only: the libraries' own stderr handlers would print it a second time, raw."""
    assert main(["list"]) == 0
    huggingface_hub.utils.logging.get_logger("huggingface_hub.utils._http").warning("Retrying in 1s [Retry 1/5].")
    datasets.utils.logging.get_logger("datasets.load").warning("Using the latest cached version")
    assert logging.getLogger("huggingface_hub").handlers == [] and logging.getLogger("datasets").handlers == []
    assert caplog.text.count("Retrying in 1s") == 1 and caplog.text.count("Using the latest cached version") == 1


@pytest.mark.adversarial("error")
def test_listing_a_hub_repo_that_cannot_be_reached_is_one_clear_error(dead_endpoint: str) -> None:
    with pytest.raises(MissingDataError, match=f"the Hub at {dead_endpoint} is unreachable.*HF_HUB_OFFLINE=1"):
        hub.repo_files("opencsg/llava-instruct-zh-600k")


@pytest.mark.adversarial("error")
def test_embedder_revision_lookup_on_an_unreachable_hub_names_endpoint_and_thumbnail(dead_endpoint: str) -> None:
    with pytest.raises(EmbedderUnavailableError) as caught:
        resolve_embedder("openai/clip-vit-large-patch14-336", device="cpu")
    message = str(caught.value)
    assert f"the Hub at {dead_endpoint} is unreachable" in message
    assert "embedder='thumbnail'" in message and "HF_HUB_OFFLINE=1" in message


@pytest.mark.adversarial("error")
def test_publish_to_an_unreachable_hub_is_one_clear_error(tmp_path: Path, dead_endpoint: str) -> None:
    with pytest.raises(PublishError) as caught:
        release(["mix665k"], REPO, "1.0.0", str(tmp_path), token="tok-not-shaped-like-hf")
    message = str(caught.value)
    assert f"the Hub at {dead_endpoint} is unreachable" in message and "--local-dir" in message
    assert "tok-not-shaped-like-hf" not in message


@pytest.mark.adversarial("error")
def test_publish_cli_on_an_unreachable_hub_exits_2_with_one_line(
    tmp_path: Path, dead_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    argv = ["publish", "mix665k", "--repo", REPO, "--version", "1.0.0", "--data-dir", str(tmp_path)]
    assert main(argv) == 2
    assert "Traceback" not in caplog.text and f"the Hub at {dead_endpoint} is unreachable" in caplog.text


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("where", ["argument", "HF_TOKEN", "stored login"])
@pytest.mark.parametrize("secret", ["hf_S3-cr3t_x", "plain-token-without-prefix"])
def test_a_token_echoed_by_the_hub_is_scrubbed_whatever_its_shape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, secret: str
) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "token"))
    if where == "HF_TOKEN":
        monkeypatch.setenv("HF_TOKEN", secret)
    elif where == "stored login":
        (tmp_path / "token").write_text(secret)
    api = RecordingHubApi()
    api.fail_with = http_error(401, f"401 Client Error: Unauthorized (token {secret} is invalid)")
    with pytest.raises(PublishError) as caught:
        HubRepo(REPO, api=api, token=secret if where == "argument" else None).open()
    message = str(caught.value)
    assert "401" in message and "is invalid" in message
    assert secret not in message and secret[:8] not in message


@pytest.mark.adversarial("correct")
def test_an_annotation_file_in_the_hub_cache_still_builds_when_the_hub_is_unreachable(
    tmp_path: Path, dead_endpoint: str
) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_cache = Path(huggingface_hub.constants.HF_HUB_CACHE) / "datasets--liuhaotian--LLaVA-Instruct-150K"
    (repo_cache / "refs").mkdir(parents=True)
    (repo_cache / "refs" / "main").write_text(commit)
    snapshot = repo_cache / "snapshots" / commit
    snapshot.mkdir(parents=True)
    turns = [{"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "Hello."}]
    (snapshot / "llava_v1_5_mix665k.json").write_text(json.dumps([{"id": "a", "conversations": turns}]))
    (tmp_path / "empty").mkdir()
    dataset = datasets.load_dataset("llava_mixes", "mix665k", data_dir=str(tmp_path / "empty"), split="train")
    assert dataset["source_id"][:] == ["a"]
