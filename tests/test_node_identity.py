"""The node signs its reports (bootpull.identity, bootpull.httpsig, docs/node.md "The
node's key"): ``bootpull node run --oneshot --repo --mac`` against a real home base
behind a proxy that checks every POST with ``verify_request``; the ``identity`` event
with the facts; ``details.identity`` and ``details.key`` on every event; a key kept
across runs on a state disk and made per run when diskless; a 401 (another key pinned)
keeps the events and says what the admin does, once; a PENDING answer is said once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from bootpull.backoff import Counters
from bootpull.console import Console
from bootpull.diskless import VOLATILE_FS, state_fs_type
from bootpull.httpsig import SignatureError, Verified, verify_request
from bootpull.identity import AGE_FILE, KEY_FILE, generate
from bootpull.report import KEY_REFUSED_RETRY, ReportContext, Reporter, Spool
from bootpull_homebase.server import Running
from fakes import CapturingWriter
from gitserver import GitHttpServer
from homebase_fixtures import FakeClock, settings_for
from marker_role import add_marker_role
from signed_repo import MAC_NEW, SignedRepo
from test_pipeline import Node, node_cmd


class CheckingProxy:
    """In front of the home base (or answering by itself): every POST's signature is
    checked with verify_request and recorded, then the request goes on upstream.
    ``answer`` (status, JSON) replaces the upstream's answer."""

    def __init__(self, upstream: str | None = None) -> None:
        self.upstream = upstream
        self.checked: list[Verified | str] = []  # a Verified, or the SignatureError
        self.headers: list[dict[str, str]] = []
        self.bodies: list[bytes] = []
        self.answer: tuple[int, dict[str, Any]] | None = None
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                proxy.headers.append(dict(self.headers.items()))
                proxy.bodies.append(body)
                try:
                    proxy.checked.append(verify_request(
                        method="POST", path=urlsplit(self.path).path,
                        headers=self.headers, body=body))  # type: ignore[arg-type]
                except SignatureError as exc:
                    proxy.checked.append(str(exc))
                status, data = proxy.forward(self.path, body, dict(self.headers.items()))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v1/events"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def forward(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        if self.answer is not None or self.upstream is None:
            status, obj = self.answer or (200, {"accepted": 0})
            return status, json.dumps(obj).encode()
        keep = {k: v for k, v in headers.items() if k.lower() not in ("host", "connection")}
        req = urllib.request.Request(self.upstream + path, data=body, headers=keep,
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def homebase_up(homebase_repo: Path, tmp_path: Path) -> Iterator[Running]:
    with Running(settings_for(homebase_repo, tmp_path / "events.db"),
                 clock=FakeClock(now=time.time())) as running:
        yield running


@pytest.fixture
def proxy(homebase_up: Running) -> Iterator[CheckingProxy]:
    p = CheckingProxy(homebase_up.url)
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def node(signed_repo: SignedRepo, git_http_server: object, proxy: CheckingProxy,
         tmp_path: Path) -> Node:
    markers = tmp_path / "markers"
    markers.mkdir()
    add_marker_role(signed_repo, markers, proxy.url)
    server: GitHttpServer = git_http_server(signed_repo.root)  # type: ignore[operator]
    return Node(tmp_path, signed_repo, server.url)


def mounts(tmp_path: Path, state: Path, fstype: str) -> Path:
    path = tmp_path / f"mounts-{fstype}"
    path.write_text(f"dev0 / ext4 rw 0 0\ndev1 {state} {fstype} rw 0 0\n")
    return path


def events_sent(p: CheckingProxy) -> list[dict[str, Any]]:
    return [e for body in p.bodies for e in json.loads(body)]


def test_node_run_cli_signs_every_report_and_announces_its_key(
        node: Node, proxy: CheckingProxy, homebase_up: Running, tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("quiet\n")
    proc = subprocess.run(node_cmd(node, "--oneshot", "--cmdline", str(cmdline)),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    # every POST arrived signed, by one key, a fresh nonce each
    assert proxy.checked and all(isinstance(c, Verified) for c in proxy.checked), proxy.checked
    keys = {c.key for c in proxy.checked if isinstance(c, Verified)}
    nonces = [c.nonce for c in proxy.checked if isinstance(c, Verified)]
    assert len(keys) == 1 and len(set(nonces)) == len(nonces)
    [key] = keys
    fingerprint = next(c.fingerprint for c in proxy.checked if isinstance(c, Verified))
    kind = "ephemeral" if state_fs_type(node.state, Path("/proc/mounts")) in VOLATILE_FS \
        else "persistent"
    assert f"identity {fingerprint} ({kind}, made now)" in proc.stderr
    sent = events_sent(proxy)
    assert sent[0]["stage"] == "identity" and sent[0]["status"] == "ok"
    assert [e["stage"] for e in sent].count("identity") == 1
    first = sent[0]["details"]
    assert first["public_key"] == key and first["age"].startswith("age1")
    assert first["identity"] == kind and first["key"] == fingerprint
    assert first["facts"]["cpu"]["count"] >= 1 and first["facts"]["memory"]["total"] > 0
    assert sent[0]["message"] == f"identity {fingerprint} ({kind}, made now)"
    assert all(e["details"]["identity"] == kind and e["details"]["key"] == fingerprint
               for e in sent)
    # the home base stored them, details and all
    got = requests.get(f"{homebase_up.url}/api/v1/nodes/{MAC_NEW.canonical}?limit=100",
                       timeout=30).json()
    stored = got["events"]
    assert {e["stage"] for e in stored} >= {"identity", "install", "run"}
    announced = next(e for e in stored if e["stage"] == "identity")
    assert announced["details"]["public_key"] == key
    assert all(e["details"].get("key") == fingerprint for e in stored)
    if kind == "persistent":
        assert (node.state / KEY_FILE).stat().st_mode & 0o777 == 0o600


def test_a_state_disk_keeps_the_key_and_a_diskless_node_makes_one_per_run(
        node: Node, proxy: CheckingProxy, signed_repo: SignedRepo, tmp_path: Path) -> None:
    disk = mounts(tmp_path, node.state, "ext4")
    code, log = node.run(mounts_file=disk, report_deadline=10.0)
    assert code == 0, log
    key = (node.state / KEY_FILE).read_bytes()
    first = [c for c in proxy.checked if isinstance(c, Verified)]
    code, log = node.run(mounts_file=disk, report_deadline=10.0)
    assert code == 0, log
    assert "(persistent)" in log and "made now" not in log
    again = [c for c in proxy.checked if isinstance(c, Verified)][len(first):]
    assert again and {c.key for c in again} == {first[0].key}  # the same key
    assert (node.state / KEY_FILE).read_bytes() == key
    announced = [e for e in events_sent(proxy) if e["stage"] == "identity"]
    assert [e["message"].endswith("made now)") for e in announced] == [True, False]

    # the same state directory, now in memory: a key per run, nothing written
    diskless = tmp_path / "diskless"
    diskless.mkdir()
    ram = Node(diskless, signed_repo, node.url)
    before = len(proxy.checked)
    for _ in range(2):
        code, log = ram.run(mounts_file=mounts(tmp_path, ram.state, "ramfs"),
                            report_deadline=10.0)
        assert code == 0, log
        assert "(ephemeral, made now)" in log
    assert not (ram.state / KEY_FILE).exists() and not (ram.state / AGE_FILE).exists()
    keys = [c.key for c in proxy.checked[before:] if isinstance(c, Verified)]
    assert len(set(keys)) == 2
    assert all(e["details"]["identity"] == "ephemeral"
               for e in events_sent(proxy)[-3:])


def test_a_corrupt_key_file_is_said_and_the_node_goes_on_ephemeral(
        node: Node, proxy: CheckingProxy, tmp_path: Path) -> None:
    node.state.mkdir()
    (node.state / KEY_FILE).write_text("garbage\n")
    code, log = node.run(mounts_file=mounts(tmp_path, node.state, "ext4"),
                         report_deadline=10.0)
    assert code == 0, log
    assert f"the node key {node.state / KEY_FILE} does not parse" in log
    assert "bootpull repo enroll" in log and "Traceback" not in log
    assert "(ephemeral, made now)" in log
    assert (node.state / KEY_FILE).read_text() == "garbage\n"  # left for the admin
    announced = next(e for e in events_sent(proxy) if e["stage"] == "identity")
    assert announced["status"] == "warn" and "does not parse" in announced["details"]["problem"]
    assert all(isinstance(c, Verified) for c in proxy.checked)


def test_401_keeps_the_events_and_says_enroll_once(node: Node, proxy: CheckingProxy,
                                                   tmp_path: Path) -> None:
    proxy.answer = (401, {"error": "node 52-54-00-aa-bb-cc is enrolled with another key",
                          "status": 401})
    code, log = node.run(mounts_file=mounts(tmp_path, node.state, "ext4"),
                         report_deadline=2.0)
    assert code == 15, log
    words = " ".join(log.split())  # the banner wraps its lines
    assert words.count("the home base refuses this node's key SHA256:") == 1, log
    assert words.count("BOOTPULL: REPORT FAILED") == 2, log  # this one, and exit 15's
    assert f"an admin runs 'bootpull repo enroll {MAC_NEW.colons}' and publishes" in words
    assert "it says: node 52-54-00-aa-bb-cc is enrolled with another key" in words
    assert "Traceback" not in log
    spooled = sorted((node.state / "spool").glob("*.json"))
    assert spooled and not list((node.state / "spool" / "rejected").glob("*.json"))
    stages = [json.loads(p.read_text())["stage"] for p in spooled]
    assert stages[0] == "identity"
    # the spool holds the events unsigned; they go out signed once the key is taken
    proxy.answer = None
    code, log = node.run(mounts_file=mounts(tmp_path, node.state, "ext4"),
                         report_deadline=10.0)
    assert code == 0, log
    assert not list((node.state / "spool").glob("*.json"))
    assert "refuses this node's key" not in log


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_reporter_backs_off_a_401_and_says_pending_once(tmp_path: Path) -> None:
    p = CheckingProxy()
    try:
        out = CapturingWriter()
        clock = Clock()
        key = generate()
        reporter = Reporter(spool=Spool(tmp_path / "spool"),
                            context=ReportContext(MAC_NEW), console=Console(out),
                            counters=Counters(), url=p.url, clock=clock, identity=key)
        p.answer = (401, {"error": "wrong key", "status": 401})
        reporter.emit("run", "ok", "one")
        reporter.emit("run", "ok", "two")  # not tried: the retry is a minute away
        assert len(p.checked) == 1 and len(reporter.spool) == 2
        assert reporter.next_due() == pytest.approx(KEY_REFUSED_RETRY)
        clock.now += KEY_REFUSED_RETRY
        assert reporter.flush() is False and len(p.checked) == 2
        words = " ".join(out.text.split())
        assert words.count(f"the home base refuses this node's key {key.fingerprint}") == 1
        assert f"bootpull repo enroll {MAC_NEW.colons}" in words
        assert reporter.counters.retries == 2
        p.answer = (200, {"accepted": 2, "duplicates": 0, "ids": [1, 2],
                          "identity": "pending"})
        clock.now += KEY_REFUSED_RETRY
        assert reporter.flush() is True and len(reporter.spool) == 0
        reporter.emit("run", "ok", "three")
        assert out.text.count("this node is PENDING at the home base") == 1
        assert f"bootpull repo enroll {MAC_NEW.colons}" in out.text
        # each try was signed afresh: other nonces, the same key
        verified = [c for c in p.checked if isinstance(c, Verified)]
        assert len(verified) == len(p.checked) == 4
        assert len({c.nonce for c in verified}) == 4 and {c.key for c in verified} == {
            key.public}
        # the spool never held a signature
        assert all("Signature" not in b.decode() for b in p.bodies)
    finally:
        p.stop()


def test_reporter_without_an_identity_sends_unsigned(tmp_path: Path) -> None:
    p = CheckingProxy()
    try:
        reporter = Reporter(spool=Spool(tmp_path / "spool"), context=ReportContext(MAC_NEW),
                            console=Console(CapturingWriter()), counters=Counters(),
                            url=p.url)
        reporter.emit("run", "ok", "unsigned")
        assert p.checked == ["no Signature header"]
        assert "Bootpull-Key" not in p.headers[0] and len(reporter.spool) == 0
    finally:
        p.stop()


def test_the_node_run_cli_has_no_traceback_with_an_unreadable_state(
        node: Node, tmp_path: Path) -> None:
    """An identity.key that is a directory: said, ephemeral, the run goes on (the CLI)."""
    (node.state / KEY_FILE).mkdir(parents=True)
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("quiet\n")
    proc = subprocess.run([*node_cmd(node, "--oneshot", "--cmdline", str(cmdline))],
                          capture_output=True, text=True, timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert "is not a file" in proc.stderr and "(ephemeral, made now)" in proc.stderr
    assert sys.executable  # the node ran under this interpreter


@pytest.mark.formats(1, 2)  # enrollment (identities/) is the same in both formats
def test_two_nodes_go_pending_then_one_is_enrolled_and_a_reimage_goes_back(
        signed_repo: SignedRepo, git_http_server: object, tmp_path: Path) -> None:
    """Two real ``bootpull node run`` processes against a real home base serving the same
    repository: both PENDING (manual enrollment), ``repo enroll`` takes one, its next
    run reports as enrolled while the other stays PENDING; wiping its key (a re-image)
    gets a 401 and PENDING again with the new key."""
    from bootpull.cli import main
    from bootpull.identity import KEY_FILE as KEY
    from signed_repo import MAC_WEB

    markers = tmp_path / "markers"
    markers.mkdir()
    with Running(settings_for(signed_repo.root, tmp_path / "events.db"),
                 clock=FakeClock(now=time.time())) as hb:
        hb.homebase.repo.refresh = 0.0
        report = hb.url + "/api/v1/events"
        add_marker_role(signed_repo, markers, report)
        add_marker_role(signed_repo, markers, report, mac=MAC_WEB)
        server: GitHttpServer = git_http_server(signed_repo.root)  # type: ignore[operator]
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        first = Node(tmp_path / "a", signed_repo, server.url, mac=MAC_NEW)
        second = Node(tmp_path / "b", signed_repo, server.url, mac=MAC_WEB)

        def run(node: Node) -> subprocess.CompletedProcess[str]:
            done = subprocess.run(node_cmd(node, "--oneshot"), capture_output=True,
                                  text=True, timeout=300)
            assert "Traceback" not in done.stderr
            return done

        def status(mac: str) -> tuple[str, str]:
            nodes = requests.get(hb.url + "/api/v1/nodes", timeout=30).json()["nodes"]
            mine = next(n for n in nodes if n["node"] == mac)
            return mine["status"], mine["identity"]

        for node in (first, second):
            done = run(node)
            assert done.returncode == 0, done.stderr
            assert "PENDING at the home base" in " ".join(done.stderr.split())
        assert status(MAC_NEW.canonical) == ("PENDING", "pending")
        assert status(MAC_WEB.canonical) == ("PENDING", "pending")
        pending = requests.get(f"{hb.url}/api/v1/identities/{MAC_NEW.canonical}",
                               timeout=30).json()["pending"]
        assert len(pending) == 1 and pending[0]["facts"]["cpu"]["count"] >= 1

        assert main(["repo", "enroll", MAC_NEW.colons, "--homebase", hb.url,
                     "-C", str(signed_repo.root)]) == 0
        again = run(first)
        assert again.returncode == 0, again.stderr
        assert "PENDING at the home base" not in " ".join(again.stderr.split())
        assert status(MAC_NEW.canonical) == ("OK", "enrolled")
        assert status(MAC_WEB.canonical) == ("PENDING", "pending")

        (first.state / KEY).unlink()  # a re-imaged box: a new key
        reimaged = run(first)
        assert reimaged.returncode == 15, reimaged.stderr
        assert "refuses this node's key" in " ".join(reimaged.stderr.split())
        assert status(MAC_NEW.canonical)[0] == "PENDING"
        known = requests.get(f"{hb.url}/api/v1/identities/{MAC_NEW.canonical}",
                             timeout=30).json()
        assert known["pinned"]["key"] == pending[0]["key"]
        assert [p["key"] for p in known["pending"]] != [pending[0]["key"]]
        assert len(known["pending"]) == 1 and known["pending"][0]["refused"] >= 1
