"""Verified-bundle values for install, supervise and pipeline tests (pure data, no I/O).

A :class:`~bootpull.bundle.Bundle` is what the verify stage hands to install; these
tests build one directly, the way verify would after checking every hash.
"""

from __future__ import annotations

import hashlib

from bootpull.bundle import (
    MODE_EXEC,
    MODE_FILE,
    MODE_SYMLINK,
    Assignment,
    Bundle,
    BundleFile,
    HealthSpec,
    Restart,
    RoleSpec,
)

RUN_SH = b"""#!/bin/sh
# writes a marker with its environment, then stays up until told to stop
env | grep '^BOOTPULL_' | sort > "${MARKER_DIR:-.}/marker-$BOOTPULL_VERSION"
pwd >> "${MARKER_DIR:-.}/marker-$BOOTPULL_VERSION"
exec sleep 600
"""
HEALTH_OK = b"#!/bin/sh\nexit 0\n"
HEALTH_FAIL = b"#!/bin/sh\necho unhealthy >&2\nexit 1\n"


def commit_for(version: str) -> str:
    return hashlib.sha1(version.encode()).hexdigest()  # a fake commit id


def make_bundle(
    version: str = "1.0",
    *,
    role: str = "web",
    files: dict[str, bytes | tuple[int, bytes]] | None = None,
    command: tuple[str, ...] = ("./run.sh",),
    restart: Restart = "on-failure",
    hooks: tuple[tuple[str, ...], ...] = (),
    health: HealthSpec | None = None,
    vars: dict[str, str] | None = None,
    hostname: str | None = "node-a",
) -> Bundle:
    """A bundle; ``files`` maps path → bytes (mode 644, 755 for ``*.sh``) or (mode, bytes)."""
    if files is None:
        files = {"run.sh": RUN_SH, "health.sh": HEALTH_OK, "www/index.html": b"hi " +
                 version.encode() + b"\n", "www/current": (MODE_SYMLINK, b"index.html")}
    entries = []
    for path, value in files.items():
        if isinstance(value, tuple):
            mode, data = value
        else:
            mode, data = (MODE_EXEC if path.endswith(".sh") else MODE_FILE), value
        entries.append(BundleFile(path=path, mode=mode, data=data))
    spec = RoleSpec(name=role, description=f"{role} for tests", command=command,
                    restart=restart, hooks=hooks, health=health)
    return Bundle(
        role=spec, version=version, commit=commit_for(version), files=tuple(entries),
        assignment=Assignment(role=role, source="hosts/52-54-00-12-34-56.toml",
                              hostname=hostname, vars=dict(vars or {})),
        role_toml=f'format = 1\ndescription = "{role}"\n'.encode(),
    )


def many_files_bundle(version: str, count: int = 120) -> Bundle:
    """A bundle with many files and an install hook: installs long enough to be killed."""
    files: dict[str, bytes | tuple[int, bytes]] = {
        f"data/{i // 20}/file{i}.bin": (version.encode() + b":" + bytes([i % 256])) * 2000
        for i in range(count)
    }
    files["run.sh"] = RUN_SH
    files["setup.sh"] = b"#!/bin/sh\necho staged > hook-done\n"
    files["link"] = (MODE_SYMLINK, b"data/0/file0.bin")
    return make_bundle(version, files=files, hooks=(("./setup.sh",),))


def process_gone(pid: int, timeout: float = 10.0) -> bool:
    """True once ``pid`` no longer runs (gone, or a zombie nobody has reaped yet)."""
    import time
    from pathlib import Path

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return True
        if fields[0] in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False
