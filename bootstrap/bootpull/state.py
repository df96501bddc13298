"""The node's state directory: what survives a reboot, and how it is written.

Layout of ``<state>/`` (default ``/var/lib/bootpull``; ``--state-dir`` in tests)::

    lock                      held (flock) by the one ``node run`` using this directory
    status.json               NodeStatus: what runs now, what ran before, health (JSON)
    counters.json             retries / restarts / fallbacks, summed over every boot
    bad.json                  install ids that failed their health check: never retried
    current -> roles/<role>/<id>    the install that runs (switched atomically)
    lkg     -> roles/<role>/<id>    the last-known-good: the install ``current`` replaced
    roles/<role>/<id>/        one complete install (see below); ``<id>`` is
                              ``<version>-<commit[:12]>-<content digest[:8]>``, or
                              ``head-<content digest[:20]>`` following the head
    roles/<role>/.staging-*   an install being written; removed by recover()
    roles/<role>/.trash-*     an install being deleted; removed by recover()
    console.jsonl             the console's records as JSON lines (.1: the one before)
    spool/<seq>.json          events not delivered yet, one fsynced file each, in order
    spool/seq                 the next spool sequence number
    cache/                    the git object cache of the fetch stage
    data/<role>/              the role's $BOOTPULL_DATA_DIR: kept across its versions
                              and reboots (in RAM on a diskless node); owned by
                              the role's [run] user, when it has one
    users.json                the uid and gid given to each role's user, reused at
                              every boot (bootpull.role_users)
    trust/                    the verify stage's metadata and version floor (trust.py)

One install holds the verified payload (``roles/<role>/files/`` of the repository) at
its top, so the role's command and working directory are relative to it::

    roles/<role>/<id>/...                      the verified payload, modes kept
    roles/<role>/<id>/.bootpull/role.toml      the verified role.toml
    roles/<role>/<id>/.bootpull/record.json    InstallRecord: spec, vars, each file's sha256

(a bundle with its own ``.bootpull/`` is refused).

The ``current`` and ``lkg`` links live at the top of the state directory, not under a
role, so the last-known-good also survives a node being moved to another role.

Every file here is a typed dataclass written as JSON, atomically: a temporary file,
fsync, ``os.replace``, then fsync of the directory. Nothing is ever pickled. A file
that is missing or unreadable reads as its default (a fresh node), and says so.

A write that fails (a full or failing disk: ``ENOSPC``, ``EIO``, any ``OSError``)
changes nothing and raises the ``OSError``, naming the file. The callers decide what
it means: :func:`bootpull.install.install` makes it an ``InstallError``; the status
file, the counters, the bad-version list and the spool are said once on the console
(:class:`DiskTrouble`) while the node goes on running its role.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bootpull.backoff import Counters
from bootpull.bundle import Assignment, HealthSpec, RoleSpec

if TYPE_CHECKING:
    from types import TracebackType

    from bootpull.console import Console

FORMAT = 1
DEFAULT_STATE_DIR = Path("/var/lib/bootpull")
META_DIR = ".bootpull"
RECORD_NAME = "record.json"
_SAFE = re.compile(r"[^A-Za-z0-9._+-]")


# -- atomic writes -------------------------------------------------------------------


def _name(exc: BaseException, path: Path) -> None:
    """Let an OSError of ``os.write`` or ``os.fsync`` (which name no file) name ``path``."""
    if isinstance(exc, OSError) and exc.filename is None:
        exc.filename = str(path)


@contextlib.contextmanager
def naming(path: Path) -> Iterator[None]:
    """An OSError raised inside names ``path`` when it names no file of its own."""
    try:
        yield
    except OSError as exc:
        _name(exc, path)
        raise


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with naming(path):
            os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644,
                 owner: tuple[int, int] | None = None) -> None:
    """Replace ``path`` with ``data``: all of it or none of it, even across a power cut.
    ``owner`` (uid, gid) is given to the new file (as /etc/passwd keeps its own)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        try:
            os.fchmod(fd, mode)  # a temp file left by a killed run keeps its own mode
            if owner is not None:
                os.fchown(fd, *owner)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(path)
    except BaseException as exc:  # a failed write changes nothing, leaves no temp file
        with contextlib.suppress(OSError):
            tmp.unlink()
        _name(exc, path)
        raise
    fsync_dir(path.parent)


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: Path) -> Any:
    """The parsed file, or None when it is missing or not valid JSON."""
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


