"""Publish configs as a versioned, viewer-ready Hub dataset repo, or write the identical tree to a local folder.

A publish builds each config (reusing the embedding cache), writes its Parquet shards (`export`), merges
them into the repo's manifest (`llava_mixes_manifest.json`: every config with its files' SHA-256s, and
every release with each config's content digest), renders the card from the manifest (`card`), and
commits data, card and manifest at once; on the Hub the commit is then tagged `vX.Y.Z`.

Version rules, the same for a local folder (whose releases are those its manifest records) and the Hub:
- a version not yet released must be higher than the latest one;
- republishing a released version with identical content (the same data files, byte for byte) is a
  no-op; with different content, or with a config that release did not have, it is refused;
- publishing some configs keeps every other config already in the repo, its files and its card entry.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi

from llava_mixes.errors import ConfigError, PublishError
from llava_mixes.publish.card import render_card
from llava_mixes.publish.card_views import dedup_views
from llava_mixes.publish.parquet import DEFAULT_MAX_SHARD_SIZE, IMAGE_MODES, build_config, config_names, export_config
from llava_mixes.publish.repos import HubRepo, LocalRepo, Target, redact
from llava_mixes.store import write_atomic

logger = logging.getLogger(__name__)

MANIFEST_FILE = "llava_mixes_manifest.json"
CARD_FILE = "README.md"
MANIFEST_FORMAT = 1
VERSION_PATTERN = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
REPO_PATTERN = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


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


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _package_version() -> str:
    try:
        return package_version("llava_mixes")
    except PackageNotFoundError:
        return "unknown"


def _validate(configs: Sequence[str], repo_id: str, version: str, images: str) -> None:
    if not configs:
        raise ConfigError(f"name at least one config to publish; choose from {config_names()}")
    unknown = [name for name in configs if name not in config_names()]
    if unknown:
        raise ConfigError(f"config {unknown[0]!r} is not allowed; choose one of {config_names()}")
    if not REPO_PATTERN.match(repo_id):
        raise ConfigError(f"--repo {repo_id!r} is not allowed; it must be ORG/NAME, e.g. my-org/llava_mixes")
    if not VERSION_PATTERN.match(version):
        raise ConfigError(f"--version {version!r} is not allowed; it must be X.Y.Z, e.g. 1.0.0")
    if images not in IMAGE_MODES:
        raise ConfigError(f"--images {images!r} is not allowed; choose one of {list(IMAGE_MODES)}")


def read_manifest(target: Target) -> dict[str, Any]:
    """The target's manifest, or an empty one for a new repo; refuses a repo llava-mixes did not publish."""
    data = target.read(MANIFEST_FILE)
    if data is None:
        if CARD_FILE in target.files():
            raise PublishError(
                f"{target.describe()} has a {CARD_FILE} but no {MANIFEST_FILE}, so llava-mixes did not publish it; "
                "publish to a new repo or folder"
            )
        return {"format": MANIFEST_FORMAT, "default": None, "configs": {}, "versions": []}
    manifest = json.loads(data)
    if manifest.get("format") != MANIFEST_FORMAT:
        raise PublishError(
            f"{target.describe()}: {MANIFEST_FILE} has format {manifest.get('format')!r}; this llava_mixes "
            f"writes format {MANIFEST_FORMAT}: upgrade llava_mixes"
        )
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
        if _version_key(version) <= _version_key(latest):
            raise PublishError(
                f"version {version} is not higher than the latest release, {latest}; versions only go up"
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


def _repo_files(entries: dict[str, dict[str, Any]]) -> list[str]:
    """Every file the entries put in the repo: data shards and the card's thumbnails."""
    return sorted(path for entry in entries.values() for path in [*entry["files"], *entry.get("card_files", {})])


def _stale(files: list[str], entries: dict[str, dict[str, Any]]) -> list[str]:
    """Files of the republished configs that the new release does not have (e.g. after a shard count change)."""
    keep = set(_repo_files(entries))
    return [path for path in files if path.split("/")[0] in entries and path not in keep]


def publish(
    configs: Sequence[str],
    repo_id: str,
    version: str,
    data_dir: str,
    *,
    local_dir: str | Path | None = None,
    private: bool = False,
    images: str = "bytes",
    max_shard_size: str | int = DEFAULT_MAX_SHARD_SIZE,
    set_default: bool = False,
    cache_dir: str | None = None,
    token: str | None = None,
    api: HfApi | None = None,
    config_kwargs: dict[str, object] | None = None,
    card_views: bool = True,
) -> PublishResult:
    """Build `configs` and release them as `version` of `repo_id` (or of the tree in `local_dir`).

    With `card_views`, the card also shows each dedup config's threshold sweep and a few near-duplicate
    pairs (see `llava_mixes.publish.card_views`), computed from the cached embeddings in one pass.

    The Hub token comes from `token` or, when None, from huggingface_hub's usual sources (`HF_TOKEN`, the
    stored login). It never appears in logs, in the card or in an error message.
    """
    _validate(configs, repo_id, version, images)
    target: Target = LocalRepo(Path(local_dir)) if local_dir is not None else HubRepo(repo_id, api, token, private)
    request = _Request(
        tuple(configs),
        repo_id,
        version,
        data_dir,
        images,
        max_shard_size,
        set_default,
        cache_dir,
        config_kwargs or {},
        card_views,
    )
    try:
        return _publish(target, request)
    except PublishError as error:
        raise PublishError(redact(str(error), token)) from None


@dataclass(frozen=True)
class _Request:
    configs: tuple[str, ...]
    repo_id: str
    version: str
    data_dir: str
    images: str
    max_shard_size: str | int
    set_default: bool
    cache_dir: str | None
    config_kwargs: dict[str, object]
    card_views: bool


def _publish(target: Target, request: _Request) -> PublishResult:
    version = request.version
    target.open()
    manifest = read_manifest(target)
    check_version(manifest, target.tags(), version)
    with target.staging() as staging:
        entries: dict[str, dict[str, Any]] = {}
        for name in request.configs:
            dataset, report, config = build_config(name, request.data_dir, request.cache_dir, **request.config_kwargs)
            entry = export_config(dataset, report, config, staging, request.images, request.max_shard_size)
            if config.is_dedup and request.card_views:
                entry["views"], entry["card_files"] = dedup_views(
                    config, entry["name"], staging, request.data_dir, request.cache_dir, request.config_kwargs
                )
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
            return PublishResult(target.describe(), version, list(entries), changed=False)
        updated = merge(manifest, entries, version, request.set_default)
        write_atomic(staging / CARD_FILE, render_card(updated, request.repo_id).encode())
        write_atomic(staging / MANIFEST_FILE, json.dumps(updated, indent=1, ensure_ascii=False).encode())
        additions = [*_repo_files(entries), CARD_FILE, MANIFEST_FILE]
        deletions = _stale(target.files(), entries)
        message = f"Publish v{version}: {', '.join(entries)}"
        revision = target.commit(staging, additions, deletions, message)
        target.tag(f"v{version}", revision, message)
    return PublishResult(target.describe(), version, list(entries), True, revision, additions, deletions)


def _next_patch(version: str) -> str:
    major, minor, patch = _version_key(version)
    return f"{major}.{minor}.{patch + 1}"


def cmd_publish(args: argparse.Namespace) -> int:
    """`llava-mixes publish`: build configs and release them as a version of a Hub repo (or a local tree)."""
    from llava_mixes.cli.main import _config_kwargs, _out

    result = publish(
        args.configs,
        args.repo,
        args.version,
        args.data_dir,
        local_dir=args.local_dir,
        private=args.private,
        images=args.images,
        max_shard_size=args.max_shard_size,
        set_default=args.set_default,
        cache_dir=args.cache_dir,
        config_kwargs=_config_kwargs(args),
        card_views=not args.no_card_views,
    )
    if not result.changed:
        _out(f"v{result.version} of {result.target} already holds {', '.join(result.configs)}: nothing to do")
        return 0
    _out(f"published v{result.version} of {', '.join(result.configs)} to {result.target} ({result.revision})")
    _out(f"  {len(result.written)} files written, {len(result.deleted)} removed")
    return 0
