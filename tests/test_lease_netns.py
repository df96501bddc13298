"""The lease life cycle against real DHCP servers in lab namespaces (tests/netfixtures.py).

ISC Kea with short lifetimes (valid 20 s, renew 8 s, rebind 14 s, or shorter) serves
the client namespace; ``tests/lease_harness.py`` runs discovery and the lease keeper
there as ``node run`` does. Checked: a renewal at T1 keeps the address (the server's
lease file has a second entry; the keeper counts and reports it); with the server gone
the address is removed when the lease runs out, and reported; a server that no longer
has the address NAKs the renewal; an offered address another box already holds is
declined (RFC 5227 probe) and the next one taken; and dnsmasq renews too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from bootpull_lab import netlab as lab_net
from marker_role import add_marker_role
from signed_repo import SignedRepo
from test_pipeline_dns import Servers, servers_in  # noqa: F401 - the fixture

pytestmark = [pytest.mark.netns, pytest.mark.slow]
needs_kea = pytest.mark.skipif(shutil.which("kea-dhcp4") is None,
                               reason="kea-dhcp4 is not installed (apt kea-dhcp4-server)")
HARNESS = Path(__file__).with_name("lease_harness.py")
REPO = "http://192.0.2.1/repo.git"


@dataclass
class Kea:
    lab: lab_net.Lab
    proc: subprocess.Popen[bytes]
    dir: Path

    @property
    def leases(self) -> str:
        path = self.dir / "leases.csv"
        return path.read_text() if path.exists() else ""

    def log(self) -> str:
        """Kea's log (on its stdout)."""
        return (self.lab.dir / f"{self.dir.name}.out").read_text(errors="replace")

    def stop(self) -> None:
        self.lab.stop(self.proc)


def start_kea(lab: lab_net.Lab, server: lab_net.Namespace,
              subnets: list[tuple[lab_net.Link, dict[str, Any]]], where: Path) -> Kea:
    """kea-dhcp4 on the links' server ends; each subnet's dict is merged into its entry."""
    where.mkdir(parents=True, exist_ok=True)
    config = {"Dhcp4": {
        "interfaces-config": {"interfaces": [link.server_if for link, _ in subnets]},
        "lease-database": {"type": "memfile", "persist": True, "lfc-interval": 0,
                           "name": str(where / "leases.csv")},
        "authoritative": True,
        "subnet4": [{"id": n + 1, "subnet": str(link.network), "interface": link.server_if,
                     "pools": [{"pool": f"{link.host(50)} - {link.host(60)}"}], **extra}
                    for n, (link, extra) in enumerate(subnets)],
    }}
    conf = where / "kea-dhcp4.conf"
    conf.write_text(json.dumps(config))
    env = {**os.environ, "KEA_PIDFILE_DIR": str(where), "KEA_LOCKFILE_DIR": str(where),
           "KEA_LOGGER_DESTINATION": str(where / "kea.log")}
    proc = lab.start(server, ["kea-dhcp4", "-c", str(conf)], env=env, log=f"{where.name}.out")
    kea = Kea(lab, proc, where)
    deadline = time.monotonic() + 30
    while not server.run(["ss", "-Hlun", "sport = :67"], check=False).stdout.strip():
        assert proc.poll() is None, kea.log()
        assert time.monotonic() < deadline, "kea-dhcp4 did not listen on port 67"
        time.sleep(0.1)
    return kea


SHORT = {"valid-lifetime": 20, "renew-timer": 8, "rebind-timer": 14}
SHORTER = {"valid-lifetime": 6, "renew-timer": 2, "rebind-timer": 4}


@dataclass
class Run:
    lines: list[dict[str, Any]]
    stderr: str

    @property
    def news(self) -> list[dict[str, Any]]:
        return [x for x in self.lines if "status" in x]

    @property
    def done(self) -> dict[str, Any]:
        return self.lines[-1]

    def explain(self) -> str:
        return "\n".join(map(json.dumps, self.lines)) + "\n" + self.stderr[-6000:]


