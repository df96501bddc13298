"""A role's secrets: age files in the repository, decrypted on the node into memory.

The repository holds each secret encrypted with age (X25519) to the nodes that may
read it, plus the admin's own recipient (``bootpull repo secret``, docs/admin.md
"Secrets"):

- ``roles/<role>/secrets/<NAME>.age``: for every node the repository assigns ``<role>``;
- ``secrets/<mac>/<NAME>.age``: for that one node (it wins over a role secret of the
  same NAME);
- beside each, ``<NAME>.age.recipients`` (TOML: who it is encrypted to, for ``repo
  lint``; the node does not read it).

``repo publish`` signs them like every file. The node verifies them with its role
(:mod:`bootpull.pull`; always from the deploy head, also for a pinned version, so a
rewrap reaches every node without a release), carries them in the Bundle still
encrypted, and at install:

1. :func:`decrypt` decrypts each with the node's age identity (``identity.age``) in
   memory; a file that is not age, or that is not encrypted to this node, is an
   :class:`~bootpull.errors.InstallError` whose hint names the node's key and
   ``bootpull repo secret rewrap``. Nothing has been written then.
2. :func:`place` writes them, mode 0400, into a new directory (mode 0700) under the
   secrets root (``/run/bootpull/secrets``; a tmpfs in the image), then points
   ``<root>/<role>`` at it by replacing a symbolic link (atomic). The role finds
   ``$BOOTPULL_SECRETS_DIR`` (``<root>/<role>``) with exactly the secrets of this
   install. :meth:`Placed.done` wipes the previous directory (overwritten with zeros,
   then removed) and those of other roles; :meth:`Placed.undo` puts the previous one
   back when the install fails.

Plaintext is never written to the state disk and never logged. A secrets root that is
not in memory (tmpfs, ramfs, an initramfs root) is said once on the console.

``$BOOTPULL_SECRETS_ROOT`` moves the secrets root (tests; docs/contract.md §9.2).
pyrage is imported when a secret is decrypted, not with this module.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bootpull.bundle import MODE_SYMLINK, BundleFile
from bootpull.errors import InstallError

#: the directory of a role's secrets (``roles/<role>/secrets``) and the top directory
#: of host secrets (``secrets/<mac>``)
SECRETS_DIR = "secrets"
SUFFIX = ".age"
#: who a secret is encrypted to, beside it: ``<NAME>.age.recipients`` (repo lint)
SIDECAR_SUFFIX = ".age.recipients"
#: the first line of every age file (age-encryption.org/v1)
AGE_HEADER = b"age-encryption.org/v1\n"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: the largest secret ``repo secret set`` takes (the node holds them in memory)
MAX_SECRET_BYTES = 1 << 20
DEFAULT_ROOT = Path("/run/bootpull/secrets")
ROOT_ENV = "BOOTPULL_SECRETS_ROOT"
ENV = "BOOTPULL_SECRETS_DIR"
MOUNTS_FILE = Path("/proc/mounts")
FILE_MODE = 0o400
DIR_MODE = 0o700
#: the secrets root when the role runs as its own user: it may pass, not list
ROOT_TRAVERSE_MODE = 0o711

_warned: set[str] = set()  # secrets roots already said to be on a disk


def role_secrets_dir(role: str) -> str:
    """``roles/<role>/secrets``: the secrets every node of ``role`` gets."""
    return f"roles/{role}/{SECRETS_DIR}"


def host_secrets_dir(mac: str) -> str:
    """``secrets/<mac>`` (canonical MAC): the secrets of that one node."""
    return f"{SECRETS_DIR}/{mac}"


def check_name(name: str) -> str | None:
    """Why ``name`` cannot be a secret's name, or None."""
    if NAME.match(name):
        return None
    return (f"{name[:80]!r} is not a secret name: 1 to 64 letters, digits, '.', '_' or "
            "'-', starting with a letter or digit")


def secret_name(path: str, directory: str) -> str | None:
    """The NAME of ``<directory>/<NAME>.age``, or None when ``path`` is not a secret file
    directly in ``directory`` (a sidecar, a subdirectory, another name)."""
    rest = path.removeprefix(directory.rstrip("/") + "/")
    if rest == path or "/" in rest or not rest.endswith(SUFFIX):
        return None
    name = rest[:-len(SUFFIX)]
    return name if check_name(name) is None else None


def secrets_root(override: Path | None = None) -> Path:
    """Where decrypted secrets go: ``override``, else ``$BOOTPULL_SECRETS_ROOT``, else
    ``/run/bootpull/secrets``."""
    if override is not None:
        return Path(override)
    env = os.environ.get(ROOT_ENV)
    return Path(env) if env else DEFAULT_ROOT


def secrets_dir(role: str, root: Path | None = None) -> Path:
    """``$BOOTPULL_SECRETS_DIR`` of ``role``: ``<root>/<role>``."""
    return secrets_root(root) / role


# -- decrypt -----------------------------------------------------------------------


