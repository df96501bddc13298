"""The lab's parts without a VM: the guestfwd forwarder, QEMU's command line, the KVM
choice, MAC numbering, the state disk, the image freshness check and the home base runner.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from bootpull.errors import UsageError
from bootpull.mac import Mac
from bootpull_image import build
from bootpull_lab import accel
from bootpull_lab.cli import _macs
from bootpull_lab.deploy import LabRepo, image_is_current
from bootpull_lab.homebase import HomeBase
from bootpull_lab.vm import Nic, TapNet, UserNet, Vm, make_state_disk, user_url

MAC = Mac.parse("52:54:00:12:34:56")


def _echo_server() -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data.upper())

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def test_forwarder_pipes_stdin_to_loopback_and_back() -> None:
    server, port = _echo_server()
    with server:
        proc = subprocess.run([sys.executable, "-m", "bootpull_lab.forward", str(port)],
                              input=b"hello guest\n", capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"HELLO GUEST\n"


def test_forwarder_closes_quietly_when_nothing_listens(tmp_path: Path) -> None:
    log = tmp_path / "forward.log"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: refused
        proc = subprocess.run([sys.executable, "-m", "bootpull_lab.forward", "--log", str(log),
                               str(port)], input=b"GET / HTTP/1.1\r\n\r\n",
                              capture_output=True, timeout=30)
    assert proc.returncode == 1
    assert proc.stdout == b"" and proc.stderr == b""  # nothing reaches the guest
    assert f"127.0.0.1:{port}" in log.read_text()
    usage = subprocess.run([sys.executable, "-m", "bootpull_lab.forward", "x"],
                           capture_output=True, timeout=30)
    assert usage.returncode == 2


def _image(tmp_path: Path, kernel: str = "vmlinux") -> Path:
    image = tmp_path / "image"
    image.mkdir()
    (image / kernel).write_bytes(b"\x7fELF")
    (image / "initrd.img").write_bytes(b"")
    return image


def test_qemu_command_line_user_net(tmp_path: Path) -> None:
    vm = Vm(_image(tmp_path), [Nic(MAC, UserNet(port=4242, bootfile=user_url("/repo.git"))),
                               Nic(Mac.parse("52:54:00:12:34:57"))],
            log=tmp_path / "log", cmdline=["bootpull.poll=5"],
            state_disk=tmp_path / "disk.img", accelerator="tcg", memory=192)
    argv = vm.argv(tmp_path / "qmp.sock")
    text = " ".join(argv)
    assert argv[argv.index("-kernel") + 1].endswith("vmlinux")  # PVH
    assert argv[argv.index("-accel") + 1] == "tcg" and argv[argv.index("-m") + 1] == "192"
    netdevs = [argv[i + 1] for i, a in enumerate(argv) if a == "-netdev"]
    assert all("restrict=on" in n for n in netdevs)  # the guest reaches nothing else
    assert "guestfwd=tcp:10.0.2.100:8080-cmd:" in netdevs[0]
    assert netdevs[0].endswith("bootpull_lab.forward 4242,bootfile=http://10.0.2.100:8080/repo.git")
    assert "guestfwd" not in netdevs[1]
    assert "mac=52:54:00:12:34:56" in text and "id=nic1" in text
    append = argv[argv.index("-append") + 1]
    assert "rootfstype=ramfs" in append and "bootpull.state=/dev/vda" in append
    assert "bootpull.poll=5" in append and "bootpull.console=ttyS0,115200" in append
    assert f"file={tmp_path / 'disk.img'},if=virtio,format=raw" in text
    # TCG: every feature it emulates, and no mitigations against speculation it lacks
    assert argv[argv.index("-cpu") + 1] == "max" and "mitigations=off" in append.split()


def test_qemu_command_line_kvm_keeps_the_kernel_defaults(tmp_path: Path) -> None:
    vm = Vm(_image(tmp_path), [Nic(MAC)], log=tmp_path / "log", accelerator="kvm")
    argv = vm.argv(tmp_path / "qmp.sock")
    assert argv[argv.index("-cpu") + 1] == "host"
    assert "mitigations=off" not in argv[argv.index("-append") + 1]


def test_qemu_command_line_tap_and_bzimage(tmp_path: Path) -> None:
    vm = Vm(_image(tmp_path, "vmlinuz"), [Nic(MAC, TapNet("ns1", "tap0"))],
            log=tmp_path / "log", accelerator="tcg")
    argv = vm.argv(tmp_path / "qmp.sock")
    assert argv[argv.index("-kernel") + 1].endswith("vmlinuz")
    assert "tap,id=n0,ifname=tap0,script=no,downscript=no" in argv
    assert "-rtc" not in argv and "no-kvmclock" not in argv[argv.index("-append") + 1]
    (tmp_path / "b").mkdir()
    dead_battery = Vm(_image(tmp_path / "b", "vmlinuz"), [Nic(MAC, TapNet("ns1", "tap0"))],
                      log=tmp_path / "log", accelerator="kvm", rtc_base="2020-01-01")
    argv = dead_battery.argv(tmp_path / "qmp.sock")
    assert argv[argv.index("-rtc") + 1] == "base=2020-01-01,clock=vm"
    assert "no-kvmclock" in argv[argv.index("-append") + 1].split()


def test_vm_without_image_says_how_to_build_one(tmp_path: Path) -> None:
    vm = Vm(tmp_path, [Nic(MAC)], log=tmp_path / "log", accelerator="tcg")
    with pytest.raises(Exception, match="no kernel") as info:
        vm.argv(tmp_path / "qmp")
    assert "bootpull image build" in getattr(info.value, "hint", "")
    with pytest.raises(Exception, match="at least one NIC"):
        Vm(tmp_path, [], log=tmp_path / "log")


def test_accelerator_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for forced in ("tcg", "kvm"):
        accel.choose.cache_clear()
        monkeypatch.setenv("BOOTPULL_LAB_ACCEL", forced)
        assert accel.choose(tmp_path / "vmlinux") == forced
    accel.choose.cache_clear()


def test_macs_count_up_from_the_first() -> None:
    assert [m.canonical for m in _macs("52:54:00:12:34:fe", 3)] == [
        "52-54-00-12-34-fe", "52-54-00-12-34-ff", "52-54-00-12-35-00"]
    with pytest.raises(UsageError, match="not a MAC"):
        _macs("52:54:00", 1)
    with pytest.raises(UsageError, match="1 to 8"):
        _macs("52:54:00:12:34:56", 0)


def test_state_disk_is_ext4_and_made_once(tmp_path: Path) -> None:
    disk = make_state_disk(tmp_path / "state.img", size_mb=16)
    data = disk.read_bytes()
    assert data[1080:1082] == b"\x53\xef"  # the ext2/3/4 superblock magic
    disk.write_bytes(data[:2048] + b"kept" + data[2052:])
    make_state_disk(disk)  # exists: left alone
    assert disk.read_bytes()[2048:2052] == b"kept"


def test_image_freshness(tmp_path: Path) -> None:
    image, trust, node = tmp_path / "image", tmp_path / "trust.json", tmp_path / "bootpull"
    trust.write_text('{"signed": {}}')
    node.mkdir()
    (node / "cli.py").write_text("print('v1')\n")
    assert image_is_current(image, trust, node) == (False, "no image yet")
    image.mkdir()
    (image / "initrd.img").write_bytes(b"")

    def manifest(trust_sha: str, cli_sha: str, init_sha: str = "") -> None:
        files = {"usr/lib/python3/dist-packages/bootpull/cli.py": {"sha256": cli_sha},
                 "init": {"sha256": init_sha or sha(build.HERE / "init")}}
        (image / "manifest.json").write_text(json.dumps(
            {"trust": {"sha256": trust_sha}, "files": files}))

    def sha(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    manifest("0" * 64, sha(node / "cli.py"))
    assert image_is_current(image, trust, node) == (False, "the image trusts other keys")
    manifest(sha(trust), sha(node / "cli.py"))
    assert image_is_current(image, trust, node) == (True, "up to date")
    manifest(sha(trust), sha(node / "cli.py"), init_sha="0" * 64)
    assert image_is_current(image, trust, node) == (False, "the image's init changed")
    manifest(sha(trust), sha(node / "cli.py"))
    (node / "cli.py").write_text("print('v2')\n")
    assert image_is_current(image, trust, node) == (False, "the node code changed (cli.py)")


@pytest.mark.slow
def test_homebase_runner_serves_the_repository(lab_repo: LabRepo, tmp_path: Path) -> None:
    with HomeBase(lab_repo.root, db=tmp_path / "events.db", log=tmp_path / "hb.log") as hb:
        assert hb.get("/healthz")
        assert hb.node("52-54-00-12-34-56") is None  # nobody has reported
        refs = hb.get("/repo.git/info/refs?service=git-upload-pack")
        assert b"refs/heads/main" in refs
    with pytest.raises(OSError):
        hb.get("/healthz")  # stopped
