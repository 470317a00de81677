from __future__ import annotations

import dataclasses
import json
import logging
import os
import uuid
from pathlib import Path

import datasets
import pytest
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from fake_hub import EMPTY_SHA, RecordingHubApi, http_error
from huggingface_hub import DatasetCard

from llava_mixes.building.builder import LlavaMixes
from llava_mixes.cli.main import main
from llava_mixes.errors import ConfigError, PublishError
from llava_mixes.playground.layout import Playground
from llava_mixes.publish.check_repo import check_repo
from llava_mixes.publish.parquet import published_name
from llava_mixes.publish.publish import CARD_FILE, MANIFEST_FILE
from llava_mixes.workflows.release import release

REPO = "demo/llava_mixes"
DEDUP = "mix665k-dedup-0.8"
THUMBNAIL = {"embedder": "thumbnail"}
SECRET = "hf_" + "S3cr3tT0k3n" * 3


def tree(folder: Path) -> dict[str, bytes]:
    """Every file of a repo tree (dot files aside) and its bytes."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    }


def local(playground: Playground, out: Path, version: str = "1.0.0", configs: tuple[str, ...] = (DEDUP,), **kw):
    return release(configs, REPO, version, str(playground.root), local_dir=out, config_kwargs=THUMBNAIL, **kw)


def test_done_when_sequence_runs_offline_from_the_cli(
    playground: Playground, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "OUT"
    argv = ["--log-level", "error", "publish", DEDUP, "--repo", REPO, "--version", "1.0.0", "--local-dir", str(out)]
    assert main([*argv, "--data-dir", str(playground.root), "--embedder", "thumbnail"]) == 0
    assert main(["check-repo", str(out)]) == 0
    assert f"{out}: ok" in capsys.readouterr().out
    assert sorted(path for path in tree(out) if "/pairs/" not in path) == [
        CARD_FILE,
        MANIFEST_FILE,
        f"{DEDUP}/removed-00000-of-00001.parquet",
        f"{DEDUP}/train-00000-of-00001.parquet",
    ]

    loaded = datasets.load_dataset(str(out), DEDUP)
    built = datasets.load_dataset("llava_mixes", DEDUP, data_dir=str(playground.root), embedder="thumbnail")
    for split in ("train", "removed"):
        assert loaded[split]["id"] == built[split]["id"]
        assert loaded[split].features == built[split].features
    assert isinstance(loaded["train"].features["image"], datasets.Image)
    assert loaded["train"].filter(lambda row: row["image"] is not None)[0]["image"].size[0] > 0
    first = next(iter(datasets.load_dataset(str(out), DEDUP, split="train", streaming=True)))
    assert first["id"] == built["train"][0]["id"] and first["image"].size[0] > 0


def test_card_yaml_parses_with_datasets_own_metadata_classes(playground: Playground, tmp_path: Path) -> None:
    local(playground, tmp_path / "out")
    card = DatasetCard.load(tmp_path / "out" / CARD_FILE)
    configs = MetadataConfigs.from_dataset_card_data(card.data)
    assert configs.get_default_config_name() == DEDUP
    assert configs[DEDUP]["data_files"] == [
        {"split": "train", "path": f"{DEDUP}/train-*"},
        {"split": "removed", "path": f"{DEDUP}/removed-*"},
    ]
    info = DatasetInfosDict.from_dataset_card_data(card.data)[DEDUP]
    loaded = datasets.load_dataset(str(tmp_path / "out"), DEDUP)
    assert info.features == loaded["train"].features
    assert {name: split.num_examples for name, split in info.splits.items()} == {"train": 42, "removed": 7}
    assert card.data.license == "cc-by-4.0" and card.data.language == ["en"]
    assert card.data.size_categories == ["n<1K"] and "image-text-to-text" in card.data.task_categories
    assert card.data.pretty_name and "llava" in card.data.tags
    text = card.text
    assert "| coco | 15 | 13 | 3 | 10 | 12 | 3 |" in text and "| total | 49 | 44 | 7 | 37 | 42 | 6 |" in text
    assert f'load_dataset("{REPO}", "{DEDUP}", revision="v1.0.0", split="train", streaming=True)' in text
    assert "liu2023improvedllava" in text and "greedy keep-first" in text and "`thumbnail`" in text
    assert "### v1.0.0" in text and f"- added `{DEDUP}`" in text


def test_a_bilingual_mix_gets_both_languages_and_every_licence(playground: Playground, tmp_path: Path) -> None:
    out = tmp_path / "out"
    local(playground, out, configs=("mix665k+zh600k",))
    card = DatasetCard.load(out / CARD_FILE)
    assert card.data.language == ["en", "zh"] and card.data.multilinguality == "multilingual"
    assert card.data.license == ["cc-by-4.0", "other"] and "Sources and licences" in card.data.license_details
    assert "### llava_instruct_zh_600k" in card.text and "opencsg2025llavainstructzh" in card.text
    assert "No config of this release is deduplicated." in card.text
    loaded = datasets.load_dataset(str(out), "mix665k+zh600k", split="train")
    assert set(loaded["language"]) == {"en", "zh"}
    assert check_repo(out) == []


def test_republishing_a_version_with_identical_content_is_a_no_op(playground: Playground, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert local(playground, out).changed
    before = tree(out)
    again = local(playground, out)
    assert not again.changed and again.revision is None
    assert tree(out) == before


def test_a_released_version_is_never_changed_and_versions_only_go_up(playground: Playground, tmp_path: Path) -> None:
    out = tmp_path / "out"
    local(playground, out)
    before = tree(out)
    with pytest.raises(PublishError, match=r"version 1\.0\.0 .* already exists with different content .* 1\.0\.1"):
        local(playground, out, images="paths")
    with pytest.raises(PublishError, match=r"different content for mix665k;"):
        local(playground, out, configs=("mix665k",))
    with pytest.raises(PublishError, match=r"version 0\.9\.0 is not higher than the latest release, 1\.0\.0"):
        local(playground, out, version="0.9.0")
    assert tree(out) == before


def test_publishing_one_config_later_keeps_every_config_already_released(
    playground: Playground, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    local(playground, out)
    first = tree(out)
    local(playground, out, version="1.1.0", configs=("mix665k",))
    card = DatasetCard.load(out / CARD_FILE)
    configs = MetadataConfigs.from_dataset_card_data(card.data)
    assert sorted(configs) == ["mix665k", DEDUP] and configs.get_default_config_name() == DEDUP
    assert sorted(DatasetInfosDict.from_dataset_card_data(card.data)) == ["mix665k", DEDUP]
    assert all(tree(out)[path] == data for path, data in first.items() if path.startswith(DEDUP))
    assert "### v1.1.0" in card.text and "- added `mix665k`" in card.text and "### v1.0.0" in card.text
    assert datasets.load_dataset(str(out), "mix665k", split="train").num_rows == 49

    result = local(playground, out, version="1.2.0", max_shard_size="20KB", set_default=True)
    assert f"{DEDUP}/train-00000-of-00001.parquet" in result.deleted
    files = tree(out)
    assert f"{DEDUP}/train-00000-of-00001.parquet" not in files
    assert len([path for path in files if path.startswith(f"{DEDUP}/train-")]) > 1
    assert [path for path in files if path.startswith("mix665k/")] == ["mix665k/train-00000-of-00001.parquet"]
    assert datasets.load_dataset(str(out), DEDUP, split="train").num_rows == 42
    manifest = json.loads(files[MANIFEST_FILE])
    assert [release["version"] for release in manifest["versions"]] == ["1.0.0", "1.1.0", "1.2.0"]
    assert "- updated `mix665k-dedup-0.8` (new data)" in DatasetCard.load(out / CARD_FILE).text
    assert check_repo(out) == []


def test_paths_only_leaves_the_image_column_out(playground: Playground, tmp_path: Path) -> None:
    out = tmp_path / "out"
    local(playground, out, images="paths")
    loaded = datasets.load_dataset(str(out), DEDUP, split="train")
    assert "image" not in loaded.column_names and loaded.filter(lambda row: row["image_path"] is not None).num_rows
    assert check_repo(out) == []
    assert f"except in `{DEDUP}`, whose rows name it by `image_path`" in (out / CARD_FILE).read_text()
    with_bytes = tmp_path / "bytes"
    local(playground, with_bytes)
    size = sum(len(data) for path, data in tree(out).items() if path.endswith(".parquet"))
    assert size < sum(len(data) for path, data in tree(with_bytes).items() if path.endswith(".parquet")) / 2


@pytest.mark.parametrize(
    ("name", "kwargs", "published"),
    [
        ("mix665k", {}, "mix665k"),
        ("mix665k-dedup-0.8", {}, "mix665k-dedup-0.8"),
        ("mix665k", {"dedup_threshold": 0.85}, "mix665k-dedup-0.85"),
        ("mix665k+zh600k-dedup-0.9", {"dedup_scope": "global"}, "mix665k+zh600k-dedup-0.9-global"),
    ],
)
def test_a_config_built_with_other_dedup_settings_is_published_under_its_own_name(
    name: str, kwargs: dict[str, object], published: str
) -> None:
    base = next(config for config in LlavaMixes.BUILDER_CONFIGS if config.name == name)
    assert published_name(dataclasses.replace(base, **kwargs)) == published


def test_the_hub_push_commits_once_tags_the_commit_and_matches_the_local_tree(
    playground: Playground, tmp_path: Path
) -> None:
    api = RecordingHubApi()
    result = release([DEDUP], REPO, "1.0.0", str(playground.root), api=api, private=True, config_kwargs=THUMBNAIL)
    assert result.changed and result.revision == api.head
    assert api.methods().count("create_commit") == 1
    create_repo = dict(api.calls)["create_repo"]
    assert create_repo == {"repo_id": REPO, "repo_type": "dataset", "private": True, "exist_ok": True}
    commit = dict(api.calls)["create_commit"]
    assert commit["parent_commit"] == EMPTY_SHA and commit["repo_type"] == "dataset"
    assert api.calls[-1] == (
        "create_tag",
        {
            "repo_id": REPO,
            "tag": "v1.0.0",
            "revision": api.head,
            "tag_message": f"Publish v1.0.0: {DEDUP}",
            "repo_type": "dataset",
        },
    )
    pushed = api.export(tmp_path / "pushed")
    local(playground, tmp_path / "local")
    assert tree(pushed) == tree(tmp_path / "local")
    assert check_repo(pushed) == []
    assert datasets.load_dataset(str(pushed), DEDUP, split="removed").num_rows == 7

    commits = api.methods().count("create_commit")
    assert not release([DEDUP], REPO, "1.0.0", str(playground.root), api=api, config_kwargs=THUMBNAIL).changed
    with pytest.raises(PublishError, match="already exists with different content"):
        release([DEDUP], REPO, "1.0.0", str(playground.root), api=api, images="paths", config_kwargs=THUMBNAIL)
    assert api.methods().count("create_commit") == commits

    release(["mix665k"], REPO, "1.1.0", str(playground.root), api=api, config_kwargs=THUMBNAIL)
    assert sorted(api.tags) == ["v1.0.0", "v1.1.0"]
    at_first_release = api.export(tmp_path / "v1.0.0", revision=api.tags["v1.0.0"])
    assert not (at_first_release / "mix665k").exists()
    assert sorted(MetadataConfigs.from_dataset_card_data(DatasetCard.load(pushed / CARD_FILE).data)) == [DEDUP]
    head = api.export(tmp_path / "head")
    assert sorted(MetadataConfigs.from_dataset_card_data(DatasetCard.load(head / CARD_FILE).data)) == [
        "mix665k",
        DEDUP,
    ]


def test_a_tag_the_manifest_does_not_know_is_refused_before_building(playground: Playground) -> None:
    api = RecordingHubApi()
    api.tags["v2.0.0"] = EMPTY_SHA
    with pytest.raises(PublishError, match=r"tag v2\.0\.0 exists but the manifest has no release 2\.0\.0"):
        release([DEDUP], REPO, "2.0.0", str(playground.root), api=api, config_kwargs=THUMBNAIL)
    assert "create_commit" not in api.methods()


def test_the_token_never_reaches_logs_card_or_errors(
    playground: Playground, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    api = RecordingHubApi()
    release([DEDUP], REPO, "1.0.0", str(playground.root), api=api, token=SECRET, config_kwargs=THUMBNAIL)
    pushed = tree(api.export(tmp_path / "pushed"))
    assert SECRET not in pushed[CARD_FILE].decode() and SECRET not in pushed[MANIFEST_FILE].decode()
    api.fail_with = http_error(401, f"401 Client Error: Unauthorized (token {SECRET} is invalid)")
    with pytest.raises(PublishError) as raised:
        release([DEDUP], REPO, "1.0.1", str(playground.root), api=api, token=SECRET, config_kwargs=THUMBNAIL)
    message = str(raised.value)
    assert SECRET not in message and "401" in message and "hf auth login" in message
    assert raised.value.__cause__ is None and raised.value.__context__ is not None
    assert SECRET not in caplog.text


def test_offline_push_from_the_cli_fails_with_one_clean_line(
    playground: Playground, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("HF_TOKEN", SECRET)
    argv = ["publish", DEDUP, "--repo", REPO, "--version", "1.0.0", "--data-dir", str(playground.root)]
    assert main([*argv, "--embedder", "thumbnail"]) == 2
    assert "creating the repo on the Hub dataset demo/llava_mixes failed" in caplog.text
    assert SECRET not in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"version": "1.0"}, r"--version '1\.0' is not allowed; it must be X\.Y\.Z"),
        ({"repo_id": "llava_mixes"}, r"--repo 'llava_mixes' is not allowed; it must be ORG/NAME"),
        ({"configs": ["nope"]}, r"unknown config 'nope'; choose one of \['mix665k'"),
        ({"images": "gif"}, r"unknown images value 'gif'; choose one of \['bytes', 'paths'\]"),
    ],
)
def test_bad_arguments_are_refused_with_the_allowed_values(
    playground: Playground, tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    arguments: dict[str, object] = {"configs": [DEDUP], "repo_id": REPO, "version": "1.0.0", **kwargs}
    with pytest.raises(ConfigError, match=message):
        release(data_dir=str(playground.root), local_dir=tmp_path / "out", **arguments)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


@pytest.mark.integration
@pytest.mark.skipif(
    not (os.environ.get("HF_TOKEN") and os.environ.get("LLAVA_MIXES_HUB_NAMESPACE")),
    reason="needs HF_TOKEN and LLAVA_MIXES_HUB_NAMESPACE (a user or org the token may create repos in)",
)
def test_publish_to_the_real_hub(playground: Playground, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    repo_id = f"{os.environ['LLAVA_MIXES_HUB_NAMESPACE']}/llava_mixes-test-{uuid.uuid4().hex[:8]}"
    api = huggingface_hub.HfApi()
    try:
        result = release([DEDUP], repo_id, "1.0.0", str(playground.root), private=True, config_kwargs=THUMBNAIL)
        assert result.changed
        assert "v1.0.0" in {ref.name for ref in api.list_repo_refs(repo_id, repo_type="dataset").tags}
        loaded = datasets.load_dataset(repo_id, DEDUP, revision="v1.0.0", split="train", streaming=True)
        assert next(iter(loaded))["image"].size[0] > 0
        assert not release([DEDUP], repo_id, "1.0.0", str(playground.root), config_kwargs=THUMBNAIL).changed
    finally:
        api.delete_repo(repo_id, repo_type="dataset", missing_ok=True)


def test_card_shows_the_threshold_sweep_and_pairs_whose_labels_match_the_split(
    playground: Playground, tmp_path: Path
) -> None:
    local(playground, tmp_path / "out")
    files = tree(tmp_path / "out")
    text = DatasetCard.load(tmp_path / "out" / CARD_FILE).text
    assert "| group | images | kept at 0.7 | kept at 0.8 | kept at 0.9 |" in text
    assert "| total | 44 |" in text
    removed_ids = set(datasets.load_dataset(str(tmp_path / "out"), DEDUP, split="removed")["id"])
    manifest = json.loads(files[MANIFEST_FILE])
    pairs = manifest["configs"][DEDUP]["views"]["pairs"]
    assert len(pairs) >= 2 and [pair["similarity"] for pair in pairs] == sorted(
        (pair["similarity"] for pair in pairs), reverse=True
    )
    for pair in pairs:
        for side in ("earlier", "later"):
            assert files[pair[side]["file"]][:2] == b"\xff\xd8"  # a JPEG thumbnail in the repo
            assert f"![{pair[side]['id']}]({pair[side]['file']})" in text
        assert pair["later"]["kept"]["0.8"] == (pair["later"]["id"] not in removed_ids)
        assert pair["later"]["kept"]["0.8"] or pair["similarity"] >= 0.8
    assert any(not pair["later"]["kept"]["0.8"] for pair in pairs)


def test_card_views_can_be_left_out_and_never_change_a_release(playground: Playground, tmp_path: Path) -> None:
    local(playground, tmp_path / "out", card_views=False)
    assert not [path for path in tree(tmp_path / "out") if "/pairs/" in path]
    assert "kept at 0.7" not in (tmp_path / "out" / CARD_FILE).read_text()
    assert not local(playground, tmp_path / "out").changed
