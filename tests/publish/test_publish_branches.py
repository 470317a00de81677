"""`publish --branch` and `--create-pr` against the recording fake Hub: what is committed where, which tags exist."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from fake_hub import EMPTY_SHA, RecordingHubApi, http_error

from llava_mixes.cli.main import main
from llava_mixes.errors import ConfigError, PublishError
from llava_mixes.playground.layout import Playground
from llava_mixes.publish.publish import MANIFEST_FILE
from llava_mixes.workflows.release import release

REPO = "demo/llava_mixes"
PLAIN = "mix665k"
SECRET = "hf_" + "Br4nchT0k3n" * 3
FAST = {"config_kwargs": {"embedder": "thumbnail"}, "card_views": False}


def versions(api: RecordingHubApi, revision: str) -> list[str]:
    """The releases the manifest at `revision` records."""
    return [entry["version"] for entry in json.loads(api.trees[revision][MANIFEST_FILE])["versions"]]


def publish(api: RecordingHubApi, playground: Playground, version: str, **kwargs: object):
    return release([PLAIN], REPO, version, str(playground.root), api=api, **FAST, **kwargs)  # type: ignore[arg-type]


def test_a_branch_release_commits_to_the_branch_made_from_main_and_versions_stay_global(
    playground: Playground,
) -> None:
    api = RecordingHubApi()
    publish(api, playground, "1.0.0")
    main_head = api.head
    result = publish(api, playground, "1.1.0", branch="dev")
    assert result.changed and result.tagged and result.target == f"the Hub dataset {REPO} (branch dev)"
    assert (
        "create_branch",
        {"repo_id": REPO, "branch": "dev", "revision": None, "repo_type": "dataset", "exist_ok": True},
    ) in api.calls
    commit = [kwargs for method, kwargs in api.calls if method == "create_commit"][-1]
    assert commit["revision"] == "dev" and commit["parent_commit"] == main_head and not commit["create_pr"]
    assert api.head == main_head and api.branches["dev"] == result.revision
    assert api.tags == {"v1.0.0": main_head, "v1.1.0": api.branches["dev"]}
    assert versions(api, api.branches["dev"]) == ["1.0.0", "1.1.0"] and versions(api, main_head) == ["1.0.0"]

    commits = api.methods().count("create_commit")
    again = publish(api, playground, "1.1.0", branch="dev")
    assert not again.changed and not again.tagged
    with pytest.raises(PublishError, match=r"tag v1\.1\.0 exists but the manifest has no release 1\.1\.0"):
        publish(api, playground, "1.1.0")
    with pytest.raises(
        PublishError, match=r"1\.0\.5 is not higher than v1\.1\.0, the highest release tag .* repo-wide"
    ):
        publish(api, playground, "1.0.5")
    assert api.methods().count("create_commit") == commits and api.head == main_head


def test_a_pull_request_is_not_tagged_and_the_same_publish_after_the_merge_only_tags(playground: Playground) -> None:
    api = RecordingHubApi()
    opened = publish(api, playground, "1.0.0", create_pr=True)
    assert opened.changed and not opened.tagged and opened.pr_url == f"fake://{REPO}/discussions/1"
    commit = dict(api.calls)["create_commit"]
    assert commit["create_pr"] is True and commit["parent_commit"] == EMPTY_SHA and commit["revision"] is None
    assert api.head == EMPTY_SHA and api.tags == {} and "create_tag" not in api.methods()
    assert versions(api, api.prs[1][0]) == ["1.0.0"]

    merged = api.merge_pr(1)
    with pytest.raises(PublishError, match=r"1\.0\.0 is already merged .* not tagged; run the same publish without"):
        publish(api, playground, "1.0.0", create_pr=True)
    commits = api.methods().count("create_commit")
    tagged = publish(api, playground, "1.0.0")
    assert not tagged.changed and tagged.tagged and tagged.revision == merged
    assert api.tags == {"v1.0.0": merged} and api.methods().count("create_commit") == commits
    again = publish(api, playground, "1.0.0")
    assert not again.tagged and api.methods().count("create_tag") == 1


def test_a_merged_release_with_a_later_one_after_it_is_not_tagged_at_the_head(playground: Playground) -> None:
    api = RecordingHubApi()
    publish(api, playground, "1.0.0", create_pr=True)
    api.merge_pr(1)
    publish(api, playground, "1.1.0")
    with pytest.raises(PublishError, match=r"1\.1\.0 was released after it, so the head is not that release"):
        publish(api, playground, "1.0.0")
    assert sorted(api.tags) == ["v1.1.0"]


def test_a_pull_request_needs_an_existing_branch(playground: Playground) -> None:
    api = RecordingHubApi()
    with pytest.raises(PublishError, match=r"has no branch 'nope' for a pull request to merge into"):
        publish(api, playground, "1.0.0", branch="nope", create_pr=True)
    assert "create_branch" not in api.methods() and "create_commit" not in api.methods()
    api.branches["review"] = EMPTY_SHA
    opened = publish(api, playground, "1.0.0", branch="review", create_pr=True)
    assert api.prs[1][1] == "review" and opened.pr_url and api.branches["review"] == EMPTY_SHA


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"branch": "dev"}, r"--branch apply to a Hub repo only; --local-dir '.*' is a folder, which has no branches"),
        ({"create_pr": True}, r"--create-pr apply to a Hub repo only"),
        ({"branch": "dev", "create_pr": True}, r"--branch and --create-pr apply to a Hub repo only"),
    ],
)
def test_a_local_folder_refuses_branches_and_pull_requests(
    playground: Playground, tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        release([PLAIN], REPO, "1.0.0", str(playground.root), local_dir=tmp_path / "out", **FAST, **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("branch", ["refs/pr/1", "a..b", "-x", "dev/", "two words"])
def test_a_branch_git_would_not_take_is_refused(playground: Playground, branch: str) -> None:
    api = RecordingHubApi()
    with pytest.raises(ConfigError, match=rf"--branch '{branch}' is not allowed; it must be a branch name"):
        publish(api, playground, "1.0.0", branch=branch)
    assert api.calls == []


def test_the_cli_opens_a_pull_request_then_tags_it_and_never_shows_the_token(
    playground: Playground,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    api = RecordingHubApi()
    api.branches["dev"] = EMPTY_SHA
    monkeypatch.setattr("llava_mixes.publish.repos.HfApi", lambda token=None: api)
    argv = ["publish", PLAIN, "--repo", REPO, "--version", "1.0.0", "--data-dir", str(playground.root)]
    argv += ["--no-card-views", "--token", SECRET, "--revision", "dev"]
    assert main([*argv, "--create-pr"]) == 0
    text = capsys.readouterr().out
    assert f"opened a pull request with v1.0.0 of {PLAIN} on the Hub dataset {REPO} (branch dev):" in text
    assert f"fake://{REPO}/discussions/1" in text
    assert "run this publish again without --create-pr to tag v1.0.0" in text
    api.merge_pr(1)
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert f"tagged v1.0.0 at {api.branches['dev']}; no data written" in text
    assert api.tags == {"v1.0.0": api.branches["dev"]}
    api.fail_with = http_error(401, f"401 Client Error: Unauthorized (token {SECRET} is invalid)")
    assert main([*argv[:5], "1.0.1", *argv[6:], "--create-pr"]) == 2
    assert "401" in caplog.text and SECRET not in caplog.text + text


def test_publish_help_names_the_branch_and_pull_request_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["publish", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--branch BRANCH, --revision BRANCH" in text and "created from main if absent" in text
    assert "--create-pr" in text and "it is not tagged" in text
