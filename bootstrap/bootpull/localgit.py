"""Read a commit of a git repository on the local disk, straight from its object store.

:class:`LocalRemote` has the same ``snapshot(ref)`` method as the network remote
(:mod:`bootpull.fetch`), so the verify stage cannot tell them apart. It serves the
admin tools (``repo show`` reads what a node would get) and the tests. Nothing is ever
checked out: :class:`StoreTree` reads blobs from the object store.

dulwich is imported when a repository is opened, not when this module is.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bootpull.bundle import MODE_EXEC, MODE_FILE, MODE_SYMLINK, TreeEntry, TreeReader
from bootpull.errors import FetchError, VerifyError

_BLOB_MODES = (MODE_FILE, MODE_EXEC, MODE_SYMLINK, 0o100664)


def read_each(tree: TreeReader, paths: Iterable[str]) -> dict[str, bytes]:
    """``read_many`` by one ``tree.read`` per path: the files among ``paths`` that exist.

    For readers whose ``read`` is cheap: an object store or a directory on this disk (a
    reader that fetches over the network asks for all of them in one request instead).
    """
    out: dict[str, bytes] = {}
    for path in paths:
        data = tree.read(path)
        if data is not None:
            out[path] = data
    return out


class StoreTree:
    """A :class:`~bootpull.bundle.TreeReader` over one commit in a dulwich object store."""

    def __init__(self, store: Any, commit_id: str) -> None:
        from dulwich.objects import Commit

        self._store = store
        commit = store[commit_id.encode("ascii")]
        if not isinstance(commit, Commit):
            raise FetchError(f"{commit_id} is not a commit",
                             hint="point the branch or tag at a commit")
        self._commit = commit_id
        self._tree_id: bytes = commit.tree
        self._trees: dict[bytes, Any] = {}
        self._lists: dict[str, builtins.list[TreeEntry]] = {}  # a commit never changes

    @property
    def commit(self) -> str:
        return self._commit

    def _object(self, sha: bytes) -> Any:
        """The object ``sha``; trees are parsed once per snapshot (reading each file of a
        10,000-entry directory must not parse that directory 10,000 times)."""
        from dulwich.objects import Tree

        found = self._trees.get(sha)
        if found is None:
            found = self._store[sha]
            if isinstance(found, Tree):
                self._trees[sha] = found
        return found

    def _lookup(self, path: str) -> tuple[int, bytes] | None:
        from dulwich.objects import Tree

        tree = self._object(self._tree_id)
        parts = [p for p in path.split("/") if p]
        mode, sha = 0o040000, self._tree_id
        for index, part in enumerate(parts):
            if not isinstance(tree, Tree):
                return None
            try:
                mode, sha = tree[part.encode("utf-8", "surrogateescape")]
            except KeyError:
                return None
            if mode != 0o040000:  # a file: its blob is read only when asked for
                return (mode, sha) if index == len(parts) - 1 else None
            tree = self._object(sha)
        return mode, sha

    def read(self, path: str) -> bytes | None:
        found = self._lookup(path)
        if found is None or found[0] not in _BLOB_MODES:
            return None
        data: bytes = self._store[found[1]].as_raw_string()
        return data

    def list(self, prefix: str) -> builtins.list[TreeEntry]:
        cached = self._lists.get(prefix)
        if cached is None:
            cached = self._lists[prefix] = self._list(prefix)
        return builtins.list(cached)

    def _list(self, prefix: str) -> builtins.list[TreeEntry]:
        from dulwich.objects import Tree

        found = self._lookup(prefix)
        if found is None or found[0] != 0o040000:
            return []
        out: builtins.list[TreeEntry] = []
        base = prefix.strip("/")
        stack = [(base, found[1])]
        while stack:
            where, sha = stack.pop()
            tree = self._store[sha]
            if not isinstance(tree, Tree):
                continue
            for item in tree.iteritems():
                name = item.path.decode("utf-8", "surrogateescape")
                path = f"{where}/{name}" if where else name
                if item.mode == 0o040000:
                    stack.append((path, item.sha))
                elif item.mode in _BLOB_MODES:
                    out.append(TreeEntry(path, item.mode, item.sha.decode("ascii")))
        return sorted(out, key=lambda e: e.path)

    def read_many(self, paths: builtins.list[str]) -> dict[str, bytes]:
        return read_each(self, paths)

    def read_blobs(self, oids: dict[str, str]) -> dict[str, bytes]:
        """The blobs named by id (``{name: oid}``); a missing one or a non-blob is an error."""
        from dulwich.objects import Blob

        out: dict[str, bytes] = {}
        for name, oid in oids.items():
            try:
                obj = self._store[oid.encode("ascii")]
            except KeyError:
                raise VerifyError(f"{name}: blob {oid[:12]} is not in the repository",
                                  why="the signed metadata names a file the repository "
                                  "does not have", hint="publish again") from None
            if not isinstance(obj, Blob):
                raise VerifyError(f"{name} should be a file, but object {oid[:12]} is a "
                                  f"{obj.type_name.decode()}", expected="blob",
                                  got=obj.type_name.decode(), hint="publish again")
            out[name] = obj.as_raw_string()
        return out


class LocalRemote:
    """``snapshot(ref)`` over a repository on disk (a work tree or a bare repository)."""

    def __init__(self, path: Path) -> None:
        from dulwich.errors import NotGitRepository
        from dulwich.repo import Repo

        try:
            self._repo = Repo(str(path))
        except NotGitRepository:
            raise FetchError(f"{path} is not a git repository",
                             hint="give the repository's directory") from None
        self.path = path

    def resolve(self, ref: str) -> str:
        """The commit id a branch name, ``refs/...`` name, tag name or commit id names."""
        from dulwich.object_store import peel_sha
        from dulwich.refs import Ref

        refs = self._repo.refs
        candidates = [ref] if ref.startswith("refs/") or ref == "HEAD" else [
            f"refs/heads/{ref}", f"refs/tags/{ref}", ref]
        for name in candidates:
            try:
                sha = refs[Ref(name.encode())]
            except KeyError:
                continue
            peeled = peel_sha(self._repo.object_store, sha)[1]
            return str(peeled.id.decode("ascii"))
        if len(ref) == 40 and all(c in "0123456789abcdef" for c in ref):
            return ref
        raise FetchError(f"the repository has no {ref!r}",
                         why=f"{self.path} has no such branch or tag",
                         hint="check the branch name, or publish and release first")

    def snapshot(self, ref: str) -> StoreTree:
        return StoreTree(self._repo.object_store, self.resolve(ref))

    def tags(self) -> set[str]:
        """Every tag name (``role/web/1.0``) in the repository."""
        return {name.decode()[len("refs/tags/"):] for name in self._repo.refs
                if name.startswith(b"refs/tags/")}

    def close(self) -> None:
        self._repo.close()
