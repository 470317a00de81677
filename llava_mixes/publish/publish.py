"""Publish built configs as a versioned, viewer-ready Hub dataset repo, or the identical tree in a local folder.

A publish takes built configs (`building.Built`; `llava_mixes.workflows.release` builds and publishes in one call),
writes their Parquet shards (`parquet`), merges them into the repo's manifest (`manifest`: every config with its files'
SHA-256s, and every release with each config's content digest), renders the card from the manifest (`card`),
and commits data, card and manifest at once; on the Hub the commit is then tagged `vX.Y.Z`.

The repo is untrusted: its manifest is checked before use (`manifest.parse_manifest`) and must render the card;
a publish deletes only files the manifest records for the configs it republishes, and refuses to leave in a
config's folder a file the card's `data_files` would read that the new manifest does not record. A local folder
is locked for the whole read-modify-commit and committed through a journal (`local`).

Version rules, the same for a local folder (whose releases are those its manifest records) and the Hub:
- a version not yet released must be higher than the latest one;
- republishing a released version with identical content (the same data files, byte for byte) is a
  no-op; with different content, or with a config that release did not have, it is refused;
- publishing some configs keeps every other config already in the repo, its files and its card entry.

On the Hub, a branch (`branch`, created from `main` when absent) has its own manifest, read from that branch,
but tags are repo-wide, so versions are global: a new version must also be higher than every `vX.Y.Z` tag.
A pull request (`create_pr`) carries the release commit and is not tagged: a tag on an unmerged commit would
be a release that can still change. Once it is merged, the same publish without `create_pr` finds the
release in the branch's manifest with identical content, writes no data, and tags the branch's head, provided
that release is still the branch's latest. A local folder has no branches, pull requests or tags.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huggingface_hub import HfApi
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from llava_mixes.errors import CacheWriteError, ConfigError, PublishError, unknown_choice
from llava_mixes.publish.card import render_card
from llava_mixes.publish.card_views import dedup_views
from llava_mixes.publish.local import LocalRepo
from llava_mixes.publish.manifest import (
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    VERSION_PATTERN,
    empty_manifest,
    parse_manifest,
    recorded_files,
    unrecorded_read,
    version_key,
)
from llava_mixes.publish.parquet import DEFAULT_MAX_SHARD_SIZE, IMAGE_MODES, export_config, parse_shard_size
from llava_mixes.publish.repos import HubRepo, Target, redact

if TYPE_CHECKING:
    from llava_mixes.building.entry import Built
    from llava_mixes.report.analysis import CardSummary

logger = logging.getLogger(__name__)

CARD_FILE = "README.md"
RENDER_FAULTS = (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError, OverflowError)
"""What rendering the card raises on a manifest field of the wrong shape: the manifest is then damaged."""
REPO_PATTERN = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
BRANCH_PATTERN = re.compile(r"^(?!refs/)(?!.*\.\.)(?!.*//)[A-Za-z0-9][\w./-]*(?<![./])$")
TAG_PATTERN = re.compile(r"^v((0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*))$")


@dataclass
class PublishResult:
    """What a publish did: `changed` is False when the release already held this content."""

    target: str
    version: str
    configs: list[str]
    changed: bool
    revision: str | None = None
    written: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    pr_url: str | None = None
    tagged: bool = False


def _package_version() -> str:
    try:
        return package_version("llava_mixes")
    except PackageNotFoundError:
        return "unknown"


def check_arguments(
    repo_id: str, version: str, images: str, max_shard_size: str | int = DEFAULT_MAX_SHARD_SIZE
) -> None:
    """Refuse a repo id, version, image mode or shard size that is not allowed, naming it and what is."""
    if not REPO_PATTERN.fullmatch(repo_id) or not _hub_takes(repo_id):
        raise ConfigError(
            f"--repo {repo_id!r} is not allowed; it must be ORG/NAME as the Hub takes it (letters, digits, '-', '_', "
            "'.'; no '--' or '..'), e.g. my-org/llava_mixes"
        )
    if not VERSION_PATTERN.fullmatch(version):
        raise ConfigError(f"--version {version!r} is not allowed; it must be X.Y.Z, e.g. 1.0.0")
    if images not in IMAGE_MODES:
        raise unknown_choice("images", images, IMAGE_MODES)
    parse_shard_size(max_shard_size)


def _hub_takes(repo_id: str) -> bool:
    """Whether the Hub's own rules ('--', '..', '.git', length) allow `repo_id`."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        return False
    return True


