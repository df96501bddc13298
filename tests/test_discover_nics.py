"""Acceptance: several NICs, silent NICs, and no DHCP server at all (real dnsmasq).

One dnsmasq serves the module. Client namespaces:

- ``second``: eth0 goes to a namespace where nothing answers, eth1 to dnsmasq.
- ``both``:   eth0 and eth1 both reach dnsmasq; each network names a repository.
- ``split``:  eth0's network leases but names nothing; eth1's names a repository.
- ``silent``: eth0 only, to a namespace where nothing answers.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from bootpull_lab import netlab
from netfixtures import RunDiscover

pytestmark = [pytest.mark.netns, pytest.mark.slow]


@pytest.fixture(scope="module")
def nets(netlab_module: netlab.Lab) -> Iterator[dict[str, netlab.Link]]:
    lab = netlab_module
    server = lab.namespace("server")
    second = lab.namespace("c-second")
    both = lab.namespace("c-both")
    split = lab.namespace("c-split")
    silent = lab.namespace("c-silent")
    links = {
        "second0": lab.link(second, None, client_if="eth0"),
        "second1": lab.link(second, server, client_if="eth1"),
        "both0": lab.link(both, server, client_if="eth0"),
        "both1": lab.link(both, server, client_if="eth1"),
        "split0": lab.link(split, server, client_if="eth0"),
        "split1": lab.link(split, server, client_if="eth1"),
        "silent0": lab.link(silent, None, client_if="eth0"),
    }
    served = [links[k] for k in ("second1", "both0", "both1", "split0", "split1")]
    lines: list[str] = []
    for name in ("second1", "both0", "both1", "split0", "split1"):
        link = links[name]
        lines += link.dhcp_range(tag=name)
        if name != "split0":
            lines.append(f"dhcp-option=tag:{name},vendor:bootpull,1,"
                         f"http://{link.server_ip}/{name}.git")
    lab.dnsmasq(server, served, lines, ping=False)  # test_discover_sources keeps the ping
    yield links


def test_two_nics_only_the_second_answers(nets: dict[str, netlab.Link],
                                          run_discover: RunDiscover) -> None:
    link = nets["second1"]
    run = run_discover(link.client, timeout=30)  # no --interface: every NIC with carrier
    assert run.returncode == 0, run.explain()
    out = run.json
    assert out["interface"] == "eth1"
    assert out["mac"] == link.client_mac.canonical  # identity = the NIC that located it
    assert out["mac"] != nets["second0"].client_mac.canonical
    assert out["repo_url"] == f"http://{link.server_ip}/second1.git"
    eth0 = [t for t in out["tried"] if t["reason"].startswith("eth0:")]
    assert eth0 and eth0[0]["source"] == "dhcp" and eth0[0]["result"] == "failed"
    assert "passed over" in eth0[0]["reason"]
    # eth1 won after the grace period, not after the whole time limit
    assert run.seconds < 25, run.explain()


def test_both_nics_answer_first_in_order_wins(nets: dict[str, netlab.Link],
                                              run_discover: RunDiscover) -> None:
    run = run_discover(nets["both0"].client, timeout=30)
    assert run.returncode == 0, run.explain()
    assert run.json["interface"] == "eth0"
    assert run.json["mac"] == nets["both0"].client_mac.canonical
    assert run.json["repo_url"].endswith("/both0.git")
    # --interface order is the precedence: naming eth1 first makes it win
    run = run_discover(nets["both0"].client, "eth1", "eth0", timeout=30)
    assert run.returncode == 0, run.explain()
    assert run.json["interface"] == "eth1"
    assert run.json["mac"] == nets["both1"].client_mac.canonical


def test_lease_without_repository_yields_to_next_nic(nets: dict[str, netlab.Link],
                                                     run_discover: RunDiscover) -> None:
    run = run_discover(nets["split0"].client, timeout=30)
    assert run.returncode == 0, run.explain()
    out = run.json
    assert out["interface"] == "eth1"
    assert out["repo_url"].endswith("/split1.git")
    eth0 = {t["source"]: t["result"] for t in out["tried"] if t["reason"].startswith("eth0:")}
    assert eth0 == {"dhcp": "found", "dhcp-43": "not-here", "dhcp-67": "not-here",
                    "dns-srv": "not-here", "well-known": "not-here"}


def test_no_dhcp_server_bounded_time_and_clear_banner(nets: dict[str, netlab.Link],
                                                      run_discover: RunDiscover) -> None:
    run = run_discover(nets["silent0"].client, "eth0", timeout=8)
    assert run.returncode == 10, run.explain()
    assert run.seconds < 8 + 15, run.explain()
    assert "DISCOVER FAILED (exit 10)" in run.stderr
    assert "what: no DHCP lease on any interface" in run.stderr
    assert "check the cable" in run.stderr
    # every retransmission is counted and said on the console
    assert "dhcp eth0: no usable OFFER after" in run.stderr and "retry 1" in run.stderr
    (dhcp,) = [t for t in run.json["tried"] if t["source"] == "dhcp"]
    assert dhcp["result"] == "failed"
    assert "no lease after" in dhcp["reason"] and "DISCOVER(s)" in dhcp["reason"]


def test_named_interface_that_does_not_exist(nets: dict[str, netlab.Link],
                                            run_discover: RunDiscover) -> None:
    run = run_discover(nets["silent0"].client, "eth7", timeout=5)
    assert run.returncode == 10, run.explain()
    assert run.json["error"] == "no network interface to get a lease on"
    assert run.reasons("dhcp") == ["there is no interface 'eth7'"]
