"""The home base against a hostile or broken LAN (docs/homebase.md, "Hardening").

Each test drives a real ``bootpull serve`` on 127.0.0.1; other loopback addresses
(127.0.0.2, 127.0.1.x) stand for other machines, by binding the client socket to them.
Every load loop is bounded and stops by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from bootpull.mac import Mac
from bootpull_homebase.admission import KeyedBuckets, UnknownNodes
from bootpull_homebase.server import Running
from homebase_fixtures import DB1, WEB1, event, settings_for

URL = "/api/v1/events"
ATTACKER = "127.0.0.2"


def _host_port(running: Running) -> tuple[str, int]:
    host, port = running.url.removeprefix("http://").split(":")
    return host, int(port)


def _post_from(source: str, address: tuple[str, int], body: Any,
               timeout: float = 30) -> http.client.HTTPResponse:
    """POST events from ``source`` (a loopback address) and read the whole answer."""
    conn = http.client.HTTPConnection(*address, timeout=timeout, source_address=(source, 0))
    data = json.dumps(body).encode()
    conn.request("POST", URL, body=data, headers={"Content-Type": "application/json"})
    answer = conn.getresponse()
    answer.read()
    conn.close()
    return answer


def _reset(sock: socket.socket) -> None:
    """Close with an RST, as a client that crashed or lost its link."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# -- slowloris ----------------------------------------------------------------------


@pytest.mark.slow
def test_slowloris_from_one_address_does_not_starve_the_others(homebase_repo: Path,
                                                               tmp_path: Path) -> None:
    """512 connections from 127.0.0.2 trickling a header byte a second: 64 are taken
    (the rest get 429), those are closed at the request deadline, and meanwhile a node
    on 127.0.0.1 reports and /healthz answers, quickly."""
    settings = settings_for(homebase_repo, tmp_path / "e.db", request_deadline=3.0)
    with Running(settings) as hb:
        address = _host_port(hb)
        opened: list[socket.socket] = []
        for _ in range(512):
            sock = socket.socket()
            sock.bind((ATTACKER, 0))
            sock.connect(address)
            opened.append(sock)
        time.sleep(0.5)
        # Over the per-address cap: a bare 429 at once, and closed.
        held, refused = [], 0
        for sock in opened:
            sock.setblocking(False)
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                sock.settimeout(10)
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                held.append(sock)
                continue
            assert data.startswith(b"HTTP/1.1 429") and b"Retry-After: 5" in data, data
            refused += 1
            sock.close()
        assert refused == 512 - 64 and len(held) == 64, (refused, len(held))
        stop = time.monotonic() + 8.0  # the trickle stops by itself
        closed: dict[int, float] = {}
        started = time.monotonic()

        def trickle() -> None:
            while time.monotonic() < stop:
                for index, sock in enumerate(held):
                    if index in closed:
                        continue
                    try:
                        sock.send(b"X")
                    except OSError:
                        closed[index] = time.monotonic() - started
                time.sleep(1.0)

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        try:
            answers = []
            while time.monotonic() < stop - 1:
                t0 = time.monotonic()
                posted = requests.post(hb.url + URL, json=event(WEB1), timeout=5)
                health = requests.get(hb.url + "/healthz", timeout=5)
                answers.append((posted.status_code, health.status_code,
                                time.monotonic() - t0))
                time.sleep(0.25)
            assert answers and all(p == 200 and h == 200 for p, h, _ in answers), answers
            assert max(seconds for _, _, seconds in answers) < 2.0, answers
        finally:
            thread.join(timeout=15)
        assert len(closed) == len(held), "a slowloris connection was held past the deadline"
        # The accepted ones were closed by the server at the deadline: no answer.
        for sock in held:
            sock.settimeout(5)
            with contextlib.suppress(OSError):
                assert sock.recv(4096) == b""
            sock.close()
        # The accepted ones were closed by the server at the deadline, not held to 8 s.
        gone = hb.server._per_client.get(ATTACKER, 0)  # the cap's own count
        assert gone == 0, f"{gone} slowloris connections still held after the deadline"


