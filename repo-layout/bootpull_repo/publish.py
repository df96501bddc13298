"""``bootpull repo publish``: sign what nodes may install, as TUF metadata in the repository.

Publish reads the committed tree (``HEAD``, never the work tree) and every release
tag ``role/<role>/<version>``, and signs each file as a TUF target (length, sha256 and
``custom.git_mode``):

- ``head/bootpull.toml``, ``head/hosts/<file>``, ``head/groups/<name>.toml``,
  ``head/roles/<role>/<path>`` (also the role's ``secrets/``),
  ``head/secrets/<mac>/<path>`` (a node's own secrets);
- ``release/<role>/<version>/<path below roles/<role>/ in the tagged commit>``.

It then writes ``targets.json``, ``snapshot.json`` and ``timestamp.json`` (each one
version up) to ``.bootpull/metadata/`` and commits them. That commit changes only the
metadata, so the signed head content is exactly the content of the new head.

In metadata format 2 (``format = 2`` in ``bootpull.toml``; :mod:`bootpull.delegation`,
:mod:`bootpull_repo.delegated`), ``targets.json`` signs ``bootpull.toml``, the group
files and ``hosts/default.toml`` and delegates the rest to host bins and one role per
role, each in ``.bootpull/delegated/<name>.json``, and each delegated target also
carries ``custom.git_oid``. Only the roles whose files changed are signed again, and
only new blobs are read and hashed. A format-1 repository whose ``bootpull.toml`` says
``format = 2`` is migrated by its next publish (``--format 2`` does both); snapshot
entries are never dropped, so going back to format 1 keeps every version nodes saw.

A publish with nothing to do writes and commits nothing (:func:`already_published`):
the committed metadata already signs exactly these targets, verifies under the current
root, carries the highest versions, and each file has at least half of its lifetime left
(and no more than the lifetime asked for).

``--freshness`` re-signs only ``snapshot.json`` and ``timestamp.json`` (new expiry, the
same targets): the job the home base can do with just those two keys.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bootpull import layout
from bootpull.bundle import MODE_EXEC, MODE_FILE, MODE_SYMLINK
from bootpull.delegation import DELEGATED_DIR
from bootpull.errors import BootpullError
from bootpull.role_secrets import SECRETS_DIR
from bootpull.trust import head_target, release_target

from bootpull_repo import delegated
from bootpull_repo.context import METADATA_DIR, RepoContext
from bootpull_repo.gitcli import Git, LsEntry
from bootpull_repo.keys import KeysError, KeyStore

if TYPE_CHECKING:
    from tuf.api.metadata import Metadata, Root, TargetFile

SIGNED_MODES = (MODE_FILE, MODE_EXEC, MODE_SYMLINK)


class PublishError(BootpullError):
    stage = "publish"


@dataclass(frozen=True)
class Expiry:
    """How long each piece of metadata stays valid, in days."""

    root: int = 365
    targets: int = 90
    snapshot: int = 90
    timestamp: int = 30


@dataclass(frozen=True)
class Signed:
    """What publish signs about one file."""

    length: int
    sha256: str
    mode: int  # git mode
    oid: str  # git blob id

    def custom(self, *, oid: bool = False) -> dict[str, Any]:
        """The target's ``custom``: the git mode, and (format 2's delegated files) the blob."""
        return {"git_mode": self.mode, "git_oid": self.oid} if oid else {"git_mode": self.mode}


@dataclass(frozen=True)
class Published:
    commit: str
    targets_version: int
    snapshot_version: int
    timestamp_version: int
    head_files: int
    releases: tuple[str, ...]
    committed: bool = True  # False: nothing to publish, ``commit`` is HEAD as it was
    format: int = 1  # the metadata format written (2: delegated)
    resigned: tuple[str, ...] = ()  # format 2: the delegated roles signed anew


# -- metadata files --------------------------------------------------------------


def metadata_bytes(md: Metadata[Any]) -> bytes:
    from tuf.api.serialization.json import JSONSerializer

    return md.to_bytes(JSONSerializer(compact=False)) + b"\n"


def read_metadata(directory: Path, name: str) -> Metadata[Any] | None:
    from tuf.api.metadata import Metadata

    path = directory / name
    if not path.is_file():
        return None
    try:
        return Metadata.from_bytes(path.read_bytes())
    except Exception as exc:  # noqa: BLE001 - tuf raises many kinds for a bad file
        raise PublishError(f"{path} is not valid TUF metadata", why=str(exc),
                           hint=f"restore it with 'git checkout -- {METADATA_DIR}'") from None


def expires_in(days: int, now: datetime) -> datetime:
    return (now + timedelta(days=days)).replace(microsecond=0)


def new_root(keys: KeyStore, expiry: Expiry, now: datetime) -> Metadata[Root]:
    """Version 1 of ``root.json``: one new ed25519 key per role, threshold 1."""
    from tuf.api.metadata import Metadata, Root

    root = Root(expires=expires_in(expiry.root, now), consistent_snapshot=False)
    signers = {}
    for role in ("root", "targets", "snapshot", "timestamp"):
        signer = keys.generate(role)
        signers[role] = signer
        root.add_key(signer.public_key, role)
    md = Metadata(root)
    md.sign(signers["root"])
    return md


def write_root(directory: Path, md: Metadata[Root]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    data = metadata_bytes(md)
    (directory / f"{md.signed.version}.root.json").write_bytes(data)
    (directory / "root.json").write_bytes(data)


def load_root(directory: Path) -> Metadata[Root]:
    md = read_metadata(directory, "root.json")
    if md is None:
        raise PublishError(
            f"the repository has no {METADATA_DIR}/root.json",
            why="it was never initialised for signing",
            hint="run 'bootpull repo init .' in it (this makes the keys and root.json)")
    return md


def checked_signer(keys: KeyStore, role: str, root: Root) -> Any:
    """The signer for ``role``, refused unless root.json trusts its key."""
    signer = keys.signer(role)
    keyid = signer.public_key.keyid
    if keyid not in root.roles[role].keyids:
        raise KeysError(
            f"the {role} key in {keys.directory} is not one this repository's root trusts",
            why=f"key {keyid[:16]}… is not listed for {role} in {METADATA_DIR}/root.json",
            hint="point --keys at this repository's own key directory (keys are per "
            "repository), or rotate the key with the root key")
    return signer


# -- what is signed --------------------------------------------------------------


def _head_signed(entry: LsEntry) -> bool:
    path = entry.path
    if path == layout.SETTINGS_FILE:
        return True
    if path.startswith((f"{layout.HOSTS_DIR}/", f"{layout.GROUPS_DIR}/")):
        return path.count("/") == 1 and path.endswith(".toml")  # groups/<name>.toml too
    if path.startswith(f"{SECRETS_DIR}/"):  # secrets/<mac>/<NAME>.age: one node's secrets
        return True
    return path.startswith(f"{layout.ROLES_DIR}/")  # also roles/<role>/secrets/


def _check_entry(entry: LsEntry, where: str) -> None:
    if entry.kind != "blob" or entry.mode not in SIGNED_MODES:
        raise PublishError(
            f"{where}: {entry.path} is a {entry.kind} with mode {entry.mode:o}",
            why="only regular files, executables and symlinks can be published",
            hint="remove it (git rm), or replace a submodule with its files")


def collect_targets(git: Git, head: str, known: Mapping[str, tuple[int, str]] | None = None
                    ) -> tuple[dict[str, Signed], list[str]]:
    """Every file to sign, by target path; and the releases. Blobs in ``known`` (blob id
    → length, sha256: what is already signed) are not read again."""
    wanted: dict[str, LsEntry] = {}
    for entry in git.ls_tree(head):
        if _head_signed(entry):
            _check_entry(entry, "HEAD")
            wanted[head_target(entry.path)] = entry
    releases: list[str] = []
    for tag in git.tags("role/"):
        parts = tag.split("/")
        if len(parts) != 3 or layout.check_role_name(parts[1]) or layout.check_version(parts[2]):
            raise PublishError(
                f"tag {tag!r} is not a release tag role/<role>/<version>",
                hint=f"delete it (git tag -d {tag}) and use 'bootpull repo release'")
        _, role, version = parts
        commit = git.rev(f"refs/tags/{tag}")
        if commit is None:
            raise PublishError(f"tag {tag} does not name a commit",
                               hint=f"delete it: git tag -d {tag}")
        base = f"{layout.ROLES_DIR}/{role}/"
        entries = git.ls_tree(commit, base)
        if not any(e.path == base + "role.toml" for e in entries):
            raise PublishError(
                f"tag {tag} names commit {commit[:12]}, which has no {base}role.toml",
                hint=f"delete the tag (git tag -d {tag}) and release a commit that has the role")
        for entry in entries:
            _check_entry(entry, tag)
            wanted[release_target(role, version, entry.path[len(base):])] = entry
        releases.append(tag)
    known = known or {}
    digests: dict[str, tuple[int, str]] = {}
    unread = sorted({e.oid for e in wanted.values()} - set(known))
    for oid, data in git.blobs(unread):
        digests[oid] = (len(data), hashlib.sha256(data).hexdigest())
    targets = {}
    for path, entry in wanted.items():
        length, sha256 = digests.get(entry.oid) or known[entry.oid]
        targets[path] = Signed(length, sha256, entry.mode, entry.oid)
    return targets, releases


def target_file(path: str, length: int, sha256: str, mode: int | dict[str, Any]) -> TargetFile:
    """One target: ``mode`` is the git mode, or the whole ``custom`` object."""
    from tuf.api.metadata import TargetFile

    custom = mode if isinstance(mode, dict) else {"git_mode": mode}
    return TargetFile(length, {"sha256": sha256}, path, unrecognized_fields={"custom": custom})


# -- publish ---------------------------------------------------------------------


def highest_versions(git: Git, directory: Path) -> tuple[dict[str, int], dict[str, int]]:
    """The highest version of each top-level metadata file in the work tree and on every
    branch; and the highest version any of those snapshots lists for each file
    (``"<role>.json"``, delegated roles too).

    Versions only ever go up across the whole repository, so switching the deploy
    branch (or merging two clones' publishes) never looks like a rollback to nodes.
    """
    highest = {"targets": 0, "snapshot": 0, "timestamp": 0}
    listed: dict[str, int] = {}
    sources: list[bytes] = []
    for name in highest:
        path = directory / f"{name}.json"
        if path.is_file():
            sources.append(path.read_bytes())
    refs = git.run("for-each-ref", "--format=%(refname)", "refs/heads", "refs/remotes",
                   check=False).decode().split()
    for ref in refs:
        for name in highest:
            data = git.run("show", f"{ref}:{METADATA_DIR}/{name}.json", check=False)
            if data:
                sources.append(data)
    for data in sources:
        try:
            signed = json.loads(data)["signed"]
            kind, version = signed["_type"], signed["version"]
        except (ValueError, KeyError, TypeError):
            continue
        if kind in highest and isinstance(version, int):
            highest[kind] = max(highest[kind], version)
        if kind == "snapshot":
            for name, number in delegated.snapshot_listing(data).items():
                listed[name] = max(listed.get(name, 0), number)
    return highest, listed


def metadata_dirty(git: Git) -> bool:
    """The work tree's signed metadata differs from what is committed."""
    return bool(git.run("status", "--porcelain", "--", METADATA_DIR, DELEGATED_DIR).strip())


def already_published(ctx: RepoContext, root: Root, collected: dict[str, Signed],
                      highest: dict[str, int], expiry: Expiry, now: datetime
                      ) -> tuple[int, int, int] | None:
    """Format 1: the (targets, snapshot, timestamp) versions when the committed metadata
    already signs exactly ``collected`` and needs no re-signing; None when publish has
    work."""
    git = ctx.git
    if metadata_dirty(git) or delegated.delegated_dir(ctx.root).exists():
        return None  # the work tree's metadata is not what is committed, or was format 2
    files = {name: read_metadata(ctx.metadata_dir, f"{name}.json")
             for name in ("targets", "snapshot", "timestamp")}
    lifetimes = {"targets": expiry.targets, "snapshot": expiry.snapshot,
                 "timestamp": expiry.timestamp}
    for name, md in files.items():
        if md is None or md.signed.version < highest[name]:
            return None
        if not root.get_verification_result(name, md.signed_bytes, md.signatures):
            return None  # a key was rotated since it was signed
        if not delegated.fresh(md, lifetimes[name], now):
            return None  # close to expiry, or longer than asked for
    targets, snapshot, timestamp = (files["targets"], files["snapshot"], files["timestamp"])
    assert targets is not None and snapshot is not None and timestamp is not None
    listed = snapshot.signed.meta.get("targets.json")
    if (listed is None or listed.version != targets.signed.version
            or timestamp.signed.snapshot_meta.version != snapshot.signed.version):
        return None
    signed = {path: (tf.length, tf.hashes, tf.unrecognized_fields)
              for path, tf in targets.signed.targets.items()}
    wanted = {path: (f.length, {"sha256": f.sha256}, {"custom": f.custom()})
              for path, f in collected.items()}
    if signed != wanted:
        return None
    return targets.signed.version, snapshot.signed.version, timestamp.signed.version


def validate(ctx: RepoContext, head: str) -> None:
    """Refuse to sign what ``bootpull repo lint --rev HEAD`` refuses: lint first, never after.

    Every check of :func:`bootpull_repo.lint.lint_tree` (the format, and what the node's
    installer and supervisor would refuse: a missing or non-executable command, files
    the installer rejects, a broken pinned release), with the same tags and releases.
    """
    from bootpull.bundle import TreeReader
    from bootpull.localgit import LocalRemote

    from bootpull_repo.lint import lint_tree

    remote = LocalRemote(ctx.root)

    def release(tag: str) -> TreeReader | None:
        try:
            return remote.snapshot(f"refs/tags/{tag}")
        except BootpullError:
            return None

    tags = _tag_state(ctx.git)
    hosts = _changed_hosts(ctx.git, head, tags)
    try:
        report = lint_tree(remote.snapshot(head), tags=remote.tags(), release=release,
                           hosts=hosts)
    finally:
        remote.close()
    if report.ok:
        _remember_validated(ctx.git, head, tags)
    else:
        count = len(report.problems)
        raise PublishError(
            f"the repository has {count} problem{'s' if count > 1 else ''}; nothing was signed",
            why="\n" + str(report),
            hint="fix them, commit, and publish again")


#: in the git directory: the last commit whose tree passed publish's lint, the release
#: tags then, and a digest of the lint code (``{"commit": ..., "tags": {tag: commit},
#: "lint": ...}``); a local cache only
VALIDATED_FILE = "bootpull/validated.json"


def _tag_state(git: Git) -> dict[str, str]:
    out = git.run("for-each-ref", "--format=%(refname:strip=2) %(objectname)",
                  "refs/tags/role/", check=False).decode()
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


#: in the git directory: the sha256 of each delegated role file that publish last wrote
#: or verified, with the key's id (``{"keyid": ..., "files": {role: sha256}}``)
VERIFIED_FILE = "bootpull/verified.json"


def _git_dir(git: Git) -> Path:
    return Path(git.text("rev-parse", "--absolute-git-dir"))


def _validated_path(git: Git) -> Path:
    return _git_dir(git) / VALIDATED_FILE


def _changed_hosts(git: Git, head: str, tags: dict[str, str]) -> set[str] | None:
    """The host files to lint when ``head`` differs from the last commit that passed
    only in host files added or changed (the rest of that tree passed, and a host
    file's problems depend on no other host file), the signed metadata aside (publish
    writes it; lint does not judge it); None: lint everything."""
    try:
        doc = json.loads(_validated_path(git).read_text())
        base = doc["commit"]
        if (not isinstance(base, str) or doc["tags"] != tags
                or doc["lint"] != _lint_code()):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    diff = git.run("diff", "--name-status", "--no-renames", "-z", base, head, "--", ".",
                   f":(exclude){METADATA_DIR}", f":(exclude){DELEGATED_DIR}", check=False)
    if not diff and git.rev(base) != base:
        return None  # the remembered commit is gone
    fields = diff.decode("utf-8", "surrogateescape").split("\0")
    changed: set[str] = set()
    for status, path in zip(fields[0::2], fields[1::2], strict=False):
        if (status not in ("A", "M") or path.count("/") != 1
                or not path.startswith(layout.HOSTS_DIR + "/")
                or path == layout.DEFAULT_HOST_FILE):
            return None  # a removal, or anything but a host file: lint it all
        changed.add(path)
    return changed


def _remember_validated(git: Git, head: str, tags: dict[str, str]) -> None:
    path = _validated_path(git)
    with contextlib.suppress(OSError):  # only a cache: the next publish lints it all
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps({"commit": head, "tags": tags, "lint": _lint_code()}))


