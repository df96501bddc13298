"""The site-config snippets in real DHCP servers, with a real node discovering through them.

A namespace lab (tests/netfixtures.py): the server namespace runs dnsmasq configured
with exactly what ``bootpull repo site-config`` prints (or ISC Kea with its fragment),
and ``bootpull node discover --json`` in the client namespace must report the
repository URL from DHCP option 43 sub-option 1 (``repo_url_source`` = ``dhcp-43``),
the report URL from sub-option 2 and the domain.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bootpull_lab import netlab as lab_net
from bootpull_repo.site_config import dnsmasq, kea_fragment, make_site
from netfixtures import RunDiscover

pytestmark = pytest.mark.netns

DOMAIN = "lab.example.net"


def urls(link: lab_net.Link) -> tuple[str, str]:
    base = f"http://{link.server_ip}:8080"
    return f"{base}/repo.git", f"{base}/api/v1/events"


def test_dnsmasq_snippet_discovery(netlab: lab_net.Lab, run_discover: RunDiscover) -> None:
    server = netlab.namespace("srv")
    client = netlab.namespace("cli")
    link = netlab.link(client, server, client_if="eth0")
    repo_url, report_url = urls(link)
    snippet = dnsmasq(make_site(repo_url, DOMAIN, report_url))
    netlab.dnsmasq(server, [link], [*link.dhcp_range(), *snippet.splitlines()], ping=False)
    found = run_discover(client, "eth0")
    assert found.returncode == 0, found.explain()
    result = found.json
    assert (result["repo_url"], result["repo_url_source"]) == (repo_url, "dhcp-43"), \
        found.explain()
    assert result["report_url"] == report_url
    assert result["domain"] == DOMAIN


def test_dnsmasq_snippet_ignores_other_clients(netlab: lab_net.Lab) -> None:
    """A client that does not say vendor class 'bootpull' gets no option 43 or 67."""
    server = netlab.namespace("srv")
    client = netlab.namespace("cli")
    link = netlab.link(client, server, client_if="eth0")
    repo_url, _ = urls(link)
    snippet = dnsmasq(make_site(repo_url, DOMAIN))
    netlab.dnsmasq(server, [link], [*link.dhcp_range(), *snippet.splitlines()], ping=False)
    offer = _discover_raw(client, "eth0", vendor_class=b"not-a-node")
    assert "vendor_specific" not in offer
    assert "boot-file-name" not in offer
    offer = _discover_raw(client, "eth0", vendor_class=b"bootpull")
    assert repo_url.encode() in bytes.fromhex(offer["vendor_specific"])


def _discover_raw(ns: lab_net.Namespace, iface: str, *, vendor_class: bytes) -> dict[str, str]:
    """One DHCPDISCOVER with scapy in ``ns``; the offer's options (bytes as hex)."""
    script = f"""
import json, sys
from scapy.all import BOOTP, DHCP, IP, UDP, Ether, conf, get_if_hwaddr, srp1
conf.checkIPaddr = False
mac = get_if_hwaddr({iface!r})
pkt = (Ether(dst="ff:ff:ff:ff:ff:ff", src=mac) / IP(src="0.0.0.0", dst="255.255.255.255")
       / UDP(sport=68, dport=67)
       / BOOTP(chaddr=bytes.fromhex(mac.replace(":", "")) + bytes(10), xid=0x5eed, flags=0x8000)
       / DHCP(options=[("message-type", "discover"), ("vendor_class_id", {vendor_class!r}),
                       ("param_req_list", [1, 3, 6, 15]), "end"]))
ans = srp1(pkt, iface={iface!r}, timeout=20, verbose=0)
if ans is None:
    sys.exit("no offer")
out = {{}}
for opt in ans[DHCP].options:
    if isinstance(opt, tuple) and len(opt) == 2:
        value = opt[1]
        out[str(opt[0])] = value.hex() if isinstance(value, bytes) else str(value)
print(json.dumps(out))
"""
    proc = ns.run([sys.executable, "-c", script], timeout=120)
    return dict(json.loads(proc.stdout))


@pytest.mark.skipif(shutil.which("kea-dhcp4") is None, reason="kea-dhcp4 is not installed")
def test_kea_fragment_discovery(netlab: lab_net.Lab, run_discover: RunDiscover,
                                tmp_path: Path) -> None:
    server = netlab.namespace("srv")
    client = netlab.namespace("cli")
    link = netlab.link(client, server, client_if="eth0")
    repo_url, report_url = urls(link)
    config = {"Dhcp4": {
        "interfaces-config": {"interfaces": [link.server_if]},
        "lease-database": {"type": "memfile", "persist": False},
        "valid-lifetime": 3600,
        "subnet4": [{"id": 1, "subnet": str(link.network),
                     "pools": [{"pool": f"{link.host(50)} - {link.host(150)}"}],
                     "option-data": [{"name": "routers", "data": str(link.server_ip)}]}],
        **kea_fragment(make_site(repo_url, DOMAIN, report_url)),
    }}
    conf = tmp_path / "kea-dhcp4.conf"
    conf.write_text(json.dumps(config))
    run_dir = tmp_path / "kea-run"
    run_dir.mkdir()
    env = {**os.environ, "KEA_PIDFILE_DIR": str(run_dir), "KEA_LOCKFILE_DIR": str(run_dir),
           "KEA_LOGGER_DESTINATION": str(tmp_path / "kea.log")}
    log = open(tmp_path / "kea.out", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(server.argv(["kea-dhcp4", "-c", str(conf)]), stdout=log,
                            stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 30
        while not server.run(["ss", "-Hlun", "sport = :67"], check=False).stdout.strip():
            assert proc.poll() is None, (tmp_path / "kea.out").read_text()
            assert time.monotonic() < deadline, "kea-dhcp4 did not listen on port 67"
            time.sleep(0.1)
        found = run_discover(client, "eth0")
        assert found.returncode == 0, found.explain() + (tmp_path / "kea.out").read_text()
        result = found.json
        assert (result["repo_url"], result["repo_url_source"]) == (repo_url, "dhcp-43")
        assert result["report_url"] == report_url
        assert result["domain"] == DOMAIN
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        log.close()
