"""Install a verified bundle: staging → hooks → atomic switch of ``current`` → LKG kept.

The steps, each safe to interrupt with ``kill -9``:

1. :func:`check_files` (pure) refuses hostile entries before a byte is written:
   absolute paths, ``..``/``.``/empty components, control characters, duplicate paths,
   a file that is also a directory of another entry, entries below a symlink, symlinks
   whose target leaves the install directory (following the bundle's other links), any
   entry under ``.bootpull/`` (bootpull's own), and any mode but a regular file or a
   symlink (device files, FIFOs, sockets, submodules, set-id bits).
2. Everything is written into ``roles/<role>/.staging-<id>.<pid>/`` with
   ``O_EXCL|O_NOFOLLOW``, modes kept, every file and directory fsynced; then
   ``.bootpull/role.toml`` and the :class:`~bootpull.state.InstallRecord` (with each
   file's SHA-256) in ``.bootpull/record.json``.
3. The role's install hooks run in the staging directory, with the role's environment.
4. The staging directory is renamed to ``roles/<role>/<id>/`` (atomic).
5. ``lkg`` is pointed at the install ``current`` points to, then ``current`` at the new
   one, each by ``os.replace`` of a fresh symlink (atomic), each followed by a
   directory fsync.
6. Installs that are neither ``current`` nor ``lkg`` are renamed to ``.trash-*`` and
   removed.

A crash leaves a ``.staging-*`` or ``.trash-*`` directory at most, which
:func:`recover` removes on the next run; ``current`` always names a complete install.
A full or failing disk (any ``OSError`` while writing) is an ``InstallError`` that says
so, after the staging directory (and a new install ``current`` does not name) is
removed: ``current`` and ``lkg`` are untouched.
An unchanged install id (the same role, version, commit and file hashes; for a head
install, the same content) installs nothing — unless its files changed on disk
(:func:`check_drift`): then a fresh copy of the same verified bundle is installed
beside it and switched to the same way. So is one whose id names the last-known-good
when the last-known-good's files changed on disk.

A node that follows the deploy head names its install by content alone
(:func:`bundle_id`): a new head commit that changes nothing this node installs is the
same install, so nothing is written and the role is not restarted. Its record is
relabelled with the new ``head-<commit>`` (:func:`relabel`), which is what the node then
reports; the role keeps the environment it was started with.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from bootpull.bundle import MODE_SYMLINK, Bundle, BundleFile
from bootpull.console import Console
from bootpull.errors import HookFailed, InstallError, RunError
from bootpull.events import now_rfc3339
from bootpull.layout import check_role_name
from bootpull.processes import resolve_command, run_bounded
from bootpull.role_users import (
    DROP_HINT,
    RunAs,
    check_can_drop,
    drop_failure,
    ensure_user,
    own_tree,
    wrap,
)
from bootpull.state import (
    META_DIR,
    RECORD_NAME,
    DiskTrouble,
    FileRecord,
    Installed,
    InstallRecord,
    StateDir,
    disk_hint,
    disk_trouble,
    fsync_dir,
    install_id,
    naming,
    switch_link,
    write_atomic,
    write_json,
)

MAX_LINK_HOPS = 40
HEAD_PREFIX = "head-"  # the version of a bundle that follows the deploy head
HOOK_TIMEOUT = 300.0


# -- pure checks ---------------------------------------------------------------------


def _hostile(path: str, what: str, hint: str = "") -> InstallError:
    return InstallError(
        f"refusing to install {path[:200]!r}: {what}",
        why="a bundle entry would write outside the install directory or make a "
        "special file",
        hint=hint or "fix the path in the role's files/ directory, then publish again",
    )


def _components(path: str) -> list[str]:
    if not isinstance(path, str) or not path:
        raise _hostile(str(path), "the path is empty")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        raise _hostile(path, "the path contains a control character")
    if path.startswith("/"):
        raise _hostile(path, "the path is absolute")
    parts = path.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise _hostile(path, f"the path has a {part or 'empty'!r} component")
        if len(part.encode("utf-8", "surrogatepass")) > 255:
            raise _hostile(path, "a path component is longer than 255 bytes")
    return parts


def _resolve_link(start: list[str], target: str, links: Mapping[str, str], path: str) -> None:
    """Follow ``target`` from directory ``start`` through the bundle's own links.

    Raise InstallError if it would ever leave the root; a target that ends at a name
    the bundle does not have is fine (a dangling link inside the root hurts nothing).
    """
    if not target or "\x00" in target:
        raise _hostile(path, "the symlink target is empty or has a NUL byte")
    if target.startswith("/"):
        raise _hostile(path, f"the symlink points at the absolute path {target[:100]!r}",
                       "use a relative link that stays inside the role's files")
    stack = list(start)
    pending = target.split("/")
    hops = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                raise _hostile(path, f"the symlink target {target[:100]!r} leaves the "
                               "install directory",
                               "use a relative link that stays inside the role's files")
            stack.pop()
            continue
        stack.append(part)
        joined = "/".join(stack)
        if joined in links:
            hops += 1
            if hops > MAX_LINK_HOPS:
                raise _hostile(path, "the symlink is part of a loop")
            inner = links[joined]
            if inner.startswith("/"):
                raise _hostile(path, "the symlink goes through an absolute symlink")
            stack.pop()
            pending = inner.split("/") + pending


def check_files(files: Sequence[BundleFile]) -> None:
    """Refuse a bundle whose entries could write outside the install dir or make special files."""
    seen: set[str] = set()
    dirs: set[str] = set()
    links: dict[str, str] = {}
    for entry in files:
        parts = _components(entry.path)
        if parts[0] == META_DIR:
            raise _hostile(entry.path, f"{META_DIR}/ is where bootpull keeps its own "
                           "record of the install", f"rename {META_DIR}/ in the role's files/")
        if entry.path in seen:
            raise _hostile(entry.path, "the path appears twice in the bundle")
        seen.add(entry.path)
        for i in range(1, len(parts)):
            dirs.add("/".join(parts[:i]))
        if entry.mode == MODE_SYMLINK:
            try:
                links[entry.path] = entry.data.decode("utf-8")
            except UnicodeDecodeError:
                raise _hostile(entry.path, "the symlink target is not UTF-8") from None
        elif stat.S_IFMT(entry.mode) != stat.S_IFREG:
            raise _hostile(entry.path, f"mode {entry.mode:o} is not a regular file or "
                           "a symlink (device files, FIFOs, sockets and submodules are "
                           "never installed)")
        elif entry.mode & 0o7000:
            raise _hostile(entry.path, f"mode {entry.mode:o} sets setuid, setgid or sticky")
    for name in sorted(seen & dirs):
        raise _hostile(name, "the path is both a file and a directory of another entry")
    for name in sorted(seen):
        parts = name.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in links:
                raise _hostile(name, "the path lies below a symlink in the bundle",
                               "install the file at its real path, not through a link")
    for name, target in links.items():
        _resolve_link(name.split("/")[:-1], target, links, name)


def file_records(files: Sequence[BundleFile]) -> tuple[FileRecord, ...]:
    return tuple(
        FileRecord(path=f.path, mode=f.mode, sha256=hashlib.sha256(f.data).hexdigest(),
                   size=len(f.data))
        for f in sorted(files, key=lambda f: f.path)
    )


# -- the install ---------------------------------------------------------------------


@dataclass(frozen=True)
class InstallOutcome:
    installed: Installed
    changed: bool  # False when the same install was already current
    previous: Installed | None
    repaired: tuple[str, ...] = ()  # files of the same install that had changed on disk
    relabelled: str | None = None  # the head version the same install was named before


def _write_tree(payload: Path, files: Sequence[BundleFile]) -> None:
    made = [payload]
    for entry in sorted(files, key=lambda f: f.path):
        parts = entry.path.split("/")
        directory = payload
        for part in parts[:-1]:
            directory = directory / part
            if directory.is_symlink() or (directory.exists() and not directory.is_dir()):
                raise _hostile(entry.path, "a directory on the path is not a directory")
            if not directory.exists():
                directory.mkdir()
                made.append(directory)
        dest = directory / parts[-1]
        if entry.mode == MODE_SYMLINK:
            dest.symlink_to(entry.data.decode("utf-8"))
            continue
        perm = entry.mode & 0o777
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, perm)
        try:
            with naming(dest):
                view = memoryview(entry.data)
                while view:
                    view = view[os.write(fd, view):]
                os.fchmod(fd, perm)
                os.fsync(fd)
        finally:
            os.close(fd)
    for directory in made:
        fsync_dir(directory)


def _run_hooks(bundle: Bundle, staging: Path, env: Mapping[str, str],
               console: Console, timeout: float, run_as: RunAs | None = None) -> None:
    if run_as is not None and any(bundle.role.hooks):
        check_can_drop(run_as, error=InstallError, what=f"the install hooks of "
                       f"{bundle.role.name}")
    for hook in bundle.role.hooks:
        if not hook:
            continue
        argv = [resolve_command(staging, hook[0]), *hook[1:]]
        name = " ".join(hook)
        console.info(f"install hook: {name}" + (f" (as {run_as.user})" if run_as else ""))
        hook_env = env
        if run_as is not None:  # as the role's user, through bootpull.privdrop (§9.6)
            argv, hook_env = wrap(argv, run_as, env)
        try:
            done = run_bounded(argv, cwd=staging, env=hook_env, timeout=timeout)
        except OSError as exc:
            raise HookFailed(f"install hook {name!r} could not start", hook=name,
                             output="", why=str(exc),
                             hint="check the hook's path (relative to the role's files) "
                             "and its executable bit, then publish a fixed version") from None
        tail = _tail(done.output)
        if done.returncode is None:
            raise HookFailed(f"install hook {name!r} ran longer than {timeout:.0f}s",
                             hook=name, output=tail, why=tail[-400:],
                             hint="make the hook finish faster, then publish a fixed version")
        if run_as is not None and (why := drop_failure(done.returncode, done.output)):
            raise HookFailed(f"install hook {name!r} could not run as user {run_as.user}",
                             hook=name, output=tail, why=why, hint=DROP_HINT)
        if done.returncode != 0:
            raise HookFailed(f"install hook {name!r} exited with {done.returncode}",
                             hook=name, output=tail, why=tail[-400:] or "it printed nothing",
                             hint="fix the hook in role.toml [install] hooks, then publish a "
                             "fixed version")
        for line in done.output.strip().splitlines()[-5:]:
            console.debug(f"  {line}")


#: how much of a failing hook's output goes into its event (the last lines, bounded)
TAIL_LINES = 20
TAIL_BYTES = 4096


def _tail(output: str) -> str:
    """The last TAIL_LINES lines of ``output``, at most TAIL_BYTES bytes of them."""
    text = "\n".join(output.strip().splitlines()[-TAIL_LINES:])
    data = text.encode("utf-8", "replace")[-TAIL_BYTES:]
    return data.decode("utf-8", "replace")


def _remove_tree(path: Path, role_dir: Path) -> None:
    """Rename to ``.trash-*`` first, so a half-deleted install is never mistaken for one."""
    trash = role_dir / f".trash-{path.name}.{os.getpid()}.{time.monotonic_ns()}"
    try:
        path.rename(trash)
    except FileNotFoundError:
        return
    fsync_dir(role_dir)
    shutil.rmtree(trash, ignore_errors=True)


def follows_head(bundle: Bundle) -> bool:
    """True for a bundle of the deploy head (no ``version`` assigned: ``head-<commit>``)."""
    return bundle.assignment.version is None and bundle.version.startswith(HEAD_PREFIX)


def content_digest(bundle: Bundle, *, named: bool = True) -> str:
    """SHA-256 over the role spec, the assignment and every file's path, mode and hash
    (and the encrypted secrets', when there are any); with ``named``, over the version
    and the commit too."""
    import json
    from dataclasses import asdict

    role = asdict(bundle.role)
    if role.get("silent_after") is None:  # ids of installs made before the key existed stay
        role.pop("silent_after", None)
    for key in ("user", "group", "capabilities"):  # the same for [run] user (§9.6)
        if not role.get(key):
            role.pop(key, None)
    assignment = asdict(bundle.assignment)
    for key in ("groups", "var_sources", "version_source"):  # and for groups (§1.4)
        if not assignment.get(key):
            assignment.pop(key, None)
    doc = {"role": role, "assignment": assignment,
           "role_toml": hashlib.sha256(bundle.role_toml).hexdigest(),
           "files": [asdict(f) for f in file_records(bundle.files)]}
    if named:
        doc.update(version=bundle.version, commit=bundle.commit)
    if bundle.secrets:  # a changed secret is a new install; ids without secrets stay
        doc["secrets"] = [asdict(f) for f in file_records(bundle.secrets)]
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def bundle_id(bundle: Bundle) -> str:
    """The install id ``bundle`` gets (also the key of the bad-version list and the hold):
    ``<version>-<commit[:12]>-<digest[:8]>``, or ``head-<digest[:20]>`` of the content
    alone when it follows the deploy head, so that a commit which changes nothing the
    node installs is the same install."""
    if follows_head(bundle):
        return f"{HEAD_PREFIX}{content_digest(bundle, named=False)[:20]}"
    return install_id(bundle.version, bundle.commit, content_digest(bundle))


def relabel(installed: Installed, bundle: Bundle, console: Console,
            trouble: DiskTrouble | None = None) -> Installed:
    """``installed`` (the same install as ``bundle``), its record naming ``bundle``'s
    version and commit: rewritten in place when they differ. A disk that refuses keeps
    the old names, said on the console (once per install with ``trouble``, the node's
    :class:`~bootpull.state.DiskTrouble`); the install itself is good either way."""
    record = installed.record
    if (record.version, record.commit) == (bundle.version, bundle.commit):
        return installed
    new = replace(record, version=bundle.version, commit=bundle.commit)
    what = f"the install record of {installed.id}"
    try:
        write_json(installed.path / META_DIR / RECORD_NAME, new.to_json())
    except OSError as exc:
        consequence = (f"the install keeps the name {record.version} instead of "
                       f"{bundle.version}; its role runs on")
        if trouble is not None:
            trouble.failed(what, exc, consequence)
        else:
            console.warn(f"{disk_trouble(exc)}: {consequence} ({exc})")
        return installed
    if trouble is not None:
        trouble.written(what)
    return Installed(installed.path, new)


def install(bundle: Bundle, state: StateDir, *, env: Mapping[str, str], console: Console,
            hook_timeout: float = HOOK_TIMEOUT, run_as: RunAs | None = None,
            etc: Path | None = None, trouble: DiskTrouble | None = None) -> InstallOutcome:
    """Install ``bundle`` and make it ``current``; the previous ``current`` becomes ``lkg``.

    A hostile bundle, a failing hook and a full or failing disk (any OSError while
    writing, named in the error's *why*) raise InstallError with ``current`` and ``lkg``
    untouched.

    A role with ``[run] user`` gets its user and group (in ``etc``, default ``/etc``),
    unless ``run_as`` says who they are already (:func:`bootpull.role_users.ensure_user`);
    its data directory is made and given to it, and its hooks run as it.
    """
    role = bundle.role.name
    if why := check_role_name(role):
        raise _hostile(role, why, "rename the role directory")
    check_files(bundle.files)
    if run_as is None and bundle.role.user is not None:
        run_as = ensure_user(bundle.role, state, etc=etc, say=console.info)
    try:
        return _install(bundle, state, env=env, console=console, hook_timeout=hook_timeout,
                        run_as=run_as, trouble=trouble)
    except OSError as exc:
        with contextlib.suppress(OSError):
            prune(state)  # a new install that did not become current gives its space back
        raise InstallError(
            f"{disk_trouble(exc)} while installing {role} {bundle.version}", why=str(exc),
            hint=disk_hint(state.root, exc, needed=sum(len(f.data) for f in bundle.files))
            ) from None


def _install(bundle: Bundle, state: StateDir, *, env: Mapping[str, str], console: Console,
             hook_timeout: float, run_as: RunAs | None,
             trouble: DiskTrouble | None) -> InstallOutcome:
    role = bundle.role.name
    state.ensure()
    if run_as is not None:  # the hooks may write there, as the role's user
        own_tree(state.ensure_data_dir(role), run_as)
    ident = bundle_id(bundle)
    previous = state.current()
    drifted: list[str] = []
    if previous is not None and previous.id == ident:
        drifted = check_drift(previous)
        if not drifted:
            now = relabel(previous, bundle, console, trouble)
            return InstallOutcome(now, changed=False, previous=previous,
                                  relabelled=previous.version if now is not previous
                                  else None)
        console.warn(f"{len(drifted)} installed file(s) of {role} {bundle.version} changed "
                     f"on disk ({', '.join(drifted[:5])}): installing a fresh copy")

    role_dir = state.roles / role
    role_dir.mkdir(parents=True, exist_ok=True)
    final = role_dir / ident
    if drifted:  # a fresh copy beside the changed one, then the same atomic switch
        final = role_dir / f"{ident}.{time.time_ns()}"
    existing = state.load_install(final)
    if existing is not None and existing.id == ident and (changed := check_drift(existing)):
        # the same content is there (the last-known-good, back again) but its files
        # changed on disk: a fresh copy beside it, which it stays until the switch
        console.warn(f"{len(changed)} file(s) of {role} {existing.version}, installed "
                     f"before, changed on disk ({', '.join(changed[:5])}): installing a "
                     "fresh copy")
        final = role_dir / f"{ident}.{time.time_ns()}"
        existing = None
    if existing is None or existing.id != ident:
        staging = role_dir / f".staging-{ident}.{os.getpid()}"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
        try:
            _write_tree(staging, bundle.files)
            meta = staging / META_DIR
            meta.mkdir()
            write_atomic(meta / "role.toml", bundle.role_toml)
            record = InstallRecord(role=bundle.role, assignment=bundle.assignment,
                                   version=bundle.version, commit=bundle.commit,
                                   installed_at=now_rfc3339(),
                                   files=file_records(bundle.files), ident=ident)
            write_json(meta / RECORD_NAME, record.to_json())
            _run_hooks(bundle, staging, env, console, hook_timeout, run_as)
            fsync_dir(staging)
            if final.exists() or final.is_symlink():
                _remove_tree(final, role_dir)
            staging.rename(final)
            fsync_dir(role_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    installed = state.load_install(final)
    if installed is None:
        raise InstallError(f"the install at {final} is incomplete after writing it",
                           hint="check the disk of the state directory")
    installed = relabel(installed, bundle, console, trouble)  # the last-known-good again
    lkg = state.lkg()
    lkg_before = state.link_text(state.lkg_link)
    if previous is not None and previous.id != ident:
        switch_link(state.lkg_link, state.link_target(previous))
    elif drifted and lkg is not None and previous is not None and lkg.path == previous.path:
        switch_link(state.lkg_link, state.link_target(installed))
    try:
        _point_current(state, installed)
    except OSError:  # current is as it was: so is lkg, if the disk lets it
        with contextlib.suppress(OSError):
            if not lkg_before:
                state.lkg_link.unlink(missing_ok=True)
            elif state.link_text(state.lkg_link) != lkg_before:
                switch_link(state.lkg_link, lkg_before)
        raise
    try:
        prune(state)
    except OSError as exc:  # the install is done; what is left over goes next time
        console.warn(f"could not remove the installs no longer used: {disk_trouble(exc)} "
                     f"({exc}); the next install or boot tries again")
    return InstallOutcome(installed, changed=True, previous=previous,
                          repaired=tuple(drifted))


def _point_current(state: StateDir, installed: Installed) -> None:
    """Switch ``current`` to ``installed``; raise the OSError only while ``current`` still
    names what it named before (a directory fsync failing after the switch does not
    undo it, and either name is a complete install)."""
    target = state.link_target(installed)
    try:
        switch_link(state.current_link, target)
    except OSError:
        if state.link_text(state.current_link) != target:
            raise


def revert_to_lkg(state: StateDir) -> Installed | None:
    """Point ``current`` back at the last-known-good; None when there is none. A disk
    that refuses the switch is a RunError (``current`` stays what it was)."""
    lkg = state.lkg()
    if lkg is None:
        return None
    try:
        _point_current(state, lkg)
    except OSError as exc:
        raise RunError(f"{disk_trouble(exc)}: could not switch back to the last-known-good "
                       f"{lkg.role} {lkg.version}", why=str(exc),
                       hint=disk_hint(state.root, exc)) from None
    return lkg


def prune(state: StateDir) -> None:
    """Remove every install that is neither ``current`` nor ``lkg``.

    What the links name is kept even when its record cannot be read: a failing disk
    must not get the install that runs deleted.
    """
    keep = {state.root / text for text in map(state.link_text, (state.current_link,
                                                                 state.lkg_link)) if text}
    if not state.roles.is_dir():
        return
    for role_dir in state.roles.iterdir():
        if not role_dir.is_dir() or role_dir.is_symlink():
            continue
        for entry in role_dir.iterdir():
            if entry.name.startswith(".") or entry in keep:
                continue
            _remove_tree(entry, role_dir)


def recover(state: StateDir, console: Console | None = None) -> list[str]:
    """Clean up after an interrupted install; return what was done (for the log).

    A disk that fails meanwhile stops the clean-up, with a warning, not the node.
    """
    done: list[str] = []
    if not state.root.is_dir():
        return done
    try:
        _recover(state, done)
    except OSError as exc:
        done.append(f"could not finish: {disk_trouble(exc)} ({exc})")
    except RunError as err:
        done.append(f"could not finish: {err}")
    if console is not None:
        for line in done:
            console.warn(f"recovered after an interrupted run: {line}")
    return done


def _recover(state: StateDir, done: list[str]) -> None:
    for link in (state.current_link, state.lkg_link):
        for tmp in state.root.glob(f".{link.name}.tmp-*"):
            with contextlib.suppress(OSError):
                tmp.unlink()
                done.append(f"removed {tmp.name}")
    if state.roles.is_dir():
        for role_dir in state.roles.iterdir():
            if not role_dir.is_dir():
                continue
            for entry in role_dir.iterdir():
                if entry.name.startswith((".staging-", ".trash-")):
                    shutil.rmtree(entry, ignore_errors=True)
                    done.append(f"removed {role_dir.name}/{entry.name}")
    if state.current_link.is_symlink() and state.current() is None:
        if revert_to_lkg(state) is not None:
            done.append("current was broken: pointed it back at lkg")
        else:
            state.current_link.unlink()
            done.append("current was broken and there is no lkg: removed it")
    if state.lkg_link.is_symlink() and state.lkg() is None:
        state.lkg_link.unlink()
        done.append("lkg was broken: removed it")
    before = _install_dirs(state)
    prune(state)
    done += [f"removed unused install {name}" for name in sorted(before - _install_dirs(state))]


def _install_dirs(state: StateDir) -> set[str]:
    if not state.roles.is_dir():
        return set()
    return {f"{r.name}/{d.name}" for r in state.roles.iterdir() if r.is_dir()
            for d in r.iterdir() if not d.name.startswith(".")}


def check_drift(installed: Installed) -> list[str]:
    """The installed files whose bytes, kind or mode no longer match the signed ones."""
    changed: list[str] = []
    payload = installed.path
    for rec in installed.record.files:
        path = payload.joinpath(*rec.path.split("/"))
        try:
            st = path.lstat()
            if rec.mode == MODE_SYMLINK:
                target = os.readlink(path)  # noqa: PTH115 - the exact text, not normalized
                ok = (stat.S_ISLNK(st.st_mode)
                      and hashlib.sha256(target.encode("utf-8")).hexdigest() == rec.sha256)
            else:
                ok = (stat.S_ISREG(st.st_mode) and st.st_size == rec.size
                      and (st.st_mode & 0o777) == (rec.mode & 0o777)
                      and _sha256_file(path) == rec.sha256)
        except OSError:
            ok = False
        if not ok:
            changed.append(rec.path)
    return changed


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
