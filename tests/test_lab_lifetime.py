"""A node that lives on a real network: one QEMU boot on a tap in a lab namespace.

The namespace holds all the node talks to: ISC Kea (leases of ``VALID`` seconds, with
option 42 naming the namespace's own address), chronyd on port 123 there (``-x``: it
serves this machine's clock and never sets it), and ``bootpull serve`` (the git
repository and the home base). The guest's RTC starts at 2020-01-01, as on a box
whose RTC battery died.

Checked, in the one boot:

- **The clock.** The node asks the NTP server of option 42 and steps its clock from
  2020 to now before it verifies anything; the step is a ``clock`` event at the home
  base, and what the node reports afterwards carries the right time.
- **A long run.** The role runs for ``LIFETIMES`` lease lifetimes, served over HTTP
  the whole time: the address is never lost (a probe in the namespace gets the role's
  page every half second), every renewal is a ``lease`` event at the home base with
  the same address, and Kea's lease file has an entry for each.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest
from bootpull.mac import Mac
from bootpull_lab import netlab as lab_net
from bootpull_lab.deploy import LabRepo
from bootpull_lab.vm import Nic, TapNet, Vm
from ntpserver import start_chrony
from test_clock_netns import ASK
from test_lease_netns import Kea, start_kea

pytestmark = [pytest.mark.qemu, pytest.mark.netns, pytest.mark.slow]

WEB_MAC = Mac.parse("52:54:00:12:34:56")  # the example repository's web node
NETWORK = IPv4Network("10.77.250.0/24")  # the lab's own links count up from 10.77.1.0
HOME = str(NETWORK.network_address + 1)
PORT = 8080  # bootpull serve, in the namespace
ROLE_PORT = 8080  # the web role's page, on the node (hosts/52-54-00-12-34-56.toml)
VALID, RENEW, REBIND = 12, 4, 9  # seconds
LIFETIMES = 5
BOOT_TIMEOUT = 300.0

# Runs in the namespace: GET the role's page every half second for argv[2] seconds;
# one JSON line: how many answered, and the failures with their times.
PROBE = """
import json, sys, time, urllib.request
url, seconds = sys.argv[1], float(sys.argv[2])
ok, failed = 0, []
end = time.monotonic() + seconds
while time.monotonic() < end:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            answer.read()
        ok += 1
    except OSError as exc:
        failed.append([round(seconds - (end - time.monotonic()), 1), str(exc)])
    time.sleep(0.5)
print(json.dumps({"ok": ok, "failed": failed}))
"""

GET = """
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as answer:
    sys.stdout.write(answer.read().decode())
