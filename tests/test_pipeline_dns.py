"""End to end with host names: the repository and the home base are found by name.

Real dnsmasq in the server namespace answers DHCP (domain ``site.test``, itself as DNS
server) and DNS: an SRV record ``_bootpull._tcp.site.test`` → ``repo.site.test``, whose
A record is the server's address, where ``git http-backend`` serves the signed
repository; ``bootpull.toml`` says ``[report] url = "http://home.site.test:PORT/..."``,
served by an event sink in the same namespace. ``bootpull node run --oneshot`` in the
client namespace resolves both names through the lease's DNS server (the node writes
no ``/etc/resolv.conf``), fetches, runs the role and reports.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from bootpull_lab import netlab as lab_net
from marker_role import add_marker_role
from signed_repo import SignedRepo

pytestmark = [pytest.mark.netns, pytest.mark.slow]

TESTS = Path(__file__).resolve().parent
DOMAIN = "site.test"

# The git server and the event sink, in the server namespace; stdin closed: print what
# the sink received (one JSON line) and stop.
SERVE = """
import json, sys
sys.path.insert(0, sys.argv[3])
from pathlib import Path
from eventsink import EventSink
from gitserver import GitHttpServer
server = GitHttpServer(host=sys.argv[2])
server.add_repo("repo", Path(sys.argv[1]))
server.start()
sink = EventSink(host=sys.argv[2])
print(server.port, sink.port, flush=True)
sys.stdin.read()
print(json.dumps(sink.received), flush=True)
sink.stop()
server.stop()
"""


class Servers:
    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        assert len(line) == 2 and all(p.isdigit() for p in line), f"no servers: {line!r}"
        self.git_port, self.sink_port = (int(p) for p in line)

    def received(self) -> list[dict[str, object]]:
        """Stop the servers; the events the sink recorded."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        out = self.proc.stdout.read()
        self.proc.wait(timeout=30)
        events = json.loads(out.splitlines()[-1])
        assert isinstance(events, list)
        return events


@pytest.fixture
def servers_in(tmp_path: Path) -> Iterator[object]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(ns: lab_net.Namespace, repo: Path, host: str) -> Servers:
        proc = ns.popen([sys.executable, "-c", SERVE, str(repo), host, str(TESTS)],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        procs.append(proc)
        return Servers(proc)

    try:
        yield start
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=15)


def test_srv_host_names_resolve_through_the_lease_dns(
        netlab: lab_net.Lab, signed_repo: SignedRepo, servers_in: object,
        tmp_path: Path) -> None:
    server = netlab.namespace("srv")
    client = netlab.namespace("node")
    link = netlab.link(client, server, client_if="eth0")
    servers: Servers = servers_in(server, signed_repo.root, str(link.server_ip))  # type: ignore[operator]
    markers = tmp_path / "markers"
    markers.mkdir()
    report_url = f"http://home.{DOMAIN}:{servers.sink_port}/api/v1/events"
    add_marker_role(signed_repo, markers, report_url, mac=link.client_mac)
    netlab.dnsmasq(server, [link], [
        *link.dhcp_range(), f"domain={DOMAIN}", f"local=/{DOMAIN}/",
        f"srv-host=_bootpull._tcp.{DOMAIN},repo.{DOMAIN},{servers.git_port}",
        f'txt-record=_bootpull._tcp.{DOMAIN},"path=/repo"',
        f"host-record=repo.{DOMAIN},{link.server_ip}",
        f"host-record=home.{DOMAIN},{link.server_ip}",
    ], ping=False)

    trust = tmp_path / "trust.json"
    trust.write_bytes(signed_repo.trust)
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("console=ttyS0 bootpull.dhcp_delay=0\n")
    proc = client.run(lab_net.bootpull_argv(
        "node", "run", "--oneshot", "--interface", "eth0", "--trust", str(trust),
        "--state-dir", str(tmp_path / "state"), "--cmdline", str(cmdline)),
        check=False, timeout=300)
    events = servers.received()
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert f"http://repo.{DOMAIN}:{servers.git_port}/repo" in proc.stderr
    assert "(dns-srv)" in proc.stderr
    assert f"resolve through the lease's DNS servers {link.server_ip}" in proc.stderr
    runs = (markers / "runs").read_text().split()
    assert len(runs) == 1 and runs[0].startswith("head-")
    mac = link.client_mac.canonical
    assert any(e["node"] == mac and e["stage"] == "run" and e["status"] == "ok"
               for e in events), events