def check_target(local_dir: str | Path | None, branch: str | None, create_pr: bool) -> None:
    """Refuse a branch name git would not take, and a branch or pull request for a local folder (which has none)."""
    if local_dir is not None and (branch is not None or create_pr):
        flags = " and ".join(flag for flag, on in (("--branch", branch is not None), ("--create-pr", create_pr)) if on)
        raise ConfigError(
            f"{flags} apply to a Hub repo only; --local-dir {str(local_dir)!r} is a folder, which has no branches "
            "or pull requests: leave them out, or publish to the Hub"
        )
    if branch is not None and not BRANCH_PATTERN.fullmatch(branch):
        raise ConfigError(
            f"--branch {branch!r} is not allowed; it must be a branch name such as main or dev "
            "(letters, digits, '.', '_', '-', '/'; not refs/..., no '..')"
        )


def open_target(
    repo_id: str,
    version: str,
    *,
    local_dir: str | Path | None = None,
    private: bool = False,
    token: str | None = None,
    api: HfApi | None = None,
    branch: str | None = None,
    create_pr: bool = False,
) -> Target:
    """The repo to publish to, opened (on `branch`, or for a pull request against it with `create_pr`), after
    refusing (before anything is built) a version that is neither released nor higher than its latest release."""
    check_target(local_dir, branch, create_pr)
    target: Target = (
        LocalRepo(Path(local_dir))
        if local_dir is not None
        else HubRepo(repo_id, api, token, private, branch=branch, create_pr=create_pr)
    )
    try:
        target.open()
        with target.lock():
            check_version(read_manifest(target), target.tags(), version)
    except PublishError as error:
        raise PublishError(redact(str(error), token)) from None
    return target


def read_manifest(target: Target) -> dict[str, Any]:
    """The target's manifest (checked: `manifest.parse_manifest`, and the card renders from it), or an empty one
    for a new repo; refuses a repo llava-mixes did not publish."""
    data = target.read(MANIFEST_FILE)
    if data is None:
        if CARD_FILE in target.files():
            raise PublishError(
                f"{target.describe()} has a {CARD_FILE} but no {MANIFEST_FILE}, so llava-mixes did not publish it; "
                "publish to a new repo or folder"
            )
        return empty_manifest()
    manifest = parse_manifest(data, target.describe())
    if manifest["versions"]:
        try:
            render_card(manifest, "org/name")
        except RENDER_FAULTS as error:
            detail = " ".join(f"{type(error).__name__}: {error}".split())[:200]
            raise PublishError(
                f"{target.describe()}: {MANIFEST_FILE} does not render the card ({detail}); it was not written by "
                "llava-mixes as it is (damaged or edited). Restore it from a good copy, or publish to a new folder "
                "or repo"
            ) from None
    return manifest


def _release(manifest: dict[str, Any], version: str) -> dict[str, Any] | None:
    return next((entry for entry in manifest["versions"] if entry["version"] == version), None)


def check_version(manifest: dict[str, Any], tags: set[str], version: str) -> None:
    """Refuse, before anything is built, a version that is neither released nor higher than the latest release."""
    if _release(manifest, version) is not None:
        return
    if f"v{version}" in tags:
        raise PublishError(
            f"the tag v{version} exists but the manifest has no release {version}; choose another version"
        )
    if manifest["versions"]:
        latest = manifest["versions"][-1]["version"]
        if version_key(version) <= version_key(latest):
            raise PublishError(
                f"version {version} is not higher than the latest release, {latest}; versions only go up"
            )
    tagged = sorted(version_key(match[1]) for match in map(TAG_PATTERN.fullmatch, tags) if match)
    if tagged and version_key(version) <= tagged[-1]:
        highest = ".".join(map(str, tagged[-1]))
        raise PublishError(
            f"version {version} is not higher than v{highest}, the highest release tag of the repo (tags are "
            "repo-wide, so a release on any branch counts); versions only go up"
        )