def _lint_code() -> str:
    """A digest of the code that judges a tree: another bootpull lints everything anew."""
    from bootpull_repo import identities, lint, secrets

    digest = hashlib.sha256()
    for module in (layout, lint, secrets, identities):
        digest.update(Path(module.__file__ or "").read_bytes())
    return digest.hexdigest()


def head_format(git: Git, head: str) -> int:
    """The metadata format the committed ``bootpull.toml`` asks for (1 when unreadable:
    lint refuses that repository before anything is signed)."""
    data = git.run("show", f"{head}:{layout.SETTINGS_FILE}", check=False)
    settings, _problems = layout.parse_settings(data) if data else (None, [])
    return settings.format if settings is not None else layout.FORMAT


def publish(ctx: RepoContext, *, expiry: Expiry | None = None, now: datetime | None = None,
            freshness_only: bool = False, check: bool = True, rehash: bool = False
            ) -> Published:
    """Sign HEAD and every release, and commit; with nothing to do, commit nothing
    (``committed=False``; ``--freshness`` always re-signs). ``rehash`` reads and hashes
    every file again instead of taking the hashes the committed roles list for them."""
    from tuf.api.metadata import Metadata, MetaFile, Snapshot, Targets, Timestamp

    expiry = expiry or Expiry()
    now = now or datetime.now(UTC)
    git = ctx.git
    head = git.rev("HEAD")
    if head is None:
        raise PublishError("the repository has no commits yet",
                           hint="commit your files (git add, git commit), then publish")
    directory = ctx.metadata_dir
    root = load_root(directory).signed
    keys = ctx.keys()
    old_targets = read_metadata(directory, "targets.json")
    old_snapshot = read_metadata(directory, "snapshot.json")
    fmt = head_format(git, head)

    highest, listed = highest_versions(git, directory)
    releases: list[str] = []
    head_files = 0
    plan: delegated.Plan | None = None
    if freshness_only:
        if old_targets is None:
            raise PublishError("there is nothing published to refresh",
                               hint="run 'bootpull repo publish' first")
        targets_md = old_targets
        fmt = 2 if old_targets.signed.delegations is not None else 1
        current = {"targets.json": old_targets.signed.version}
        if old_snapshot is not None:  # the delegated roles stay as they are
            current = {**{n: m.version for n, m in old_snapshot.signed.meta.items()
                          if n != "targets.json"}, **current}
    else:
        if check:
            validate(ctx, head)
        signer = checked_signer(keys, "targets", root)
        existing = delegated.read_delegated(ctx.root, signer, delegated.load_verified(
            _git_dir(git) / VERIFIED_FILE, signer.public_key.keyid)) if fmt == 2 else {}
        collected, releases = collect_targets(
            git, head, {} if rehash else delegated.known_digests(existing))
        head_files = sum(1 for p in collected if p.startswith("head/"))
        if fmt == 1:
            same = already_published(ctx, root, collected, highest, expiry, now)
            if same is not None:
                return Published(head, *same, head_files, tuple(releases), committed=False)
            targets = Targets(version=highest["targets"] + 1,
                              expires=expires_in(expiry.targets, now),
                              targets={p: target_file(p, f.length, f.sha256, f.custom())
                                       for p, f in sorted(collected.items())})
            targets_md = Metadata(targets)
            targets_md.sign(signer)
            current = {"targets.json": targets_md.signed.version}
        else:
            top = old_targets if old_targets is not None and not metadata_dirty(git) else None
            plan = delegated.plan(ctx.root, top, signer, collected, listed, expiry.targets,
                                  now, top_version=highest["targets"] + 1, existing=existing)
            targets_md = plan.top
            current = {"targets.json": targets_md.signed.version, **plan.versions}
            if not plan.changed and _nothing_to_do(ctx, root, old_snapshot, current, highest,
                                                   expiry, now):
                timestamp = read_metadata(directory, "timestamp.json")
                assert old_snapshot is not None and timestamp is not None
                delegated.save_verified(_git_dir(git) / VERIFIED_FILE, ctx.root,
                                        signer.public_key.keyid)  # every file verified
                return Published(head, targets_md.signed.version, old_snapshot.signed.version,
                                 timestamp.signed.version, head_files, tuple(releases),
                                 committed=False, format=2)

    meta = {name: MetaFile(version=version) for name, version in listed.items()}
    if old_snapshot is not None:  # snapshot entries are never dropped (nodes refuse that)
        meta.update(old_snapshot.signed.meta)
    meta.update({name: MetaFile(version=version) for name, version in current.items()})
    snapshot_version = highest["snapshot"] + 1
    snapshot_md = Metadata(Snapshot(
        version=snapshot_version, expires=expires_in(expiry.snapshot, now),
        meta=dict(sorted(meta.items()))))
    snapshot_md.sign(checked_signer(keys, "snapshot", root))
    timestamp_version = highest["timestamp"] + 1
    timestamp_md = Metadata(Timestamp(
        version=timestamp_version, expires=expires_in(expiry.timestamp, now),
        snapshot_meta=MetaFile(version=snapshot_version)))
    timestamp_md.sign(checked_signer(keys, "timestamp", root))

    directory.mkdir(parents=True, exist_ok=True)
    if plan is not None:
        delegated.write_plan(ctx.root, plan, metadata_bytes)
    elif not freshness_only and delegated.delegated_dir(ctx.root).exists():
        for stale in delegated.delegated_dir(ctx.root).glob("*.json"):
            stale.unlink()  # back to format 1: the snapshot still lists their versions
        delegated.delegated_dir(ctx.root).rmdir()
    (directory / "targets.json").write_bytes(metadata_bytes(targets_md))
    (directory / "snapshot.json").write_bytes(metadata_bytes(snapshot_md))
    (directory / "timestamp.json").write_bytes(metadata_bytes(timestamp_md))
    resigned = tuple(sorted(plan.write)) if plan is not None else ()
    if freshness_only:
        message = (f"publish: refresh freshness (snapshot v{snapshot_version}, "
                   f"timestamp v{timestamp_version})")
    else:
        message = (f"publish: targets v{targets_md.signed.version} — head {head[:12]} "
                   f"({head_files} files), {len(releases)} release"
                   f"{'' if len(releases) == 1 else 's'}")
        if plan is not None:
            message += (f"; format 2, {len(resigned)} of {len(plan.versions)} delegated "
                        f"role{'' if len(plan.versions) == 1 else 's'} signed anew")
            if resigned:
                shown = ", ".join(resigned[:8]) + (", …" if len(resigned) > 8 else "")
                message += f" ({shown})"
    paths = [METADATA_DIR]
    if any(delegated.delegated_dir(ctx.root).glob("*.json")) or git.text(
            "ls-files", "--", DELEGATED_DIR):
        paths.append(DELEGATED_DIR)
    commit = git.commit(message, paths)
    if plan is not None:
        delegated.save_verified(_git_dir(git) / VERIFIED_FILE, ctx.root,
                                signer.public_key.keyid)
    return Published(commit, targets_md.signed.version, snapshot_version, timestamp_version,
                     head_files, tuple(releases), format=fmt, resigned=resigned)


