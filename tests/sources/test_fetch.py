"""An absent annotation file comes from its Hub repo when online; offline, the error says what to download.

Only the network edge (`hf_hub_download`, `list_repo_files` as `llava_mixes.sources.fetch` calls them) is replaced.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import datasets
import pytest
from huggingface_hub.errors import GatedRepoError

import llava_mixes
from llava_mixes.errors import MissingDataError
from llava_mixes.playground.layout import Playground
from llava_mixes.sources import fetch as hub


class FakeHub:
    """Serves files from a folder as if it were a Hub dataset repo, and records what was asked for."""

    def __init__(self, repo_id: str, files: Path, cache: Path) -> None:
        self.repo_id, self.files, self.cache = repo_id, files, cache
        self.downloads: list[tuple[str, str, str]] = []

    def hf_hub_download(self, repo_id: str, filename: str, *, repo_type: str) -> str:
        self.downloads.append((repo_id, filename, repo_type))
        target = self.cache / repo_id / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.files / filename, target)
        return str(target)

    def list_repo_files(self, repo_id: str, *, repo_type: str) -> list[str]:
        assert (repo_id, repo_type) == (self.repo_id, "dataset")
        return sorted(path.relative_to(self.files).as_posix() for path in self.files.rglob("*") if path.is_file())


def gated(repo_id: str) -> GatedRepoError:
    error = GatedRepoError.__new__(GatedRepoError)
    Exception.__init__(error, f"Access to dataset {repo_id} is restricted. You must have access to it.")
    return error


def test_absent_annotation_file_is_fetched_from_its_hub_repo(
    playground: Playground, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.move(playground.root / "blip_laion_cc_sbu_558k.json", repo / "blip_laion_cc_sbu_558k.json")
    fake = FakeHub("liuhaotian/LLaVA-Pretrain", repo, tmp_path / "hub_cache")
    monkeypatch.setattr(hub, "hf_hub_download", fake.hf_hub_download)
    dataset = datasets.load_dataset("llava_mixes", "pretrain558k", data_dir=str(playground.root), split="train")
    assert fake.downloads and set(fake.downloads) == {
        ("liuhaotian/LLaVA-Pretrain", "blip_laion_cc_sbu_558k.json", "dataset")
    }
    assert llava_mixes.load_report(dataset).rows_in == playground.sources["pretrain558k"].rows
    assert not (playground.root / "blip_laion_cc_sbu_558k.json").exists()


def test_offline_missing_file_names_what_to_download(playground: Playground) -> None:
    (playground.root / "SVIT_mix_665K.json").unlink()
    with pytest.raises(MissingDataError, match=r"SVIT_mix_665K\.json.*offline.*BAAI/SVIT"):
        datasets.load_dataset("llava_mixes", "svit-mix665k", data_dir=str(playground.root))


def test_gated_repo_says_to_accept_its_terms(playground: Playground, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("conversation.json", "referring_qa.json"):
        (playground.root / name).unlink()

    def refuse(repo_id: str, filename: str, *, repo_type: str) -> str:
        raise gated(repo_id)

    monkeypatch.setattr(hub, "hf_hub_download", refuse)
    with pytest.raises(MissingDataError) as caught:
        datasets.load_dataset("llava_mixes", "svit-core", data_dir=str(playground.root))
    message = str(caught.value)
    assert "conversation.json" in message and "referring_qa.json" in message
    assert "gated" in message and "accept its terms" in message and message.count("Accept the terms") == 1


def test_zh600k_fetches_json_annotations_but_never_a_parquet_release(
    playground: Playground, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = playground.root / "llava-instruct-zh-600k"
    repo = tmp_path / "repo"
    shutil.move(release, repo)
    fake = FakeHub("opencsg/llava-instruct-zh-600k", repo, tmp_path / "hub_cache")
    monkeypatch.setattr(hub, "hf_hub_download", fake.hf_hub_download)
    monkeypatch.setattr(hub, "list_repo_files", fake.list_repo_files)
    with pytest.raises(MissingDataError, match=r"1 data files \(\.parquet\).*never downloaded implicitly"):
        datasets.load_dataset("llava_mixes", "zh600k", data_dir=str(playground.root))
    assert fake.downloads == []
    (repo / "data" / "train-00000-of-00001.parquet").unlink()
    (repo / "llava_zh.json").write_text('[{"id": 1, "conversations": "用户：你好\\n\\n助手：你好！"}]')
    (repo / "dataset_info.json").write_text("{}")
    train = datasets.load_dataset("llava_mixes", "zh600k", data_dir=str(playground.root), split="train")
    assert set(fake.downloads) == {("opencsg/llava-instruct-zh-600k", "llava_zh.json", "dataset")}
    assert train[0]["conversations"] == [{"from": "human", "value": "你好"}, {"from": "gpt", "value": "你好！"}]


def test_zh600k_offline_without_the_release_says_how_to_download_it(playground: Playground) -> None:
    shutil.rmtree(playground.root / "llava-instruct-zh-600k")
    with pytest.raises(MissingDataError, match=r"offline.*hf download opencsg/llava-instruct-zh-600k"):
        datasets.load_dataset("llava_mixes", "zh600k", data_dir=str(playground.root))
