"""A damaged object cache (a power loss mid-write) never stops a fetch.

A cache is filled from a real ``git http-backend``, copied, damaged (packs and indexes
cut short, emptied, overwritten with garbage, orphaned), and then snapshotted again: the
damage is said on the console and counted, the files come from the network with the
right content, and the cache is whole afterwards.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from bootpull.backoff import Backoff, Counters
from bootpull.console import Console
from bootpull.fetch import FetchLimits, GitRemote, cache_problems
from fakes import CapturingWriter
from gitserver import GitHttpServer, make_bare_repo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FAST = FetchLimits(deadline=60, backoff=Backoff(base=0.05, cap=0.2), max_attempts=4)
FILES = {"bootpull.toml": b"format = 1\n",
         "roles/web/role.toml": b'format = 1\ndescription = "web"\n',
         "roles/web/files/a.bin": os.urandom(40_000),
         "roles/web/files/sub/b.txt": b"hello\n" * 500,
         "roles/other/files/c.bin": os.urandom(10_000)}
ROLE = {k: v for k, v in FILES.items() if k.startswith("roles/web/")}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitHttpServer]:
    bare = make_bare_repo(tmp_path_factory.mktemp("cache") / "repo.git", FILES)
    with GitHttpServer({"repo.git": bare}) as srv:
        yield srv


def read_role(url: str, cache: Path, counters: Counters | None = None,
              out: CapturingWriter | None = None) -> dict[str, bytes]:
    with GitRemote(url, cache, limits=FAST, console=Console(out or CapturingWriter()),
                   counters=counters or Counters()) as remote:
        snap = remote.snapshot("main")
        return snap.read_many([e.path for e in snap.list("roles/web")])


@pytest.fixture(scope="module")
def pristine(server: GitHttpServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("pristine") / "cache"
    assert read_role(server.url, cache) == ROLE
    assert len(list((cache / "objects/pack").glob("*.pack"))) >= 2
    assert cache_problems(cache) == []
    return cache


def packs(cache: Path) -> list[Path]:
    """The cache's packs, largest (the blobs) first."""
    return sorted((cache / "objects/pack").glob("*.pack"), key=lambda p: -p.stat().st_size)


def truncate(path: Path, size: int) -> None:
    with path.open("r+b") as f:
        f.truncate(size)


def scribble(path: Path, at: int, garbage: bytes) -> None:
    with path.open("r+b") as f:
        f.seek(at)
        f.write(garbage)


def half(p: Path) -> None:
    truncate(p, p.stat().st_size // 2)


def every_pack_half(cache: Path) -> None:
    for p in packs(cache):
        half(p)


def garble_config(cache: Path) -> None:
    (cache / "config").write_bytes(b"\x00[[[\xff")


DAMAGE: dict[str, Callable[[Path], None]] = {
    "idx-empty": lambda c: truncate(packs(c)[0].with_suffix(".idx"), 0),
    "idx-half": lambda c: half(packs(c)[0].with_suffix(".idx")),
    "idx-10-bytes": lambda c: truncate(packs(c)[0].with_suffix(".idx"), 10),
    "idx-garbage": lambda c: scribble(packs(c)[0].with_suffix(".idx"), 1100, b"\xa5" * 64),
    "idx-missing": lambda c: packs(c)[0].with_suffix(".idx").unlink(),
    "pack-empty": lambda c: truncate(packs(c)[0], 0),
    "pack-half": lambda c: half(packs(c)[0]),
    "pack-garbage": lambda c: scribble(packs(c)[0], 200, os.urandom(300)),
    "pack-missing": lambda c: packs(c)[0].unlink(),
    "every-pack-half": every_pack_half,
    "config-garbage": garble_config,
    "no-objects-dir": lambda c: shutil.rmtree(c / "objects"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_cache_is_discarded_and_the_fetch_proceeds(
        damage: str, pristine: Path, server: GitHttpServer, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(pristine, cache)
    DAMAGE[damage](cache)
    counters, out = Counters(), CapturingWriter()
    assert read_role(server.url, cache, counters, out) == ROLE
    assert counters.by_reason.get("fallbacks:fetch:cache-damaged", 0) >= 1, out.text
    assert "object cache is damaged" in out.text
    assert "Traceback" not in out.text
    assert cache_problems(cache) == []
    # healthy: the next run reads everything from the cache, with no damage found
    server.reset_counters()
    again = Counters()
    assert read_role(server.url, cache, again) == ROLE
    assert again.fallbacks == 0


def test_a_pack_damaged_after_the_cache_was_opened_is_fetched_again(
        pristine: Path, server: GitHttpServer, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(pristine, cache)
    counters, out = Counters(), CapturingWriter()
    with GitRemote(server.url, cache, limits=FAST, console=Console(out),
                   counters=counters) as remote:
        snap = remote.snapshot("main")  # opens (and checks) the cache
        paths = [e.path for e in snap.list("roles/web")]
        blobs = packs(cache)[0]
        scribble(blobs, 12, os.urandom(blobs.stat().st_size - 32))
        assert snap.read_many(paths) == ROLE
    assert counters.by_reason.get("fallbacks:fetch:cache-damaged", 0) >= 1, out.text
    assert cache_problems(cache) == []
    assert read_role(server.url, cache) == ROLE


def test_cache_problems_names_what_is_wrong(pristine: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(pristine, cache)
    blobs = packs(cache)[0]
    half(blobs)
    (problem,) = cache_problems(cache)
    assert problem[0] == blobs and blobs.name in problem[1]


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from([".idx", ".pack"]), pick=st.integers(0, 10),
       cut=st.floats(0.0, 1.0, exclude_max=True),
       garbage=st.one_of(st.none(), st.tuples(st.floats(0.0, 1.0), st.binary(min_size=1,
                                                                               max_size=64))))
def test_any_truncation_or_garbage_is_survived(
        which: str, pick: int, cut: float, garbage: tuple[float, bytes] | None,
        pristine: Path, server: GitHttpServer) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        shutil.copytree(pristine, cache)
        all_packs = packs(cache)
        target = all_packs[pick % len(all_packs)].with_suffix(which)
        size = target.stat().st_size
        if garbage is None:
            truncate(target, int(size * cut))
        else:
            at, data = garbage
            scribble(target, min(int(size * at), size - 1), data)
        counters, out = Counters(), CapturingWriter()
        assert read_role(server.url, cache, counters, out) == ROLE
        assert "Traceback" not in out.text
        assert cache_problems(cache) == []
        assert read_role(server.url, cache) == ROLE