def _nothing_to_do(ctx: RepoContext, root: Root, snapshot: Metadata[Any] | None,
                   current: dict[str, int], highest: dict[str, int], expiry: Expiry,
                   now: datetime) -> bool:
    """Format 2: the committed snapshot and timestamp already list exactly ``current``,
    verify under the current root, carry the highest versions and are fresh."""
    if snapshot is None or metadata_dirty(ctx.git):
        return False
    timestamp = read_metadata(ctx.metadata_dir, "timestamp.json")
    if timestamp is None:
        return False
    for name, md, days in (("snapshot", snapshot, expiry.snapshot),
                           ("timestamp", timestamp, expiry.timestamp)):
        if md.signed.version < highest[name] or not delegated.fresh(md, days, now):
            return False
        if not root.get_verification_result(name, md.signed_bytes, md.signatures):
            return False
    listed = {name: info.version for name, info in snapshot.signed.meta.items()}
    return (all(listed.get(name) == version for name, version in current.items())
            and timestamp.signed.snapshot_meta.version == snapshot.signed.version)


# -- CLI -------------------------------------------------------------------------


def configure(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "publish", help="sign the deploy head and every release (TUF metadata), and commit",
        description="Sign the host assignments and every bundle file at the deploy head "
        "(HEAD) and at every role/<role>/<version> tag, and commit the signed metadata "
        f"under {METADATA_DIR}/. Nodes refuse anything committed but not published. "
        "When the signed metadata already covers HEAD and nothing is close to expiry, "
        "it writes and commits nothing.")
    parser.add_argument("--freshness", action="store_true",
                        help="re-sign only snapshot and timestamp (new expiry, same content)")
    parser.add_argument("--targets-days", type=int, default=Expiry.targets, metavar="N",
                        help=f"targets.json expires after N days (default {Expiry.targets})")
    parser.add_argument("--snapshot-days", type=int, default=Expiry.snapshot, metavar="N",
                        help=f"snapshot.json expires after N days (default {Expiry.snapshot})")
    parser.add_argument("--timestamp-days", type=int, default=Expiry.timestamp, metavar="N",
                        help=f"timestamp.json expires after N days (default {Expiry.timestamp})")
    parser.add_argument("--format", type=int, choices=(1, 2), metavar="N",
                        help="first set the signed metadata's format in bootpull.toml and "
                        "commit that (2: delegated roles, for large fleets; 1: one "
                        "targets.json), then publish; nodes need bootpull with format 2")
    parser.add_argument("--rehash", action="store_true",
                        help="read and hash every file again, believing no hash the "
                        "committed metadata lists (format 2 reuses them for unchanged "
                        "blobs); a role whose hashes differ is signed anew")
    parser.add_argument("--json", action="store_true",
                        help="print the result as one JSON object")
    parser.set_defaults(func=command)


