"""Acceptance: each discovery source on its own, and their precedence, against a real dnsmasq.

One dnsmasq in one server namespace serves every scenario of this module. Each
scenario is its own client namespace with one veth link (its own subnet and
dnsmasq tag), so the scenarios cannot see each other's answers. The client runs
as a subprocess: ``ip netns exec CLIENT python -m bootpull node discover --json``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from bootpull_lab import netlab
from netfixtures import RunDiscover

pytestmark = [pytest.mark.netns, pytest.mark.slow]


@dataclass(frozen=True)
class Scenario:
    client: netlab.Namespace
    link: netlab.Link


SCENARIOS = ("only43", "only67", "srv", "wellknown", "all", "nothing", "nodomain",
             "cmdline", "noconf", "file", "bad67")


@pytest.fixture(scope="module")
def scenarios(netlab_module: netlab.Lab) -> Iterator[dict[str, Scenario]]:
    lab = netlab_module
    server = lab.namespace("server")
    found: dict[str, Scenario] = {}
    for name in SCENARIOS:
        client = lab.namespace(f"c-{name[:8]}")
        found[name] = Scenario(client, lab.link(client, server, client_if="eth0"))
    s = {k: v.link for k, v in found.items()}
    lines: list[str] = []
    for name, link in s.items():
        lines += link.dhcp_range(tag=name)
    lines += [
        # 43 only: sub-option 1 is the repo, 2 the report URL
        f"dhcp-option=tag:only43,vendor:bootpull,1,http://{s['only43'].server_ip}:8043/repo.git",
        f"dhcp-option=tag:only43,vendor:bootpull,2,http://{s['only43'].server_ip}:9000/ev",
        "dhcp-option=tag:only43,15,only43.test",
        # 67 only (dnsmasq sends it with a trailing NUL, and leaves the file field empty)
        f"dhcp-option=tag:only67,67,http://{s['only67'].server_ip}:8067/repo.git",
        # SRV + TXT path=, found through option 15
        "dhcp-option=tag:srv,15,srv.test",
        "srv-host=_bootpull._tcp.srv.test,repo.srv.test,8080,0,10",
        'txt-record=_bootpull._tcp.srv.test,"txtvers=1","path=/git/site.git"',
        f"host-record=repo.srv.test,{s['srv'].server_ip}",
        # well-known name only, domain from option 119 (no option 15)
        "dhcp-option=tag:wellknown,119,wk.test,other.test",
        f"host-record=bootpull.wk.test,{s['wellknown'].server_ip}",
        # all at once: 43 must win
        f"dhcp-option=tag:all,vendor:bootpull,1,http://{s['all'].server_ip}/from-43.git",
        f"dhcp-option=tag:all,67,http://{s['all'].server_ip}/from-67.git",
        "dhcp-option=tag:all,15,all.test",
        "srv-host=_bootpull._tcp.all.test,repo.all.test,8080",
        f"host-record=bootpull.all.test,{s['all'].server_ip}",
        # nothing: a domain with no records, and a non-URL option 67
        "dhcp-option=tag:nothing,15,nothing.test",
        "dhcp-option=tag:nothing,67,pxelinux.0",
        # no domain at all
        # cmdline scenario: the network says 43, the command line must win
        f"dhcp-option=tag:cmdline,vendor:bootpull,1,http://{s['cmdline'].server_ip}/net.git",
        "dhcp-option=tag:cmdline,15,cmd.test",
        f"dhcp-host={s['cmdline'].client_mac.colons},node-seven",
        "dhcp-option=tag:cmdline,7,10.77.8.99",
        # dhcp-boot= (dnsmasq sends it as option 67 to a client that asks for 67)
        f"dhcp-boot=tag:file,http://{s['file'].server_ip}/from-file.git",
        # a malformed URL in option 67, and valid SRV/TXT records: SRV must still be found
        'dhcp-option=tag:bad67,option:bootfile-name,"http://[::1/bad.git"',
        "dhcp-option=tag:bad67,15,bad67.test",
        "srv-host=_bootpull._tcp.bad67.test,repo.bad67.test,8080",
        'txt-record=_bootpull._tcp.bad67.test,"path=/good.git"',
        f"host-record=repo.bad67.test,{s['bad67'].server_ip}",
        # --no-configure, interface named on the kernel command line
        f"dhcp-option=tag:noconf,vendor:bootpull,1,http://{s['noconf'].server_ip}/nc.git",
        *(f"local=/{d}/" for d in ("only43.test", "srv.test", "wk.test", "other.test",
                                   "all.test", "nothing.test", "cmd.test", "bad67.test")),
    ]
    lab.dnsmasq(server, list(s.values()), lines, ping=True)
    yield found


def test_option_43_only(scenarios: dict[str, Scenario], run_discover: RunDiscover) -> None:
    sc = scenarios["only43"]
    run = run_discover(sc.client, "eth0")
    assert run.returncode == 0, run.explain()
    out = run.json
    assert out["repo_url"] == f"http://{sc.link.server_ip}:8043/repo.git"
    assert out["repo_url_source"] == "dhcp-43"
    assert out["report_url"] == f"http://{sc.link.server_ip}:9000/ev"
    assert out["report_url_source"] == "dhcp-43"
    assert out["mac"] == sc.link.client_mac.canonical
    assert out["interface"] == "eth0"
    assert out["ip"] in [str(sc.link.host(n)) for n in range(50, 151)]
    assert out["prefix"] == 24
    assert out["gateway"] == str(sc.link.server_ip)
    assert out["dns_servers"] == [str(sc.link.server_ip)]
    assert out["domain"] == "only43.test"
    assert set(out) == {"interface", "mac", "ip", "prefix", "gateway", "dns_servers", "domain",
                        "search", "hostname", "log_servers", "repo_url", "repo_url_source",
                        "report_url", "report_url_source", "tried"}
    assert [t["source"] for t in out["tried"]] == ["cmdline", "dhcp", "dhcp-43"]
    # the interface really was configured with the lease
    addr = sc.client.run(["ip", "-4", "-o", "addr", "show", "dev", "eth0"]).stdout
    assert f"{out['ip']}/24" in addr
    route = sc.client.run(["ip", "route", "show", "default"]).stdout
    assert f"via {sc.link.server_ip} dev eth0" in route


def test_option_67_only(scenarios: dict[str, Scenario], run_discover: RunDiscover) -> None:
    sc = scenarios["only67"]
    run = run_discover(sc.client, "eth0")
    assert run.returncode == 0, run.explain()
    out = run.json
    assert out["repo_url"] == f"http://{sc.link.server_ip}:8067/repo.git"
    assert out["repo_url_source"] == "dhcp-67"
    assert out["report_url"] == f"http://{sc.link.server_ip}:8067/api/v1/events"
    assert out["report_url_source"] == "origin"
    assert run.reasons("dhcp-43") == ["eth0: no option 43 in the lease"]


def test_dns_srv_only(scenarios: dict[str, Scenario], run_discover: RunDiscover) -> None:
    sc = scenarios["srv"]
    run = run_discover(sc.client, "eth0")
    assert run.returncode == 0, run.explain()
    out = run.json
    assert out["repo_url"] == "http://repo.srv.test:8080/git/site.git"
    assert out["repo_url_source"] == "dns-srv"
    assert [t["result"] for t in out["tried"]] == ["not-here", "found", "not-here",
                                                   "not-here", "found"]


def test_well_known_only_with_domain_from_option_119(
        scenarios: dict[str, Scenario], run_discover: RunDiscover) -> None:
    sc = scenarios["wellknown"]
    run = run_discover(sc.client, "eth0")
    assert run.returncode == 0, run.explain()
    out = run.json
    assert out["repo_url"] == "http://bootpull.wk.test/"
    assert out["repo_url_source"] == "well-known"
    assert out["domain"] is None
    assert out["search"] == ["wk.test", "other.test"]
    assert run.reasons("dns-srv") == ["eth0: no SRV record for _bootpull._tcp.wk.test"]


def test_precedence_43_beats_67_srv_and_well_known(
        scenarios: dict[str, Scenario], run_discover: RunDiscover) -> None:
    sc = scenarios["all"]
    run = run_discover(sc.client, "eth0")
    assert run.returncode == 0, run.explain()
    assert run.json["repo_url"] == f"http://{sc.link.server_ip}/from-43.git"
    assert run.json["repo_url_source"] == "dhcp-43"
    assert "dhcp-67" not in [t["source"] for t in run.tried]


def test_cmdline_beats_the_network_and_mac_override(
        scenarios: dict[str, Scenario], run_discover: RunDiscover) -> None:
    sc = scenarios["cmdline"]
    run = run_discover(sc.client, "eth0", cmdline="bootpull.repo=https://git.example/r.git "
                       "bootpull.mac=AA-BB-CC-00-11-22")
    assert run.returncode == 0, run.explain()
    out = run.json
    assert out["repo_url"] == "https://git.example/r.git"
    assert out["repo_url_source"] == "cmdline"
    assert out["mac"] == "aa-bb-cc-00-11-22"
    assert out["hostname"] == "node-seven"
    assert out["log_servers"] == ["10.77.8.99"]
    assert out["report_url"] == "https://git.example/api/v1/events"
    assert [t["source"] for t in out["tried"]] == ["cmdline", "dhcp"]


def test_nothing_found_exits_10_with_every_reason(
        scenarios: dict[str, Scenario], run_discover: RunDiscover) -> None:
    sc = scenarios["nothing"]
    run = run_discover(sc.client, "eth0")
    assert run.returncode == 10, run.explain()
    out = run.json
    assert out["error"] == "no repository found"
    reasons = {t["source"]: (t["result"], t["reason"]) for t in out["tried"]}
    assert reasons["dhcp-43"] == ("not-here", "eth0: no option 43 in the lease")
    assert "'pxelinux.0' is not an http:// or https:// URL" in reasons["dhcp-67"][1]
    assert reasons["dns-srv"] == ("not-here",
                                  "eth0: no SRV record for _bootpull._tcp.nothing.test")
    assert reasons["well-known"] == ("not-here", "eth0: bootpull.nothing.test does not resolve")
    assert "DISCOVER FAILED (exit 10)" in run.stderr
    assert "what: no repository found" in run.stderr
    assert "dhcp-option=vendor:bootpull,1," in run.stderr  # the hint says what to do


def test_no_domain_says_so(scenarios: dict[str, Scenario], run_discover: RunDiscover) -> None:
    sc = scenarios["nodomain"]
    run = run_discover(sc.client, "eth0")
    assert run.returncode == 10, run.explain()
    assert run.reasons("dns-srv") == ["eth0: the lease has no domain (option 15 or 119)"]


def test_no_configure_leaves_the_interface_alone(
        scenarios: dict[str, Scenario], run_discover: RunDiscover) -> None:
    sc = scenarios["noconf"]
    # the interface comes from bootpull.interface= on the kernel command line
    run = run_discover(sc.client, cmdline="bootpull.interface=eth0",
                       extra=("--no-configure",))
    assert run.returncode == 0, run.explain()
    assert run.json["repo_url"] == f"http://{sc.link.server_ip}/nc.git"
    assert run.json["ip"].startswith("10.77.")
    addr = sc.client.run(["ip", "-4", "-o", "addr", "show", "dev", "eth0"]).stdout
    assert "inet " not in addr
    assert sc.client.run(["ip", "route", "show", "default"]).stdout.strip() == ""


def test_bad_log_level_is_a_usage_error(scenarios: dict[str, Scenario],
                                        run_discover: RunDiscover) -> None:
    run = run_discover(scenarios["noconf"].client, "eth0", extra=("--log", "loud"))
    assert run.returncode == 2, run.explain()
    assert "'loud' is not a log level" in run.stderr


def test_dhcp_boot_and_log_level_from_cmdline(
        scenarios: dict[str, Scenario], run_discover: RunDiscover) -> None:
    sc = scenarios["file"]
    run = run_discover(sc.client, "eth0", cmdline="bootpull.log=debug")
    assert run.returncode == 0, run.explain()
    assert run.json["repo_url"] == f"http://{sc.link.server_ip}/from-file.git"
    assert run.json["repo_url_source"] == "dhcp-67"
    # the BOOTP file field alone (QEMU's way) is in test_dhcp_hostile.py: "file-field"
    assert "debug: dhcp eth0: DISCOVER xid" in run.stderr
    assert "debug: dhcp eth0: OFFER" in run.stderr


def test_a_malformed_option_67_is_one_failed_source_and_srv_is_tried(
        scenarios: dict[str, Scenario], run_discover: RunDiscover) -> None:
    sc = scenarios["bad67"]
    run = run_discover(sc.client, "eth0")
    assert run.returncode == 0, run.explain()
    assert run.json["repo_url"] == "http://repo.bad67.test:8080/good.git"
    assert run.json["repo_url_source"] == "dns-srv"
    reasons = {t["source"]: (t["result"], t["reason"]) for t in run.tried}
    assert reasons["dhcp-67"][0] == "failed"
    assert "'http://[::1/bad.git' is not a usable URL: Invalid IPv6 URL" in reasons["dhcp-67"][1]
    assert "Traceback" not in run.stderr and "internal error" not in run.stderr


def test_a_malformed_kernel_repo_url_falls_through_to_the_network(
        scenarios: dict[str, Scenario], run_discover: RunDiscover) -> None:
    sc = scenarios["cmdline"]
    run = run_discover(sc.client, "eth0", cmdline="bootpull.repo=http://127.0.0.1:99999/x.git")
    assert run.returncode == 0, run.explain()
    assert run.json["repo_url"] == f"http://{sc.link.server_ip}/net.git"
    assert run.json["repo_url_source"] == "dhcp-43"
    first = run.tried[0]
    assert (first["source"], first["result"]) == ("cmdline", "failed")
    assert "Port out of range 0-65535" in first["reason"]
