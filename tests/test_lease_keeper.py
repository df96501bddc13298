"""The lease life cycle's I/O without a network: the codec's RENEWING, DECLINE and
RELEASE messages and T1/T2 options, the address check's DECLINE inside the DHCP
exchange (fake links), the lease keeper driven by a fake clock and server, and the
pipeline's handling of what the keeper reports."""

from __future__ import annotations

import json
import struct
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, ClassVar

import pytest
from bootpull import dhcp
from bootpull.backoff import Backoff, Counters
from bootpull.console import Console
from bootpull.discover import Discovery
from bootpull.errors import DiscoveryError
from bootpull.lease import REBINDING
from bootpull.lease_keeper import LeaseKeeper, LeaseNews
from bootpull.mac import Mac
from bootpull.pipeline import Node
from bootpull.settings import Settings
from test_discover_unit import MAC, SERVER, Lines, PickyServerLink, _acquire, _options

# -- the codec -------------------------------------------------------------------------


def test_renew_request_names_the_address_in_ciaddr_only() -> None:
    ip = IPv4Address("10.0.0.50")
    packet = dhcp.encode_request(xid=7, mac=MAC.octets, ciaddr=ip,
                                 options=dhcp.renew_options(mac=MAC.octets))
    assert packet[12:16] == ip.packed
    opts = _options(packet)
    assert opts[dhcp.MESSAGE_TYPE] == bytes([dhcp.REQUEST])
    assert dhcp.REQUESTED_IP not in opts and dhcp.SERVER_ID not in opts


def test_decline_and_release() -> None:
    ip = IPv4Address("10.0.0.50")
    decline = _options(dhcp.encode_request(xid=1, mac=MAC.octets, options=dhcp.decline_options(
        mac=MAC.octets, address=ip, server_id=SERVER)))
    assert decline[dhcp.MESSAGE_TYPE] == bytes([dhcp.DECLINE])
    assert (decline[dhcp.REQUESTED_IP], decline[dhcp.SERVER_ID]) == (ip.packed, SERVER.packed)
    release = _options(dhcp.encode_request(xid=1, mac=MAC.octets, options=dhcp.decline_options(
        mac=MAC.octets, address=ip, server_id=SERVER, kind=dhcp.RELEASE)))
    assert release[dhcp.MESSAGE_TYPE] == bytes([dhcp.RELEASE])
    assert dhcp.REQUESTED_IP not in release


def _ack(extra: bytes, xid: int = 1) -> dhcp.Lease:
    header = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 2, 1, 6, 0, xid, 0, 0, bytes(4),
                         IPv4Address("10.0.0.50").packed, bytes(4), bytes(4),
                         MAC.octets.ljust(16, b"\0"), bytes(64), bytes(128))
    opts = bytes([53, 1, dhcp.ACK, 54, 4]) + SERVER.packed + extra + b"\xff"
    return dhcp.lease_from_reply(dhcp.parse_reply(header + dhcp.MAGIC_COOKIE + opts))


def test_t1_t2_options_are_decoded_and_a_bad_one_is_a_problem() -> None:
    lease = _ack(b"\x33\x04\x00\x00\x00\x14\x3a\x04\x00\x00\x00\x08\x3b\x04\x00\x00\x00\x0e")
    assert (lease.lease_time, lease.renewal_time, lease.rebinding_time) == (20, 8, 14)
    bad = _ack(b"\x3a\x02\x00\x08")
    assert bad.renewal_time is None and "option 58" in bad.problems[dhcp.RENEWAL_TIME]
    assert dhcp.RENEWAL_TIME in dhcp.PARAMETERS and dhcp.REBINDING_TIME in dhcp.PARAMETERS


# -- the address check in the exchange ----------------------------------------------------


class TakenOnceLink(PickyServerLink):
    """Another box answers ARP for the first address acked; the second is free."""

    probes: ClassVar[list[IPv4Address]] = []

    def address_in_use(self, ip: IPv4Address, settings: Any) -> str | None:
        self.probes.append(ip)
        return "52:54:00:00:00:99" if len(self.probes) == 1 else None


def test_a_taken_address_is_declined_counted_and_discovery_starts_over() -> None:
    TakenOnceLink.probes = []
    result, counters, lines = _acquire(TakenOnceLink, 10)
    assert isinstance(result, dhcp.Lease), result
    assert len(TakenOnceLink.probes) == 2
    assert counters.by_reason == {"retries:dhcp-decline": 1}
    assert any("in use by 52:54:00:00:00:99" in line for line in lines.lines)
    assert result.bound_at > 0


# -- the keeper, with a fake clock and server ------------------------------------------


class FakeServer:
    def __init__(self) -> None:
        self.answer: Any = "ack"
        self.calls: list[bool] = []  # broadcast?

    def __call__(self, iface: str, mac: Mac, lease: dhcp.Lease, *, broadcast: bool,
                 timeout: float, xid: int) -> dhcp.Lease | str | None:
        self.calls.append(broadcast)
        if self.answer == "ack":
            return replace(lease, bound_at=NOW[0])
        return self.answer  # type: ignore[no-any-return]


NOW = [1000.0]
LEASE = replace(_ack(b""), lease_time=20, renewal_time=8, rebinding_time=14, bound_at=1000.0)


def _keeper(tmp_path: Path, server: FakeServer, rediscover: Any = None
            ) -> tuple[LeaseKeeper, list[str], Counters]:
    released: list[str] = []
    counters = Counters()

    def no_discovery() -> Discovery:
        raise DiscoveryError("no lease")

    NOW[0] = 1000.0
    keeper = LeaseKeeper("eth0", LEASE, mac=MAC, state_dir=tmp_path, console=Console(Lines()),
                         counters=counters, rediscover=rediscover or no_discovery,
                         exchange=server, release=lambda iface, lease: released.append(
                             str(lease.ip)), clock=lambda: NOW[0],
                         backoff=Backoff(base=1, cap=1))
    return keeper, released, counters