# -- a full or failing disk ---------------------------------------------------------


def disk_trouble(exc: OSError) -> str:
    """What a failed write to the state disk means, in a few words."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on the state disk"
    if exc.errno == errno.EIO:
        return "an I/O error on the state disk"
    if exc.errno == errno.EROFS:
        return "the state disk is read-only"
    return "the state disk could not be written"


def disk_hint(root: Path, exc: OSError, *, needed: int = 0) -> str:
    """What to do about ``exc`` on the state directory ``root``."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        more = f"; this needs about {needed / 2**20:.1f} MiB" if needed else ""
        return (f"free space on {root} ('df -h {root}' shows what is left{more}), or give "
                "the node a bigger state disk")
    if exc.errno == errno.EIO:
        return (f"check the disk of {root}: the kernel log ('dmesg') shows its I/O errors; "
                "replace a failing disk")
    return f"check the disk of {root}: mounted, writable, with space and the right owner"


class DiskTrouble:
    """Writes to the state disk the node can go on without (the status file, the
    counters, the spool): a failure is an error on the console once, not once a minute,
    and a line again when the file is written again."""

    def __init__(self, console: Console, root: Path) -> None:
        self.console = console
        self.root = root
        self._failing: dict[str, int] = {}  # what → failed writes in a row

    def writing(self, what: str, consequence: str) -> _Writing:
        """``with trouble.writing(what, consequence):`` the write; an OSError from it
        is said (:meth:`failed`), not raised."""
        return _Writing(self, what, consequence)

    def failed(self, what: str, exc: OSError, consequence: str) -> None:
        failures = self._failing.get(what, 0)
        self._failing[what] = failures + 1
        if failures:
            self.console.debug(f"still cannot write {what}: {exc}")
            return
        self.console.error(f"could not write {what}: {disk_trouble(exc)} ({exc}); "
                           f"{consequence}; {disk_hint(self.root, exc)}")

    def written(self, what: str) -> None:
        failures = self._failing.pop(what, 0)
        if failures:
            self.console.info(f"writing {what} works again (after {failures} "
                              f"failure{'s' if failures > 1 else ''})")


class _Writing:
    def __init__(self, trouble: DiskTrouble, what: str, consequence: str) -> None:
        self.trouble, self.what, self.consequence = trouble, what, consequence

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        if exc is None:
            self.trouble.written(self.what)
        elif isinstance(exc, OSError):
            self.trouble.failed(self.what, exc, self.consequence)
            return True
        return False


def switch_link(link: Path, target: str) -> None:
    """Point symlink ``link`` at ``target`` atomically (a new link, then os.replace)."""
    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(target)
    tmp.replace(link)
    fsync_dir(link.parent)


# -- typed records -------------------------------------------------------------------


def install_id(version: str, commit: str, digest: str) -> str:
    """``<version>-<commit[:12]>-<digest[:8]>``; ``[^A-Za-z0-9._+-]`` in version → ``_``.

    ``digest`` covers the role spec, the assignment and every file hash, so one id is
    always one content: a changed ``[vars]`` on a pinned version is a new install.
    """
    safe = _SAFE.sub("_", version)[:80].lstrip(".") or "v"
    return f"{safe}-{commit[:12]}-{digest[:8]}"


@dataclass(frozen=True)
class FileRecord:
    path: str  # relative to files/
    mode: int  # git mode, as in the bundle
    sha256: str  # of the content (of the target, for a symlink)
    size: int


