"""DHCP option 42 (NTP servers, RFC 2132 §8.3): requested, and decoded into
``Lease.ntp_servers`` in order; a malformed one is left out with its reason."""

from __future__ import annotations

from ipaddress import IPv4Address

from bootpull import dhcp
from hypothesis import given
from hypothesis import strategies as st
from test_dhcp import lease


def test_option_42_is_requested_in_rfc_2132_order() -> None:
    assert dhcp.NTP_SERVERS == 42 and 42 in dhcp.PARAMETERS
    assert list(dhcp.PARAMETERS) == sorted(dhcp.PARAMETERS)
    for options in (dhcp.discover_options(mac=bytes(6)),
                    dhcp.request_options(mac=bytes(6), requested_ip=IPv4Address("10.0.0.5"),
                                         server_id=IPv4Address("10.0.0.1"))):
        assert 42 in dict(options)[dhcp.PARAMETER_REQUEST_LIST]


def test_ntp_servers_in_the_order_given() -> None:
    got = lease([(42, IPv4Address("10.0.0.9").packed + IPv4Address("10.0.0.3").packed)])
    assert got.ntp_servers == (IPv4Address("10.0.0.9"), IPv4Address("10.0.0.3"))
    assert 42 not in got.problems


def test_no_option_42_is_no_ntp_servers() -> None:
    assert lease([]).ntp_servers == ()


@given(st.binary(max_size=40).filter(lambda b: not b or len(b) % 4))
def test_a_malformed_option_42_is_left_out_with_its_reason(raw: bytes) -> None:
    got = lease([(42, raw), (6, IPv4Address("10.0.0.1").packed)])
    assert got.ntp_servers == ()
    assert got.problems[42].startswith("option 42 (NTP servers) has length")
    assert got.dns_servers == (IPv4Address("10.0.0.1"),)  # the rest of the lease stands
