"""GitRemote against a real ``git http-backend`` that misbehaves on purpose.

Every test is bounded in time: deadlines here are seconds, and the server's faults are
switched on only for the requests that need them.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from bootpull.backoff import Backoff, Counters
from bootpull.console import Console
from bootpull.errors import FetchError, VerifyError
from bootpull.fetch import FetchLimits, GitRemote
from fakes import CapturingWriter
from gitserver import GitHttpServer, make_bare_repo

FILE = 100_000



@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    files = {"bootpull.toml": b"format = 1\n"}
    for r in range(3):
        files[f"roles/r{r}/role.toml"] = b"format = 1\n"
        files[f"roles/r{r}/files/data.bin"] = os.urandom(FILE)
    return make_bare_repo(tmp_path_factory.mktemp("faults") / "repo.git", files)


@pytest.fixture
def server(repo: Path) -> Iterator[GitHttpServer]:
    srv = GitHttpServer({"repo.git": repo}).start()
    try:
        yield srv
    finally:
        srv.stop()


class Client:
    """One GitRemote with its counters and console output, for assertions."""

    def __init__(self, url: str, cache: Path, limits: FetchLimits) -> None:
        self.counters = Counters()
        self.lines = CapturingWriter()
        self.remote = GitRemote(url, cache, limits=limits, console=Console(self.lines),
                                counters=self.counters)

    @property
    def console(self) -> str:
        return self.lines.text


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(url: str, **limits: object) -> Client:
        settings: dict[str, object] = {"deadline": 60.0, "max_attempts": 6,
                                       "backoff": Backoff(base=0.05, cap=0.2)}
        settings.update(limits)
        c = Client(url, tmp_path / "cache", FetchLimits(**settings))  # type: ignore[arg-type]
        made.append(c)
        return c

    yield make
    for c in made:
        c.remote.close()


@pytest.mark.slow
def test_deadline_holds_against_a_one_byte_per_second_trickle(server, client) -> None:
    server.faults.trickle_bps = 1
    c = client(server.url, deadline=3.0)
    started = time.monotonic()
    with pytest.raises(FetchError) as info:
        c.remote.snapshot("main")
    took = time.monotonic() - started
    assert 2.5 < took < 8.0, took
    assert "deadline" in info.value.what
    assert c.counters.retries == 0  # a deadline is not retried


@pytest.mark.slow
def test_deadline_holds_when_the_trickle_starts_mid_pack(server, client) -> None:
    c = client(server.url, deadline=4.0)
    snap = c.remote.snapshot("main")
    snap.list("roles/r1")
    server.faults.trickle_bps = 1
    started = time.monotonic()
    with pytest.raises(FetchError) as info:
        snap.read("roles/r1/files/data.bin")
    assert time.monotonic() - started < 8.0
    assert "deadline" in info.value.what


@pytest.mark.slow
def test_deadline_holds_across_retries(server, client) -> None:
    server.faults.fail_every_other = 503
    server.faults.retry_after.extend([(503, "1")] * 50)
    c = client(server.url, deadline=2.5, max_attempts=100)
    started = time.monotonic()
    with pytest.raises(FetchError) as info:
        c.remote.snapshot("main")
    assert time.monotonic() - started < 6.0
    assert "deadline" in info.value.what


def test_byte_cap_stops_the_fetch_without_retrying(server, client) -> None:
    c = client(server.url, max_bytes=FILE // 2)
    snap = c.remote.snapshot("main")
    with pytest.raises(FetchError) as info:
        snap.read("roles/r0/files/data.bin")
    assert "cap" in info.value.what
    assert c.remote.bytes_received <= FILE // 2 + 65536 + 4096  # stopped within one read
    assert c.counters.retries == 0


def test_connection_cut_mid_pack_is_retried_and_succeeds(server, repo, client) -> None:
    c = client(server.url)
    snap = c.remote.snapshot("main")
    snap.list("roles/r2")  # trees cached: the next pack is the blob's
    server.faults.drop_after, server.faults.drops = 30_000, 1
    data = snap.read("roles/r2/files/data.bin")
    work = repo.with_name(repo.name + ".work")
    assert data == (work / "roles/r2/files/data.bin").read_bytes()
    assert c.counters.retries == 1
    assert "retry 1" in c.console
    assert [s.fault for s in server.log].count("drop") == 1


def test_server_killed_mid_fetch_then_restarted(server, repo, client) -> None:
    c = client(server.url, backoff=Backoff(base=0.3, cap=1.0), max_attempts=8)
    snap = c.remote.snapshot("main")
    snap.list("roles/r0")  # trees cached: the next pack is the blob's
    server.faults.hold_after = 20_000
    result: dict[str, object] = {}

    def read() -> None:
        try:
            result["data"] = snap.read("roles/r0/files/data.bin")
        except Exception as exc:
            result["error"] = exc

    reader = threading.Thread(target=read)
    reader.start()
    assert server.faults.holding.wait(30), "the server never reached the fault"
    server.stop(kill=True)  # the server dies with the pack half sent
    server.start()  # and comes back on the same port
    reader.join(60)
    assert not reader.is_alive()
    work = repo.with_name(repo.name + ".work")
    assert result.get("data") == (work / "roles/r0/files/data.bin").read_bytes(), result
    assert c.counters.retries >= 1


def test_server_killed_for_good_gives_a_clean_fetch_error(server, client) -> None:
    c = client(server.url, max_attempts=3)
    snap = c.remote.snapshot("main")
    snap.list("roles/r0")  # trees cached: the next pack is the blob's
    server.faults.hold_after = 20_000
    errors: list[BaseException] = []

    def read() -> None:
        try:
            snap.read("roles/r0/files/data.bin")
        except BaseException as exc:
            errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    assert server.faults.holding.wait(30)
    server.stop(kill=True)
    reader.join(60)
    assert len(errors) == 1 and isinstance(errors[0], FetchError), errors
    assert "after 3 attempts" in errors[0].what
    assert errors[0].hint
    assert c.counters.retries == 2


def test_http_500_on_every_other_request_succeeds_with_retries_counted(server, client) -> None:
    server.faults.fail_every_other = 500
    c = client(server.url)
    snap = c.remote.snapshot("main")
    data = snap.read_many([e.path for e in snap.list("roles/r1")])
    assert len(data["roles/r1/files/data.bin"]) == FILE
    failed = [s for s in server.log if s.fault == "fail-every-other"]
    assert len(failed) >= 3
    assert c.counters.retries == len(failed)
    assert c.counters.by_reason["retries:fetch:http-500"] == len(failed)
    assert c.console.count("HTTP 500") == len(failed)


@pytest.mark.slow
def test_retry_after_is_honoured(server, client) -> None:
    server.faults.retry_after.extend([(429, "1"), (503, "1")])
    c = client(server.url, backoff=Backoff(base=0.01, cap=0.01))
    started = time.monotonic()
    c.remote.snapshot("main")
    took = time.monotonic() - started
    assert took >= 2.0, took  # waited what the server asked, not our 10 ms
    assert c.counters.retries == 2
    assert c.console.count("(Retry-After)") == 2


def test_retry_after_past_the_deadline_fails_at_once(server, client) -> None:
    server.faults.retry_after.append((503, "3600"))
    c = client(server.url, deadline=20.0)
    started = time.monotonic()
    with pytest.raises(FetchError) as info:
        c.remote.snapshot("main")
    assert time.monotonic() - started < 5.0
    assert "Retry-After" in info.value.why


def test_tampered_pack_is_a_verify_error_and_leaves_nothing_cached(server, repo, client) -> None:
    c = client(server.url)
    snap = c.remote.snapshot("main")
    snap.list("roles/r1")  # trees cached: the next pack is the blob's
    server.faults.flip_byte_at = 5_000
    with pytest.raises(VerifyError):
        snap.read("roles/r1/files/data.bin")
    assert c.counters.retries == 0
    # the bad pack was not kept: with an honest server the same read succeeds
    work = repo.with_name(repo.name + ".work")
    assert snap.read("roles/r1/files/data.bin") == (work / "roles/r1/files/data.bin").read_bytes()


def test_unreachable_server_fails_after_bounded_attempts(client) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    c = client(f"http://127.0.0.1:{port}/repo.git", max_attempts=3)
    with pytest.raises(FetchError) as info:
        c.remote.snapshot("main")
    assert "after 3 attempts" in info.value.what
    assert c.counters.retries == 2


def test_ref_listing_cut_short_is_retried(server, client) -> None:
    server.faults.drop_after, server.faults.drops = 200, 1  # the first POST is ls-refs
    c = client(server.url)
    assert c.remote.snapshot("main").read("bootpull.toml") == b"format = 1\n"
    assert c.counters.by_reason == {"retries:fetch:cut-short": 1}


def test_a_stalled_connection_is_abandoned_and_retried(server, repo, client) -> None:
    c = client(server.url, stall_timeout=1.0)
    snap = c.remote.snapshot("main")
    snap.list("roles/r2")
    server.faults.hold_after = 10_000  # the server stops sending, but keeps the socket open
    started = time.monotonic()
    data = snap.read("roles/r2/files/data.bin")
    assert time.monotonic() - started < 10.0
    work = repo.with_name(repo.name + ".work")
    assert data == (work / "roles/r2/files/data.bin").read_bytes()
    assert c.counters.retries == 1
    assert "timed out" in c.console


@pytest.mark.parametrize("status", [401, 403])
def test_auth_refusal_fails_fast_with_a_hint(server, client, status: int) -> None:
    server.faults.refuse_with = status
    c = client(server.url)
    started = time.monotonic()
    with pytest.raises(FetchError) as info:
        c.remote.snapshot("main")
    assert time.monotonic() - started < 5.0
    assert str(status) in info.value.why
    assert "anonymously" in info.value.hint
    assert c.counters.retries == 0
    assert c.remote.requests == 1