"""


def when(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


@dataclass
class Site:
    lab: lab_net.Lab
    ns: lab_net.Namespace
    dir: Path
    kea: Kea | None = None

    def start_dhcp(self) -> None:
        """Kea on tap0, once QEMU holds the tap (Kea skips an interface without carrier)."""
        deadline = time.monotonic() + 60
        while "LOWER_UP" not in self.ns.ip("link", "show", "tap0"):
            assert time.monotonic() < deadline, "QEMU did not attach to tap0"
            time.sleep(0.1)
        tap = lab_net.Link(self.ns, self.ns, "tap0", "tap0", NETWORK, WEB_MAC)
        self.kea = start_kea(self.lab, self.ns, [(tap, {
            "valid-lifetime": VALID, "renew-timer": RENEW, "rebind-timer": REBIND,
            "option-data": [{"name": "ntp-servers", "data": HOME}]})], self.dir / "kea")

    def get_json(self, path: str) -> Any:
        out = self.ns.run([sys.executable, "-c", GET, f"http://{HOME}:{PORT}{path}"],
                          timeout=30).stdout
        return json.loads(out)

    def events(self) -> list[dict[str, Any]]:
        record = self.get_json(f"/api/v1/nodes/{WEB_MAC.canonical}?limit=1000")
        events: list[dict[str, Any]] = record["events"]
        return events


@pytest.fixture
def site(netlab: lab_net.Lab, lab_repo: LabRepo, tmp_path: Path) -> Iterator[Site]:
    """The namespace with its tap (for QEMU), chronyd and the home base; Kea starts
    once QEMU runs (:meth:`Site.start_dhcp`)."""
    if shutil.which("kea-dhcp4") is None:
        pytest.skip("kea-dhcp4 is not installed (apt kea-dhcp4-server)")
    ns = netlab.namespace("site")
    ns.ip("tuntap", "add", "dev", "tap0", "mode", "tap")
    ns.ip("addr", "add", f"{HOME}/{NETWORK.prefixlen}", "dev", "tap0")
    ns.ip("link", "set", "tap0", "up")
    chrony = start_chrony(tmp_path / "chrony", HOME, 123, popen=ns.popen,
                          wait=lambda spec: ns.run([sys.executable, "-c", ASK, spec],
                                                   timeout=30) and None)
    serve = netlab.start(ns, lab_net.bootpull_argv(
        "serve", "--repo", str(lab_repo.root), "--listen", f"{HOME}:{PORT}",
        "--db", str(tmp_path / "events.db")), log="homebase.log")
    netlab.wait_tcp(ns, PORT, proc=serve, timeout=60)
    site = Site(netlab, ns, tmp_path)
    try:
        yield site
    finally:
        if site.kea is not None:
            site.kea.stop()
        chrony.stop()


def test_a_box_with_a_dead_rtc_sets_its_clock_and_keeps_its_lease_for_five_lifetimes(
        site: Site, lab_image_dir: Path, tmp_path: Path) -> None:
    cmdline = [f"bootpull.repo=http://{HOME}:{PORT}/repo.git", "bootpull.poll=30",
               "bootpull.heartbeat=30"]
    with Vm(lab_image_dir, [Nic(WEB_MAC, TapNet(site.ns.name, "tap0"))],
            log=tmp_path / "node.log", cmdline=cmdline, rtc_base="2020-01-01",
            name="lifetime") as vm:
        site.start_dhcp()
        vm.wait_for(r"\[finished\] run web \S+ \(", BOOT_TIMEOUT)
        leases = [line for line in (tmp_path / "kea" / "leases.csv").read_text().splitlines()
                  if WEB_MAC.colons in line.lower()]
        assert leases, "Kea has no lease for the node"
        ip = leases[-1].split(",")[0]
        probe = site.ns.run([sys.executable, "-c", PROBE, f"http://{ip}:{ROLE_PORT}/",
                             str(LIFETIMES * VALID)], timeout=LIFETIMES * VALID + 60)
        seen = json.loads(probe.stdout)
        events = site.events()
        console = vm.console

    # -- the clock ------------------------------------------------------------------
    assert console.index("[finished] clock") < console.index("[started] verify"), console
    clock = [e for e in events if e["stage"] == "clock"]
    assert len(clock) == 1, clock
    assert clock[0]["status"] == "ok", clock
    assert clock[0]["message"].startswith("the clock was set from 2020-01-01"), clock
    assert clock[0]["details"]["server"].startswith(HOME), clock
    assert clock[0]["details"]["old"].startswith("2020-01-01"), clock
    assert abs(when(clock[0]["details"]["new"]) - time.time()) < 600, clock
    assert abs(when(events[-1]["time"]) - time.time()) < 120, events[-1]

    # -- the long run ----------------------------------------------------------------
    assert not seen["failed"], f"the role's page did not answer: {seen['failed']}"
    assert seen["ok"] >= LIFETIMES * VALID, seen  # about two a second
    lease_events = [e for e in events if e["stage"] == "lease"]
    renewed = [e for e in lease_events if "renewed" in e["message"]]
    assert all(e["status"] == "ok" for e in lease_events), lease_events
    assert len(renewed) >= LIFETIMES * (VALID // RENEW) - 2, lease_events
    assert {e["details"]["lease"]["ip"] for e in lease_events} == {ip}, lease_events
    counts = [e["details"]["lease"]["renewals"] for e in renewed]
    assert counts == sorted(counts) and len(set(counts)) == len(counts), counts
    kea_entries = [x for x in (tmp_path / "kea" / "leases.csv").read_text().splitlines()
                   if x.startswith(ip + ",")]
    assert len(kea_entries) >= len(renewed), kea_entries
    assert "ran out" not in console and "refused the renewal" not in console, console
