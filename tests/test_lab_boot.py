"""The image's init under QEMU: it never leaves a dead box.

The node is made to exit at once with a usage error (``bootpull.poll=soon`` is not a
number), which is the init's business: a banner and a retry after a backoff, or, with
``bootpull.rescue=1``, a shell on the serial console.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bootpull.mac import Mac
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
        assert "modules loaded: 10" in vm.console  # no state disk: no disk modules
        assert "bootpull.poll=soon" in vm.console  # the node's own banner said why


def test_init_rescue_shell_on_the_console(lab_image_dir: Path, tmp_path: Path) -> None:
    with Vm(lab_image_dir, [Nic(MAC, UserNet())], log=tmp_path / "node.log",
            cmdline=["bootpull.poll=soon", "bootpull.rescue=1"]) as vm:
        vm.wait_for(r"bootpull.rescue=1: a shell follows", BOOT)
        vm.send("echo rescue-$((6 * 7)) $(cat /sys/class/net/eth0/address)\n")
        vm.wait_for(r"rescue-42 52:54:00:12:34:56", 60)
        vm.send("exit\n")
        vm.wait_for(r"starting: bootpull node run \(attempt 2\)", 120)
