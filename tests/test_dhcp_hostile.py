"""Acceptance: a hostile DHCP server (scapy, bootpull_lab.hostile_dhcp) on a real link.

Every case gets its own client namespace, link and server process; all the clients
run at once (the slow cases wait for their time limit, and waiting in parallel
keeps the module short). The client must survive every case: exit 0 or 10, never
a traceback, and the reason must be in ``tried[]``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from bootpull_lab import netlab
from bootpull_lab.hostile_dhcp import CASES

pytestmark = [pytest.mark.netns, pytest.mark.slow]

TIMEOUT = 10.0
PARALLEL = 4

#: case -> (exit code, source whose reason must say it, words in that reason)
EXPECT: dict[str, tuple[int, str, str]] = {
    "truncated": (10, "dhcp", "too short for a DHCP message"),
    "option-overrun": (10, "dhcp", "option 12 in options says 200 bytes but only 4 remain"),
    "no-server-id": (10, "dhcp", "has no server identifier (option 54)"),
    "wrong-xid": (10, "dhcp", "reply with a wrong transaction id"),
    "bad-mask": (10, "dhcp", "option 1 (subnet mask) has length 3, must be 4"),
    "bad-43": (10, "dhcp-43", "sub-option 1 says 64 bytes but only 16 remain"),
    "bad-43-good-67": (0, "dhcp-43", "sub-option 1 says 64 bytes but only 16 remain"),
    "loop-119": (10, "dns-srv", "compression loop"),
    "non-utf8-67": (10, "dhcp-67", "option 67 (bootfile) is not valid UTF-8"),
    "overlong-hostname": (10, "dhcp", "ignored: option 12 (hostname) is 255 bytes"),
    "nak": (10, "dhcp", "NAK from"),
    "garbage": (10, "dhcp", "op 0 is not a BOOTREPLY"),
    "file-field": (0, "dhcp-67", "eth0: the BOOTP file field"),
}


@dataclass
class Result:
    returncode: int
    out: dict[str, Any]
    stderr: str
    seconds: float


def test_every_case_has_an_expectation() -> None:
    assert set(EXPECT) == set(CASES)


@pytest.fixture(scope="module")
def hostile_results(netlab_module: netlab.Lab, tmp_path_factory: pytest.TempPathFactory,
                    ) -> Iterator[dict[str, Result]]:
    lab = netlab_module
    server = lab.namespace("hostile")
    cmdline = tmp_path_factory.mktemp("hostile") / "cmdline"
    cmdline.write_text("bootpull.dhcp_delay=0\n", encoding="utf-8")
    links = {}
    for case in CASES:
        client = lab.namespace(f"h-{case[:10]}")
        links[case] = lab.link(client, server, client_if="eth0")
    lab.hostile_dhcp_many([(link, case) for case, link in links.items()])
    argv = netlab.bootpull_argv("node", "discover", "--json", "--interface", "eth0",
                                "--timeout", str(TIMEOUT), "--cmdline", str(cmdline))
    results: dict[str, Result] = {}
    pending = list(links.items())
    # A few clients at a time: each imports scapy, and the machine has 2 cores.
    while pending:
        batch, pending = pending[:PARALLEL], pending[PARALLEL:]
        procs: dict[str, tuple[subprocess.Popen[str], float]] = {}
        try:
            for case, link in batch:
                procs[case] = (subprocess.Popen(
                    link.client.argv(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    text=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}),
                    time.monotonic())
            for case, (proc, started) in procs.items():
                stdout, stderr = proc.communicate(timeout=TIMEOUT + 90)
                try:
                    out = json.loads(stdout)
                except ValueError:
                    out = {"unparsable stdout": stdout}
                results[case] = Result(proc.returncode, out, stderr,
                                       time.monotonic() - started)
        finally:
            for proc, _ in procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    yield results


@pytest.mark.parametrize("case", sorted(EXPECT))
def test_client_survives_hostile_dhcp(case: str, hostile_results: dict[str, Result]) -> None:
    result = hostile_results[case]
    code, source, words = EXPECT[case]
    explain = f"{case}: exit {result.returncode}\n{json.dumps(result.out, indent=1)}\n" \
              f"{result.stderr}"
    assert "Traceback" not in result.stderr, explain
    assert result.returncode == code, explain
    reasons = [t["reason"] for t in result.out["tried"] if t["source"] == source]
    assert any(words in r for r in reasons), explain
    if code == 10:
        assert "DISCOVER FAILED (exit 10)" in result.stderr, explain


def test_a_broken_option_43_falls_through_to_67(hostile_results: dict[str, Result]) -> None:
    out = hostile_results["bad-43-good-67"].out
    assert out["repo_url_source"] == "dhcp-67"
    assert out["repo_url"].endswith("/repo.git")
    assert [(t["source"], t["result"]) for t in out["tried"]] == [
        ("cmdline", "not-here"), ("dhcp", "found"), ("dhcp-43", "failed"), ("dhcp-67", "found")]


def test_nak_loop_is_retried_slowly_and_counted(hostile_results: dict[str, Result]) -> None:
    result = hostile_results["nak"]
    retries = [line for line in result.stderr.splitlines() if "NAK from" in line
               and "retry" in line]
    # backoff between restarts: a few retries in the time limit, not a storm
    assert 1 <= len(retries) <= 6, result.stderr


def test_hostile_time_is_bounded(hostile_results: dict[str, Result]) -> None:
    for case, result in hostile_results.items():
        assert result.seconds < TIMEOUT + 30, (case, result.seconds)


def test_hostile_reply_builder_matches_cases() -> None:
    """The fake server's bytes really are malformed the way each case says (pure)."""
    from ipaddress import IPv4Address

    from bootpull import dhcp
    from bootpull_lab.hostile_dhcp import build_reply

    kw: dict[str, Any] = dict(kind=dhcp.DISCOVER, xid=7, chaddr=bytes(6),
                              server=IPv4Address("10.0.0.1"), offer=IPv4Address("10.0.0.5"),
                              prefix=24)
    with pytest.raises(dhcp.MalformedDhcp, match="too short"):
        dhcp.parse_reply(build_reply("truncated", **kw))
    reply = dhcp.parse_reply(build_reply("loop-119", **kw))
    lease = dhcp.lease_from_reply(reply, expect=dhcp.OFFER)
    assert "compression loop" in lease.problems[dhcp.DOMAIN_SEARCH]


def test_url_in_the_bootp_file_field_only(hostile_results: dict[str, Result]) -> None:
    out = hostile_results["file-field"].out
    assert out["repo_url_source"] == "dhcp-67"
    assert out["repo_url"].endswith("/from-file.git")
