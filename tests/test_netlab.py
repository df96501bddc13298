"""The lab network itself (bootpull_lab.netlab): what other tests build on."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from bootpull_lab import netlab as nl
from bootpull_lab.netlab import Lab

pytestmark = [pytest.mark.netns]


def _namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def test_lab_cleans_up_even_when_the_test_fails() -> None:
    reason = nl.available()
    if reason:
        pytest.skip(reason)
    with pytest.raises(RuntimeError, match="boom"), nl.Lab() as lab:
        server = lab.namespace("server")
        client = lab.namespace("client")
        link = lab.link(client, server)
        dns = lab.dnsmasq(server, [link], link.dhcp_range(), ping=False)
        assert dns.proc.poll() is None
        assert lab.id in _namespaces()
        lab_dir = lab.dir
        raise RuntimeError("boom")
    assert dns.proc.poll() is not None
    assert lab.id not in _namespaces()
    assert not lab_dir.exists()


def test_link_addresses_macs_and_carrier(netlab: Lab) -> None:
    server = netlab.namespace("server")
    client = netlab.namespace("client")
    link = netlab.link(client, server, client_if="eth3", mac="02:00:00:aa:bb:cc")
    assert str(link.client_mac) == "02-00-00-aa-bb-cc"
    assert f"{link.server_ip}/24" in server.ip("-4", "addr", "show", link.server_if)
    shown = client.run(["cat", "/sys/class/net/eth3/address", "/sys/class/net/eth3/carrier"])
    assert shown.stdout.split() == ["02:00:00:aa:bb:cc", "1"]
    silent = netlab.link(client, None, client_if="eth4")
    assert silent.server != server
    assert "eth3" not in subprocess.run(["ip", "link"], capture_output=True, text=True).stdout


def test_start_and_wait_tcp_serve_across_the_link(netlab: Lab) -> None:
    server = netlab.namespace("server")
    client = netlab.namespace("client")
    link = netlab.link(client, server)
    client.ip("addr", "add", f"{link.host(5)}/24", "dev", "eth0")
    (netlab.dir / "www").mkdir()
    (netlab.dir / "www" / "hello.txt").write_text("hello from the server namespace\n")
    proc = netlab.start(server, [sys.executable, "-m", "http.server", "--bind",
                                 str(link.server_ip), "--directory", str(netlab.dir / "www"),
                                 "8080"], log="http.log")
    netlab.wait_tcp(server, 8080, proc=proc)
    got = client.run([sys.executable, "-c", "import urllib.request; print(urllib.request."
                      f"urlopen('http://{link.server_ip}:8080/hello.txt', timeout=10)"
                      ".read().decode(), end='')"])
    assert got.stdout == "hello from the server namespace\n"


def test_bad_dnsmasq_config_is_reported(netlab: Lab) -> None:
    server = netlab.namespace("server")
    link = netlab.link(netlab.namespace("client"), server)
    with pytest.raises(nl.LabError, match="dnsmasq rejects the configuration"):
        netlab.dnsmasq(server, [link], ["dhcp-range=nonsense"])


def test_demo_module_runs_discover_end_to_end() -> None:
    reason = nl.available()
    if reason:
        pytest.skip(reason)
    proc = subprocess.run([sys.executable, "-m", "bootpull_lab.netlab", "--source",
                           "well-known"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["repo_url_source"] == "well-known"
    assert out["repo_url"] == "http://bootpull.lab.test/"