@dataclass(frozen=True)
class InstallRecord:
    """Everything needed to run an install again without the repository."""

    role: RoleSpec
    assignment: Assignment
    version: str
    commit: str
    installed_at: str
    files: tuple[FileRecord, ...]
    ident: str  # the install id, the directory's name
    format: int = FORMAT

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: Any) -> InstallRecord:
        """Parse a record; raise ValueError when it is not one this code wrote."""
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise ValueError("not a format-1 install record")
        role = obj["role"]
        health = role.get("health")
        spec = RoleSpec(
            name=str(role["name"]), description=str(role["description"]),
            command=tuple(str(a) for a in role["command"]), restart=role["restart"],
            hooks=tuple(tuple(str(a) for a in h) for h in role["hooks"]),
            health=None if health is None else HealthSpec(
                command=tuple(str(a) for a in health["command"]),
                interval=float(health["interval"]), timeout=float(health["timeout"])),
            silent_after=None if role.get("silent_after") is None
            else float(role["silent_after"]),
            user=None if role.get("user") is None else str(role["user"]),
            group=None if role.get("group") is None else str(role["group"]),
            capabilities=tuple(str(c) for c in role.get("capabilities") or ()),
        )
        a = obj["assignment"]
        assignment = Assignment(
            role=str(a["role"]), source=str(a["source"]), hostname=a.get("hostname"),
            version=a.get("version"), log_level=a.get("log_level"),
            vars={str(k): str(v) for k, v in (a.get("vars") or {}).items()},
        )
        files = tuple(FileRecord(path=str(f["path"]), mode=int(f["mode"]),
                                 sha256=str(f["sha256"]), size=int(f["size"]))
                      for f in obj["files"])
        return cls(role=spec, assignment=assignment, version=str(obj["version"]),
                   commit=str(obj["commit"]), installed_at=str(obj["installed_at"]),
                   files=files, ident=str(obj["ident"]))


@dataclass(frozen=True)
class Installed:
    """One complete install on disk."""

    path: Path
    record: InstallRecord

    @property
    def id(self) -> str:
        return self.record.ident

    @property
    def role(self) -> str:
        return self.record.role.name

    @property
    def version(self) -> str:
        return self.record.version

    @property
    def commit(self) -> str:
        return self.record.commit


@dataclass
class NodeStatus:
    """``status.json``: what ``bootpull node status`` prints, beside the counters."""

    format: int = FORMAT
    node: str = ""
    hostname: str = ""
    role: str = ""
    version: str = ""
    commit: str = ""
    lkg_version: str = ""
    lkg_commit: str = ""
    health: str = "unknown"  # unknown / starting / healthy / unhealthy / stopped
    stale: bool = False  # running on expired metadata: never "fresh"
    report_url: str = ""  # the repository's [report] url, as last verified
    last_stage: str = ""
    last_status: str = ""  # ok / warn / fail
    last_message: str = ""
    updated: str = ""
    drift: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, obj: Any) -> NodeStatus:
        status = cls()
        if isinstance(obj, dict) and obj.get("format") == FORMAT:
            for name in ("node", "hostname", "role", "version", "commit", "lkg_version",
                         "lkg_commit", "health", "last_stage", "last_status",
                         "last_message", "updated", "report_url"):
                value = obj.get(name)
                if isinstance(value, str):
                    setattr(status, name, value)
            status.stale = obj.get("stale") is True
            drift = obj.get("drift")
            if isinstance(drift, list):
                status.drift = [str(d) for d in drift]
        return status


# -- the directory -------------------------------------------------------------------


