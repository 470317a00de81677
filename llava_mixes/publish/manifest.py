"""The manifest of a published repo (`llava_mixes_manifest.json`), read as the untrusted input it is.

A published copy, local or on the Hub, may have been edited, damaged or written by someone else, so its
manifest is checked before anything uses it: `parse_manifest` gives either a manifest every later step can rely
on, or one `PublishError` naming the file and what is wrong. Relied on:

- `format` is this package's format; `default` is None (no config yet) or one of `configs`;
- each config is named by one plain path component, and every file it records (`files`, and the card's
  thumbnails in `card_files`) is a relative path under its own folder, each part a plain name (no `..`, no
  absolute path, no dot file), with a SHA-256 and a size; its splits name only those files;
- the releases (`versions`) go strictly up, and the latest one lists exactly the configs there are, with their
  content digests;
- the card renders from it (checked by the caller that owns the card, `publish.read_manifest`).

The file itself is read only up to `MAX_MANIFEST_BYTES`, as UTF-8 JSON; anything nested deeper than Python's
JSON reader takes is refused the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any

from llava_mixes.errors import PathEscapeError, PublishError
from llava_mixes.paths import check_file_name

MANIFEST_FILE = "llava_mixes_manifest.json"
MANIFEST_FORMAT = 1
MAX_MANIFEST_BYTES = 64 << 20
"""Larger manifests are refused unread (one for 4,000 configs of 100 files each is about 60 MB)."""
VERSION_PATTERN = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
MAX_PATH_CHARS = 1000
MAX_PATH_PARTS = 8


def empty_manifest() -> dict[str, Any]:
    """The manifest of a repo nothing has been published to."""
    return {"format": MANIFEST_FORMAT, "default": None, "configs": {}, "versions": []}


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def repo_path(path: object, what: str) -> str:
    """`path` if it is a relative repo path of 1 to `MAX_PATH_PARTS` plain names joined by `/` (each passing
    `paths.check_file_name`: no `..`, no leading dot, no separator); else `PathEscapeError` naming `what`."""
    if not isinstance(path, str) or not path or len(path) > MAX_PATH_CHARS:
        shown = str(path)[:80]
        raise PathEscapeError(f"{what} {shown!r} is not a relative path of at most {MAX_PATH_CHARS} characters", shown)
    parts = path.split("/")
    if len(parts) > MAX_PATH_PARTS:
        raise PathEscapeError(f"{what} {path!r} is nested deeper than {MAX_PATH_PARTS} folders", path)
    for part in parts:
        check_file_name(part, f"{what} {path!r}: the part")
    return path


def parse_manifest(data: bytes, where: str) -> dict[str, Any]:
    """The manifest in `data` (the bytes of `where`'s manifest), checked as the module docstring says; raises
    `PublishError` naming `where` and the fault."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise _fault(where, f"is {len(data):,} bytes, over the {MAX_MANIFEST_BYTES:,} a manifest may have")
    try:
        manifest = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise _fault(where, f"is not UTF-8 (byte {error.start})") from None
    except RecursionError:
        raise _fault(where, "is nested too deeply to be a manifest") from None
    except ValueError as error:
        raise _fault(where, f"is not JSON ({error})") from None
    try:
        _check_manifest(manifest)
    except _Fault as fault:
        raise _fault(where, str(fault)) from None
    except PathEscapeError as error:
        raise _fault(where, f"lists a path that is not allowed: {error}") from None
    return manifest


def _fault(where: str, detail: str) -> PublishError:
    return PublishError(
        f"{where}: {MANIFEST_FILE} {detail}; it was not written by llava-mixes as it is (damaged or edited). Restore "
        "it from a good copy, or publish to a new folder or repo"
    )


class _Fault(Exception):
    """What is wrong inside a manifest, before `parse_manifest` names the file."""


def _expect(value: object, kind: type, what: str) -> Any:
    if not isinstance(value, kind):
        raise _Fault(f"has {what} of type {type(value).__name__}, where it must be {kind.__name__}")
    return value


def _count(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _Fault(f"has {what} {str(value)[:40]!r}, where it must be a whole number >= 0")
    return value


def _digest(value: object, what: str) -> str:
    if not isinstance(value, str) or not SHA256_PATTERN.fullmatch(value):
        raise _Fault(f"has {what} {str(value)[:80]!r}, where it must be a SHA-256 (64 lowercase hex digits)")
    return value


def _check_manifest(manifest: object) -> None:
    manifest = _expect(manifest, dict, "a top level")
    for key in ("format", "default", "configs", "versions"):
        if key not in manifest:
            raise _Fault(f"has no `{key}`")
    if manifest["format"] != MANIFEST_FORMAT or isinstance(manifest["format"], bool):
        raise _Fault(
            f"has format {str(manifest['format'])[:40]!r}; this llava_mixes reads format {MANIFEST_FORMAT} only "
            "(a newer llava_mixes wrote it? upgrade)"
        )
    configs = _expect(manifest["configs"], dict, "`configs`")
    for name, entry in configs.items():
        _check_entry(name, entry)
    default = manifest["default"]
    if not ((default is None and not configs) or (isinstance(default, str) and default in configs)):
        raise _Fault(f"has the default config {str(default)[:80]!r}, which is not one of its configs")
    versions = _expect(manifest["versions"], list, "`versions`")
    previous: tuple[int, ...] | None = None
    for release in versions:
        key = _check_release(release)
        if previous is not None and key <= previous:
            raise _Fault(f"lists release {release['version']} after a release that is not lower")
        previous = key
    if (configs and not versions) or (versions and versions[-1]["configs"] != _contents(configs)):
        raise _Fault("has a latest release whose configs and contents are not the configs it lists")


def _contents(configs: Mapping[str, Any]) -> dict[str, str]:
    return {name: entry["content"] for name, entry in configs.items()}


def _check_entry(name: object, entry: object) -> None:
    check_file_name(name, "config name in the manifest")
    entry = _expect(entry, dict, f"config {name}'s entry")
    for key in ("name", "sources", "images", "features", "splits", "files", "content", "report", "dedup"):
        if key not in entry:
            raise _Fault(f"has no `{key}` for config {name}")
    if entry["name"] != name:
        raise _Fault(f"files config {name} under the name {str(entry['name'])[:80]!r}")
    _digest(entry["content"], f"config {name}'s content digest")
    sources = _expect(entry["sources"], list, f"config {name}'s sources")
    for source in sources:
        _expect(source, str, f"a source of config {name}")
    for field in ("features", "report"):
        _expect(entry[field], dict, f"config {name}'s {field}")
    files = _file_records(name, entry["files"], "files")
    _file_records(name, entry.get("card_files", {}), "card_files")
    splits = _expect(entry["splits"], dict, f"config {name}'s splits")
    if not splits:
        raise _Fault(f"has no split for config {name}")
    for split, info in splits.items():
        check_file_name(split, f"config {name}'s split")
        info = _expect(info, dict, f"config {name}'s split {split}")
        for field in ("num_examples", "num_bytes"):
            _count(info.get(field), f"config {name}'s split {split} {field}")
        for path in _expect(info.get("files"), list, f"config {name}'s split {split} files"):
            if not isinstance(path, str) or path not in files:
                raise _Fault(f"has config {name}'s split {split} naming {str(path)[:80]!r}, which it does not record")


def _file_records(name: str, records: object, field: str) -> dict[str, Any]:
    records = _expect(records, dict, f"config {name}'s {field}")
    for path, record in records.items():
        repo_path(path, f"config {name}'s file")
        if not path.startswith(f"{name}/"):
            raise _Fault(f"records {path!r} for config {name}, outside its folder {name}/")
        record = _expect(record, dict, f"the record of {path}")
        _digest(record.get("sha256"), f"{path}'s sha256")
        _count(record.get("size"), f"{path}'s size")
    return records


def _check_release(release: object) -> tuple[int, ...]:
    release = _expect(release, dict, "a release")
    version = release.get("version")
    if not isinstance(version, str) or not VERSION_PATTERN.fullmatch(version):
        raise _Fault(f"has a release version {str(version)[:40]!r}, where it must be X.Y.Z")
    for field in ("date", "package_version"):
        _expect(release.get(field), str, f"release {version}'s {field}")
    for name in _expect(release.get("published"), list, f"release {version}'s published configs"):
        check_file_name(name, f"release {version}'s published config")
    for name, digest in _expect(release.get("configs"), dict, f"release {version}'s configs").items():
        check_file_name(name, f"release {version}'s config")
        _digest(digest, f"release {version}'s digest of {name}")
    return version_key(version)


def recorded_files(manifest: Mapping[str, Any], names: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """`{repo path: {sha256, size}}` of every file the manifest records (data and thumbnails), for `names` or for
    every config."""
    configs = manifest["configs"]
    chosen = configs if names is None else [name for name in names if name in configs]
    return {
        path: record
        for name in chosen
        for path, record in {**configs[name]["files"], **configs[name].get("card_files", {})}.items()
    }


def split_patterns(manifest: Mapping[str, Any]) -> list[str]:
    """The card's `data_files` pattern of every split of every config (`<config>/<split>-*`, as `card` writes)."""
    return [f"{name}/{split}-*" for name, entry in manifest["configs"].items() for split in entry["splits"]]


def matches(pattern: str, path: str) -> bool:
    """Whether a `data_files` pattern matches a repo path: `*` and `?` within one part, `**` across parts."""
    return _match(pattern.split("/"), path.split("/"))


def _match(pattern: list[str], parts: list[str]) -> bool:
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_match(pattern[1:], parts[start:]) for start in range(len(parts) + 1))
    return bool(parts) and fnmatchcase(parts[0], pattern[0]) and _match(pattern[1:], parts[1:])


def unrecorded_read(files: Iterable[str], manifest: Mapping[str, Any]) -> list[str]:
    """The files (repo paths) a config's `data_files` would read that the manifest does not record."""
    recorded = recorded_files(manifest)
    patterns = split_patterns(manifest)
    return sorted(path for path in files if path not in recorded and any(matches(p, path) for p in patterns))
