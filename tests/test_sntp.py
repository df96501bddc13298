"""The SNTP packet codec (pure) and the client against a real NTP server (chronyd).

The server is Debian's chronyd run with ``-x`` (it never touches this machine's
clock) on 127.0.0.1 and a free port: see ``ntpserver.py``. This machine's clock is
never set by these tests.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from bootpull import sntp
from hypothesis import given
from hypothesis import strategies as st
from ntpserver import Chrony

NOW = 1_790_000_000.25  # 2026-09-21


def reply_to(sent: int, *, server_time: float = NOW,
             **changes: int | bytes) -> sntp.Reply:
    fields: dict[str, int | bytes] = dict(
        leap=0, version=4, mode=4, stratum=2, poll=4, precision=-20, root_delay=0,
        root_dispersion=0, ref_id=b"GPS\0", reference=sntp.to_ntp(server_time - 10),
        originate=sent, receive=sntp.to_ntp(server_time), transmit=sntp.to_ntp(server_time))
    fields.update(changes)
    return sntp.Reply(**fields)  # type: ignore[arg-type]


@given(st.binary(max_size=1100))
def test_any_bytes_parse_or_fail_with_a_reason(data: bytes) -> None:
    try:
        reply = sntp.parse_reply(data)
    except sntp.BadReply as exc:
        assert str(exc)
        return
    assert len(data) >= sntp.SIZE
    assert reply.encode() == data[:sntp.SIZE]  # every header field is kept as sent
    try:
        sntp.check_reply(reply, sent=12345)
    except sntp.BadReply as exc:
        assert str(exc)


@given(st.binary(min_size=48, max_size=48), st.integers(0, 2**64 - 1))
def test_a_reply_counts_only_for_the_request_it_answers(data: bytes, sent: int) -> None:
    reply = sntp.parse_reply(data)
    try:
        sntp.check_reply(reply, sent)
    except sntp.BadReply:
        return
    assert reply.originate == sent and reply.mode == 4
    assert 1 <= reply.stratum <= 15 and reply.leap != 3 and 1 <= reply.version <= 4


@given(st.floats(min_value=0, max_value=4_000_000_000))  # 1970 to 2096, across era 1
def test_timestamps_round_trip_within_a_nanosecond(unix: float) -> None:
    assert abs(sntp.to_unix(sntp.to_ntp(unix)) - unix) < 1e-6


def test_era_1_starts_in_2036() -> None:
    assert sntp.to_unix(0x8000_0000 << 32) == 0x8000_0000 - sntp.NTP_UNIX_DELTA  # 2004
    assert sntp.to_unix(0) == 2**32 - sntp.NTP_UNIX_DELTA  # 2036-02-07, not 1900
    assert sntp.to_ntp(2**32 - sntp.NTP_UNIX_DELTA) == 0


@pytest.mark.parametrize(("changes", "reason"), [
    ({"mode": 3}, "mode 3 is not a server reply"),
    ({"version": 0}, "version 0 is not NTP 1 to 4"),
    ({"stratum": 0, "ref_id": b"RATE"}, "kiss-o'-death 'RATE'"),
    ({"stratum": 16}, "stratum 16: the server is not synchronized"),
    ({"leap": 3}, "leap indicator 3"),
    ({"originate": 99}, "the originate timestamp is not the one sent"),
    ({"transmit": 0}, "a zero receive or transmit timestamp"),
])
def test_each_check_names_its_reason(changes: dict[str, int | bytes], reason: str) -> None:
    sent = sntp.to_ntp(NOW - 100)
    with pytest.raises(sntp.BadReply, match=reason):
        sntp.check_reply(sntp.Reply(**{**reply_to(sent).__dict__, **changes}), sent)


def test_a_kiss_of_death_for_another_request_is_not_believed() -> None:
    sent = sntp.to_ntp(NOW)
    with pytest.raises(sntp.BadReply, match="originate") as caught:
        sntp.check_reply(reply_to(sent + 1, stratum=0, ref_id=b"DENY"), sent)
    assert not caught.value.final


def test_offset_and_delay_by_rfc_4330() -> None:
    t1 = NOW - 3600.0  # this clock is an hour behind
    sent = sntp.to_ntp(t1)
    reply = reply_to(sent, receive=sntp.to_ntp(NOW + 0.010), transmit=sntp.to_ntp(NOW + 0.011))
    got = sntp.sample(reply, "s", t1, t1 + 0.021)
    assert got.offset == pytest.approx(3600.0, abs=1e-6)
    assert got.delay == pytest.approx(0.020, abs=1e-6)
    assert got.server_time == pytest.approx(NOW + 0.021, abs=1e-6)


def test_request_is_mode_3_version_4_with_our_timestamp() -> None:
    data = sntp.encode_request(0x1122334455667788)
    assert len(data) == 48 and data[0] == (4 << 3) | 3
    assert data[40:] == bytes.fromhex("1122334455667788")


@pytest.mark.parametrize(("spec", "want"), [
    ("ntp.lab.test", ("ntp.lab.test", 123)), ("10.0.0.1:1123", ("10.0.0.1", 1123)),
    ("[fe80::1]", ("fe80::1", 123)), ("[::1]:999", ("::1", 999)), ("::1", ("::1", 123)),
])
def test_server_specs(spec: str, want: tuple[str, int]) -> None:
    assert sntp.split_server(spec) == want


@pytest.mark.parametrize("spec", ["", "h:0", "h:99999", "h:x", "[::1", "a b", "u@h"])
def test_bad_server_specs(spec: str) -> None:
    with pytest.raises(ValueError):
        sntp.split_server(spec)


@pytest.fixture
def liar() -> Iterator[tuple[int, list[bytes]]]:
    """A UDP server on 127.0.0.1 that first answers with a forged originate, then
    with a good reply; it returns what it was sent."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    seen: list[bytes] = []

    def serve() -> None:
        try:
            data, peer = sock.recvfrom(1024)
        except OSError:
            return
        seen.append(data)
        sent = int.from_bytes(data[40:48], "big")
        sock.sendto(reply_to(sent ^ 1, server_time=time.time()).encode(), peer)
        sock.sendto(reply_to(sent, server_time=time.time() + 7200).encode(), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()[1], seen
    sock.close()
    thread.join(5)


def test_a_forged_reply_is_skipped_and_the_real_one_taken(
        liar: tuple[int, list[bytes]]) -> None:
    port, seen = liar
    got = sntp.query(f"127.0.0.1:{port}", timeout=3)
    assert got.offset == pytest.approx(7200, abs=1)
    assert len(seen) == 1 and seen[0][0] == (4 << 3) | 3


def test_no_answer_is_a_reason_within_the_timeout() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))  # bound, never answers
    try:
        started = time.monotonic()
        with pytest.raises(sntp.BadReply, match=r"no answer within 0\.3 s"):
            sntp.query(f"127.0.0.1:{sock.getsockname()[1]}", timeout=0.3)
        assert time.monotonic() - started < 2
    finally:
        sock.close()


def test_servers_are_asked_in_order_until_one_answers(chrony: Chrony) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        found, failures = sntp.query_first(
            ["no such host!", f"127.0.0.1:{silent.getsockname()[1]}", chrony.server],
            timeout=0.5)
    finally:
        silent.close()
    assert found is not None and found.server == chrony.server
    assert len(failures) == 2 and "no answer" in failures[1]


def test_a_real_ntp_server_answers_and_the_offset_is_small(chrony: Chrony) -> None:
    got = sntp.query(chrony.server, timeout=3)
    assert 1 <= got.stratum <= 15
    assert abs(got.offset) < 0.5  # chronyd serves this machine's own clock
    assert 0 <= got.delay < 0.5


def test_a_real_ntp_server_sees_a_clock_years_behind(chrony: Chrony) -> None:
    behind = 6 * 365 * 86400.0  # the box thinks it is 2020

    got = sntp.query(chrony.server, timeout=3, clock=lambda: time.time() - behind)
    assert got.offset == pytest.approx(behind, abs=0.5)
    assert got.server_time == pytest.approx(time.time(), abs=0.5)
