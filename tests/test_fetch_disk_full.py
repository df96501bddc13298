"""A full state disk under the git object cache: a clean fetch error (exit 11), never a
traceback, and nothing half-written left in the cache. Real git server on 127.0.0.1,
a real (tiny) tmpfs as the cache's disk."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from bootpull.backoff import Counters
from bootpull.console import Console
from bootpull.errors import FetchError
from bootpull.fetch import FetchLimits, GitRemote
from gitserver import GitHttpServer, make_bare_repo
from tmpfs import mounted_tmpfs


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "disk", "size=96k") as disk:
        yield disk


def test_a_pack_that_does_not_fit_the_cache_is_a_fetch_error(tmp_path: Path,
                                                             tiny_disk: Path) -> None:
    big = os.urandom(400 * 1024)  # incompressible: the pack is larger than the disk
    bare = make_bare_repo(tmp_path / "repo.git", {"bootpull.toml": b"format = 1\n",
                                                  "roles/r/files/big.bin": big})
    with GitHttpServer({"repo.git": bare}) as server:
        remote = GitRemote(server.url, tiny_disk / "cache",
                           limits=FetchLimits(deadline=30, max_attempts=2),
                           console=Console(), counters=Counters())
        try:
            snap = remote.snapshot("main")
            assert snap.read("bootpull.toml") == b"format = 1\n"  # small: it fits
            with pytest.raises(FetchError) as info:
                snap.read("roles/r/files/big.bin")
        finally:
            remote.close()
    err = info.value
    assert err.exit_code == 11
    assert err.what == "the node's git object cache could not be written"
    assert "No space left on device" in err.why and "df -h" in err.hint
    leftovers = [p.name for p in (tiny_disk / "cache").rglob("tmp_pack_*")]
    assert leftovers == [], "an aborted pack leaves nothing behind"
