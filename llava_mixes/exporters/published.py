"""A copy published by `llava-mixes publish` (a folder or a Hub repo), read back as untrusted input.

The copy is read through its manifest (`llava_mixes_manifest.json`), never through its card: the card's front
matter could point `datasets` at any file on this machine. The manifest names the config's `train` shards with
their SHA-256s and sizes. Each shard must be a file inside the copy's folder (symbolic links followed, see
`paths.contained`) or in the Hub repo (fetched into the HF cache), and match its checksum, before `datasets`
reads it as Parquet. What a row says about its picture is checked by the export (`exporters.pictures`).
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
from huggingface_hub import constants, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import validate_repo_id

from llava_mixes import schema
from llava_mixes.errors import ConfigError, LlavaMixesError, MissingDataError, PathEscapeError
from llava_mixes.network import NETWORK_ERRORS, unreachable
from llava_mixes.outputs import sha256_file
from llava_mixes.paths import check_file_name, contained

logger = logging.getLogger(__name__)

MANIFEST = "llava_mixes_manifest.json"
MAX_MANIFEST_BYTES = 64 << 20
REPO_TYPE = "dataset"
SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_SHARD_PATH = 1000
HUB_WAYS_OUT = (
    "Check the network or HF_ENDPOINT; or set HF_HUB_OFFLINE=1 to read the copy from the HF cache, where an "
    "earlier export left it; or download the repo where the Hub is reachable (`hf download REPO --repo-type "
    "dataset --local-dir D`) and export with --from D"
)


class PublishedCopyError(LlavaMixesError):
    """A published copy cannot be read as one: its manifest or a shard is damaged, changed or not Parquet; the
    message names the copy and the file."""


@dataclass(frozen=True)
class Shard:
    """One data file of a config as its manifest describes it."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Published:
    """The `train` split of one config read from a published copy, and where it came from."""

    dataset: datasets.Dataset
    folder: Path | None
    """The copy's folder, resolved; None for a Hub repo (whose file paths name nothing on this machine)."""
    where: str
    """The copy as the user named it, for messages."""
    images: str | None
    """How the copy holds pictures: `bytes` (embedded) or `paths` (only `image_path`), as its manifest says."""


def load_published(path_or_repo_id: str | Path, config: str, revision: str | None = None) -> datasets.Dataset:
    """The `train` split of `config` from a published tree (a folder) or Hub repo, at `revision` (`vX.Y.Z`).

    A folder holds one release, the latest its manifest records; a `revision` naming another one is refused.
    """
    return read_published(path_or_repo_id, config, revision).dataset


def read_published(path_or_repo_id: str | Path, config: str, revision: str | None = None) -> Published:
    """`load_published`, with the copy's folder (None for a Hub repo) and how it holds pictures."""
    check_file_name(config, "config")
    if revision is not None and (not isinstance(revision, str) or not revision or "\0" in revision):
        raise ConfigError(f"revision={revision!r} is not allowed; give a release tag such as v1.0.0")
    text = os.fspath(path_or_repo_id)
    if not text or "\0" in text:
        raise ConfigError(f"{text!r} is neither a folder nor a Hub repo id (ORG/NAME)")
    if os.path.lexists(text):
        return _read_folder(text, config, revision)
    if text.count("/") != 1 or text.startswith((".", "/", "~")):
        raise MissingDataError(f"{text!r} is neither an existing folder nor a Hub repo id (ORG/NAME)")
    try:
        validate_repo_id(text)
    except HFValidationError as error:
        raise MissingDataError(
            f"{text!r} is neither an existing folder nor a Hub repo id (ORG/NAME): {error}"
        ) from None
    return _read_hub(text, config, revision)


