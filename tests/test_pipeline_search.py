"""``node run`` resolves the repository host through the lease's search list.

A real dnsmasq in a lab namespace hands out option 119 ``lab.test`` (and option 15
``site.test``, which the search list overrides) and knows only ``repo.lab.test`` and
``home.lab.test``; ``bootpull node run --oneshot`` with
``bootpull.repo=http://repo:PORT/repo`` fetches, verifies, runs the role and reports to
``http://home:PORT/...``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from bootpull_lab import netlab as lab_net
from marker_role import add_marker_role
from signed_repo import SignedRepo
from test_pipeline_dns import SERVE, TESTS, Servers


@pytest.mark.netns
@pytest.mark.slow
def test_the_repository_host_resolves_through_the_lease_search_list(
        netlab: lab_net.Lab, signed_repo: SignedRepo, tmp_path: Path) -> None:
    server = netlab.namespace("srv")
    client = netlab.namespace("node")
    link = netlab.link(client, server, client_if="eth0")
    proc = server.popen([sys.executable, "-c", SERVE, str(signed_repo.root),
                         str(link.server_ip), str(TESTS)],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        servers = Servers(proc)
        markers = tmp_path / "markers"
        markers.mkdir()
        add_marker_role(signed_repo, markers, f"http://home:{servers.sink_port}/api/v1/events",
                        mac=link.client_mac)
        dns = netlab.dnsmasq(server, [link], [
            *link.dhcp_range(), "domain=site.test", "dhcp-option=119,lab.test",
            "local=/lab.test/", "local=/site.test/",
            f"host-record=repo.lab.test,{link.server_ip}",
            f"host-record=home.lab.test,{link.server_ip}",
        ], ping=False)
        node = run_oneshot(client, tmp_path, signed_repo,
                           f"http://repo:{servers.git_port}/repo")
        events = servers.received()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=15)
    assert node.returncode == 0, node.stderr[-4000:]
    assert f"DNS servers {link.server_ip}, search lab.test" in node.stderr
    assert (markers / "runs").read_text().split()[0].startswith("head-")
    assert any(e["stage"] == "run" and e["status"] == "ok" for e in events), events
    queries = dns.log()
    assert "query[A] repo.lab.test" in queries
    assert "query[A] repo.site.test" not in queries  # option 119 overrides option 15


def run_oneshot(client: lab_net.Namespace, tmp_path: Path, repo: SignedRepo,
                repo_url: str) -> subprocess.CompletedProcess[str]:
    """``node run --oneshot`` on eth0 in ``client``, with ``bootpull.repo=repo_url``."""
    trust = tmp_path / "trust.json"
    trust.write_bytes(repo.trust)
    cmdline = tmp_path / "cmdline"
    cmdline.write_text(f"console=ttyS0 bootpull.dhcp_delay=0 bootpull.repo={repo_url}\n")
    return client.run(lab_net.bootpull_argv(
        "node", "run", "--oneshot", "--interface", "eth0", "--trust", str(trust),
        "--state-dir", str(tmp_path / "state"), "--cmdline", str(cmdline)),
        check=False, timeout=300)