@dataclass(frozen=True)
class Plain:
    """One decrypted secret. Its bytes never appear in a repr, a log or an error."""

    name: str
    source: str  # the repository path of the age file
    data: bytes = field(repr=False)


def _names(secrets: Sequence[BundleFile]) -> dict[str, BundleFile]:
    """NAME → file; a host secret (``secrets/<mac>/``) wins over the role's."""
    chosen: dict[str, BundleFile] = {}
    for item in sorted(secrets, key=lambda f: (f.path.startswith(SECRETS_DIR + "/"),
                                               f.path)):
        base = item.path.rsplit("/", 1)[-1]
        name = base[:-len(SUFFIX)] if base.endswith(SUFFIX) else base
        if why := check_name(name):
            raise InstallError(f"refusing the secret {item.path[:200]!r}: {why}",
                               hint="rename it with 'bootpull repo secret set' and publish")
        chosen[name] = item
    return chosen


def decrypt(secrets: Sequence[BundleFile], identity: Any, *, role: str,
            who: str) -> list[Plain]:
    """Every secret of a bundle, decrypted in memory with the age ``identity``.

    ``who`` names this node in the hint (``node 52-54-… (key SHA256:…, age age1…)``).
    Raises InstallError for a bundle with secrets and no identity, a file that is not
    age, and a secret this node is not a recipient of; nothing is written.
    """
    if not secrets:
        return []
    chosen = _names(secrets)
    rewrap = f"'bootpull repo secret rewrap {role}'"
    if identity is None:
        raise InstallError(
            f"role {role} has {len(chosen)} secret(s), and this node has no age key to "
            "decrypt them", why="the install was not given the node's identity",
            hint=f"check the node's key on the console (identity.age in the state "
            f"directory), enroll it ('bootpull repo enroll'), then run {rewrap} and publish")
    import pyrage

    out: list[Plain] = []
    for name, item in sorted(chosen.items()):
        if item.mode == MODE_SYMLINK:
            raise InstallError(f"the secret {item.path} is a symbolic link, not an age file",
                               hint="set it again with 'bootpull repo secret set' and publish")
        if not item.data.startswith(AGE_HEADER):
            raise InstallError(
                f"the secret {item.path} is not an age file",
                why=f"it does not start with {AGE_HEADER.decode().strip()!r}",
                hint=f"set it again with 'bootpull repo secret set {role} {name}' and publish")
        try:
            data = pyrage.decrypt(item.data, [identity])
        except Exception as exc:  # noqa: BLE001 - pyrage.DecryptError, and its kin
            reason = str(exc) or type(exc).__name__
            if "no matching keys" in reason.lower():
                raise InstallError(
                    f"{who} cannot decrypt {item.path}: it is not encrypted to this node",
                    why="the secret was set or rewrapped before this node's current key "
                    "was enrolled (or the node was re-imaged); the previous install keeps "
                    "running",
                    hint=f"enroll this key ('bootpull repo enroll'), then run {rewrap} "
                    "and 'bootpull repo publish'") from None
            raise InstallError(f"{who} cannot decrypt {item.path}: the age file is broken",
                               why=reason, hint=f"set it again with 'bootpull repo secret "
                               f"set {role} {name}' and publish") from None
        out.append(Plain(name, item.path, bytes(data)))
    return out


# -- place -------------------------------------------------------------------------


def _wipe_file(path: Path) -> None:
    """Overwrite with zeros, then remove (best effort: on a tmpfs this frees the pages)."""
    with contextlib.suppress(OSError):
        size = path.lstat().st_size
        if not path.is_symlink() and size:
            fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
            try:
                os.write(fd, b"\0" * size)
            finally:
                os.close(fd)
    with contextlib.suppress(OSError):
        path.unlink()


def wipe_dir(path: Path) -> None:
    """Wipe every file of a secrets directory, then remove it (no error if absent)."""
    if path.is_symlink():
        with contextlib.suppress(OSError):
            path.unlink()
        return
    if not path.is_dir():
        return
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            wipe_dir(child)
        else:
            with contextlib.suppress(OSError):
                child.chmod(0o600)
            _wipe_file(child)
    shutil.rmtree(path, ignore_errors=True)


def _same(directory: Path, plain: Sequence[Plain],
          owner: tuple[int, int] | None = None) -> bool:
    """True when ``directory`` holds exactly ``plain``, with mode 0400, all owned by
    ``owner`` (uid, gid), or by the node agent's uid when None."""
    def owned(st: os.stat_result) -> bool:
        if owner is None:
            return st.st_uid == os.geteuid()
        return (st.st_uid, st.st_gid) == owner

    try:
        found = {p.name for p in directory.iterdir()}
        if found != {p.name for p in plain} or not owned(directory.lstat()):
            return False
        for item in plain:
            path = directory / item.name
            st = path.lstat()
            if (st.st_mode & 0o7777) != FILE_MODE or path.is_symlink() \
                    or not owned(st) or path.read_bytes() != item.data:
                return False
    except OSError:
        return False
    return True