def run_harness(ns: lab_net.Namespace, iface: str, state: Path, seconds: float,
                once_bound: Callable[[], None] = lambda: None) -> Run:
    """The harness in ``ns``; ``once_bound`` runs as soon as it has its first lease."""
    proc = ns.popen([sys.executable, str(HARNESS), iface, str(state), str(seconds), REPO],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        once_bound()
        out, err = proc.communicate(timeout=seconds + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = first.decode() + out.decode()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    run = Run(lines, err.decode(errors="replace"))
    assert proc.returncode == 0 and lines and "done" in lines[-1], run.explain()
    return run


def addresses(ns: lab_net.Namespace, iface: str) -> list[str]:
    out = json.loads(ns.run(["ip", "-j", "-4", "addr", "show", "dev", iface]).stdout)
    return [a["local"] for entry in out for a in entry.get("addr_info", [])]


@dataclass
class Shared:
    lab: lab_net.Lab
    client: lab_net.Namespace
    renew: lab_net.Link
    conflict: lab_net.Link
    kea: Kea


@pytest.fixture(scope="module")
def shared(netlab_module: lab_net.Lab) -> Iterator[Shared]:
    """One Kea for the module: a link with 20 s leases, and one where .50 is taken."""
    if shutil.which("kea-dhcp4") is None:
        pytest.skip("kea-dhcp4 is not installed")
    lab = netlab_module
    server, client = lab.namespace("srv"), lab.namespace("cli")
    renew = lab.link(client, server, client_if="eth0")
    conflict = lab.link(client, server, client_if="eth1")
    # the server itself holds the first address of the pool: it answers ARP for it
    server.ip("addr", "add", f"{conflict.host(50)}/{conflict.network.prefixlen}",
              "dev", conflict.server_if)
    kea = start_kea(lab, server, [(renew, SHORT), (conflict, SHORT)], lab.dir / "kea")
    yield Shared(lab, client, renew, conflict, kea)
    kea.stop()


@needs_kea
def test_kea_renewal_at_t1_keeps_the_address(shared: Shared, tmp_path: Path) -> None:
    run = run_harness(shared.client, "eth0", tmp_path, 10.5)
    ip = run.lines[0]["discovered"]
    renewed = [n for n in run.news if "renewed" in n["message"]]
    assert renewed and renewed[0]["status"] == "ok", run.explain()
    assert run.done["counters"].get("retries:dhcp-renew", 0) >= 1, run.explain()
    assert run.done["ip"] == ip and run.done["lost"] is None
    state = json.loads((tmp_path / "lease.json").read_text())
    assert (state["state"], state["ip"], state["renewals"]) == ("bound", ip, 1)
    assert state["expires"] - state["bound"] == pytest.approx(20, abs=0.5)
    assert ip in addresses(shared.client, "eth0")
    entries = [line for line in shared.kea.leases.splitlines() if line.startswith(ip + ",")]
    assert len(entries) >= 2, shared.kea.leases  # the ACK and the renewal


@needs_kea
def test_kea_a_taken_address_is_declined_and_the_next_one_used(shared: Shared,
                                                                tmp_path: Path) -> None:
    run = run_harness(shared.client, "eth1", tmp_path, 0.1)
    taken = str(shared.conflict.host(50))
    assert run.lines[0]["counters"].get("retries:dhcp-decline", 0) >= 1, run.explain()
    assert run.lines[0]["discovered"] != taken, run.explain()
    assert taken not in addresses(shared.client, "eth1")
    assert "in use by" in run.stderr
    assert "DHCP4_DECLINE_LEASE" in shared.kea.log(), shared.kea.log()[-3000:]


@needs_kea
def test_kea_gone_the_lease_runs_out_and_the_address_is_removed(
        netlab: lab_net.Lab, tmp_path: Path) -> None:
    server, client = netlab.namespace("srv"), netlab.namespace("cli")
    link = netlab.link(client, server, client_if="eth0")
    kea = start_kea(netlab, server, [(link, SHORTER)], tmp_path / "kea")
    run = run_harness(client, "eth0", tmp_path / "state", 9, once_bound=kea.stop)
    ip = run.lines[0].get("discovered")
    assert ip, run.explain()
    lost = [n for n in run.news if "ran out" in n["message"]]
    assert lost and lost[0]["status"] == "warn", run.explain()
    assert run.done["lost"] == "expired"
    counters = run.done["counters"]
    assert counters.get("retries:dhcp-renew", 0) >= 1, run.explain()
    assert counters.get("retries:dhcp-rebind", 0) >= 1, run.explain()
    assert counters.get("retries:discover", 0) >= 1, run.explain()
    assert json.loads((tmp_path / "state" / "lease.json").read_text())["state"] == "expired"
    assert ip not in addresses(client, "eth0")


@needs_kea
def test_kea_nak_on_renewal_starts_over(netlab: lab_net.Lab, tmp_path: Path) -> None:
    """The server is restarted with a reservation of another address for this node: the
    renewal is NAKed, the address goes, discovery runs again and gets the reserved one
    (an address change)."""
    server, client = netlab.namespace("srv"), netlab.namespace("cli")
    link = netlab.link(client, server, client_if="eth0")
    keas = [start_kea(netlab, server, [(link, SHORTER)], tmp_path / "kea1")]

    def restart() -> None:
        keas[0].stop()
        keas.append(start_kea(netlab, server, [(link, {**SHORTER, "reservations": [
            {"hw-address": link.client_mac.colons, "ip-address": str(link.host(55))}]})],
            tmp_path / "kea2"))

    try:
        run = run_harness(client, "eth0", tmp_path / "state", 8, once_bound=restart)
    finally:
        keas[-1].stop()
    first, kea = run.lines[0], keas[-1]
    naks = [n for n in run.news if "DHCPNAK" in n["message"]]
    assert naks, run.explain() + kea.log()[-3000:]
    moved = [n for n in run.news if n["new_ip"]]
    assert moved and moved[0]["details"]["lease"]["address_changed"] is True, run.explain()
    new_ip = moved[0]["new_ip"]
    assert new_ip == str(link.host(55)) != first["discovered"]
    assert addresses(client, "eth0") == [new_ip]


def test_dnsmasq_renews_too(netlab: lab_net.Lab, tmp_path: Path) -> None:
    server, client = netlab.namespace("srv"), netlab.namespace("cli")
    link = netlab.link(client, server, client_if="eth0")
    dnsmasq = netlab.dnsmasq(server, [link], [
        *link.dhcp_range(lease="2m"), "dhcp-option=option:T1,3", "dhcp-option=option:T2,100",
    ], ping=False)
    run = run_harness(client, "eth0", tmp_path, 4.5)
    assert [n for n in run.news if "renewed" in n["message"]], run.explain()
    assert "DHCPREQUEST" in dnsmasq.log() and "DHCPACK" in dnsmasq.log()
    assert run.done["ip"] == run.lines[0]["discovered"]


@needs_kea
def test_node_run_renews_its_lease_and_reports_it(
        netlab: lab_net.Lab, signed_repo: SignedRepo,
        servers_in: object, tmp_path: Path) -> None:  # noqa: F811 - the imported fixture
    """``bootpull node run`` (no --oneshot) against Kea with 20 s leases: at T1 (8 s) the
    running node renews, the address stays, the home base gets a ``lease`` event, the
    counters and ``<state>/lease.json`` say so."""
    server, client = netlab.namespace("srv"), netlab.namespace("node")
    link = netlab.link(client, server, client_if="eth0")
    servers: Servers = servers_in(server, signed_repo.root, str(link.server_ip))  # type: ignore[operator]
    markers = tmp_path / "markers"
    markers.mkdir()
    add_marker_role(signed_repo, markers,
                    f"http://{link.server_ip}:{servers.sink_port}/api/v1/events",
                    mac=link.client_mac)
    kea = start_kea(netlab, server, [(link, SHORT)], tmp_path / "kea")
    trust = tmp_path / "trust.json"
    trust.write_bytes(signed_repo.trust)
    cmdline = tmp_path / "cmdline"
    cmdline.write_text(f"console=ttyS0 bootpull.dhcp_delay=0 bootpull.poll=600 "
                       f"bootpull.heartbeat=600 "
                       f"bootpull.repo=http://{link.server_ip}:{servers.git_port}/repo\n")
    state = tmp_path / "state"
    node = client.popen(lab_net.bootpull_argv(
        "node", "run", "--interface", "eth0", "--trust", str(trust), "--state-dir",
        str(state), "--cmdline", str(cmdline)), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            lease = json.loads((state / "lease.json").read_text()) \
                if (state / "lease.json").exists() else {}
            if lease.get("renewals", 0) >= 1:
                break
            assert node.poll() is None
            time.sleep(0.2)
        time.sleep(1.5)  # the event goes out
    finally:
        node.terminate()
        _, err = node.communicate(timeout=30)
        kea.stop()
    stderr = err.decode(errors="replace")
    assert node.returncode == 0, stderr[-4000:]
    assert lease.get("renewals") == 1, stderr[-4000:]
    events = servers.received()
    renewed = [e for e in events if e.get("stage") == "lease"]
    assert renewed and renewed[0]["status"] == "ok", events
    assert "renewed" in str(renewed[0]["message"])
    by_reason = json.loads((state / "counters.json").read_text())["by_reason"]
    assert by_reason.get("retries:dhcp-renew", 0) >= 1, by_reason
    ip = lease["ip"]
    assert ip in addresses(client, "eth0")
    assert len([x for x in kea.leases.splitlines() if x.startswith(ip + ",")]) >= 2
