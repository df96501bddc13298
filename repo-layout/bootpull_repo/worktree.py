"""The admin's work tree as a :class:`~bootpull.bundle.TreeReader`.

``bootpull repo lint`` checks what the admin is about to commit, not what was
committed: the files ``git add -A`` would take (tracked and untracked, minus what
``.gitignore`` excludes), read from the disk with their modes as git would record them.
A folder that is not a git repository yet is read whole (minus ``.git``).
"""

from __future__ import annotations

import builtins
import os
import stat
import subprocess
from pathlib import Path

from bootpull.bundle import MODE_EXEC, MODE_FILE, MODE_SYMLINK, TreeEntry
from bootpull.localgit import read_each

WORK_TREE = "work tree"


def _git_files(root: Path) -> list[str] | None:
    """The paths ``git add -A`` would take, or None when ``root`` is not a work tree."""
    proc = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others",
         "--exclude-standard"],
        capture_output=True, check=False, timeout=300,
    )
    if proc.returncode != 0:
        return None
    # Paths are relative to ``root`` (git's current directory), as git add -A sees them.
    names = (raw.decode("utf-8", "surrogateescape") for raw in proc.stdout.split(b"\0"))
    return sorted({name for name in names if name})


def _walk(root: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        for name in filenames:
            out.append((Path(dirpath) / name).relative_to(root).as_posix())
    return sorted(out)


class WorkTree:
    """Read-only view of a directory, shaped like one commit of it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        files = _git_files(root)
        self._paths = files if files is not None else _walk(root)
        self._entries: dict[str, TreeEntry] = {}
        for path in self._paths:
            try:
                st = (root / path).lstat()
            except OSError:
                continue  # deleted from the disk but still in the index
            if stat.S_ISLNK(st.st_mode):
                mode = MODE_SYMLINK
            elif stat.S_ISREG(st.st_mode):
                mode = MODE_EXEC if st.st_mode & 0o100 else MODE_FILE
            else:
                continue
            self._entries[path] = TreeEntry(path, mode, "")

    @property
    def commit(self) -> str:
        return WORK_TREE

    def read(self, path: str) -> bytes | None:
        entry = self._entries.get(path)
        if entry is None:
            return None
        full = self.root / path
        if entry.mode == MODE_SYMLINK:
            return str(full.readlink()).encode("utf-8", "surrogateescape")
        try:
            return full.read_bytes()
        except OSError:
            return None

    def list(self, prefix: str) -> builtins.list[TreeEntry]:
        prefix = prefix.strip("/")
        return [e for p, e in self._entries.items()
                if not prefix or p.startswith(prefix + "/")]

    def read_many(self, paths: builtins.list[str]) -> dict[str, bytes]:
        return read_each(self, paths)
