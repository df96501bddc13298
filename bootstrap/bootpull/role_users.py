"""A role's own user: ``[run] user``, ``group`` and ``capabilities`` (docs/contract.md §9.6).

- The names: :func:`check_user_name` (also for groups) and the Linux capability list
  :data:`CAPABILITIES` with their numbers; :func:`capability` reads ``CAP_NET_RAW``,
  ``net_raw``, any case. ``layout.parse_role`` applies both.
- At install (and again at start, since ``/etc`` of the boot image is in RAM)
  :func:`ensure_user` creates the user and its group in ``<etc>/passwd`` and
  ``<etc>/group`` when they are missing: each file is rewritten atomically (a temporary
  file, fsync, rename), every existing line kept byte for byte (a malformed one too).
  The ids come from ``<state>/users.json`` when the node had them before, so that the
  role's data directory on a state disk keeps its owner across reboots; a new one is
  the lowest id in :data:`FIRST_ID`..:data:`LAST_ID` that no line and no record uses.
- :func:`own_tree` gives the role's data directory (all of it, when the owner
  changed) to the user; :mod:`bootpull.role_secrets` gives it the secrets.
- :func:`wrap` makes the argv of a command, hook or health check that runs as the
  user: through :mod:`bootpull.privdrop` (why a wrapper: its docstring);
  :func:`check_can_drop` first says, with a why and a hint, what would make the drop
  fail (not root, a capability the kernel or the agent itself does not have).

``$BOOTPULL_ETC_DIR`` in the node agent's environment moves ``/etc`` (tests).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bootpull import privdrop
from bootpull.errors import BootpullError, InstallError

if TYPE_CHECKING:
    from bootpull.bundle import RoleSpec
    from bootpull.state import StateDir

#: the Linux capabilities (linux/capability.h, capabilities(7)) and their bit numbers
CAPABILITIES: dict[str, int] = {name: number for number, name in enumerate((
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid",
    "setuid", "setpcap", "linux_immutable", "net_bind_service", "net_broadcast",
    "net_admin", "net_raw", "ipc_lock", "ipc_owner", "sys_module", "sys_rawio",
    "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice",
    "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write",
    "audit_control", "setfcap", "mac_override", "mac_admin", "syslog", "wake_alarm",
    "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore"))}

#: a user or group name: a lowercase letter first, then lowercase letters, digits, '_'
#: and '-', at most 32 (Debian's rule, without capitals and '$'); "root" is refused
USER_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
#: the ids a new user or group gets: the lowest free one in this range
FIRST_ID = 200
LAST_ID = 999
SHELL = "/bin/false"  # busybox's false in the boot image
USERS_FILE = "users.json"
ETC_ENV = "BOOTPULL_ETC_DIR"
DEFAULT_ETC = Path("/etc")
GECOS = "bootpull role {role}"


def check_user_name(name: str, what: str = "user") -> str | None:
    """Why ``name`` cannot be a role's ``user`` (or ``group``), or None when it can."""
    if name == "root":
        return (f"'{what} = \"root\"' is not allowed: " + (
            "a role without 'user' runs as root already" if what == "user"
            else "a role's own user does not get root's group"))
    if USER_NAME.match(name):
        return None
    return (f"{name!r} is not a valid {what} name: use a lowercase letter first, then "
            "lowercase letters, digits, '_' and '-' (at most 32)")


def capability(name: str) -> str | None:
    """The canonical name (``net_raw``) of ``CAP_NET_RAW``, ``net_raw``, any case; or None."""
    key = name.strip().lower()
    key = key.removeprefix("cap_")
    return key if key in CAPABILITIES else None


def capability_mask(names: Sequence[str]) -> int:
    mask = 0
    for name in names:
        mask |= 1 << CAPABILITIES[name]
    return mask


@dataclass(frozen=True)
class RunAs:
    """Who a role's processes run as: the user, its group and the ambient capabilities."""

    user: str
    group: str
    uid: int
    gid: int
    capabilities: tuple[str, ...] = ()  # canonical names (net_raw)
    home: str = "/"

    @property
    def mask(self) -> int:
        return capability_mask(self.capabilities)


def etc_dir(override: Path | None = None) -> Path:
    """``override``, else ``$BOOTPULL_ETC_DIR``, else ``/etc``."""
    if override is not None:
        return Path(override)
    env = os.environ.get(ETC_ENV)
    return Path(env) if env else DEFAULT_ETC


# -- /etc/passwd and /etc/group ------------------------------------------------------


@dataclass(frozen=True)
class _Entries:
    """One of ``passwd`` or ``group``: name → id of its good lines, every id in use, and
    the names of malformed lines."""

    text: bytes
    ids: dict[str, int]
    used: set[int]
    malformed: set[str]


