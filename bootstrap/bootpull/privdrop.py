"""The exec wrapper that drops root for a role: ``python3 -I -S privdrop.py ...``.

It runs, as root, between the node agent's fork and the role's own program::

    privdrop.py USER UID GID CAPMASK KEEP_LC_CTYPE -- ARGV...

and, in this order: clears the supplementary groups, keeps the capabilities across
the uid change (``PR_SET_KEEPCAPS``), sets the real, effective and saved gid and uid,
sets the effective, permitted and inheritable capabilities to exactly ``CAPMASK``
(``capset``), raises each of them as an *ambient* capability (``PR_CAP_AMBIENT``), sets
``PR_SET_NO_NEW_PRIVS`` (a setuid program or a file capability gains nothing), and
``execvpe``\\ s ARGV. The role's program (not setuid, no file capabilities, such as
tcpdump) then has exactly those capabilities as effective ones, and no others; with
``CAPMASK`` 0 it has none. ``execvpe`` keeps the pid, so the supervisor's signals to
the role's process group reach the role itself.

Why a wrapper and not ``Popen(preexec_fn=...)`` (docs/admin.md "What runs as root, and
when"): Python's ``Popen(user=...)`` calls ``setreuid`` before ``preexec_fn``, which
drops every capability, so the drop has to be done by hand; a ``preexec_fn`` doing it
would run Python code in the child of a fork of the multi-threaded agent (the output
pumps, the report sender), which may deadlock on a lock another thread held at the
fork, and whose failure reaches the parent only as "Exception occurred in
preexec_fn". This wrapper is a fresh single-threaded process: nothing can be held, and
a failure is said on stderr (the role's output, kept for its failure event) with the
exact reason. It costs one interpreter start (about 15 ms, stdlib only: ``-I -S``)
per start of a role, a hook or a health check that has ``user``; a role without
``user`` is started as before, without it.

Exit codes: 126 when the drop fails, 127 when ARGV cannot be executed; each with one
line on stderr that starts with :data:`MARK`. Only the standard library is imported
(the wrapper runs with ``-I -S``: no site-packages).
"""

from __future__ import annotations

import os
import sys

MARK = "bootpull-privdrop:"
DROP_FAILED = 126
EXEC_FAILED = 127

_PR_SET_KEEPCAPS = 8
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_RAISE = 2
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_PR_SET_NO_NEW_PRIVS = 38
_CAP_VERSION_3 = 0x20080522


def _fail(code: int, message: str) -> None:
    os.write(2, f"{MARK} {message}\n".encode("utf-8", "replace"))
    os._exit(code)


def _drop(uid: int, gid: int, mask: int) -> str:
    """Become ``uid``/``gid`` with exactly the capabilities in ``mask``; "" or why not."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def prctl(*args: int) -> None:
        if libc.prctl(*(ctypes.c_ulong(a) for a in args)) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    step = "setgroups([])"
    try:
        os.setgroups([])
        step = "prctl(PR_SET_KEEPCAPS)"
        prctl(_PR_SET_KEEPCAPS, 1, 0, 0, 0)
        step = f"setresgid({gid})"
        os.setresgid(gid, gid, gid)
        step = f"setresuid({uid})"
        os.setresuid(uid, uid, uid)
        step = f"capset({mask:#x})"
        header = Header(_CAP_VERSION_3, 0)
        data = (Data * 2)()
        for i in (0, 1):
            part = (mask >> (32 * i)) & 0xFFFFFFFF
            data[i].effective = data[i].permitted = data[i].inheritable = part
        if libc.capset(ctypes.byref(header), data) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        step = "prctl(PR_CAP_AMBIENT_CLEAR_ALL)"
        prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
        for cap in range(64):
            if mask >> cap & 1:
                step = f"prctl(PR_CAP_AMBIENT_RAISE, {cap})"
                prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE, cap, 0, 0)
        # no setuid program and no file capability gives the role more than this
        # (ambient capabilities are kept: they do not come from the file)
        step = "prctl(PR_SET_NO_NEW_PRIVS)"
        prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    except OSError as exc:
        return f"{step}: {exc.strerror or exc}"
    if os.getuid() != uid or os.geteuid() != uid or os.getgid() != gid or os.getgroups():
        return "the uid, gid or groups did not change"  # never trust a silent no-op
    return ""


def main(args: list[str]) -> None:
    try:
        user, uid, gid, mask, keep = args[0], int(args[1]), int(args[2]), int(args[3]), args[4]
        if args[5] != "--" or len(args) < 7:
            raise ValueError
    except (IndexError, ValueError):
        _fail(DROP_FAILED, "usage: privdrop.py USER UID GID CAPMASK KEEP_LC_CTYPE -- ARGV...")
        return
    argv = args[6:]
    if keep != "1":  # Python's C-locale coercion set it for itself, not for the role
        os.environ.pop("LC_CTYPE", None)
    why = _drop(uid, gid, mask)
    if why:
        _fail(DROP_FAILED, f"cannot run as user {user} (uid {uid}, gid {gid}, "
                           f"capabilities {mask:#x}): {why}")
    try:
        os.execvpe(argv[0], argv, os.environ)  # noqa: S606 - the role's own argv, as Popen
    except OSError as exc:
        _fail(EXEC_FAILED, f"cannot run {argv[0]} as user {user}: {exc.strerror or exc}")


if __name__ == "__main__":
    main(sys.argv[1:])