def test_a_body_sent_too_slowly_gets_408(homebase_repo: Path, tmp_path: Path) -> None:
    settings = settings_for(homebase_repo, tmp_path / "e.db", request_deadline=1.0)
    with Running(settings) as hb:
        sock = socket.create_connection(_host_port(hb), timeout=10)
        body = json.dumps(event(WEB1)).encode()
        sock.sendall(b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        t0 = time.monotonic()
        answer = b""
        for byte in body[:8]:  # one byte every 0.3 s: each read is quick, the whole is not
            try:
                sock.send(bytes([byte]))
            except OSError:
                break
            time.sleep(0.3)
        answer = sock.recv(4096)
        sock.close()
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert time.monotonic() - t0 < 5


# -- git bodies are streamed ---------------------------------------------------------


def _start_serve(repo: Path, db: Path, *extra: str,
                 pythonpath: str | None = None) -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bootpull", "serve", "--repo", str(repo), "--db", str(db),
         "--listen", "127.0.0.1:0", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        proc.wait(timeout=30)
        pytest.fail(f"bootpull serve did not start: {line!r}")
    return proc, line.rsplit(" ", 1)[-1].strip().rstrip("/")


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


HELD_CLIENTS = 16
DECLARED = 9 * 1024 * 1024  # under git http-backend's own 10 MB request buffer
SENT = DECLARED // 2


def held_git_posts_rss(url: str, pid: int) -> tuple[int, int]:
    """The server's RSS (KiB) before and while HELD_CLIENTS hold half-sent upload-pack
    bodies (DECLARED bytes announced, SENT sent)."""
    host, port = url.removeprefix("http://").split(":")
    assert requests.get(url + "/healthz", timeout=30).status_code == 200  # warm
    before = _rss_kib(pid)
    socks = []
    chunk = b"0" * 65536
    try:
        for _ in range(HELD_CLIENTS):
            sock = socket.create_connection((host, int(port)), timeout=30)
            sock.sendall(b"POST /repo.git/git-upload-pack HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: application/x-git-upload-pack-request\r\n"
                         b"Content-Length: %d\r\n\r\n" % DECLARED)
            socks.append(sock)
        for sock in socks:
            for _ in range(SENT // len(chunk)):
                sock.sendall(chunk)
        time.sleep(1.5)
        during = _rss_kib(pid)
    finally:
        for sock in socks:
            _reset(sock)
    return before, during


@pytest.mark.slow
def test_held_git_posts_do_not_grow_the_server(homebase_repo: Path, tmp_path: Path) -> None:
    proc, url = _start_serve(homebase_repo, tmp_path / "e.db")
    try:
        before, during = held_git_posts_rss(url, proc.pid)
        print(f"server RSS {before} KiB, with {HELD_CLIENTS} held upload-pack bodies "
              f"({SENT >> 20} of {DECLARED >> 20} MiB sent each): {during} KiB")
        # Buffered, that is HELD_CLIENTS * DECLARED (144 MiB); streamed, pipe buffers.
        assert during - before < 24 * 1024, (before, during)
        # and the server still answers after the clients went away
        assert requests.get(url + "/healthz", timeout=30).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_chunked_git_post_streams_through(homebase: Running, tmp_path: Path) -> None:
    """A chunked upload-pack request (what git sends for large negotiations) still
    works: git reads the body to its end, with no CONTENT_LENGTH."""
    advert = requests.get(homebase.url + "/repo.git/info/refs?service=git-upload-pack",
                          headers={"Git-Protocol": "version=2"}, timeout=30)
    assert advert.status_code == 200
    request = b"0014command=ls-refs\n00010009peel\n0000"
    answer = requests.post(homebase.url + "/repo.git/git-upload-pack",
                           data=iter([request[:7], request[7:]]),
                           headers={"Git-Protocol": "version=2", "Content-Type":
                                    "application/x-git-upload-pack-request"}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert b"refs/heads/main" in answer.content


# -- byte budgets and unknown nodes --------------------------------------------------


def test_a_byte_flood_from_one_address_gets_429_while_others_report(
        homebase_repo: Path, tmp_path: Path) -> None:
    settings = settings_for(homebase_repo, tmp_path / "e.db", client_bytes_rate=64 * 1024,
                            client_bytes_burst=256 * 1024, node_bytes_rate=10 ** 9,
                            node_bytes_burst=10 ** 9)
    with Running(settings) as hb:
        address = _host_port(hb)
        batch = [event(DB1, message="x" * 900) for _ in range(50)]  # ~60 KB a request
        size = len(json.dumps(batch).encode())
        accepted_bytes, refused, t0 = 0, None, time.monotonic()
        for _ in range(200):  # bounded: ~12 MB if nothing refused it
            answer = _post_from(ATTACKER, address, batch)
            if answer.status == 429:
                refused = answer
                break
            assert answer.status == 200
            accepted_bytes += size
        elapsed = time.monotonic() - t0
        assert refused is not None, "the flood was never refused"
        assert int(refused.headers["Retry-After"]) >= 1
        assert accepted_bytes <= 256 * 1024 + 64 * 1024 * elapsed + size
        # another address is not refused
        assert _post_from("127.0.0.1", address, event(WEB1)).status == 200
        assert requests.get(hb.url + "/healthz", timeout=30).json()["refused_429"] >= 1


def test_one_node_over_its_byte_budget_gets_429_from_any_address(
        homebase_repo: Path, tmp_path: Path) -> None:
    settings = settings_for(homebase_repo, tmp_path / "e.db", node_bytes_rate=16 * 1024,
                            node_bytes_burst=64 * 1024)
    with Running(settings) as hb:
        address = _host_port(hb)
        batch = [event(DB1, message="y" * 900) for _ in range(20)]  # ~24 KB
        statuses = [_post_from(f"127.0.3.{i + 1}", address, batch).status for i in range(8)]
        assert statuses[0] == 200 and 429 in statuses, statuses
        assert _post_from("127.0.3.1", address, event(WEB1)).status == 200


def test_unknown_nodes_past_the_limit_get_403(homebase_repo: Path, tmp_path: Path) -> None:
    settings = settings_for(homebase_repo, tmp_path / "e.db", max_unknown_nodes=3)
    with Running(settings) as hb:
        strangers = [Mac(bytes([0x02, 0, 0, 0, 9, i])) for i in range(5)]
        for mac in strangers[:3]:
            assert requests.post(hb.url + URL, json=event(mac), timeout=30).status_code == 200
        fourth = requests.post(hb.url + URL, json=event(strangers[3]), timeout=30)
        assert fourth.status_code == 403, fourth.text
        assert "hosts/" in fourth.json()["error"] and fourth.headers["Retry-After"]
        # all or nothing: an array with one refused node stores none of it
        mixed = requests.post(hb.url + URL, json=[event(WEB1), event(strangers[4])],
                              timeout=30)
        assert mixed.status_code == 403
        # nodes already seen, and nodes the repository names, still report
        assert requests.post(hb.url + URL, json=event(strangers[0]),
                             timeout=30).status_code == 200
        assert requests.post(hb.url + URL, json=event(WEB1), timeout=30).status_code == 200
        health = requests.get(hb.url + "/healthz", timeout=30).json()
        assert health["unknown_nodes"] == 3 and health["refused_unknown_nodes"] == 2
        assert len(hb.homebase.store.nodes()) == 4


def test_the_unknown_node_count_survives_a_restart(homebase_repo: Path,
                                                   tmp_path: Path) -> None:
    settings = settings_for(homebase_repo, tmp_path / "e.db", max_unknown_nodes=1)
    stranger = Mac(bytes([0x02, 0, 0, 0, 8, 1]))
    with Running(settings) as hb:
        assert requests.post(hb.url + URL, json=event(stranger), timeout=30).status_code == 200
    with Running(settings) as hb:
        other = Mac(bytes([0x02, 0, 0, 0, 8, 2]))
        assert requests.post(hb.url + URL, json=event(other), timeout=30).status_code == 403
        assert requests.post(hb.url + URL, json=event(stranger), timeout=30).status_code == 200


class SteppedClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_keyed_buckets_are_per_key_and_refill() -> None:
    clock = SteppedClock()
    buckets = KeyedBuckets(100.0, 1000.0, clock=clock)
    assert buckets.take("a", 1000) == 0
    assert buckets.take("a", 200) == pytest.approx(2.0)  # 200 more bytes at 100/s
    assert buckets.take("b", 1000) == 0  # another key has its own budget
    clock.now += 2
    assert buckets.take("a", 200) == 0
    assert buckets.take("c", 5000) == 0  # larger than the burst: passes when rested
    assert buckets.take("c", 1) > 0


def test_keyed_buckets_take_all_or_nothing() -> None:
    buckets = KeyedBuckets(10.0, 100.0, clock=SteppedClock())
    assert buckets.take_all({"a": 90, "b": 10}) == 0
    assert buckets.take_all({"a": 20, "b": 10}) == pytest.approx(1.0)
    assert buckets.take_all({"b": 90}) == 0  # b was not charged by the refused request


def test_keyed_buckets_forget_rested_keys_first() -> None:
    clock = SteppedClock()
    buckets = KeyedBuckets(1.0, 10.0, max_keys=3, clock=clock)
    for key in "abc":
        buckets.take(key, 10)
    clock.now += 100  # all rested
    buckets.take("d", 10)
    buckets.take("e", 10)
    assert buckets.take("d", 1) > 0 and buckets.take("e", 1) > 0  # kept, not reset


def test_unknown_nodes_counts_only_unnamed_nodes() -> None:
    named = {"52-54-00-00-00-01"}
    unknown = UnknownNodes(2, {"02-00-00-00-00-01"}, lambda: named)
    assert unknown.admit({"52-54-00-00-00-01", "02-00-00-00-00-02"}) == []
    assert unknown.admit({"02-00-00-00-00-03", "02-00-00-00-00-04"}) == [
        "02-00-00-00-00-03", "02-00-00-00-00-04"]
    assert unknown.count() == 2
    named.add("02-00-00-00-00-02")  # its host file was committed: it stops counting
    assert unknown.admit({"02-00-00-00-00-03"}) == []
    assert UnknownNodes(-1, set(), lambda: named).admit({"x", "y"}) == []


# -- disconnects ---------------------------------------------------------------------


def test_client_disconnects_are_one_line_not_a_traceback(
        homebase: Running, capfd: pytest.CaptureFixture[str]) -> None:
    address = _host_port(homebase)
    # a git POST whose client vanishes mid-body
    sock = socket.create_connection(address, timeout=10)
    sock.sendall(b"POST /repo.git/git-upload-pack HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Length: 100000\r\n\r\n" + b"0" * 1000)
    time.sleep(0.3)
    _reset(sock)
    # an events POST whose client vanishes mid-body
    sock = socket.create_connection(address, timeout=10)
    sock.sendall(b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{")
    time.sleep(0.3)
    _reset(sock)
    # a client that resets before its request line ends
    sock = socket.create_connection(address, timeout=10)
    sock.sendall(b"GET /heal")
    time.sleep(0.3)
    _reset(sock)
    time.sleep(0.5)
    assert requests.get(homebase.url + "/healthz", timeout=30).status_code == 200
    err = capfd.readouterr().err
    assert "Traceback" not in err, err
    assert "went away (ConnectionResetError)" in err, err


# -- 1,000 nodes at once -------------------------------------------------------------


async def _one_node(address: tuple[str, int], source: str, body: bytes) -> str:
    reader, writer = await asyncio.open_connection(*address, local_addr=(source, 0))
    try:
        writer.write(b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                     % len(body) + body)
        await writer.drain()
        status = await reader.readline()
        await reader.read()
        return status.decode().strip()
    finally:
        writer.close()


async def _thousand(address: tuple[str, int], bodies: list[bytes]) -> list[str | BaseException]:
    tasks = [_one_node(address, f"127.0.1.{i % 20 + 1}", body)
             for i, body in enumerate(bodies)]
    return list(await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 120))


@pytest.mark.slow
def test_1000_nodes_at_once_all_get_answers(homebase_repo: Path, tmp_path: Path) -> None:
    settings = settings_for(homebase_repo, tmp_path / "e.db", max_unknown_nodes=-1)
    with Running(settings) as hb:
        bodies = [json.dumps(event(Mac(bytes([0x02, 0, 0, 1, i // 256, i % 256])))).encode()
                  for i in range(1000)]
        t0 = time.monotonic()
        results = asyncio.run(_thousand(_host_port(hb), bodies))
        elapsed = time.monotonic() - t0
        print(f"1000 simultaneous connections answered in {elapsed:.2f} s")
        failures = [r for r in results if not (isinstance(r, str) and r.endswith("200 OK"))]
        assert not failures, failures[:5]
        assert len(hb.homebase.store.nodes()) == 1000