_FORMAT_LINE = re.compile(rb"^([ \t]*format[ \t]*=[ \t]*)([0-9]+)", re.MULTILINE)
_TABLE_LINE = re.compile(rb"^[ \t]*\[", re.MULTILINE)


def with_format(data: bytes, fmt: int) -> bytes:
    """``bootpull.toml`` with its top-level ``format`` set to ``fmt`` (the rest as it was)."""
    table = _TABLE_LINE.search(data)
    end = table.start() if table else len(data)
    found = _FORMAT_LINE.search(data, 0, end)
    if found is None:
        return b"format = %d\n" % fmt + data
    return data[:found.start(2)] + str(fmt).encode() + data[found.end(2):]


def refuse_dirty_settings(git: Git, fmt: int) -> None:
    """``--format`` commits ``bootpull.toml``: never with someone's uncommitted edit."""
    if git.run("status", "--porcelain", "--", layout.SETTINGS_FILE).strip():
        raise PublishError(
            f"{layout.SETTINGS_FILE} has uncommitted changes; --format {fmt} commits it",
            hint=f"commit or undo your change to {layout.SETTINGS_FILE} first")


def formatted(data: bytes, fmt: int) -> bytes:
    """``bootpull.toml`` saying ``format = fmt``, checked by reading it back."""
    changed = with_format(data, fmt)
    settings, problems = layout.parse_settings(changed)
    if settings is None or settings.format != fmt:
        raise PublishError(
            f"cannot set format = {fmt} in {layout.SETTINGS_FILE}",
            why="; ".join(p.what for p in problems) or "the file does not read back so",
            hint=f"fix {layout.SETTINGS_FILE} ('bootpull repo lint'), then try again")
    return changed