def _read_folder(text: str, config: str, revision: str | None) -> Published:
    try:
        root = Path(text).resolve(strict=True)
    except (OSError, RuntimeError) as error:  # RuntimeError: a symbolic link loop (Python < 3.13)
        why = "a symbolic link loop" if isinstance(error, RuntimeError) else os.strerror(error.errno or 0)
        raise MissingDataError(f"the published copy {text!r} cannot be opened: {why}") from None
    if not root.is_dir():
        raise MissingDataError(f"the published copy {text!r} is not a folder; name the folder `publish` wrote")
    if not os.path.lexists(root / MANIFEST):
        raise MissingDataError(
            f"{root} is not a copy published by llava-mixes: it has no {MANIFEST}, so it holds no config that "
            "export can read (`llava-mixes publish --local-dir` writes one; for a Hub repo give ORG/NAME)"
        )
    manifest = _parse_json(contained(root, MANIFEST, "the manifest"), str(root))
    if revision is not None:
        present = _latest_version(manifest)
        if present is None or revision.removeprefix("v") != present.removeprefix("v"):
            raise ConfigError(
                f"revision={revision!r} is not in {root}: it holds version {present!r}; a folder holds one "
                "release, so drop revision or point at the Hub repo"
            )
    shards, rows, images = config_shards(manifest, config, str(root))
    files = []
    for shard in shards:
        file = contained(root, shard.path, f"the shard {shard.path!r} named by the manifest")
        _verify(file, shard, str(root))
        files.append(file)
    return Published(_load_parquet(files, config, str(root), rows), root, str(root), images)


def _hub_label(repo_id: str, revision: str | None) -> str:
    return f"{repo_id}@{revision}" if revision else repo_id


def _download(repo_id: str, path: str, revision: str | None) -> Path:
    """One file of the repo, through the HF cache; each way the Hub can fail is one clear error."""
    label = _hub_label(repo_id, revision)
    try:
        return Path(hf_hub_download(repo_id, path, repo_type=REPO_TYPE, revision=revision))
    except RevisionNotFoundError:
        raise ConfigError(f"the Hub repo {repo_id} has no revision {revision!r}; releases are tags vX.Y.Z") from None
    except RepositoryNotFoundError:
        raise MissingDataError(
            f"no dataset repo {repo_id} answers on {constants.ENDPOINT} (absent, or private and no token reaches it: "
            "`hf auth login`)"
        ) from None
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        if constants.HF_HUB_OFFLINE:
            raise MissingDataError(
                f"cannot read the published copy {label} offline: HF_HUB_OFFLINE is set and the HF cache has no "
                f"{path} of it. {HUB_WAYS_OUT}"
            ) from None
        raise MissingDataError(
            f"cannot read the published copy {label}: the Hub did not answer and the HF cache has no {path} of it. "
            f"{HUB_WAYS_OUT}"
        ) from None
    except EntryNotFoundError:
        raise MissingDataError(
            f"{label} has no {path}: it is not a copy published by llava-mixes, or it is damaged"
        ) from None
    except NETWORK_ERRORS as error:
        raise MissingDataError(
            f"cannot read the published copy {label}: the Hub is unreachable ({type(error).__name__}). {HUB_WAYS_OUT}"
        ) from None
    except HfHubHTTPError as error:
        raise MissingDataError(f"the Hub refused {path} of {label}: {error}") from None


def _read_hub(repo_id: str, config: str, revision: str | None) -> Published:
    label = _hub_label(repo_id, revision)
    why = unreachable()
    if why is not None:
        raise MissingDataError(f"cannot read the published copy {label}: {why}. {HUB_WAYS_OUT}")
    manifest = _parse_json(_download(repo_id, MANIFEST, revision), label)
    shards, rows, images = config_shards(manifest, config, label)
    files = []
    for shard in shards:
        file = _download(repo_id, shard.path, revision)
        _verify(file, shard, label)
        files.append(file)
    return Published(_load_parquet(files, config, label, rows), None, label, images)


def _parse_json(path: Path, where: str) -> Any:
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise PublishedCopyError(f"{where}: {MANIFEST} is over {MAX_MANIFEST_BYTES >> 20} MiB: not a manifest")
        return json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError) as error:
        raise PublishedCopyError(f"{where}: {MANIFEST} cannot be read as JSON ({type(error).__name__})") from None


def _latest_version(manifest: Any) -> str | None:
    versions = manifest.get("versions") if isinstance(manifest, dict) else None
    if not isinstance(versions, list) or not versions:
        return None
    latest = versions[-1]
    version = latest.get("version") if isinstance(latest, dict) else None
    return version if isinstance(version, str) else None