def _state(tmp_path: Path) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads((tmp_path / "lease.json").read_text())
    return obj


def test_keeper_renews_at_t1_and_writes_the_state_file(tmp_path: Path) -> None:
    server = FakeServer()
    keeper, released, counters = _keeper(tmp_path, server)
    assert _state(tmp_path)["state"] == "bound" and _state(tmp_path)["ip"] == "10.0.0.50"
    assert keeper.next_due() == 8
    NOW[0] = 1007.9
    assert keeper.tick() == [] and server.calls == []
    NOW[0] = 1008.0
    [news] = keeper.tick()
    assert news.status == "ok" and "renewed" in news.message
    assert server.calls == [False]  # unicast
    assert counters.by_reason == {"retries:dhcp-renew": 1}
    state = _state(tmp_path)
    assert state["state"] == "bound" and state["renewals"] == 1
    assert state["expires"] - state["bound"] == pytest.approx(20)
    assert keeper.next_due() == 8 and released == []


def test_keeper_rebinds_by_broadcast_when_the_server_is_silent(tmp_path: Path) -> None:
    server = FakeServer()
    server.answer = None
    keeper, _, counters = _keeper(tmp_path, server)
    for t in (1008, 1011, 1013, 1014):  # 3 s, then the 2 s minimum, then T2
        NOW[0] = float(t)
        assert keeper.tick() == []
    assert server.calls == [False, False, False, True]
    assert _state(tmp_path)["state"] == REBINDING
    server.answer = "ack"
    NOW[0] = 1017.0
    [news] = keeper.tick()
    assert "rebound" in news.message
    assert counters.by_reason == {"retries:dhcp-renew": 3, "retries:dhcp-rebind": 2}


def test_keeper_gives_the_address_up_at_the_end_and_discovers_again(tmp_path: Path) -> None:
    server = FakeServer()
    server.answer = None
    found: list[Discovery] = []

    def rediscover() -> Discovery:
        if not found:
            found.append(replace(_discovery(), lease=replace(LEASE, ip=IPv4Address(
                "10.0.0.60"), bound_at=NOW[0])))
            raise DiscoveryError("nothing yet")
        return found[0]

    keeper, released, counters = _keeper(tmp_path, server, rediscover)
    NOW[0] = 1020.0
    [news] = keeper.tick()
    assert news.status == "warn" and "ran out" in news.message
    assert released == ["10.0.0.50"] and _state(tmp_path)["state"] == "expired"
    assert keeper.tick() == []  # the first discovery fails: counted, backed off
    assert counters.by_reason["retries:discover"] == 1
    assert 0 <= keeper.next_due() <= 1  # the backoff (full jitter)
    NOW[0] = 1022.0
    [again] = keeper.tick()
    assert again.discovery is found[0] and again.status == "warn"
    assert again.details["lease"]["address_changed"] is True
    assert _state(tmp_path)["ip"] == "10.0.0.60" and _state(tmp_path)["state"] == "bound"


def test_keeper_nak_starts_over(tmp_path: Path) -> None:
    server = FakeServer()
    server.answer = "nak"
    keeper, released, _ = _keeper(tmp_path, server)
    NOW[0] = 1008.0
    [news] = keeper.tick()
    assert "DHCPNAK" in news.message and released == ["10.0.0.50"]
    assert _state(tmp_path)["state"] == "nak" and keeper.lost == "nak"


def _discovery() -> Discovery:
    return Discovery(interface="eth0", mac=MAC, ip="10.0.0.60", prefix=24, gateway=None,
                     dns_servers=[], domain=None, search=[], hostname=None, log_servers=[],
                     repo_url="http://10.0.0.1/repo.git", repo_url_source="dhcp-43",
                     report_url="")


# -- the pipeline's side -------------------------------------------------------------------


def test_pipeline_reports_lease_news_and_adopts_a_moved_repository(tmp_path: Path) -> None:
    """After a lost lease, the new discovery's repository URL (from the network) is the
    one the next poll uses, and the event says so; --repo and --mac start no keeper."""
    def settings(state: str, **kw: Any) -> Settings:
        base: dict[str, Any] = {"state_dir": tmp_path / state, "repo_url": "", "mac": None,
                                "trust_file": tmp_path / "trust.json", "oneshot": False}
        return Settings(**{**base, **kw})

    node = Node(settings("state"), Console(Lines()))
    try:
        node.repo_url = "http://10.0.0.1/old.git"
        sent: list[tuple[str, str, dict[str, Any]]] = []
        node.say.report = lambda stage, status, message, details=None: sent.append(  # type: ignore[method-assign]
            (stage, status, details or {}))
        moved = replace(_discovery(), repo_url="http://10.0.0.9/repo.git")
        node._on_lease_news(LeaseNews("warn", "new lease", {"lease": {}}, discovery=moved))
        assert node.repo_url == "http://10.0.0.9/repo.git" and node.discovered is moved
        [(stage, status, details)] = sent
        assert (stage, status) == ("lease", "warn")
        assert details["repo_url"] == {"previous": "http://10.0.0.1/old.git",
                                       "now": "http://10.0.0.9/repo.git"}
    finally:
        node.close()
    fixed = Node(settings("s2", repo_url="http://h/r.git", mac=MAC), Console(Lines()))
    try:
        fixed.discover()
        assert fixed.lease is None and not (tmp_path / "s2" / "lease.json").exists()
    finally:
        fixed.close()
