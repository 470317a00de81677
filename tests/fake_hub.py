"""A recording stand-in for the `HfApi` methods a publish calls: an in-memory dataset repo with commits, branches,
tags and pull requests (`merge_pr` merges one, as the Hub's merge button does).

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
from huggingface_hub.errors import HfHubHTTPError, RevisionNotFoundError

EMPTY_SHA = "0" * 40


def http_error(status: int, message: str, kind: type[HfHubHTTPError] = HfHubHTTPError) -> HfHubHTTPError:
    """The error huggingface_hub raises for an HTTP `status` answer."""
    request = httpx2.Request("POST", "https://huggingface.co/api/datasets/demo/llava_mixes")
    return kind(message, response=httpx2.Response(status, request=request))


class RecordingHubApi:
    """Records `(method, kwargs)` for every call; `trees[sha]` is the repo's files at each commit, `branches` and
    `tags` map names to commits, `prs[num]` is a pull request's commit and the branch it targets."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.trees: dict[str, dict[str, bytes]] = {EMPTY_SHA: {".gitattributes": b"*.parquet filter=lfs\n"}}
        self.branches: dict[str, str] = {"main": EMPTY_SHA}
        self.tags: dict[str, str] = {}
        self.prs: dict[int, tuple[str, str]] = {}
        self.fail_with: HfHubHTTPError | None = None

    @property
    def head(self) -> str:
        """The commit at the head of `main`."""
        return self.branches["main"]

    def _resolve(self, revision: str | None) -> str:
        name = revision or "main"
        sha = self.branches.get(name) or self.tags.get(name) or (name if name in self.trees else None)
        if sha is None:
            raise http_error(404, f"404 Client Error: Revision Not Found: {name}", RevisionNotFoundError)
        return sha

    def _new_commit(self, parent: str, tree: dict[str, bytes]) -> str:
        digest = hashlib.sha1(parent.encode())
        for path in sorted(tree):
            digest.update(path.encode() + hashlib.sha1(tree[path]).digest())
        sha = digest.hexdigest()
        self.trees[sha] = tree
        return sha

    def _record(self, method: str, **kwargs: Any) -> None:
        self.calls.append((method, kwargs))
        if self.fail_with is not None:
            raise self.fail_with

    def methods(self) -> list[str]:
        return [method for method, _ in self.calls]

    def create_repo(self, repo_id: str, **kwargs: Any) -> SimpleNamespace:
        self._record("create_repo", repo_id=repo_id, **kwargs)
        return SimpleNamespace(repo_id=repo_id)

    def repo_info(self, repo_id: str, revision: str | None = None, **kwargs: Any) -> SimpleNamespace:
        self._record("repo_info", repo_id=repo_id, **({"revision": revision} if revision else {}), **kwargs)
        return SimpleNamespace(id=repo_id, sha=self._resolve(revision))

    def create_branch(self, repo_id: str, *, branch: str, revision: str | None = None, **kwargs: Any) -> None:
        self._record("create_branch", repo_id=repo_id, branch=branch, revision=revision, **kwargs)
        if branch in self.branches and not kwargs.get("exist_ok"):
            raise http_error(409, f"409 Conflict: branch {branch} exists")
        self.branches.setdefault(branch, self._resolve(revision))

    def list_repo_files(self, repo_id: str, revision: str | None = None, **kwargs: Any) -> list[str]:
        self._record("list_repo_files", repo_id=repo_id, revision=revision, **kwargs)
        return sorted(self.trees[self._resolve(revision)])

    def hf_hub_download(self, repo_id: str, filename: str, revision: str | None = None, **kwargs: Any) -> str:
        self._record("hf_hub_download", repo_id=repo_id, filename=filename, revision=revision, **kwargs)
        target = Path(kwargs["local_dir"]) / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.trees[self._resolve(revision)][filename])
        return str(target)

    def list_repo_refs(self, repo_id: str, **kwargs: Any) -> SimpleNamespace:
        self._record("list_repo_refs", repo_id=repo_id, **kwargs)
        return SimpleNamespace(
            tags=[SimpleNamespace(name=name, target_commit=sha) for name, sha in self.tags.items()],
            branches=[SimpleNamespace(name=name, target_commit=sha) for name, sha in self.branches.items()],
        )

    def create_commit(self, repo_id: str, operations: list[Any], **kwargs: Any) -> SimpleNamespace:
        """A commit to `revision` (a branch, default `main`), or with `create_pr` a pull request against it that
        starts from `parent_commit` (default: the branch's head) and leaves the branch where it is."""
        self._record("create_commit", repo_id=repo_id, operations=operations, **kwargs)
        branch = kwargs.get("revision") or "main"
        if branch not in self.branches:
            raise http_error(404, f"404 Client Error: Revision Not Found: {branch}", RevisionNotFoundError)
        parent = kwargs.get("parent_commit") or self.branches[branch]
        if not kwargs.get("create_pr") and parent != self.branches[branch]:
            raise http_error(412, "412 Precondition Failed: the parent commit is not the head")
        tree = dict(self.trees[parent])
        for operation in operations:
            if isinstance(operation, CommitOperationAdd):
                tree[operation.path_in_repo] = Path(operation.path_or_fileobj).read_bytes()
            elif isinstance(operation, CommitOperationDelete):
                del tree[operation.path_in_repo]
        sha = self._new_commit(parent, tree)
        if not kwargs.get("create_pr"):
            self.branches[branch] = sha
            return SimpleNamespace(oid=sha, commit_url=f"fake://{repo_id}/commit/{sha}", pr_url=None)
        number = len(self.prs) + 1
        self.prs[number] = (sha, branch)
        pr_url = f"fake://{repo_id}/discussions/{number}"
        return SimpleNamespace(oid=sha, commit_url=f"fake://{repo_id}/commit/{sha}", pr_url=pr_url, pr_num=number)

    def merge_pr(self, number: int) -> str:
        """Merge pull request `number` into its branch (a new commit holding the PR's tree); the merge commit."""
        sha, branch = self.prs.pop(number)
        self.branches[branch] = self._new_commit(self.branches[branch], dict(self.trees[sha]))
        return self.branches[branch]

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