def merge(
    manifest: dict[str, Any], entries: dict[str, dict[str, Any]], version: str, set_default: bool
) -> dict[str, Any]:
    """The manifest after releasing `entries` (new or replaced configs) as `version`; other configs stay."""
    configs = {**manifest["configs"], **entries}
    default = manifest.get("default")
    if set_default or default not in configs:
        default = next(iter(entries))
    release = {
        "version": version,
        "date": datetime.now(timezone.utc).date().isoformat(),
        "package_version": _package_version(),
        "published": list(entries),
        "configs": {name: configs[name]["content"] for name in sorted(configs)},
    }
    return {
        "format": MANIFEST_FORMAT,
        "default": default,
        "configs": dict(sorted(configs.items())),
        "versions": [*manifest["versions"], release],
    }


def _differences(release: dict[str, Any], entries: dict[str, dict[str, Any]]) -> list[str]:
    """The configs whose content is not the release's (a config the release did not have included)."""
    return [name for name, entry in entries.items() if release["configs"].get(name) != entry["content"]]


def _stale(manifest: dict[str, Any], entries: dict[str, dict[str, Any]]) -> dict[str, str]:
    """`{path: recorded sha256}` of the files the manifest records for the republished configs that the new release
    does not have (e.g. after a shard count change): the only files a publish deletes."""
    old = recorded_files(manifest, entries)
    new = recorded_files({"configs": entries})
    return {path: record["sha256"] for path, record in sorted(old.items()) if path not in new}


def _check_unrecorded(target: Target, files: list[str], manifest: dict[str, Any]) -> None:
    """Refuse a release whose card would read a file its manifest does not record (a file someone put in a config's
    folder, or one a killed publish left): it is not deleted, since llava-mixes did not write it."""
    found = unrecorded_read(files, manifest)
    if found:
        shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        raise PublishError(
            f"{target.describe()} holds {shown}, which the card's data_files would load as part of the release but "
            "which llava-mixes did not write; move it out of the config's folder, then publish again"
        )


@contextmanager
def _writing(folder: Path) -> Iterator[None]:
    """Turn a failed write of the release into `folder` (a full disk, a read-only folder) into one `PublishError`."""
    try:
        yield
    except CacheWriteError as error:
        raise PublishError(f"writing the release into {folder} failed: {error.__cause__ or error}") from None
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        where = f"{error.filename}: " if error.filename else ""
        raise PublishError(
            f"writing the release into {folder} failed ({where}{reason}); free some space or make it writable"
        ) from None


def publish(
    built: Sequence[Built],
    target: Target,
    repo_id: str,
    version: str,
    *,
    images: str = "bytes",
    max_shard_size: str | int = DEFAULT_MAX_SHARD_SIZE,
    set_default: bool = False,
    views: Mapping[str, CardSummary] | None = None,
    token: str | None = None,
    commit_message: str | None = None,
) -> PublishResult:
    """Release the `built` configs as `version` of `repo_id` in `target` (see `open_target`).

    `views` maps a dedup config's name to the card summary of the analysis of its plain rows; the card then shows its
    threshold sweep and a few near-duplicate pairs (see `llava_mixes.publish.card_views`). `commit_message` replaces
    the default `Publish vX.Y.Z: CONFIGS` of the commit and its tag. `token` is only scrubbed
    from errors: it never appears in logs, in the card or in an error message.
    """
    if not built:
        raise ConfigError("name at least one config to publish")
    check_arguments(repo_id, version, images, max_shard_size)
    try:
        with target.lock():
            return _publish(
                target, built, repo_id, version, images, max_shard_size, set_default, views or {}, commit_message
            )
    except PublishError as error:
        raise PublishError(redact(str(error), token)) from None


