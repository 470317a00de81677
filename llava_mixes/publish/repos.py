"""Where a publish writes: a Hub dataset repo (through an injected `HfApi`), or the same tree in a local folder
(`publish.local.LocalRepo`).

Both targets offer the same few operations: hold the target while a publish reads and commits it, read a file of
the current tree, list the tree, list the release tags, commit a staged set of additions and deletions at once,
and tag a commit. A Hub repo may be written on a branch other than `main` (created from `main` when absent, as
`hf upload --revision` does), or through a pull request against that branch (`create_pr`), which leaves the
branch as it is until someone merges it. Its commits name the commit they follow (`parent_commit`), so a publish
that raced another one is refused by the Hub instead of losing it: the Hub needs no lock.

Hub errors, and a connection that fails, are re-raised as `PublishError` with every token in use scrubbed
from the message (see `redact`).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, constants, get_token
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalTokenNotFoundError, RevisionNotFoundError

from llava_mixes.errors import PublishError
from llava_mixes.network import NETWORK_ERRORS
from llava_mixes.publish.manifest import MAX_MANIFEST_BYTES

logger = logging.getLogger(__name__)

REPO_TYPE = "dataset"
STAGING_PREFIX = ".llava_mixes-staging-"
TOKEN_PATTERN = re.compile(r"hf_[A-Za-z0-9_-]{8,}")
MIN_TOKEN_CHARS = 4
"""Shorter values are not scrubbed: they would garble every message and cannot be a real token."""


def tokens_in_use(token: str | None = None) -> list[str]:
    """Every token value a Hub call may send, whatever its shape: `token`, `HF_TOKEN` (and the older
    `HUGGING_FACE_HUB_TOKEN`), and the stored login; longest first."""
    values = {token, os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN")}
    values.add(get_token())
    return sorted((value for value in values if value and len(value) >= MIN_TOKEN_CHARS), key=len, reverse=True)


def redact(text: str, token: str | None) -> str:
    """`text` with every token in use (see `tokens_in_use`), and anything shaped like a Hub token, replaced
    by `***`."""
    for value in tokens_in_use(token):
        text = text.replace(value, "***")
    return TOKEN_PATTERN.sub("hf_***", text)


@dataclass(frozen=True)
class Commit:
    """A commit a target made: its revision, and the pull request that holds it when it is not on a branch."""

    revision: str
    pr_url: str | None = None


class Target(Protocol):
    """What a publish needs from the place it writes to. `keeps_tags`: its releases are git tags (a Hub repo);
    `create_pr`: its commits open pull requests instead of moving a branch."""

    keeps_tags: bool
    create_pr: bool

    def describe(self) -> str: ...

    def open(self) -> None: ...

    def lock(self) -> AbstractContextManager[None]: ...

    def files(self) -> list[str]: ...

    def read(self, path: str) -> bytes | None:
        """The bytes of the repo file `path` (None if absent); a file over `MAX_MANIFEST_BYTES` is refused."""
        ...

    def tags(self) -> set[str]: ...

    def staging(self) -> AbstractContextManager[Path]: ...

    def commit(
        self, staging: Path, additions: Mapping[str, str], deletions: Mapping[str, str], message: str
    ) -> Commit: ...

    def head(self) -> str: ...

    def tag(self, name: str, revision: str, message: str) -> None: ...


class HubRepo:
    """A Hub dataset repo, reached only through `api` (an `HfApi`, or a fake of one in tests), written on `branch`
    (None: `main`) directly or, with `create_pr`, through a pull request against it."""

    keeps_tags = True

    def __init__(
        self,
        repo_id: str,
        api: HfApi | None = None,
        token: str | None = None,
        private: bool = False,
        branch: str | None = None,
        create_pr: bool = False,
    ) -> None:
        self.repo_id = repo_id
        self.token = token
        self.api = api if api is not None else HfApi(token=token)
        self.private = private
        self.branch = branch
        self.create_pr = create_pr
        self._head: str | None = None
        self._files: list[str] | None = None

    def describe(self) -> str:
        return f"the Hub dataset {self.repo_id}" + (f" (branch {self.branch})" if self.branch else "")

    @contextmanager
    def _calling(self, action: str) -> Iterator[None]:
        try:
            yield
        except NETWORK_ERRORS as error:
            detail = redact(f"{type(error).__name__}: {error}", self.token)
            raise PublishError(
                f"{action} on the Hub dataset {self.repo_id} failed: the Hub at {constants.ENDPOINT} is unreachable "
                f"({detail}). Check the network or HF_ENDPOINT, or write the release to a folder with --local-dir"
            ) from None
        except (HfHubHTTPError, LocalTokenNotFoundError, HFValidationError) as error:
            detail = redact(f"{type(error).__name__}: {error}", self.token)
            hint = " (log in with `hf auth login` or set HF_TOKEN)" if "401" in detail or "403" in detail else ""
            raise PublishError(f"{action} on the Hub dataset {self.repo_id} failed{hint}: {detail}") from None

    def open(self) -> None:
        with self._calling("creating the repo"):
            self.api.create_repo(self.repo_id, repo_type=REPO_TYPE, private=self.private, exist_ok=True)
        with self._calling("reading the repo"):
            try:
                self._head = self.api.repo_info(self.repo_id, repo_type=REPO_TYPE, revision=self.branch).sha
            except RevisionNotFoundError:
                self._head = None
        if self._head is None:
            self._open_branch()

    def _open_branch(self) -> None:
        """Create the absent `branch` from `main`; refused with `create_pr`, whose pull request needs a branch to
        merge into (and whose author may not be allowed to create one)."""
        if self.create_pr:
            raise PublishError(
                f"the Hub dataset {self.repo_id} has no branch {self.branch!r} for a pull request to merge into; "
                "create it (hf repos branch create), or leave out --create-pr to create it from main"
            )
        logger.info("%s: branch %s not found; creating it from main", self.repo_id, self.branch)
        with self._calling(f"creating the branch {self.branch}"):
            self.api.create_branch(self.repo_id, branch=str(self.branch), repo_type=REPO_TYPE, exist_ok=True)
            self._head = self.api.repo_info(self.repo_id, repo_type=REPO_TYPE, revision=self.branch).sha

    def lock(self) -> AbstractContextManager[None]:
        """Nothing to hold: the commit's `parent_commit` refuses a publish that raced another one."""
        return nullcontext()

    def head(self) -> str:
        """The commit whose tree this publish reads (the head of the branch when it was opened)."""
        if self._head is None:
            raise PublishError(f"the Hub dataset {self.repo_id} was not opened")
        return self._head

    def files(self) -> list[str]:
        if self._files is None:
            with self._calling("listing the repo's files"):
                self._files = sorted(self.api.list_repo_files(self.repo_id, repo_type=REPO_TYPE, revision=self.head()))
        return self._files

    def read(self, path: str) -> bytes | None:
        """The bytes of `path` at the head (None if absent), refused past `MAX_MANIFEST_BYTES`."""
        if path not in self.files():
            return None
        with self._calling(f"downloading {path}"), tempfile.TemporaryDirectory() as folder:
            revision = self.head()
            local = Path(
                self.api.hf_hub_download(self.repo_id, path, repo_type=REPO_TYPE, revision=revision, local_dir=folder)
            )
            if local.stat().st_size > MAX_MANIFEST_BYTES:
                raise PublishError(f"{path} of {self.describe()} is over {MAX_MANIFEST_BYTES:,} bytes; it is not read")
            return local.read_bytes()

    def tags(self) -> set[str]:
        with self._calling("listing the repo's tags"):
            return {ref.name for ref in self.api.list_repo_refs(self.repo_id, repo_type=REPO_TYPE).tags}

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """A scratch folder in the system's temporary folder, removed afterwards."""
        try:
            scratch = tempfile.TemporaryDirectory(prefix=STAGING_PREFIX)
        except OSError as error:
            raise PublishError(f"creating a staging folder in {tempfile.gettempdir()} failed: {error}") from None
        with scratch as folder:
            yield Path(folder)

    def commit(
        self, staging: Path, additions: Mapping[str, str], deletions: Mapping[str, str], message: str
    ) -> Commit:
        """One commit on the branch, refused if the branch moved since `open`; with `create_pr`, a pull request
        from that same commit instead (`parent_commit`, as `HfApi.create_commit` documents). `additions` and
        `deletions` map repo paths to SHA-256s (the Hub checks its own)."""
        operations: list[CommitOperationAdd | CommitOperationDelete] = [
            CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(staging / path)) for path in additions
        ]
        operations += [CommitOperationDelete(path_in_repo=path) for path in deletions]
        with self._calling("committing"):
            info = self.api.create_commit(
                self.repo_id,
                operations,
                commit_message=message,
                repo_type=REPO_TYPE,
                revision=self.branch,
                create_pr=self.create_pr or None,
                parent_commit=self.head(),
            )
        pr_url = getattr(info, "pr_url", None) if self.create_pr else None
        logger.info(
            "%s: committed %s (%s)%s", self.repo_id, info.oid, message, f", pull request {pr_url}" if pr_url else ""
        )
        return Commit(str(info.oid), pr_url)

    def tag(self, name: str, revision: str, message: str) -> None:
        with self._calling(f"tagging {name}"):
            self.api.create_tag(self.repo_id, tag=name, tag_message=message, revision=revision, repo_type=REPO_TYPE)
