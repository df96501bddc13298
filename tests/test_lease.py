"""The lease life cycle's rules without a clock or a network (bootpull.lease): when a
lease is bound, renewing, rebinding or expired, when the next REQUEST is due and how it
is sent, and which ARP packet says an address is taken (RFC 5227). The I/O around them
is in tests/test_lease_keeper.py and tests/test_lease_netns.py."""

from __future__ import annotations

import pytest
from bootpull.lease import (
    BOUND,
    EXPIRED,
    GIVE_UP,
    REBINDING,
    RENEWING,
    SEND_BROADCAST,
    SEND_UNICAST,
    LeaseClock,
    LeaseTimes,
    arp_conflict,
    min_retransmit,
)
from hypothesis import given
from hypothesis import strategies as st

OUR_MAC = "52:54:00:12:34:56"

# -- the timing rules ----------------------------------------------------------------


def test_defaults_are_half_and_seven_eighths() -> None:
    t = LeaseTimes.of(100.0, 20)
    assert (t.renew_at, t.rebind_at, t.expires_at) == (110.0, 117.5, 120.0)
    assert [t.phase(x) for x in (100, 109.9, 110, 117.5, 119.9, 120)] == [
        BOUND, BOUND, RENEWING, REBINDING, REBINDING, EXPIRED]


def test_server_t1_t2_are_used_and_nonsense_is_replaced() -> None:
    assert LeaseTimes.of(0, 20, 8, 14).renew_at == 8
    assert LeaseTimes.of(0, 20, 8, 14).rebind_at == 14
    bad = LeaseTimes.of(0, 20, 15, 10)  # T1 after T2
    assert (bad.renew_at, bad.rebind_at) == (10.0, 17.5)
    assert LeaseTimes.of(0, 20, 8, 30).rebind_at == 17.5  # T2 after the end


@pytest.mark.parametrize("length", [None, 0xFFFFFFFF])
def test_an_infinite_lease_is_never_renewed(length: int | None) -> None:
    plan = LeaseClock.bound(LeaseTimes.of(0, length))
    assert plan.due(1e12) is None
    assert plan.next_due(0) == float("inf")
    assert plan.times.to_json(0)["expires"] is None


def test_renewing_is_unicast_rebinding_broadcast_then_give_up() -> None:
    plan = LeaseClock.bound(LeaseTimes.of(0, 20, 8, 14))
    assert plan.due(7.9) is None
    assert plan.due(8) == SEND_UNICAST
    plan = plan.sent(8)
    assert plan.send_at == 11  # half of the 6 s left until T2
    assert plan.due(10) is None and plan.due(11) == SEND_UNICAST
    plan = plan.sent(11).sent(12.5).sent(13.5)
    assert plan.send_at == 14  # never past T2
    assert plan.due(14) == SEND_BROADCAST
    plan = plan.sent(14)
    assert plan.send_at == 17
    assert plan.due(20) == GIVE_UP


@given(length=st.integers(1, 10**7), t1=st.one_of(st.none(), st.integers(0, 10**7)),
       t2=st.one_of(st.none(), st.integers(0, 10**7)), bound=st.floats(0, 1e6),
       steps=st.lists(st.floats(0, 1), max_size=40))
def test_property_the_order_holds_and_requests_never_stop_before_the_end(
        length: int, t1: int | None, t2: int | None, bound: float, steps: list[float]) -> None:
    """T1 <= T2 <= end; a REQUEST goes out in every phase's retransmission slot, unicast
    only while renewing; there is always something due before the lease ends; and the
    gaps between REQUESTs are at least the minimum (except where a phase starts)."""
    times = LeaseTimes.of(bound, length, t1, t2)
    assert bound <= times.renew_at <= times.rebind_at <= times.expires_at
    assert times.expires_at - bound == pytest.approx(length)
    plan = LeaseClock.bound(times)
    now = bound
    for step in steps:
        now += step * length / 4
        wait = plan.next_due(now)
        assert now + wait <= max(now, times.expires_at) + 1e-6
        action = plan.due(now)
        phase = times.phase(now)
        if phase == EXPIRED:
            assert action == GIVE_UP
            break
        if action is not None:
            assert action == (SEND_UNICAST if phase == RENEWING else SEND_BROADCAST)
            after = plan.sent(now)
            gap = after.send_at - now
            boundary = times.rebind_at if phase == RENEWING else times.expires_at
            assert gap >= min(min_retransmit(times), boundary - now) - 1e-9
            assert after.send_at <= boundary
            plan = after
        else:
            assert phase == BOUND or now < plan.send_at


@pytest.mark.parametrize(("sender_mac", "sender_ip", "target_ip", "conflict"), [
    ("52:54:00:00:00:02", "10.0.0.50", "10.0.0.1", True),  # it uses the address
    ("52:54:00:00:00:02", "0.0.0.0", "10.0.0.50", True),  # it probes for it too
    ("52:54:00:00:00:02", "10.0.0.7", "10.0.0.50", False),  # asks about it: not a holder
    ("52:54:00:12:34:56", "0.0.0.0", "10.0.0.50", False),  # our own probe
])
def test_arp_conflict(sender_mac: str, sender_ip: str, target_ip: str, conflict: bool) -> None:
    assert arp_conflict(sender_mac=sender_mac, sender_ip=sender_ip, target_ip=target_ip,
                        our_mac=OUR_MAC.upper(), address="10.0.0.50") is conflict
