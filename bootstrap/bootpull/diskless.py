"""Whether this node's version floor survives a reboot (docs/security.md, "Diskless nodes").

A node booted without ``bootpull.state=DISK`` keeps its state directory, and with it
the version floor, in memory: each boot trusts any unexpired metadata its image's
anchors signed. :func:`rollback_protection` tells which case this is, from the mount
table, and :func:`require_persistent_floor` refuses to go on without a floor on disk
(``bootpull.require_state=1``).
"""

from __future__ import annotations

import os
from pathlib import Path

from bootpull.errors import VerifyError

#: filesystems whose content is gone at the next boot (``rootfs``: an initramfs root)
VOLATILE_FS = frozenset({"ramfs", "tmpfs", "rootfs"})


def state_fs_type(path: Path, mounts_file: Path) -> str | None:
    """The type of the filesystem ``path`` is on, from ``mounts_file`` (as
    /proc/mounts): the longest mount point above it; None when that cannot be read."""
    try:
        lines = mounts_file.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    target = os.path.realpath(path)
    best: tuple[int, str] | None = None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= best[0]):
            best = (len(point), fields[2])
    return best[1] if best is not None else None


def rollback_protection(state_root: Path, mounts_file: Path) -> tuple[str, str | None]:
    """``none``, ``state-disk`` or ``unknown`` (the event detail ``rollback_protection``),
    and the console warning for the first and the last."""
    fstype = state_fs_type(state_root, mounts_file)
    if fstype is None:
        return "unknown", (f"cannot tell whether the state directory {state_root} "
                           f"survives a reboot ({mounts_file} unreadable)")
    if fstype in VOLATILE_FS:
        return "none", (
            f"no rollback protection: the state directory {state_root} is in memory "
            f"({fstype}), so the version floor is lost at every reboot and this node "
            "trusts any unexpired metadata its image's anchors signed, also from retired "
            "keys; boot with bootpull.state=DISK to keep it")
    return "state-disk", None


def require_persistent_floor(protection: str, state_root: Path, mounts_file: Path) -> None:
    """``bootpull.require_state=1``: raise VerifyError (exit 12) unless the floor is on a
    disk, so nothing is installed."""
    if protection == "state-disk":
        return
    fstype = state_fs_type(state_root, mounts_file)
    raise VerifyError(
        "bootpull.require_state=1 and there is no state disk: nothing is installed",
        why=f"the state directory {state_root} is "
        + (f"in memory ({fstype})" if fstype else "on a filesystem that cannot be read "
           f"from {mounts_file}")
        + ", so the version floor would not survive a reboot (no rollback protection)",
        hint="boot with bootpull.state=/dev/DISK (an ext4 disk for the state directory), "
        "or drop bootpull.require_state=1 to accept that risk")
