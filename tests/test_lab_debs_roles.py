"""The example's two roles made from Debian packages, booted in the lab.

One QEMU node with a state disk runs both, in turn: ``ids`` (tcpdump as user tcpdump,
with CAP_NET_RAW and CAP_NET_ADMIN only, capturing what the committed rules match, a
typo in them refused by the install hook) and then ``ssh`` (dropbear; this test logs
in with a key it committed, and the host key survives a reboot).
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from bootpull.mac import Mac
from bootpull_lab.deploy import LabRepo
from bootpull_lab.homebase import HomeBase, free_port
from bootpull_lab.vm import Nic, UserNet, make_state_disk, user_url
from test_scenarios import (
    BOOT_TIMEOUT,
    RUNNING,
    _edit_and_publish,
    _git,
    _reported,
    _wait_until,
    node,
)

pytestmark = [pytest.mark.qemu, pytest.mark.slow]

MAC = Mac.parse("52:54:00:12:34:58")


def _ssh(key: Path, port: int, known: Path, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-i", str(key), "-p", str(port), "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=accept-new", "-o", f"UserKnownHostsFile={known}",
         "-o", "ConnectTimeout=20", "root@127.0.0.1", command],
        capture_output=True, text=True, timeout=60, check=False)


def _host_key(port: int) -> str:
    proc = subprocess.run(["ssh-keyscan", "-T", "20", "-t", "ed25519", "-p", str(port),
                           "127.0.0.1"], capture_output=True, text=True, timeout=60,
                          check=False)
    keys = [line.split(None, 1)[1] for line in proc.stdout.splitlines()
            if line and not line.startswith("#")]
    assert len(keys) == 1, proc.stdout + proc.stderr
    return keys[0]


def test_ids_and_ssh_from_debian_packages_run_on_a_node(lab_image_dir: Path, lab_repo: LabRepo,
                                                        lab_homebase: HomeBase,
                                                        tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lab", "-f", str(key)],
                   check=True)
    (lab_repo.root / "roles/ssh/files/authorized_keys").write_text(
        "# the lab's key\n" + key.with_suffix(".pub").read_text())
    _git(lab_repo, "add", "roles/ssh/files/authorized_keys")  # committed with the host file
    _edit_and_publish(lab_repo, f"hosts/{MAC.canonical}.toml",
                      'role = "ids"\nhostname = "ids-1"\n',
                      "ids-1: the ids role, and the lab's ssh key")
    port = free_port()
    nic = Nic(MAC, UserNet(port=lab_homebase.port, bootfile=user_url("/repo.git"),
                           forwards=((port, 22),)))
    disk = make_state_disk(tmp_path / "state.img", 128)
    with node(lab_image_dir, tmp_path, [nic], state_disk=disk) as vm:
        # -- ids: tcpdump as its own user, with two capabilities, capturing --
        first = vm.wait_for(RUNNING.format(role="ids"), BOOT_TIMEOUT).group(1)
        # (both printed before the role counts as running)
        who = re.search(r"ids: running as uid=(\d+)\(tcpdump\) gid=(\d+)\(tcpdump\)",
                        vm.console)
        assert who is not None and who.group(1) != "0" and who.group(2) != "0", vm.console
        assert "listening on any" in vm.console
        # a packet the committed rules match: a new connection to the home base (its SYN)
        vm.wait_for(r"IP 10\.0\.2\.\d+\.\d+ > 10\.0\.2\.100\.8080: Flags \[S\],", 120)
        _wait_until(_reported(lab_homebase, MAC, role="ids", status="OK"), 120,
                    "ids reported OK (its health check sees the capture)")

        # -- a typo in the rules is refused at install; the node keeps what it runs --
        published = _edit_and_publish(lab_repo, "roles/ids/files/rules.bpf",
                                      "udp port 53 or tcp prot 80\n", "ids: a typo in the rules")
        vm.wait_for(r"can't parse filter expression: syntax error", BOOT_TIMEOUT)
        assert "rules.bpf is refused" in vm.console
        # what runs now is the first install, never restarted; in metadata format 2 the
        # node can see the typo's commit before its publish, with the same signed files:
        # the same install, renamed after that commit
        assert re.findall(RUNNING.format(role="ids"), vm.console) == [first], vm.console
        refused = re.findall(r"\[failed\] install ids (\S+) ", vm.console)[-1]
        typo = subprocess.run(["git", "-C", str(lab_repo.root), "rev-parse", f"{published}~1"],
                              check=True, capture_output=True, text=True).stdout.strip()
        names = {first, f"head-{typo[:12]}"}
        assert refused not in names and refused == f"head-{published[:12]}", vm.console
        _wait_until(lambda: (r := _reported(lab_homebase, MAC)()) is not None
                    and r.get("version") in names and r, 60,
                    "the node still reports the install it runs")
        said = vm.console.count("rules.bpf is refused")
        time.sleep(20)  # four polls: the bad version is not tried again
        assert vm.console.count("rules.bpf is refused") == said
        fixed = _edit_and_publish(lab_repo, "roles/ids/files/rules.bpf",
                                  "udp port 53 or tcp port 8080\n", "ids: the typo fixed")
        vm.wait_for(RUNNING.format(role="ids").replace(r"(\S+)", f"(head-{fixed[:12]})"),
                    BOOT_TIMEOUT)

        # -- ssh: dropbear, the committed key logs in as root --
        lab_repo.bootpull("assign", MAC.colons, "ssh")
        lab_repo.bootpull("publish")
        vm.wait_for(RUNNING.format(role="ssh"), BOOT_TIMEOUT)
        # printed before the role counts as running
        assert "ssh: 1 authorized key(s); listening on port 22" in vm.console
        known = tmp_path / "known_hosts"
        login = _wait_until(lambda: (r := _ssh(key, port, known, "id -u; echo logged-in"))
                            .returncode == 0 and r, 60, "an ssh login")
        assert login.stdout.split() == ["0", "logged-in"], login.stderr
        before = _host_key(port)
        stranger = tmp_path / "stranger"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)],
                       check=True)
        assert _ssh(stranger, port, known, "true").returncode != 0  # only committed keys

        # -- the host key lives in the data dir on the state disk: a reboot keeps it --
        made = vm.console.count("ssh: no host key yet")
        assert made == 1, vm.console
        vm.reboot()
        vm.wait_for(r"bootpull image .* up", 120)
        vm.wait_for(RUNNING.format(role="ssh"), BOOT_TIMEOUT)
        assert vm.console.count("ssh: 1 authorized key(s); listening on port 22") >= 2
        assert vm.console.count("ssh: no host key yet") == made
        _wait_until(lambda: _ssh(key, port, known, "true").returncode == 0, 60,
                    "an ssh login after the reboot, with the same known host key")
        assert _host_key(port) == before
        fingerprints = re.findall(r"ssh: host key (\S+)", vm.console)
        assert len(set(fingerprints)) == 1 and len(fingerprints) >= 2, fingerprints
