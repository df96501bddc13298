"""End to end with discovery: real dnsmasq in a namespace hands out the repository URL
(DHCP option 43, sub-option 1), ``git http-backend`` serves the signed repository in
the same namespace, and ``bootpull node run --oneshot`` in the client namespace finds
it, installs the marker role and runs it. No --repo, no --mac.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bootpull_lab import netlab as lab_net
from lldp_frames import SENDER
from marker_role import add_marker_role
from signed_repo import SignedRepo

pytestmark = [pytest.mark.netns, pytest.mark.slow]

TESTS = Path(__file__).resolve().parent
SERVE = """
import sys
sys.path.insert(0, sys.argv[3])
from pathlib import Path
from gitserver import GitHttpServer
server = GitHttpServer(host=sys.argv[2])
server.add_repo("repo", Path(sys.argv[1]))
server.start()
print(server.port, flush=True)
sys.stdin.read()
server.stop()
"""


LISTEN = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((sys.argv[1], 514))
print("ready", flush=True)
with open(sys.argv[2], "ab") as out:
    while True:
        data = sock.recv(65536)
        out.write(data + b"\\n")
        out.flush()
"""


@pytest.fixture
def git_in_namespace() -> Iterator[object]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(ns: lab_net.Namespace, repo: Path, host: str) -> int:
        proc = ns.popen([sys.executable, "-c", SERVE, str(repo), host, str(TESTS)],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip().isdigit(), f"git server did not start: {line!r}"
        return int(line)

    try:
        yield start
    finally:
        for proc in procs:
            if proc.stdin:
                proc.stdin.close()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


def test_discovered_repository_oneshot_runs_the_role(
        netlab: lab_net.Lab, signed_repo: SignedRepo, git_in_namespace: object,
        tmp_path: Path) -> None:
    server = netlab.namespace("srv")
    client = netlab.namespace("node")
    link = netlab.link(client, server, client_if="eth0")
    markers = tmp_path / "markers"
    markers.mkdir()
    add_marker_role(signed_repo, markers, None, mac=link.client_mac)
    port = git_in_namespace(server, signed_repo.root, str(link.server_ip))  # type: ignore[operator]
    url = f"http://{link.server_ip}:{port}/repo"
    syslog = tmp_path / "syslog"
    syslog.write_bytes(b"")
    listener = server.popen([sys.executable, "-c", LISTEN, str(link.server_ip), str(syslog)],
                            stdout=subprocess.PIPE)
    switch = server.popen([sys.executable, "-c", SENDER, link.server_if, "120", str(TESTS)],
                          stdout=subprocess.PIPE)  # the "switch" the box is plugged into
    try:
        assert listener.stdout is not None and listener.stdout.readline() == b"ready\n"
        assert switch.stdout is not None and switch.stdout.readline() == b"ready\n"
        netlab.dnsmasq(server, [link], [*link.dhcp_range(),
                                        f"dhcp-option=vendor:bootpull,1,{url}",
                                        f"dhcp-option=7,{link.server_ip}"], ping=False)
        run_node(client, signed_repo, link, markers, tmp_path)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and b"is running" not in syslog.read_bytes():
            time.sleep(0.1)
    finally:
        for proc in (listener, switch):
            proc.kill()
            proc.wait(timeout=15)
    messages = syslog.read_bytes().splitlines()
    assert any(m.startswith(b"<30>1 ") and b" bootpull " in m and b"is running" in m
               and link.client_mac.canonical.encode() in m for m in messages), messages


def run_node(client: lab_net.Namespace, signed_repo: SignedRepo, link: lab_net.Link,
             markers: Path, tmp_path: Path) -> None:
    trust = tmp_path / "trust.json"
    trust.write_bytes(signed_repo.trust)
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("console=ttyS0 bootpull.dhcp_delay=0 bootpull.report_deadline=0\n")
    state = tmp_path / "state"
    proc = client.run(lab_net.bootpull_argv(
        "node", "run", "--oneshot", "--interface", "eth0", "--trust", str(trust),
        "--state-dir", str(state), "--cmdline", str(cmdline)), check=False, timeout=300)
    # no home base here: the role ran, its events stay spooled (exit 15)
    assert proc.returncode == 15, proc.stderr[-4000:]
    runs = (markers / "runs").read_text().split()
    assert len(runs) == 1 and runs[0].startswith("head-")
    lines = (markers / f"marker-{runs[0]}").read_text().splitlines()
    assert f"BOOTPULL_MAC={link.client_mac.canonical}" in lines
    ip_line = next(line for line in lines if line.startswith("BOOTPULL_IP="))
    assert ip_line.startswith(f"BOOTPULL_IP={'.'.join(str(link.server_ip).split('.')[:3])}.")
    assert "BOOTPULL_HOSTNAME=marker-1" in lines
    assert "dhcp-43" in proc.stderr  # the source that located the repository
    # the LLDP neighbour is in the identity event it sent again (spooled: no home base)
    spooled = [json.loads(p.read_text()) for p in sorted((state / "spool").glob("*.json"))]
    heard = [e for e in spooled if e["stage"] == "identity"
             and "lldp" in e["details"]["facts"]]
    assert heard, [e["stage"] for e in spooled]
    lldp = heard[0]["details"]["facts"]["lldp"]
    assert (lldp["system_name"], lldp["port"]) == ("switch-7", "ge-0/0/12")
    assert "plugged into switch-7 port ge-0/0/12" in heard[0]["message"]
