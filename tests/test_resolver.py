"""The lease-DNS resolver hook: scoped to the run, literals and localhost untouched.

Names resolved through a real DNS server are tested end to end in test_pipeline_dns.py.
"""

from __future__ import annotations

import socket

import pytest
from bootpull import resolver


def test_the_hook_is_scoped_to_the_block() -> None:
    original = socket.getaddrinfo
    with resolver.lease_names(["127.0.0.9"]) as active:
        assert active is not None and active.servers == ["127.0.0.9"]
        assert socket.getaddrinfo is not original
    assert socket.getaddrinfo is original


def test_no_dns_servers_installs_nothing() -> None:
    original = socket.getaddrinfo
    with resolver.lease_names([]) as active:
        assert active is None and socket.getaddrinfo is original
    assert socket.getaddrinfo is original


def test_literals_and_localhost_never_ask_the_lease_dns() -> None:
    # 127.0.0.9 is never asked: nothing answers there, a question would fail.
    with resolver.lease_names(["127.0.0.9"]):
        assert resolver.resolve("127.0.0.1") == ["127.0.0.1"]
        assert resolver.resolve("localhost") == ["127.0.0.1"]
        assert socket.getaddrinfo("::1", 80, socket.AF_INET6)[0][4][0] == "::1"


def test_a_dns_server_that_does_not_answer_is_a_resolution_error() -> None:
    silent = resolver.LeaseResolver(["127.0.0.9"], timeout=0.2, lifetime=0.5)
    with pytest.raises(socket.gaierror) as caught:
        silent.addresses("repo.site.test")
    assert "no answer from the lease's DNS servers 127.0.0.9" in str(caught.value)