class StateDir:
    """The paths of one state directory and the small files in it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._bad: dict[str, str] = {}  # marked bad in this run: known even if unsaved

    @property
    def roles(self) -> Path:
        return self.root / "roles"

    @property
    def current_link(self) -> Path:
        return self.root / "current"

    @property
    def lkg_link(self) -> Path:
        return self.root / "lkg"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def console_log(self) -> Path:
        return self.root / "console.jsonl"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def install_dir(self, role: str, ident: str) -> Path:
        return self.roles / role / ident

    def data_dir(self, role: str) -> Path:
        """The role's ``$BOOTPULL_DATA_DIR`` (made by :meth:`ensure_data_dir`)."""
        return self.root / "data" / role

    def ensure_data_dir(self, role: str) -> Path:
        """Make the role's data directory (0700) unless it exists; it is never emptied
        by an install, an upgrade or a rollback."""
        path = self.data_dir(role)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path

    def ensure(self) -> None:
        for path in (self.root, self.roles, self.spool):
            path.mkdir(parents=True, exist_ok=True)

    def link_text(self, link: Path) -> str:
        """Where the symlink ``link`` points, as written; "" when it cannot be read."""
        try:
            return str(link.readlink())
        except OSError:
            return ""

    def lock(self) -> int:
        """Take ``<state>/lock`` (flock, exclusive) for this process; return its fd.

        One ``node run`` per state directory: a second one would remove the first one's
        staging directory as "left over". The lock goes when the fd is closed or the
        process ends, however it ends.
        """
        import fcntl

        from bootpull.errors import InstallError, UsageError

        try:
            self.ensure()
            fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise InstallError(f"{disk_trouble(exc)}: the state directory {self.root} "
                               "cannot be used", why=str(exc),
                               hint=disk_hint(self.root, exc)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UsageError(f"another bootpull node run is using {self.root}",
                             why=f"{self.root / 'lock'} is locked by a running process",
                             hint="stop that one first, or give this one its own "
                             "--state-dir") from None
        return fd

    # -- installs --

    def _resolve(self, link: Path) -> Installed | None:
        target = self.link_text(link)
        parts = Path(target).parts
        if len(parts) != 3 or parts[0] != "roles" or ".." in parts:
            return None
        return self.load_install(self.root / target)

    def load_install(self, path: Path) -> Installed | None:
        """The install at ``path``, or None when it is not a complete one."""
        try:
            record = InstallRecord.from_json(read_json(path / META_DIR / RECORD_NAME))
        except (ValueError, KeyError, TypeError):
            return None
        return Installed(path, record)

    def current(self) -> Installed | None:
        return self._resolve(self.current_link)

    def lkg(self) -> Installed | None:
        return self._resolve(self.lkg_link)

    def link_target(self, installed: Installed) -> str:
        return str(installed.path.relative_to(self.root))

    # -- status, counters, bad versions --

    def load_status(self) -> NodeStatus:
        return NodeStatus.from_json(read_json(self.root / "status.json"))

    def save_status(self, status: NodeStatus) -> None:
        from bootpull.events import now_rfc3339

        status.updated = now_rfc3339()
        write_json(self.root / "status.json", asdict(status))

    def load_counters(self) -> Counters:
        obj = read_json(self.root / "counters.json")
        counters = Counters()
        if isinstance(obj, dict):
            for key in ("retries", "restarts", "fallbacks"):
                value = obj.get(key)
                if type(value) is int and value >= 0:
                    setattr(counters, key, value)
            reasons = obj.get("by_reason")
            if isinstance(reasons, dict):
                counters.by_reason = {str(k): int(v) for k, v in reasons.items()
                                      if type(v) is int}
        return counters

    def save_counters(self, counters: Counters) -> None:
        write_json(self.root / "counters.json", asdict(counters))

    def bad_ids(self) -> dict[str, str]:
        """Install id → why it was marked bad."""
        obj = read_json(self.root / "bad.json")
        saved = {str(k): str(v) for k, v in obj.items()} if isinstance(obj, dict) else {}
        return {**saved, **self._bad}

    def mark_bad(self, ident: str, why: str) -> None:
        """Never retry ``ident``: in this run even when ``bad.json`` cannot be written
        (the OSError is raised after it is remembered)."""
        self._bad[ident] = why
        write_json(self.root / "bad.json", self.bad_ids())
