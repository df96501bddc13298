"""Crash injection for the kill -9 tests: a child process SIGKILLs itself at a chosen moment.

bootpull itself knows nothing of this. Before it installs (or switches a link), the
child wraps the calls that mark the moment — os-level calls, and the names
``bootpull.install`` calls its helpers by — so that it dies right before or right
after the one picked.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bootpull.install
from bootpull.bundle import Bundle
from bootpull.state import RECORD_NAME

Pick = Callable[..., bool]  # called with the wrapped call's arguments

#: The os calls that add, remove or rename a name in a directory.
NAMESPACE_CALLS = ("mkdir", "rmdir", "unlink", "remove", "link", "symlink", "rename", "replace")


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def wrap(owner: object, name: str, *, before: Pick | None = None,
         after: Pick | None = None) -> None:
    """Replace ``owner.name`` with a wrapper that dies before or after the calls picked."""
    real = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if before is not None and before(*args, **kwargs):
            die()
        result = real(*args, **kwargs)
        if after is not None and after(*args, **kwargs):
            die()
        return result

    setattr(owner, name, wrapper)


def _named(path: Any) -> Path:
    return Path(os.fsdecode(path))


def _in_staging(path: Any) -> bool:
    return any(part.startswith(".staging-") for part in _named(path).parts)


def _arm_staging(bundle: Bundle) -> None:
    """Halfway through writing the staging tree: before its entry ``len(files) // 2``."""
    half = len(bundle.files) // 2
    written = 0

    def next_entry(path: Any) -> bool:
        nonlocal written
        if not _in_staging(path):
            return False
        written += 1
        return written > half

    wrap(os, "open", before=lambda path, flags, *_, **__: bool(flags & os.O_EXCL)
         and next_entry(path))
    wrap(os, "symlink", before=lambda target, path, *_, **__: next_entry(path))


#: Each named moment of an install, and how to arm it.
POINTS: dict[str, Callable[[Bundle], None]] = {
    "staging": _arm_staging,
    # the install record is written into the staging directory
    "staged": lambda _: wrap(bootpull.install, "write_json",
                             after=lambda path, _obj: _named(path).name == RECORD_NAME),
    # the install hooks have run
    "hooked": lambda _: wrap(bootpull.install, "run_bounded", after=lambda *_, **__: True),
    # the staging directory is renamed to the install's own name
    "renamed": lambda _: wrap(os, "rename", after=lambda src, _dst, **__:
                              _named(src).name.startswith(".staging-")),
    # lkg is switched, current not yet
    "lkg": lambda _: wrap(bootpull.install, "switch_link",
                          after=lambda link, _target: link.name == "lkg"),
    # current is switched, the old installs not pruned yet
    "switched": lambda _: wrap(bootpull.install, "switch_link",
                               after=lambda link, _target: link.name == "current"),
    # an unused install is renamed to .trash-*, before it is removed
    "trashed": lambda _: wrap(shutil, "rmtree", before=lambda path, *_, **__:
                              _named(path).name.startswith(".trash-")),
}


def arm(point: str, bundle: Bundle) -> None:
    """Make this process SIGKILL itself at ``point`` (a key of POINTS) while installing."""
    POINTS[point](bundle)


def kill_after_call(n: int, directory: Path) -> None:
    """SIGKILL this process right after its ``n``-th call (counting from 1) that adds,
    removes or renames a name in ``directory`` and succeeds."""
    calls = 0

    def nth(*args: Any, **kwargs: Any) -> bool:
        nonlocal calls
        names = [a for a in args if isinstance(a, str | bytes | os.PathLike)]
        if not any(_named(a).parent == directory for a in names):
            return False
        calls += 1
        return calls == n

    for name in NAMESPACE_CALLS:
        wrap(os, name, after=nth)