def in_memory(path: Path, mounts_file: Path = MOUNTS_FILE) -> bool | None:
    """Whether ``path`` is on a tmpfs, ramfs or initramfs root; None: cannot tell."""
    from bootpull.diskless import VOLATILE_FS, state_fs_type

    fstype = state_fs_type(path, mounts_file)
    return None if fstype is None else fstype in VOLATILE_FS


@dataclass
class Placed:
    """What :func:`place` did: ``done`` after a good install, ``undo`` after a failed one."""

    root: Path
    link: Path
    keep: Path | None = None  # the directory the link names now (None: no secrets)
    new: Path | None = None  # the directory written now (None: unchanged)
    old: Path | None = None  # the directory the link named before

    def done(self) -> None:
        """Wipe everything under the root but the link and what it names: the previous
        install's secrets, other roles', and what an interrupted run left. Never raises:
        what cannot be removed now goes at the next install."""
        try:
            entries = sorted(self.root.iterdir()) if self.root.is_dir() else []
        except OSError:
            return
        for entry in entries:
            if self.keep is not None and entry in (self.link, self.keep):
                continue
            with contextlib.suppress(OSError):
                if entry.is_dir() or entry.is_symlink():
                    wipe_dir(entry)
                else:
                    _wipe_file(entry)

    def undo(self) -> None:
        """Point the link back at the previous directory and wipe the new one."""
        if self.new is None:
            return
        with contextlib.suppress(OSError):
            if self.old is not None:
                _point(self.link, self.old.name)
            else:
                self.link.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            wipe_dir(self.new)


def _point(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` by replacing it with a new symbolic link (atomic)."""
    tmp = link.with_name(f".{link.name}.link-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    tmp.replace(link)


def _target(link: Path) -> Path | None:
    """The directory ``link`` names (a link made here), or None."""
    if not link.is_symlink():
        return None
    text = os.readlink(link)  # noqa: PTH115 - the link's own text
    target = link.parent / text
    return target if "/" not in text and target.is_dir() else None


def place(plain: Sequence[Plain], role: str, root: Path, *,
          warn: Callable[[str], None] | None = None,
          mounts_file: Path = MOUNTS_FILE, owner: tuple[int, int] | None = None) -> Placed:
    """Make ``<root>/<role>`` name a directory holding exactly ``plain`` (see the module
    docstring); call ``done`` or ``undo`` on the result.

    ``owner`` (uid, gid): a role with ``[run] user`` (bootpull.role_users) owns its
    directory and files, so that only it (and root) reads them; the root is then 0711,
    so that it can reach its own directory but list nothing.

    Without secrets nothing is created (a node whose roles have none never touches the
    secrets root), and ``done`` removes what an earlier install left. An OSError (the
    root cannot be made or written) is an InstallError, after the new directory is
    removed.
    """
    link = root / role
    try:
        old = _target(link)
    except OSError:  # an unreadable root: nothing of ours is there
        old = None
    if not plain:
        return Placed(root, link, None, None, old)
    if old is not None and _same(old, plain, owner):  # unchanged: nothing is rewritten
        return Placed(root, link, old, None, old)
    new: Path | None = None
    try:
        root.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        root.chmod(DIR_MODE if owner is None else ROOT_TRAVERSE_MODE)
        _say_where(root, warn, mounts_file)
        new = root / f".{role}.{time.time_ns()}"
        new.mkdir(mode=DIR_MODE)
        for item in plain:
            fd = os.open(new / item.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                         | os.O_NOFOLLOW, 0o600)
            try:
                view = memoryview(item.data)
                while view:
                    view = view[os.write(fd, view):]
                os.fchmod(fd, FILE_MODE)
                if owner is not None:
                    os.fchown(fd, *owner)
            finally:
                os.close(fd)
        new.chmod(DIR_MODE)
        if owner is not None:
            os.chown(new, *owner)
        if link.is_dir() and not link.is_symlink():  # a plain directory (made by hand)
            wipe_dir(link)
        _point(link, new.name)
    except OSError as exc:
        if new is not None:
            wipe_dir(new)
        raise InstallError(f"cannot write the secrets of {role} to {link}",
                           why=str(exc), hint=f"the secrets root {root} must be writable "
                           f"by the node agent (in the boot image it is in memory); "
                           f"${ROOT_ENV} moves it") from None
    return Placed(root, link, new, new, old)


def _say_where(root: Path, warn: Callable[[str], None] | None, mounts_file: Path) -> None:
    """Warn once per root that is not in memory (or when that cannot be told)."""
    if warn is None or str(root) in _warned:
        return
    memory = in_memory(root, mounts_file)
    if memory:
        return
    _warned.add(str(root))
    if memory is None:
        warn(f"cannot tell whether the secrets root {root} is in memory ({mounts_file} "
             "unreadable): decrypted secrets may be on a disk")
    else:
        warn(f"the secrets root {root} is not on a tmpfs: decrypted secrets are written "
             "to a disk there; mount a tmpfs on it (in the boot image it is in memory)")