def _publish(
    target: Target,
    built: Sequence[Built],
    repo_id: str,
    version: str,
    images: str,
    max_shard_size: str | int,
    set_default: bool,
    views: Mapping[str, CardSummary],
    commit_message: str | None = None,
) -> PublishResult:
    manifest = read_manifest(target)
    check_version(manifest, target.tags(), version)
    with target.staging() as staging:
        entries: dict[str, dict[str, Any]] = {}
        for config in built:
            dataset, report = config.dataset, config.report
            with _writing(staging):
                entry = export_config(dataset, report, config.config, staging, images, max_shard_size)
                summary = views.get(config.config.name)
                if config.config.is_dedup and summary is not None:
                    entry["views"], entry["card_files"] = dedup_views(summary, config.base, entry["name"], staging)
            entries[entry["name"]] = entry
        release = _release(manifest, version)
        if release is not None:
            differing = _differences(release, entries)
            if differing:
                raise PublishError(
                    f"version {version} of {target.describe()} already exists with different content for "
                    f"{', '.join(differing)}; a release never changes: publish a new version, e.g. "
                    f"{_next_patch(manifest['versions'][-1]['version'])}"
                )
            logger.info("version %s already holds this content: nothing to publish", version)
            result = PublishResult(target.describe(), version, list(entries), changed=False)
            if target.keeps_tags and f"v{version}" not in target.tags():
                _tag_merged(target, manifest, version, commit_message or f"Publish v{version}: {', '.join(entries)}")
                result.revision, result.tagged = target.head(), True
            return result
        updated = merge(manifest, entries, version, set_default)
        files = target.files()
        deletions = {path: digest for path, digest in _stale(manifest, entries).items() if path in files}
        additions = {path: record["sha256"] for path, record in recorded_files({"configs": entries}).items()}
        _check_unrecorded(target, sorted({*files, *additions} - set(deletions)), updated)
        for name, data in (
            (CARD_FILE, render_card(updated, repo_id).encode()),
            (MANIFEST_FILE, json.dumps(updated, indent=1, ensure_ascii=False).encode()),
        ):
            with _writing(staging):
                (staging / name).write_bytes(data)
            additions[name] = hashlib.sha256(data).hexdigest()
        message = commit_message or f"Publish v{version}: {', '.join(entries)}"
        commit = target.commit(staging, additions, deletions, message)
        if not target.create_pr:
            target.tag(f"v{version}", commit.revision, message)
    return PublishResult(
        target.describe(),
        version,
        list(entries),
        True,
        commit.revision,
        list(additions),
        list(deletions),
        commit.pr_url,
        tagged=not target.create_pr,
    )


def _tag_merged(target: Target, manifest: dict[str, Any], version: str, message: str) -> None:
    """Tag the head as `v{version}`: a release that came in through a merged pull request and has no tag yet.
    Refused with `create_pr` (tagging is the maintainer's step) and when a later release followed it (the head
    then holds more than that release)."""
    latest = manifest["versions"][-1]["version"]
    if target.create_pr:
        raise PublishError(
            f"version {version} is already merged into {target.describe()} but not tagged; run the same publish "
            "without --create-pr to tag it"
        )
    if latest != version:
        raise PublishError(
            f"version {version} of {target.describe()} is merged but not tagged, and {latest} was released after "
            f"it, so the head is not that release: tag the commit that merged it by hand "
            f"(hf repos tag create REPO v{version} --revision COMMIT --repo-type dataset)"
        )
    target.tag(f"v{version}", target.head(), message)
    logger.info("v%s was merged but untagged: tagged %s", version, target.head())


def _next_patch(version: str) -> str:
    major, minor, patch = version_key(version)
    return f"{major}.{minor}.{patch + 1}"
