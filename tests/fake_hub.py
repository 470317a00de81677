"""A recording stand-in for the `HfApi` methods a publish calls: an in-memory dataset repo with commits and tags.

It keeps every committed file's bytes, so a test can compare the pushed tree with a `--local-dir` tree and
load it with `datasets`. Only the network edge is replaced: the publish code, Parquet writing and card
rendering all run for real.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx2
from huggingface_hub import CommitOperationAdd, CommitOperationDelete
from huggingface_hub.errors import HfHubHTTPError

EMPTY_SHA = "0" * 40


def http_error(status: int, message: str) -> HfHubHTTPError:
    """The error huggingface_hub raises for an HTTP `status` answer."""
    request = httpx2.Request("POST", "https://huggingface.co/api/datasets/demo/llava_mixes")
    return HfHubHTTPError(message, response=httpx2.Response(status, request=request))


class RecordingHubApi:
    """Records `(method, kwargs)` for every call; `trees[sha]` is the repo's files at each commit."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.trees: dict[str, dict[str, bytes]] = {EMPTY_SHA: {".gitattributes": b"*.parquet filter=lfs\n"}}
        self.head = EMPTY_SHA
        self.tags: dict[str, str] = {}
        self.fail_with: HfHubHTTPError | None = None

    def _record(self, method: str, **kwargs: Any) -> None:
        self.calls.append((method, kwargs))
        if self.fail_with is not None:
            raise self.fail_with

    def methods(self) -> list[str]:
        return [method for method, _ in self.calls]

    def create_repo(self, repo_id: str, **kwargs: Any) -> SimpleNamespace:
        self._record("create_repo", repo_id=repo_id, **kwargs)
        return SimpleNamespace(repo_id=repo_id)

    def repo_info(self, repo_id: str, **kwargs: Any) -> SimpleNamespace:
        self._record("repo_info", repo_id=repo_id, **kwargs)
        return SimpleNamespace(id=repo_id, sha=self.head)

    def list_repo_files(self, repo_id: str, revision: str | None = None, **kwargs: Any) -> list[str]:
        self._record("list_repo_files", repo_id=repo_id, revision=revision, **kwargs)
        return sorted(self.trees[revision or self.head])

    def hf_hub_download(self, repo_id: str, filename: str, revision: str | None = None, **kwargs: Any) -> str:
        self._record("hf_hub_download", repo_id=repo_id, filename=filename, revision=revision, **kwargs)
        target = Path(kwargs["local_dir"]) / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.trees[revision or self.head][filename])
        return str(target)

    def list_repo_refs(self, repo_id: str, **kwargs: Any) -> SimpleNamespace:
        self._record("list_repo_refs", repo_id=repo_id, **kwargs)
        return SimpleNamespace(tags=[SimpleNamespace(name=name, target_commit=sha) for name, sha in self.tags.items()])

    def create_commit(self, repo_id: str, operations: list[Any], **kwargs: Any) -> SimpleNamespace:
        self._record("create_commit", repo_id=repo_id, operations=operations, **kwargs)
        if kwargs.get("parent_commit") not in (None, self.head):
            raise http_error(412, "412 Precondition Failed: the parent commit is not the head")
        tree = dict(self.trees[self.head])
        for operation in operations:
            if isinstance(operation, CommitOperationAdd):
                tree[operation.path_in_repo] = Path(operation.path_or_fileobj).read_bytes()
            elif isinstance(operation, CommitOperationDelete):
                del tree[operation.path_in_repo]
        digest = hashlib.sha1()
        for path in sorted(tree):
            digest.update(path.encode() + hashlib.sha1(tree[path]).digest())
        self.head = digest.hexdigest()
        self.trees[self.head] = tree
        return SimpleNamespace(oid=self.head, commit_url=f"fake://{repo_id}/commit/{self.head}")

    def create_tag(self, repo_id: str, *, tag: str, revision: str | None = None, **kwargs: Any) -> None:
        self._record("create_tag", repo_id=repo_id, tag=tag, revision=revision, **kwargs)
        if tag in self.tags:
            raise http_error(409, f"409 Conflict: tag {tag} exists")
        self.tags[tag] = revision or self.head

    def export(self, folder: Path, revision: str | None = None) -> Path:
        """Write the tree at `revision` (default: the head) to `folder`, as a clone would."""
        for path, data in self.trees[revision or self.head].items():
            target = folder / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return folder
