"""discover(): the decision rule, the JSON shape, laziness, and the DHCP state machine
driven by named fake links (no network; the real network is in test_discover_*.py)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import threading
import time
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from bootpull import dhcp, dhcp_client, locate
from bootpull.backoff import Backoff, Counters
from bootpull.console import Console
from bootpull.discover import Discovery, _decide, _Outcome
from bootpull.interfaces import Interface
from bootpull.mac import Mac

MAC = Mac.parse("52:54:00:12:34:56")
SERVER = IPv4Address("10.0.0.1")
OTHER = IPv4Address("10.0.0.2")
FAST = dhcp_client.DhcpSettings(initial_delay=0, backoff=Backoff(base=0.2, cap=0.4))


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> None:
        self.lines.append(text)

    def close(self) -> None:
        pass


# -- the decision rule -------------------------------------------------------------------


def _outcome(name: str, found: bool, at: float = 0.0) -> _Outcome:
    iface = Interface(name, 1, MAC)
    attempt = locate.Attempt("dhcp-43", locate.FOUND, "x", url="http://h/") if found else None
    return _Outcome(iface, [], found=attempt, at=at)


def test_decide_first_in_order_wins() -> None:
    order = ["eth0", "eth1"]
    both = {"eth0": _outcome("eth0", True), "eth1": _outcome("eth1", True)}
    winner, passed, done = _decide(order, both, now=1.0, grace=5)
    assert done and winner is both["eth0"] and passed == []


def test_decide_waits_for_a_silent_higher_ranked_nic_then_passes_it_over() -> None:
    order = ["eth0", "eth1"]
    only1 = {"eth1": _outcome("eth1", True, at=10.0)}
    assert _decide(order, only1, now=12.0, grace=5) == (None, [], False)
    winner, passed, done = _decide(order, only1, now=15.0, grace=5)
    assert done and winner is only1["eth1"] and passed == ["eth0"]


def test_decide_skips_nics_that_found_nothing() -> None:
    order = ["eth0", "eth1", "eth2"]
    got = {"eth0": _outcome("eth0", False), "eth1": _outcome("eth1", True)}
    winner, _, done = _decide(order, got, now=0.0, grace=5)
    assert done and winner is got["eth1"]


def test_decide_all_failed_is_done_without_winner() -> None:
    got = {"eth0": _outcome("eth0", False)}
    assert _decide(["eth0"], got, now=0.0, grace=5) == (None, [], True)
    assert _decide(["eth0", "eth1"], got, now=0.0, grace=5) == (None, [], False)


# -- the JSON contract -------------------------------------------------------------------


def test_discovery_json_has_exactly_the_contract_keys() -> None:
    d = Discovery(interface="eth0", mac=MAC, ip="10.0.0.5", prefix=24, gateway="10.0.0.1",
                  dns_servers=["10.0.0.1"], domain="lab.test", search=["lab.test"],
                  hostname=None, log_servers=[], repo_url="http://h/r.git",
                  repo_url_source="dhcp-43", report_url="http://h/api/v1/events",
                  report_url_source="origin",
                  tried=[locate.Tried("cmdline", "not-here", "no bootpull.repo= here"),
                         locate.Tried("dhcp-43", "found", "x", "eth0")])
    out = d.to_json()
    assert list(out) == ["interface", "mac", "ip", "prefix", "gateway", "dns_servers",
                         "domain", "search", "hostname", "log_servers", "repo_url",
                         "repo_url_source", "report_url", "report_url_source", "tried"]
    assert out["mac"] == "52-54-00-12-34-56"
    assert out["tried"] == [
        {"source": "cmdline", "result": "not-here", "reason": "no bootpull.repo= here"},
        {"source": "dhcp-43", "result": "found", "reason": "eth0: x"}]
    assert Discovery.from_json(out) == d
    assert Discovery.from_json(json.loads(json.dumps(out))).to_json() == out


def test_importing_discover_does_not_import_scapy_or_dns() -> None:
    code = ("import sys, bootpull.discover, bootpull.dhcp_client, bootpull.locate\n"
            "print(','.join(m for m in ('scapy', 'dns') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""


# -- the DHCP state machine, with named fake links ------------------------------------------


def _reply(kind: int, xid: int, *, server: IPv4Address = SERVER, chaddr: bytes = MAC.octets,
           extra: bytes = b"") -> bytes:
    header = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 2, 1, 6, 0, xid, 0, 0, bytes(4),
                         IPv4Address("10.0.0.50").packed, server.packed, bytes(4),
                         chaddr.ljust(16, b"\0"), bytes(64), bytes(128))
    opts = bytes([53, 1, kind, 54, 4]) + server.packed + b"\x01\x04\xff\xff\xff\x00" + extra
    return header + dhcp.MAGIC_COOKIE + opts + b"\xff"


class SilentLink:
    """Sends into the void; nothing ever answers."""

    def __init__(self, iface: str, mac: Mac) -> None:
        self.sent: list[bytes] = []

    def send(self, payload: bytes) -> None:
        self.sent.append(payload)

    def receive(self, timeout: float) -> bytes | None:
        time.sleep(max(0.0, timeout))
        return None

    def close(self) -> None:
        pass


class PickyServerLink(SilentLink):
    """A server on a busy segment: each answer comes after noise that must be ignored
    (another client's reply, a wrong xid, garbage, a second server's ACK)."""

    def __init__(self, iface: str, mac: Mac) -> None:
        super().__init__(iface, mac)
        self.queue: list[bytes] = []

    def send(self, payload: bytes) -> None:
        super().send(payload)
        xid = struct.unpack_from("!I", payload, 4)[0]
        kind = _options(payload)[53][0]
        if kind == dhcp.DISCOVER:
            self.queue += [_reply(dhcp.OFFER, xid, chaddr=b"\x02" * 6), b"garbage",
                           _reply(dhcp.OFFER, xid ^ 1), _reply(dhcp.OFFER, xid)]
        elif kind == dhcp.REQUEST:
            assert _options(payload)[54] == SERVER.packed
            self.queue += [_reply(dhcp.ACK, xid, server=OTHER),
                           _reply(dhcp.ACK, xid, extra=b"\x0c\x04node")]

    def receive(self, timeout: float) -> bytes | None:
        return self.queue.pop(0) if self.queue else super().receive(timeout)


class NakOnceLink(PickyServerLink):
    """NAKs the first REQUEST, then behaves."""

    naked = False

    def send(self, payload: bytes) -> None:
        SilentLink.send(self, payload)
        xid = struct.unpack_from("!I", payload, 4)[0]
        kind = _options(payload)[53][0]
        if kind == dhcp.DISCOVER:
            self.queue.append(_reply(dhcp.OFFER, xid))
        elif not self.naked:
            self.naked = True
            self.queue.append(_reply(dhcp.NAK, xid))
        else:
            self.queue.append(_reply(dhcp.ACK, xid))


def _options(payload: bytes) -> dict[int, bytes]:
    found: dict[int, bytearray] = {}
    dhcp._scan_options(payload[240:], "options", found)
    return {k: bytes(v) for k, v in found.items()}


def _acquire(link: type[SilentLink], seconds: float) -> tuple[dhcp.Lease | Exception,
                                                               Counters, Lines]:
    lines = Lines()
    counters = Counters()
    try:
        lease: dhcp.Lease | Exception = dhcp_client.acquire(
            "eth0", MAC, deadline=time.monotonic() + seconds, console=Console(lines),
            counters=counters, settings=FAST, link_factory=link)
    except dhcp_client.DhcpFailed as exc:
        lease = exc
    return lease, counters, lines


def test_silence_retries_with_backoff_counts_and_logs_then_fails() -> None:
    result, counters, lines = _acquire(SilentLink, 1.5)
    assert isinstance(result, dhcp_client.DhcpFailed)
    assert "no lease after" in result.what
    assert counters.retries >= 2
    assert counters.by_reason["retries:dhcp"] == counters.retries
    logged = [line for line in lines.lines if "no usable OFFER after" in line]
    assert len(logged) == counters.retries


def test_noise_is_ignored_and_the_right_server_is_used() -> None:
    result, counters, _ = _acquire(PickyServerLink, 10)
    assert isinstance(result, dhcp.Lease), result
    assert result.server_id == SERVER and result.hostname == "node"
    assert counters.retries == 0


def test_nak_starts_over_and_is_counted() -> None:
    result, counters, lines = _acquire(NakOnceLink, 10)
    assert isinstance(result, dhcp.Lease), result
    assert counters.retries == 1
    assert any("NAK from 10.0.0.1" in line for line in lines.lines)


def test_stop_event_ends_acquire_early() -> None:
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    with pytest.raises(dhcp_client.DhcpFailed):
        dhcp_client.acquire("eth0", MAC, deadline=time.monotonic() + 30,
                            console=Console(Lines()), counters=Counters(), settings=FAST,
                            link_factory=SilentLink, stop=stop)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("url", ["ftp://h/r.git", "http://127.0.0.1:99999/x.git",
                                 "http://[::1/bad.git"])
def test_a_bad_kernel_repo_url_is_one_failed_source_and_discovery_goes_on(
        tmp_path: Path, url: str) -> None:
    """No traceback, no stop: the network is asked next (here there is no interface, so
    discovery ends there, with the cmdline attempt and its reason in ``tried``)."""
    (tmp_path / "cmdline").write_text(f"bootpull.repo={url}\n")
    proc = subprocess.run([sys.executable, "-m", "bootpull", "node", "discover", "--json",
                           "--interface", "no-such-if0", "--cmdline",
                           str(tmp_path / "cmdline")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 10, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "Looking for the repository on the network instead" in " ".join(proc.stderr.split())
    out = json.loads(proc.stdout)
    assert out["error"] == "no network interface to get a lease on"
    assert out["tried"][0]["source"] == "cmdline" and out["tried"][0]["result"] == "failed"
    assert url[:40] in out["tried"][0]["reason"]


@pytest.mark.parametrize(("cmdline", "words"), [
    ("bootpull.mac=not-a-mac", "bootpull.mac= is not a MAC address"),
])
def test_bad_kernel_command_line_fails_before_any_network(
        tmp_path: Path, cmdline: str, words: str) -> None:
    (tmp_path / "cmdline").write_text(cmdline + "\n")
    proc = subprocess.run([sys.executable, "-m", "bootpull", "node", "discover", "--json",
                           "--interface", "no-such-if0", "--cmdline",
                           str(tmp_path / "cmdline")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 10, proc.stderr
    assert words in proc.stderr
    assert "DISCOVER FAILED (exit 10)" in proc.stderr