def _read_entries(path: Path, fields: int) -> _Entries:
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        text = b""
    ids: dict[str, int] = {}
    used: set[int] = set()
    malformed: set[str] = set()
    for raw in text.splitlines():
        line = raw.decode("utf-8", "replace")
        parts = line.split(":")
        if len(parts) > 2 and parts[2].isdigit():
            used.add(int(parts[2]))
        good = (len(parts) == fields and parts[0] and parts[2].isdigit()
                and (fields != 7 or parts[3].isdigit()))
        if good:
            ids.setdefault(parts[0], int(parts[2]))
        elif parts[0] and not line.startswith("#"):
            malformed.add(parts[0])
    return _Entries(text, ids, used, malformed)


def _append_line(path: Path, old: bytes, line: str) -> None:
    """``path`` with ``line`` added: a temp file beside it (same mode and owner), fsync,
    rename, fsync of the directory. Every existing byte is kept."""
    from bootpull.state import write_atomic

    data = old + (b"\n" if old and not old.endswith(b"\n") else b"") + line.encode() + b"\n"
    try:
        st: os.stat_result | None = path.stat()
    except FileNotFoundError:
        st = None
    write_atomic(path, data, mode=st.st_mode & 0o7777 if st else 0o644,
                 owner=(st.st_uid, st.st_gid) if st else None)


def _lowest_free(used: set[int]) -> int | None:
    return next((i for i in range(FIRST_ID, LAST_ID + 1) if i not in used), None)


def _load_record(state: StateDir) -> tuple[dict[str, int], dict[str, int]]:
    from bootpull.state import read_json

    doc = read_json(state.root / USERS_FILE)
    if not isinstance(doc, dict):
        return {}, {}

    def ids(key: str) -> dict[str, int]:
        table = doc.get(key)
        if not isinstance(table, dict):
            return {}
        return {str(k): v for k, v in table.items()
                if isinstance(v, int) and not isinstance(v, bool) and v > 0}

    return ids("users"), ids("groups")


def ensure_user(spec: RoleSpec, state: StateDir, *, etc: Path | None = None,
                error: type[BootpullError] = InstallError,
                say: Callable[[str], None] | None = None) -> RunAs | None:
    """Create ``spec.user`` and its group when missing; None for a role without ``user``.

    The ids: those in ``/etc`` when the names are there; else those recorded in
    ``<state>/users.json`` (unless another name took the id meanwhile); else the lowest
    free one in FIRST_ID..LAST_ID. The record is written first, so an id once given out
    is the one the next boot uses. Any failure is an ``error`` with why and hint.
    """
    if spec.user is None:
        return None
    user, group = spec.user, spec.group or spec.user
    etc = etc_dir(etc)
    home = str(state.data_dir(spec.name))
    if ":" in home or "\n" in home:
        home = "/"
    try:
        return _ensure(spec, state, etc, user, group, home, error, say)
    except OSError as exc:
        raise error(f"cannot create the user {user} of role {spec.name} in {etc}",
                    why=f"{exc.strerror or exc}: {exc.filename or etc}",
                    hint=f"{etc}/passwd and {etc}/group must be writable by the node agent "
                    "(root); in the boot image they are in RAM") from None


def _ensure(spec: RoleSpec, state: StateDir, etc: Path, user: str, group: str, home: str,
            error: type[BootpullError], say: Callable[[str], None] | None) -> RunAs:
    from bootpull.state import write_json

    passwd_path, group_path = etc / "passwd", etc / "group"
    passwd = _read_entries(passwd_path, 7)
    groups = _read_entries(group_path, 4)
    for name, entries, path in ((user, passwd, passwd_path), (group, groups, group_path)):
        if name in entries.malformed and name not in entries.ids:
            raise error(f"the line of {name} in {path} is malformed",
                        why="bootpull keeps such a line as it is and cannot use it",
                        hint=f"fix or remove the line of {name} in {path}")
    unknown = [c for c in spec.capabilities if c not in CAPABILITIES]
    if unknown:  # parse_role refuses them: only a hand-edited install record has them
        raise error(f"role {spec.name} names unknown capabilities: {', '.join(unknown)}",
                    hint="publish the role again (its role.toml is checked then)")
    users_rec, groups_rec = _load_record(state)

    def choose(name: str, entries: _Entries, record: dict[str, int], kind: str) -> int:
        if name in entries.ids:
            return entries.ids[name]
        wanted = record.get(name)
        taken = entries.used | {v for k, v in record.items() if k != name}
        if wanted is not None and wanted not in entries.used:
            return wanted
        new = _lowest_free(taken | ({wanted} if wanted is not None else set()))
        if new is None:
            raise error(f"no free {kind} id for {name} in {FIRST_ID}..{LAST_ID}",
                        hint=f"remove unused entries from {etc}/passwd and {etc}/group")
        if wanted is not None and say is not None:
            say(f"the {kind} id {wanted} recorded for {name} is taken in {etc}: "
                f"{name} gets {new} (its data directory is given to it)")
        return new

    gid = choose(group, groups, groups_rec, "group")
    uid = choose(user, passwd, users_rec, "user")
    if uid == 0 or gid == 0:
        raise error(f"the user {user} of role {spec.name} is uid {uid}, gid {gid} in {etc}",
                    why="a role's own user must not be root in disguise",
                    hint=f"give {user} another id in {etc}/passwd and {etc}/group, or "
                    "choose another [run] user")
    if users_rec.get(user) != uid or groups_rec.get(group) != gid:
        users_rec[user], groups_rec[group] = uid, gid
        write_json(state.root / USERS_FILE, {"format": 1, "users": users_rec,
                                             "groups": groups_rec})
    made = []
    if group not in groups.ids:
        _append_line(group_path, groups.text, f"{group}:!:{gid}:")
        made.append(f"group {group} (gid {gid})")
    if user not in passwd.ids:
        shadow = etc / "shadow"
        if shadow.exists():
            old = shadow.read_bytes()
            if not any(line.split(b":", 1)[0] == user.encode() for line in old.splitlines()):
                _append_line(shadow, old, f"{user}:!:::::::")
        password = "x" if shadow.exists() else "!"
        _append_line(passwd_path, passwd.text, f"{user}:{password}:{uid}:{gid}:"
                     f"{GECOS.format(role=spec.name)}:{home}:{SHELL}")
        made.append(f"user {user} (uid {uid})")
    if made and say is not None:
        say(f"created {' and '.join(made)} for role {spec.name} in {etc}")
    return RunAs(user=user, group=group, uid=uid, gid=gid,
                 capabilities=tuple(spec.capabilities), home=home)