def set_format(ctx: RepoContext, fmt: int) -> str | None:
    """Commit ``format = fmt`` in ``bootpull.toml``; the new commit, or None when it
    already says so. Refused while ``bootpull.toml`` has uncommitted changes."""
    git = ctx.git
    path = ctx.root / layout.SETTINGS_FILE
    refuse_dirty_settings(git, fmt)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PublishError(f"cannot read {path}", why=exc.strerror or str(exc),
                           hint="run 'bootpull repo init .' in the repository") from None
    changed = formatted(data, fmt)
    if changed == data:
        return None
    path.write_bytes(changed)
    return git.commit(f"bootpull.toml: signed metadata format {fmt}", [layout.SETTINGS_FILE])


def command(args: argparse.Namespace) -> int:
    ctx = RepoContext.from_args(args)
    for name in ("targets_days", "snapshot_days", "timestamp_days"):
        if getattr(args, name) < 1:
            raise PublishError(f"--{name.replace('_', '-')} must be at least 1")
    expiry = Expiry(targets=args.targets_days, snapshot=args.snapshot_days,
                    timestamp=args.timestamp_days)
    if args.rehash and args.freshness:
        raise PublishError("--rehash and --freshness do not go together",
                           hint="--freshness keeps what is signed; publish with --rehash "
                           "first")
    if args.format is not None:
        if args.freshness:
            raise PublishError("--format and --freshness do not go together",
                               hint="--freshness keeps what is signed; publish with "
                               "--format first")
        if (commit := set_format(ctx, args.format)) is not None:
            print(f"committed {commit[:12]}: {layout.SETTINGS_FILE} says format = "
                  f"{args.format}", file=sys.stderr)
    done = publish(ctx, expiry=expiry, freshness_only=args.freshness, rehash=args.rehash)
    branch = ctx.git.run("symbolic-ref", "-q", "--short", "HEAD", check=False).decode().strip()
    deploy = ctx.settings.branch if ctx.settings else "main"
    if branch != deploy:
        print(f"note: you published on {branch or 'a detached HEAD'}, but nodes follow "
              f"{deploy}: merge this into {deploy} (fast-forward) for nodes to see it",
              file=sys.stderr)
    root_expires = load_root(ctx.metadata_dir).signed.expires
    if root_expires - datetime.now(UTC) < timedelta(days=60):
        print(f"note: root.json expires on {root_expires.date().isoformat()}; renew it with "
              "'bootpull repo renew-root' (needs the root key) or every node will stop "
              "accepting updates", file=sys.stderr)
    dirty = ctx.git.run("status", "--porcelain", "-z", "--", layout.SETTINGS_FILE,
                        layout.HOSTS_DIR, layout.ROLES_DIR).split(b"\0")
    if changed := [entry[3:].decode(errors="replace") for entry in dirty if entry]:
        print(f"note: uncommitted changes are not published: {', '.join(changed)} "
              "(commit them and publish again)", file=sys.stderr)
    if args.json:
        print(json.dumps({"commit": done.commit, "committed": done.committed,
                          "targets": done.targets_version, "snapshot": done.snapshot_version,
                          "timestamp": done.timestamp_version, "head_files": done.head_files,
                          "releases": list(done.releases)}))
    elif not done.committed:
        print(f"publish: nothing to publish: the signed metadata already covers HEAD "
              f"({done.commit[:12]})")
    else:
        print(f"published {done.commit[:12]}: targets v{done.targets_version}, snapshot "
              f"v{done.snapshot_version}, timestamp v{done.timestamp_version}; "
              f"{done.head_files} head files, {len(done.releases)} releases")
    return 0
