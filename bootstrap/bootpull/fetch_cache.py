"""The node's object cache: a bare git object store, checked when it is opened.

What :class:`bootpull.fetch.GitRemote` fetches goes into the store at ``cache_dir`` and
is never fetched again; nothing is ever checked out. The cache survives reboots and
power loss: :class:`ObjectCache` opens it on first use (made if missing), starts it
afresh when it has grown past its cap, deletes the packs a power loss damaged
(:func:`cache_problems`), and discards the whole cache when an object in it cannot be
read later. What was lost is fetched again; the run goes on as if the cache were cold.

dulwich is imported when the cache is opened, not when this module is.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from bootpull.backoff import Counters
from bootpull.console import Console

if TYPE_CHECKING:
    from dulwich.repo import Repo

MAX_CACHE_PACKS = 256  # every fetch adds a pack; lookups slow down with too many
_CHUNK = 64 * 1024


def _cache_is_full(cache_dir: Path, max_bytes: int) -> str:
    """Why the cache should start afresh, or "" when it need not."""
    packs = list((cache_dir / "objects" / "pack").glob("*.pack"))
    if len(packs) > MAX_CACHE_PACKS:
        return f"{len(packs)} packs (more than {MAX_CACHE_PACKS})"
    size = 0
    for pack in packs:
        with contextlib.suppress(OSError):
            size += pack.stat().st_size
    return f"{size} bytes (more than {max_bytes})" if size > max_bytes else ""


def _pack_problem(pack: Path) -> str:
    """What is wrong with one cached pack and its index, or "" when they are whole.

    Both files end in a SHA-1 of what precedes it, and the index also records the
    pack's: a file cut short by a power loss, left empty, or overwritten with garbage
    fails one of these checks. The whole pack is hashed, so this costs one read of the
    cache (a role's worth of objects) per run.
    """
    import hashlib

    idx = pack.with_suffix(".idx")
    try:
        idx_bytes = idx.read_bytes()
    except OSError as exc:
        return f"its index {idx.name} cannot be read ({exc.strerror or exc})"
    if len(idx_bytes) < 8 + 256 * 4 + 40 or not idx_bytes.startswith(b"\xfftOc\x00\x00\x00\x02"):
        return f"its index {idx.name} is cut short or not a version 2 index"
    if hashlib.sha1(idx_bytes[:-20]).digest() != idx_bytes[-20:]:  # noqa: S324 - git's own
        return f"its index {idx.name} fails its checksum"
    count = int.from_bytes(idx_bytes[8 + 255 * 4:8 + 256 * 4], "big")
    recorded = idx_bytes[-40:-20]
    digest = hashlib.sha1()  # noqa: S324 - git's pack checksum
    try:
        with pack.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 32:
                return f"{pack.name} is cut short ({size} bytes)"
            header = f.read(12)
            if header[:4] != b"PACK" or int.from_bytes(header[8:12], "big") != count:
                return f"{pack.name} has a bad header"
            digest.update(header)
            left = size - 12 - 20
            while left > 0:
                chunk = f.read(min(_CHUNK, left))
                if not chunk:
                    return f"{pack.name} is cut short"
                digest.update(chunk)
                left -= len(chunk)
            trailer = f.read(20)
    except OSError as exc:
        return f"{pack.name} cannot be read ({exc.strerror or exc})"
    if digest.digest() != trailer or trailer != recorded:
        return f"{pack.name} fails its checksum"
    return ""


def cache_problems(cache_dir: Path) -> list[tuple[Path, str]]:
    """Damaged files in the object cache's pack directory, each with what is wrong.

    A pack without its index and an index without its pack count as damaged (a power
    loss between the two writes leaves one of them).
    """
    pack_dir = Path(cache_dir) / "objects" / "pack"
    found: list[tuple[Path, str]] = []
    for idx in sorted(pack_dir.glob("*.idx")):
        if not idx.with_suffix(".pack").exists():
            found.append((idx, f"{idx.name} has no pack"))
    for pack in sorted(pack_dir.glob("*.pack")):
        why = _pack_problem(pack)
        if why:
            found.append((pack, why))
    return found


def _cache_damaged(console: Console, counters: Counters, why: str) -> None:
    counters.count("fallbacks", "fetch:cache-damaged")
    console.warn(f"fetch: the object cache is damaged ({why}); discarding it and fetching "
                 "from the repository", stage="fetch", reason="cache-damaged")


def _open_store(cache_dir: Path, *, max_bytes: int, console: Console,
                counters: Counters) -> Repo:
    """The bare object store at ``cache_dir``, made if missing.

    The cache only ever grows (each new commit adds a small pack, each new file version
    a blob), so past ``max_bytes`` or MAX_CACHE_PACKS packs it is started afresh: the
    next reads fetch the role once more, and nothing else changes.

    A cache damaged by a power loss mid-write (a pack or index cut short, empty, or
    garbage; see :func:`cache_problems`) loses its damaged packs; one that dulwich cannot
    open at all is started afresh. Either way it is said on the console and counted as a
    ``fallbacks`` with reason ``fetch:cache-damaged``; what was lost is fetched again.
    """
    import shutil

    from dulwich.repo import Repo

    if (cache_dir / "objects").is_dir():
        why = _cache_is_full(cache_dir, max_bytes)
        if why:
            console.info(f"fetch: the object cache holds {why}; starting it afresh",
                         stage="fetch")
            shutil.rmtree(cache_dir)
    elif cache_dir.exists() and any(cache_dir.iterdir()):
        _cache_damaged(console, counters, f"{cache_dir} has no objects directory")
        shutil.rmtree(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    if not (cache_dir / "objects").is_dir():
        return Repo.init_bare(str(cache_dir))
    # A pack being received when the node lost power (or got kill -9) stays behind as a
    # temporary file; it was never indexed, so it was never used. Reclaim the space.
    for where in (cache_dir / "objects" / "pack", cache_dir / "objects"):
        for stray in where.glob("tmp*"):
            with contextlib.suppress(OSError):
                stray.unlink()
    for damaged, why in cache_problems(cache_dir):
        _cache_damaged(console, counters, why)
        for part in (damaged.with_suffix(".pack"), damaged.with_suffix(".idx")):
            with contextlib.suppress(OSError):
                part.unlink()
    try:
        return Repo(str(cache_dir), bare=True)
    except Exception as exc:  # noqa: BLE001 - a broken config, HEAD, ...: start afresh
        _cache_damaged(console, counters, f"{type(exc).__name__}: {exc}")
    shutil.rmtree(cache_dir, ignore_errors=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    return Repo.init_bare(str(cache_dir))


class ObjectCache:
    """The object store at ``cache_dir``, opened (and checked) on first use."""

    def __init__(self, cache_dir: Path, *, max_bytes: int, console: Console,
                 counters: Counters) -> None:
        self.cache_dir = Path(cache_dir)
        self.max_bytes = max_bytes
        self.console = console
        self.counters = counters
        self._store: Repo | None = None

    @property
    def store(self) -> Repo:
        if self._store is None:
            self._store = _open_store(self.cache_dir, max_bytes=self.max_bytes,
                                      console=self.console, counters=self.counters)
        return self._store

    def has(self, oid: str) -> bool:
        """Whether the object is cached; a cache too damaged to say is discarded (False)."""
        from dulwich.objects import ObjectID

        try:
            return ObjectID(oid.encode()) in self.store.object_store
        except Exception as exc:  # noqa: BLE001 - a damaged cache raises many kinds
            why = f"{type(exc).__name__}: {exc}"
        self.discard(why)
        return False

    def discard(self, why: str) -> None:
        """An object could not be read from the cache: start the cache afresh."""
        import shutil

        _cache_damaged(self.console, self.counters, why)
        store, self._store = self._store, None
        if store is not None:
            with contextlib.suppress(Exception):  # its mmaps may still be referenced
                store.close()
        shutil.rmtree(self.cache_dir, ignore_errors=True)

    def close(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            store.close()