# -- ownership ------------------------------------------------------------------------


def own_tree(path: Path, run_as: RunAs, *, error: type[BootpullError] = InstallError) -> None:
    """Give ``path`` (a directory) to the role's user and group: all of it when its
    owner is not theirs (a new user, a changed id), nothing when it already is."""
    try:
        st = path.lstat()
        if (st.st_uid, st.st_gid) == (run_as.uid, run_as.gid):
            return
        os.lchown(path, run_as.uid, run_as.gid)
        for top, dirs, files in os.walk(path):
            for name in dirs + files:
                os.lchown(Path(top, name), run_as.uid, run_as.gid)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise error(f"cannot give {path} to the user {run_as.user} (uid {run_as.uid})",
                    why=f"{exc.strerror or exc}: {exc.filename or path}",
                    hint="the node agent must run as root on a file system with owners "
                    "(ext4, tmpfs; not vfat)") from None


# -- the drop -------------------------------------------------------------------------


def _status_mask(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_can_drop(run_as: RunAs, *, error: type[BootpullError], what: str) -> None:
    """Raise ``error`` (why, hint) when the drop to ``run_as`` cannot work here."""
    if os.geteuid() != 0:
        raise error(f"{what} cannot run as user {run_as.user}: the node agent is not root "
                    f"(uid {os.geteuid()})",
                    hint="run the node agent as root (it is, in the boot image), or remove "
                    "[run] user from role.toml")
    try:
        last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        last = None
    have = _status_mask("CapPrm")
    bounding = _status_mask("CapBnd")
    for name in run_as.capabilities:
        bit = CAPABILITIES[name]
        if last is not None and bit > last:
            raise error(f"{what} cannot get the capability {name}: this kernel does not "
                        f"know it", why=f"the kernel knows capabilities 0..{last}; "
                        f"{name} is {bit}",
                        hint=f"remove {name} from [run] capabilities, or boot a newer kernel")
        for mask, which in ((have, "permitted"), (bounding, "bounding")):
            if mask is not None and not mask >> bit & 1:
                raise error(f"{what} cannot get the capability {name}: the node agent "
                            f"does not have it itself (not in its {which} set)",
                            why="a container or the init that started the agent took it",
                            hint=f"start the node agent with {name}, or remove it from "
                            "[run] capabilities")


def wrap(argv: Sequence[str], run_as: RunAs, env: Mapping[str, str]
         ) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that run ``argv`` as ``run_as``: through the wrapper,
    with ``HOME`` the user's home (the role's data directory)."""
    out = dict(env)
    out["HOME"] = run_as.home
    keep = "1" if "LC_CTYPE" in out else "0"
    return [sys.executable, "-I", "-S", privdrop.__file__, run_as.user, str(run_as.uid),
            str(run_as.gid), str(run_as.mask), keep, "--", *argv], out


def drop_failure(code: int | None, output: str) -> str | None:
    """The wrapper's own message when it exited ``code`` (a failed drop or exec), or None."""
    if code not in (privdrop.DROP_FAILED, privdrop.EXEC_FAILED):
        return None
    for line in reversed(output.strip().splitlines()):
        if line.startswith(privdrop.MARK):
            return line[len(privdrop.MARK):].strip()
    return None


DROP_HINT = ("check [run] user and capabilities in role.toml, and that the node agent "
             "runs as root with those capabilities (docs/admin.md \"What runs as root, and "
             "when\")")
