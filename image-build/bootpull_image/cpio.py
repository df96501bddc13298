"""A deterministic ``newc`` cpio writer: the initramfs format the kernel unpacks.

Written here rather than piped through ``cpio -o`` so every header field is decided
by us: entries sorted by path, inode numbers counted from 1 in that order, owner
root, one fixed mtime (``SOURCE_DATE_EPOCH``), no device numbers. The same tree
gives the same bytes on any machine.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"070701"
TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Entry:
    """One archive member. ``data`` is the file body or the symlink target."""

    path: str  # relative, no leading slash, "/" separated
    mode: int  # full st_mode: type bits + permissions
    data: bytes = b""


def _header(ino: int, mode: int, nlink: int, mtime: int, size: int, name: bytes) -> bytes:
    fields = (ino, mode, 0, 0, nlink, mtime, size, 0, 0, 0, 0, len(name) + 1, 0)
    return MAGIC + b"".join(f"{value:08x}".encode() for value in fields)


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)


def encode(entries: Iterable[Entry], mtime: int) -> bytes:
    """The archive for ``entries`` (sorted here by path), ending with the trailer."""
    out = bytearray()
    ordered = sorted(entries, key=lambda e: e.path)
    seen: set[str] = set()
    for ino, entry in enumerate(ordered, start=1):
        if entry.path in seen:
            raise ValueError(f"duplicate cpio member {entry.path!r}")
        seen.add(entry.path)
        name = entry.path.encode()
        nlink = 2 if stat.S_ISDIR(entry.mode) else 1
        head = _header(ino, entry.mode, nlink, mtime, len(entry.data), name) + name + b"\0"
        out += head + _pad(len(head)) + entry.data + _pad(len(entry.data))
    trailer = _header(0, 0, 1, 0, 0, TRAILER.encode()) + TRAILER.encode() + b"\0"
    out += trailer + _pad(len(trailer))
    out += _pad(len(out))
    return bytes(out)


def walk(root: Path) -> Iterator[Entry]:
    """Every directory, file and symlink under ``root``, as archive entries.

    Permissions are kept (so executables stay executable); owners, times and inode
    numbers are not. Hard links become separate copies. Other file types (sockets,
    devices) are refused: the init creates device nodes at run time via devtmpfs.
    """
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(dirnames) + sorted(filenames):
            path = base / name
            rel = path.relative_to(root).as_posix()
            st = path.lstat()
            perms = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                yield Entry(rel, stat.S_IFLNK | 0o777, path.readlink().as_posix().encode())
            elif stat.S_ISDIR(st.st_mode):
                yield Entry(rel, stat.S_IFDIR | perms)
            elif stat.S_ISREG(st.st_mode):
                yield Entry(rel, stat.S_IFREG | perms, path.read_bytes())
            else:
                raise ValueError(f"{rel}: not a file, directory or symlink")


def decode(data: bytes) -> list[Entry]:
    """Parse a ``newc`` archive back into entries (for tests and the manifest check)."""
    entries: list[Entry] = []
    pos = 0
    while True:
        if data[pos:pos + 6] != MAGIC:
            raise ValueError(f"bad cpio magic at offset {pos}")
        fields = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        pos += 110
        name = data[pos:pos + namesize - 1].decode()
        pos += namesize
        pos += -pos % 4
        body = data[pos:pos + size]
        pos += size
        pos += -pos % 4
        if name == TRAILER:
            return entries
        entries.append(Entry(name, mode, body))