def _shard_path(path: Any, where: str) -> str:
    """A shard's repo path as the manifest writes it: relative, POSIX, no `.`/`..` part, ends in `.parquet`."""
    clean = (
        isinstance(path, str)
        and 0 < len(path) <= MAX_SHARD_PATH
        and "\0" not in path
        and "\\" not in path
        and not path.startswith("/")
        and path.endswith(".parquet")
        and all(part not in ("", ".", "..") for part in path.split("/"))
        and posixpath.normpath(path) == path
    )
    if not clean:
        raise PathEscapeError(
            f"{where}: the manifest names the shard {path!r}, which is not a path in the copy", str(path)
        )
    return path


def config_shards(manifest: Any, config: str, where: str) -> tuple[list[Shard], int | None, str | None]:
    """The `train` shards of `config` that a parsed manifest names (path, SHA-256, size), the rows they hold and
    how pictures are held; `ConfigError` when the copy lacks the config, `PublishedCopyError` when the manifest
    is not one."""
    configs = manifest.get("configs") if isinstance(manifest, dict) else None
    if not isinstance(configs, dict):
        raise PublishedCopyError(f"{where}: {MANIFEST} is not a llava-mixes manifest (no mapping of configs)")
    if config not in configs:
        held = sorted(name for name in configs if isinstance(name, str))
        raise ConfigError(f"{where} holds no config {config!r}; it holds {held}")
    entry = configs[config]
    splits = entry.get("splits") if isinstance(entry, dict) else None
    train = splits.get(schema.TRAIN_SPLIT) if isinstance(splits, dict) else None
    described = entry.get("files") if isinstance(entry, dict) else None
    if not isinstance(train, dict) or not isinstance(train.get("files"), list) or not isinstance(described, dict):
        raise PublishedCopyError(f"{where}: the manifest entry of {config!r} names no {schema.TRAIN_SPLIT} shards")
    shards = []
    for path in train["files"]:
        _shard_path(path, where)
        meta = described.get(path)
        sha, size = (meta.get("sha256"), meta.get("size")) if isinstance(meta, dict) else (None, None)
        if not isinstance(sha, str) or not SHA256.match(sha) or type(size) is not int or size < 0:
            raise PublishedCopyError(f"{where}: the manifest gives no SHA-256 and size for the shard {path!r}")
        shards.append(Shard(path, sha, size))
    if not shards:
        raise PublishedCopyError(f"{where}: the manifest entry of {config!r} names no {schema.TRAIN_SPLIT} shards")
    rows = train.get("num_examples")
    images = entry.get("images")
    return shards, rows if type(rows) is int and rows >= 0 else None, images if isinstance(images, str) else None


def _verify(file: Path, shard: Shard, where: str) -> None:
    """Refuse a shard whose size or SHA-256 is not the manifest's: the copy is damaged, half written or changed."""
    try:
        size = file.stat().st_size
        matches = size == shard.size and sha256_file(file) == shard.sha256
    except OSError as error:
        raise PublishedCopyError(f"{where}: the shard {shard.path} cannot be read ({error.strerror})") from None
    if not matches:
        raise PublishedCopyError(
            f"{where}: the shard {shard.path} does not match the checksum its manifest records: the copy is damaged, "
            "half written or changed since it was published (`llava-mixes check-repo` says more; publish it again)"
        )


def _load_parquet(files: list[Path], config: str, where: str, rows: int | None) -> datasets.Dataset:
    try:
        dataset = datasets.load_dataset(
            "parquet", data_files={schema.TRAIN_SPLIT: [str(file) for file in files]}, split=schema.TRAIN_SPLIT
        )
    except (datasets.exceptions.DatasetGenerationError, pa.ArrowException, ValueError, TypeError, KeyError) as error:
        raise PublishedCopyError(
            f"{where}: the shards of {config!r} cannot be read as Parquet ({type(error).__name__}: {error})"
        ) from None
    if rows is not None and len(dataset) != rows:
        raise PublishedCopyError(f"{where}: {config!r} holds {len(dataset)} rows; its manifest says {rows}")
    dataset.info.config_name = config
    return dataset
