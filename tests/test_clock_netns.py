"""The NTP servers of DHCP option 42, end to end: real dnsmasq, real chronyd, ``node run``.

dnsmasq in the server namespace hands out option 42 naming its own address, where
chronyd (``-x``: it serves the clock, never sets it) answers on port 123. The node in
the client namespace asks it before it verifies: the clock (this machine's, the same
in every namespace) is within a second, so nothing is set, and the console says so.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from bootpull_lab import netlab as lab_net
from marker_role import add_marker_role
from ntpserver import start_chrony
from signed_repo import SignedRepo
from test_pipeline_dns import SERVE, TESTS, Servers
from test_pipeline_search import run_oneshot

pytestmark = [pytest.mark.netns, pytest.mark.slow]

ASK = """
import sys, time
from bootpull import sntp
deadline = time.monotonic() + 10
while True:
    try:
        print(sntp.query(sys.argv[1], timeout=0.3)); break
    except sntp.BadReply as exc:
        if time.monotonic() > deadline:
            sys.exit(f"no answer: {exc}")
        time.sleep(0.1)
"""


def test_option_42_names_the_ntp_server_the_node_asks(
        netlab: lab_net.Lab, signed_repo: SignedRepo, tmp_path: Path) -> None:
    server = netlab.namespace("srv")
    client = netlab.namespace("node")
    link = netlab.link(client, server, client_if="eth0")
    address = str(link.server_ip)
    chrony = start_chrony(tmp_path / "chrony", address, 123, popen=server.popen,
                          wait=lambda spec: server.run([sys.executable, "-c", ASK, spec],
                                                       timeout=30) and None)
    proc = server.popen([sys.executable, "-c", SERVE, str(signed_repo.root), address,
                         str(TESTS)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        servers = Servers(proc)
        markers = tmp_path / "markers"
        markers.mkdir()
        add_marker_role(signed_repo, markers,
                        f"http://{address}:{servers.sink_port}/api/v1/events",
                        mac=link.client_mac)
        netlab.dnsmasq(server, [link], [*link.dhcp_range(), f"dhcp-option=42,{address}"],
                       ping=False)
        node = run_oneshot(client, tmp_path, signed_repo,
                           f"http://{address}:{servers.git_port}/repo")
        events = servers.received()
    finally:
        chrony.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=15)
    assert node.returncode == 0, node.stderr[-4000:]
    assert "[finished] clock" in node.stderr
    assert "the clock is within" in node.stderr and f"of {address} (stratum" in node.stderr
    stages = [e["stage"] for e in events]
    assert "clock" not in stages  # in step: nothing to report
    assert node.stderr.index("[finished] clock") < node.stderr.index("[started] verify")
