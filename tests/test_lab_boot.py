"""The image's init under QEMU: it never leaves a dead box.

The node is made to exit at once with a usage error (``bootpull.poll=soon`` is not a
number), which is the init's business: a banner and a retry after a backoff, or, with
``bootpull.rescue=1``, a shell on the serial console.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from bootpull.mac import Mac
from bootpull_lab.deploy import LabRepo
from bootpull_lab.vm import Nic, UserNet, Vm

pytestmark = [pytest.mark.qemu, pytest.mark.slow]

MAC = Mac.parse("52:54:00:12:34:56")
BOOT = 240.0


def test_init_shows_a_banner_and_retries(lab_image_dir: Path, tmp_path: Path) -> None:
    with Vm(lab_image_dir, [Nic(MAC, UserNet())], log=tmp_path / "node.log",
            cmdline=["bootpull.poll=soon", "bootpull.init.backoff=1"]) as vm:
        vm.wait_for(r"BOOTPULL: NODE EXITED \(code 2\)", BOOT)
        vm.wait_for(r"what: usage error", 30)
        vm.wait_for(r"retrying in \d+ s \(boot with bootpull.rescue=1 for a shell\)", 30)
        vm.wait_for(r"starting: bootpull node run \(attempt 2\)", 120)
        # virtio NIC, no state disk: no Intel NIC drivers, no disk modules
        assert "modules loaded: 8" in vm.console  # virtio_net and what it needs, no more
        assert re.search(r"not loaded \(no device they drive on this machine\):.* e1000e\b",
                         vm.console)
        assert "bootpull.poll=soon" in vm.console  # the node's own banner said why


def test_init_loads_the_driver_of_the_nic_the_machine_has(lab_image_dir: Path,
                                                          tmp_path: Path) -> None:
    """An Intel e1000 NIC: its driver is loaded by its PCI id, virtio's is not."""
    with Vm(lab_image_dir, [Nic(MAC, UserNet(), model="e1000")], log=tmp_path / "node.log",
            cmdline=["bootpull.poll=soon"]) as vm:
        vm.wait_for(r"nic eth0 52:54:00:12:34:56", BOOT)
        console = vm.console
    assert re.search(r"not loaded \(no device they drive on this machine\):.* virtio_net\b",
                     console)
    assert "module e1000: not loaded" not in console
    assert "no NIC matched" not in console


def test_init_rescue_shell_on_the_console(lab_image_dir: Path, tmp_path: Path) -> None:
    with Vm(lab_image_dir, [Nic(MAC, UserNet())], log=tmp_path / "node.log",
            cmdline=["bootpull.poll=soon", "bootpull.rescue=1"]) as vm:
        vm.wait_for(r"bootpull.rescue=1: a shell follows", BOOT)
        vm.send("echo rescue-$((6 * 7)) $(cat /sys/class/net/eth0/address)\n")
        vm.wait_for(r"rescue-42 52:54:00:12:34:56", 60)
        vm.send("exit\n")
        vm.wait_for(r"starting: bootpull node run \(attempt 2\)", 120)


def test_a_damaged_squashfs_is_a_broken_image_banner_and_a_shell(lab_image_dir: Path,
                                                                 tmp_path: Path) -> None:
    """The compiled code's squashfs cut short: the init says the image is broken (not a
    node failure to retry), and the console still has a shell."""
    from bootpull_image import cpio

    raw = subprocess.run(["lz4", "-dc", str(lab_image_dir / "initrd.img")], check=True,
                         capture_output=True).stdout
    entries = []
    for entry in cpio.decode(raw):
        if entry.path == "lib/bootpull/binaries.sqfs":
            entry = cpio.Entry(entry.path, entry.mode, entry.data[:4096])
        entries.append(entry)
    image = tmp_path / "image"
    image.mkdir()
    (image / "vmlinux").symlink_to(lab_image_dir / "vmlinux")
    (image / "initrd.cpio").write_bytes(cpio.encode(entries, 1700000000))
    subprocess.run(["lz4", "-l", "-1", "-q", str(image / "initrd.cpio"),
                    str(image / "initrd.img")], check=True)
    with Vm(image, [Nic(MAC, UserNet())], log=tmp_path / "node.log") as vm:
        vm.wait_for(r"BOOTPULL: THE IMAGE IS BROKEN", BOOT)
        vm.wait_for(r"what: /lib/bootpull/binaries.sqfs would not mount", 30)
        vm.wait_for(r"do:   rebuild the image", 30)
        vm.send("echo shell-$((6 * 7))\n")
        vm.wait_for(r"shell-42", 60)
        assert "starting: bootpull node run" not in vm.console


def test_demo_boots_the_web_node_and_prints_its_status(lab_template: LabRepo,
                                                       lab_image_dir: Path,
                                                       tmp_path: Path) -> None:
    """``bootpull lab demo`` end to end, reusing the session's repository and image."""
    work = tmp_path / "lab"
    work.mkdir()
    shutil.copytree(lab_template.root, work / "repo", symlinks=True)
    shutil.copytree(lab_template.keys, work / "repo-keys")
    shutil.copyfile(lab_template.trust, work / "trust.json")
    shutil.copytree(lab_image_dir, work / "image")
    proc = subprocess.run([sys.executable, "-m", "bootpull", "lab", "demo", "--workdir",
                           str(work), "--timeout", "240"], capture_output=True, text=True,
                          timeout=420)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "node | [init" in out and "[finished] run web" in out  # the console, streamed
    assert "/feeds/all.atom" in out and "/feeds/web.rss" in out and "status page:" in out
    status = json.loads(out[out.index("node status (52-54-00-12-34-56):") :].split("\n", 1)[1]
                        .rsplit("=" * 72, 1)[0])
    assert status["role"] == "web" and status["status"] == "OK"
    assert (work / "node-52-54-00-12-34-56.log").is_file()
