"""Fetch → verify: from a remote to a verified :class:`~bootpull.bundle.Bundle`.

:func:`pull` is one flat list of steps, each on the console:

1. snapshot the deploy branch (the remote fetches lazily: trees first, then the
   top-level metadata and ``bootpull.toml`` in one ``read_many``);
2. verify the signed metadata in ``.bootpull/metadata/`` (python-tuf ngclient, the
   node's version floor and clock floor — :mod:`bootpull.trust`);
3. read and verify ``bootpull.toml``; follow its ``branch`` if it names another one
   (and remember it in the state dir, so the next pull starts there);
4. read and verify this node's host file, or ``hosts/default.toml``, and select;
   then read and verify each ``groups/<name>.toml`` it names (``groups = [...]``; none
   without it) and merge their vars and version (the host file's own win);
5. for a pinned version, snapshot the tag ``role/<role>/<version>``;
6. list, read (``read_many``: only this role's files) and verify every file of the
   role against the signed targets — the set of files, their lengths, hashes, modes;
7. list, read and verify the role's secrets (``roles/<role>/secrets/*.age``) and this
   node's own (``secrets/<mac>/*.age``) at the deploy head, the same way; they stay
   encrypted (:mod:`bootpull.role_secrets` decrypts them at install);
8. raise the version floor, and return the bundle.

Only bytes that matched their signed hash become part of the Bundle. Any mismatch
raises :class:`~bootpull.errors.VerifyError` (exit 12) and nothing is returned.

How files are read depends on the metadata (:class:`_SignedFiles`). Format 1 reads
each file by its path in the commit, and the set of files in each directory must be
exactly the signed set. Format 2 (delegated, :mod:`bootpull.delegation`) reads each
signed file by the blob id its target names and reads no tree but the metadata's, so
what a node fetches does not grow with the fleet; the signed set alone is the bundle,
and a file committed after the last publish is not seen at all.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from bootpull import layout
from bootpull.backoff import Counters
from bootpull.bundle import (
    Assignment,
    BlobReader,
    Bundle,
    BundleFile,
    RepoSettings,
    TreeEntry,
    TreeReader,
)
from bootpull.console import Console
from bootpull.errors import VerifyError
from bootpull.mac import Mac
from bootpull.trust import (
    HEAD_PREFIX,
    METADATA_DIR,
    MetadataVersions,
    SignedFile,
    Verifier,
    head_target,
    image_build_time,
    release_target,
)

DEFAULT_BRANCH = "main"


class Remote(Protocol):
    """Where commits come from: :class:`bootpull.fetch.GitRemote` or a local repository."""

    def snapshot(self, ref: str) -> TreeReader:
        """One commit: ``ref`` is a branch name or ``refs/tags/role/<role>/<version>``."""
        ...


@runtime_checkable
class _Located(Protocol):
    """A remote at a URL: :attr:`bootpull.fetch.GitRemote.url`, after any redirect."""

    @property
    def url(self) -> str: ...


@dataclass(frozen=True)
class PullResult:
    """What verify hands to install: the bundle, the repo settings and what was trusted."""

    bundle: Bundle
    settings: RepoSettings
    metadata: MetadataVersions
    branch: str
    head_commit: str  # the deploy branch's commit (the bundle's commit differs when pinned)
    # the repository URL in effect after redirects and the home base's /repo.git (the
    # remote's url); None for a remote that has no URL (a local repository)
    repo_url: str | None = None
    # the fetch ladder's rung, its cost, and what this pull moved (the fetch event's
    # details); None for a local repository
    fetch: dict[str, Any] | None = None


def pull(
    remote: Remote,
    mac: Mac,
    *,
    trust_root: bytes,
    state_dir: Path,
    console: Console,
    counters: Counters,
    now: datetime | None = None,
    build_time: datetime | None = None,
    branch: str | None = None,
) -> PullResult:
    """Fetch and verify what ``mac`` gets; raise VerifyError (exit 12) on any mismatch.

    ``branch`` is where to start: default the branch of the last good pull (kept in
    the state dir), else ``main``. ``now`` is the node's clock (default: the system
    clock) and ``build_time`` the image's build time (default:
    :data:`bootpull.trust.BUILD_TIME_FILE`); expiry is judged at the latest of these
    and the last good time stored in the state dir.
    Raises :class:`~bootpull.errors.ExpiredMetadata` for expired metadata (boot the
    last-known-good), :class:`~bootpull.errors.FetchError` from the remote.
    """
    del counters  # the remote counts its own retries; verification never retries
    if build_time is None:
        build_time = image_build_time()
    verifier = Verifier(trust_root, state_dir, now=now, build_time=build_time)
    branch = branch or verifier.floor.branch or DEFAULT_BRANCH
    for hop in range(2):  # bootpull.toml may name another deploy branch, once
        if hop:
            verifier.forget_cache()
        with console.step(f"fetch deploy branch {branch}") as step:
            head = _Prefetched(remote.snapshot(branch), mac)
            step.note(head.commit[:12])
        with console.step("verify signed metadata") as step:
            versions = verifier.refresh(head)
            step.note(str(versions))
        files = _SignedFiles(verifier)
        with console.step("read repository settings") as step:
            data = files.head(head, [layout.SETTINGS_FILE])[layout.SETTINGS_FILE]
            if data is None:
                raise VerifyError(f"commit {head.commit[:12]} has no {layout.SETTINGS_FILE}",
                                  hint="create it with 'bootpull repo init', then publish")
            settings = layout.load_settings(data)
            step.note(f"format {settings.format}, branch {settings.branch}")
        if settings.branch == branch:
            break
        if hop:
            raise VerifyError(
                "the deploy branch names yet another branch",
                why=f"{layout.SETTINGS_FILE} on {branch} says branch = {settings.branch!r}",
                hint=f"set branch = \"{branch}\" in {layout.SETTINGS_FILE} on the deploy "
                "branch, and publish")
        console.info(f"{layout.SETTINGS_FILE} names deploy branch {settings.branch}")
        branch = settings.branch

    with console.step(f"select assignment for {mac}") as step:
        host_path = layout.host_file(mac)
        host = files.head(head, [host_path])[host_path]
        default = None
        if host is None:
            default = files.head(head, [layout.DEFAULT_HOST_FILE])[layout.DEFAULT_HOST_FILE]
        assignment = layout.select(mac, host, default)
        role = assignment.role
        step.note(f"{assignment.source}: {role}@{assignment.version or 'head'}")
    if assignment.groups:
        with console.step(f"read groups {', '.join(assignment.groups)}") as step:
            assignment = _with_groups(head, files, assignment,
                                      host if host is not None else default)
            step.note(f"{len(assignment.vars)} vars, {role}@{assignment.version or 'head'}"
                      + (f" from {assignment.version_source}"
                         if assignment.version_source not in (None, assignment.source)
                         else ""))

    if assignment.version is None:
        tree: TreeReader = head
        prefix = head_target(f"{layout.ROLES_DIR}/{role}/")
        version = f"head-{head.commit[:12]}"
    else:
        tag = layout.release_tag(role, assignment.version)
        prefix = release_target(role, assignment.version, "")
        if not verifier.signed_under(prefix):
            raise VerifyError(
                f"release {tag} is not signed",
                why=f"{assignment.version_source or assignment.source} pins version "
                f"{assignment.version}, but no "
                "published metadata covers that tag",
                hint=f"run 'bootpull repo release {role} {assignment.version}' and "
                "'bootpull repo publish'")
        with console.step(f"fetch release {tag}") as step:
            tree = remote.snapshot(f"refs/tags/{tag}")
            step.note(tree.commit[:12])
        version = assignment.version

    with console.step(f"verify role {role}") as step:
        role_files, role_toml = _verified_role(tree, files, role, prefix, settings)
        spec = layout.load_role(role_toml, role)
        step.note(f"{len(role_files)} files, {sum(len(f.data) for f in role_files)} bytes")

    secrets = _verified_secrets(head, files, role, mac, settings, console)
    bundle = Bundle(role=spec, version=version, commit=tree.commit, files=tuple(role_files),
                    assignment=assignment, role_toml=role_toml, secrets=tuple(secrets))
    verifier.record_success(branch)
    return PullResult(bundle=bundle, settings=settings, metadata=versions, branch=branch,
                      head_commit=head.commit,
                      repo_url=remote.url if isinstance(remote, _Located) else None,
                      fetch=_fetch_facts(remote))


def _fetch_facts(remote: Remote) -> dict[str, Any] | None:
    """The rung of the fetch ladder and what the pull cost, from a network remote."""
    rung = getattr(remote, "rung", None)
    if rung is None:
        return None
    return {**rung.details(), "bytes": getattr(remote, "bytes_received", None),
            "requests": getattr(remote, "requests", None)}


def pull_url(url: str, mac: Mac, *, trust_file: Path, cache_dir: Path, state_dir: Path,
             deadline: float, max_attempts: int | None, console: Console,
             counters: Counters, build_time_file: Path,
             ca_files: Sequence[Path] = ()) -> PullResult:
    """The node's fetch and verify stages: :func:`pull` over smart HTTP from ``url``,
    with the trust anchors in ``trust_file`` and the object cache in ``cache_dir``.

    ``deadline`` bounds the whole fetch, across its retries; ``max_attempts`` (None:
    the default) the tries of each request. https trusts the system's CAs plus the PEM
    certificates in ``ca_files`` (``node run --ca``).
    """
    from dataclasses import replace

    from bootpull.fetch import FetchLimits, GitRemote
    from bootpull.fetch_http import tls_context

    try:
        trust = trust_file.read_bytes()
    except OSError as exc:
        raise VerifyError(f"no trust anchors at {trust_file}", why=exc.strerror or str(exc),
                          hint="pass --trust FILE (from 'bootpull repo trust'), or build the "
                          "image with 'bootpull image build --trust FILE'") from None
    limits = FetchLimits(deadline=deadline)
    if max_attempts is not None:
        limits = replace(limits, max_attempts=min(limits.max_attempts, max_attempts))
    remote = GitRemote(url, cache_dir, limits=limits, console=console, counters=counters,
                       tls=tls_context(ca_files) if ca_files else None)
    try:
        return pull(remote, mac, trust_root=trust, state_dir=state_dir, console=console,
                    counters=counters, build_time=image_build_time(build_time_file))
    finally:
        remote.close()


class _Prefetched:
    """The deploy head, with the small files every pull reads fetched in one round.

    The top-level signed metadata and ``bootpull.toml`` come in one ``read_many`` (one
    request over the network) instead of one each. Nothing here is trusted yet:
    verification reads these bytes like any others.
    """

    def __init__(self, inner: TreeReader, mac: Mac) -> None:
        del mac  # format 2 finds the host file through the metadata; format 1 reads it later
        self._inner = inner
        wanted = [e.path for e in inner.list(METADATA_DIR)] + [layout.SETTINGS_FILE]
        self._known = set(wanted)
        self._data = inner.read_many(wanted)

    @property
    def commit(self) -> str:
        return self._inner.commit

    def read(self, path: str) -> bytes | None:
        if path in self._known:
            return self._data.get(path)
        return self._inner.read(path)

    def list(self, prefix: str) -> builtins.list[TreeEntry]:
        return self._inner.list(prefix)

    def read_many(self, paths: builtins.list[str]) -> dict[str, bytes]:
        return self._inner.read_many(paths)

    def read_blobs(self, oids: dict[str, str]) -> dict[str, bytes]:
        if not isinstance(self._inner, BlobReader):
            raise TypeError(f"{type(self._inner).__name__} cannot read blobs by id")
        return self._inner.read_blobs(oids)


class _SignedFiles:
    """Reads files and checks each against what is signed, as the metadata's format says.

    Format 1: by path in the commit; a file that is in the commit but not signed is
    refused. Format 2 (:attr:`Verifier.delegated`): by the blob id each target names
    (``read_blobs``), reading no tree; what is not signed is not read at all.
    """

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier

    @property
    def by_id(self) -> bool:
        return self.verifier.delegated

    def head(self, tree: TreeReader, paths: builtins.list[str]) -> dict[str, bytes | None]:
        """Each of ``paths`` at the deploy head, verified; None where it is not there
        (format 1: not in the commit and not signed; format 2: not signed)."""
        verifier = self.verifier
        if not self.by_id:
            data = tree.read_many(paths)
            return {p: verifier.check(head_target(p), data.get(p), None, path=p) for p in paths}
        signed = {p: f for p in paths if (f := verifier.signed(head_target(p))) is not None}
        blobs = self.blobs(tree, signed)
        return {p: verifier.check(head_target(p), blobs.get(p), None, path=p)
                if p in signed else None for p in paths}

    def blobs(self, tree: TreeReader, signed: dict[str, SignedFile]) -> dict[str, bytes]:
        """The bytes of each signed file (keyed by its path in the tree), unchecked:
        format 2 by blob id, format 1 (or a reader without ``read_blobs``) by path."""
        if not self.by_id or not isinstance(tree, BlobReader):
            return tree.read_many(sorted(signed))
        ids: dict[str, str] = {}
        for path, file in signed.items():
            if file.oid is None:
                raise VerifyError(
                    f"signed target {file.path} names no blob id",
                    why="metadata format 2 signs each delegated file with custom.git_oid",
                    hint="publish with 'bootpull repo publish' of this bootpull version")
            ids[path] = file.oid
        return tree.read_blobs(ids)


def _with_groups(head: TreeReader, files: _SignedFiles, assignment: Assignment,
                 host: bytes | None) -> Assignment:
    """The assignment with the groups it names merged in, each group file verified.

    Each ``groups/<name>.toml`` is read at the deploy head and checked against its
    signed target like the host file; a missing one, a collision between two groups, or
    a host variable that differs from a group's only in case is a LayoutError.
    """
    paths = {name: layout.group_file(name) for name in assignment.groups}
    data = files.head(head, sorted(paths.values()))
    groups = {}
    for name, path in paths.items():
        if (blob := data[path]) is not None:  # absent: merge_groups says it does not exist
            groups[name] = layout.load_group(blob, name, path)
    return layout.with_groups(assignment, groups, host)


def _verified_role(tree: TreeReader, files: _SignedFiles, role: str, prefix: str,
                   settings: RepoSettings) -> tuple[list[BundleFile], bytes]:
    """Read and verify ``roles/<role>/role.toml`` and ``roles/<role>/files/**``.

    The signed targets under ``prefix`` decide what the role is. Format 1: each must be
    in the tree with the same mode, length and hash, and the tree may hold nothing more.
    Format 2: each is read by its blob id, with its signed mode.
    """
    verifier = files.verifier
    root = f"{layout.ROLES_DIR}/{role}/"
    wanted = {"role.toml"}
    signed: dict[str, SignedFile] = {
        rel: f for p, f in verifier.signed_under(prefix).items()
        if (rel := p[len(prefix):]) in wanted or rel.startswith("files/")}
    if "role.toml" not in signed:
        raise VerifyError(
            f"role {role!r} is not signed",
            why=f"the published metadata has no {prefix}role.toml",
            hint=f"create {root}role.toml, commit, and run 'bootpull repo publish'")
    _within_limits(f"role {role!r}", signed, settings,
                   "raise [limits] in bootpull.toml, or make the role smaller")
    modes = {rel: f.mode for rel, f in signed.items()}
    if not files.by_id:
        entries = {e.path[len(root):]: e for e in tree.list(root.rstrip("/"))
                   if e.path[len(root):] in wanted or e.path[len(root):].startswith("files/")}
        _same_set(entries, signed, root, tree.commit)
        modes = {rel: e.mode for rel, e in entries.items()}
    data = files.blobs(tree, {root + rel: f for rel, f in signed.items()})
    out: list[BundleFile] = []
    role_toml = b""
    for rel in sorted(signed):
        blob = verifier.check(prefix + rel, data.get(root + rel), modes[rel], path=root + rel)
        assert blob is not None  # check() returns the bytes of every signed file
        if rel == "role.toml":
            role_toml = blob
        else:
            out.append(BundleFile(rel[len("files/"):], modes[rel], blob))
    return out, role_toml
def _within_limits(what: str, signed: dict[str, SignedFile], settings: RepoSettings,
                   hint: str) -> int:
    """The signed files' total size, unless they are over ``[limits]`` (VerifyError)."""
    limits = settings.limits
    total = sum(f.length for f in signed.values())
    if len(signed) > limits.max_files or total > limits.max_bundle_bytes:
        raise VerifyError(
            f"{what} is larger than this repository's limits",
            why=f"{len(signed)} files, {total} bytes; the limits are {limits.max_files} "
            f"files, {limits.max_bundle_bytes} bytes", hint=hint)
    return total


def _same_set(entries: dict[str, TreeEntry], signed: dict[str, SignedFile], root: str,
              commit: str) -> None:
    """The files in the commit are exactly the signed ones (paths under ``root``)."""
    if extra := sorted(set(entries) - set(signed)):
        raise VerifyError(
            f"{root}{extra[0]} is in the commit but not in the signed metadata",
            why="the change was committed but not published",
            hint="publish the repository with 'bootpull repo publish' and fetch again",
            expected="absent", got="present")
    if missing := sorted(set(signed) - set(entries)):
        raise VerifyError(
            f"{root}{missing[0]} is signed but missing from commit {commit[:12]}",
            why="the served commit is not the published one",
            hint="publish the repository with 'bootpull repo publish' and fetch again",
            expected=signed[missing[0]].sha256, got="absent")


def _verified_secrets(head: TreeReader, files: _SignedFiles, role: str, mac: Mac,
                      settings: RepoSettings, console: Console) -> list[BundleFile]:
    """The age files of ``roles/<role>/secrets/`` and ``secrets/<this mac>/``, verified.

    Always from the deploy head (also for a pinned version: a rewrap reaches every
    node without a new release), and only this node's host directory is read. As for
    the role's files, format 1 requires the set of ``*.age`` files in each directory
    to be exactly the signed set, each with its signed mode, length and hash; format 2
    reads the signed ones by blob id. Nothing is decrypted here.
    """
    from bootpull.role_secrets import host_secrets_dir, role_secrets_dir, secret_name

    verifier = files.verifier
    directories = (role_secrets_dir(role), host_secrets_dir(mac.canonical))
    signed: dict[str, SignedFile] = {}
    entries: dict[str, TreeEntry] = {}
    for directory in directories:
        prefix = head_target(directory + "/")
        signed.update({p[len(HEAD_PREFIX):]: f for p, f in verifier.signed_under(prefix).items()
                       if secret_name(p[len(HEAD_PREFIX):], directory) is not None})
        if not files.by_id:
            entries.update({e.path: e for e in head.list(directory)
                            if secret_name(e.path, directory) is not None})
    if not signed and not entries:
        return []
    with console.step(f"verify secrets of {role}") as step:
        modes = {path: f.mode for path, f in signed.items()}
        if not files.by_id:
            _same_set(entries, signed, "", head.commit)
            modes = {path: e.mode for path, e in entries.items()}
        total = _within_limits(f"the secrets of role {role!r}", signed, settings,
                               "raise [limits] in bootpull.toml, or remove secrets")
        data = files.blobs(head, signed)
        out: list[BundleFile] = []
        for path in sorted(signed):
            blob = verifier.check(head_target(path), data.get(path), modes[path], path=path)
            assert blob is not None  # check() returns the bytes of every signed file
            out.append(BundleFile(path, modes[path], blob))
        step.note(f"{len(out)} encrypted, {total} bytes")
    return out
