"""``Vm``: one QEMU node booting the bootpull image, as a context manager for tests.

    with Vm(image_dir, [Nic(mac, UserNet(port=8080, bootfile=url))], log=path) as vm:
        vm.wait_for(r"role .* running", timeout=120)
        vm.set_link(0, up=False)
        vm.reboot()

- The kernel boots through PVH (``vmlinux``), falling back to ``vmlinuz``. Under TCG
  (no speculative execution) the kernel runs with ``mitigations=off``, on ``-cpu max``.
- The serial console is captured line by line to ``log`` (each line prefixed with the
  seconds since QEMU started, which is what the boot benchmarks read) and kept in
  memory for :meth:`Vm.wait_for`; ``echo`` streams it to a terminal as well.
- Networking is QEMU's user network with ``restrict=on``: the guest reaches only
  10.0.2.100:8080, which ``guestfwd`` maps to 127.0.0.1:PORT through
  :mod:`bootpull_lab.forward`; ``bootfile`` is handed out in the BOOTP file field.
  Or a tap device inside a network namespace the caller made (:class:`TapNet`).
- ``rtc_base`` starts the guest's RTC at that date (a dead RTC battery); the clock
  then runs from there, and the guest does not take this machine's time by kvmclock.
- The QEMU monitor (QMP) on a unix socket drives ``set_link`` and ``reboot``.
- ``firmware`` is ``bios`` (SeaBIOS, the default), ``uefi`` (OVMF) or ``uefi-secure``
  (OVMF with Secure Boot on and Microsoft's keys enrolled, as a new PC ships; q35 with
  SMM). ``boot`` is ``kernel`` (direct kernel boot, the default), ``cdrom`` or ``usb``
  (``media``: an ISO, as a CD or as a USB stick on an xHCI controller) or ``net`` (the
  NIC's option ROM: iPXE for SeaBIOS, OVMF's own PXE/HTTP boot for UEFI).
- ``state_bus`` puts the state disk on ``virtio`` (the default), ``ahci`` (SATA),
  ``nvme`` or ``usb``; ``state_cmdline=False`` leaves ``bootpull.state=`` to the caller.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from bootpull.errors import BootpullError
from bootpull.mac import Mac

from bootpull_lab import accel

#: where the guest reaches the home base on the user network
#: OVMF, from Debian's ovmf package: the plain build, and the Secure Boot one with the
#: Microsoft keys enrolled in its variables (``.ms``)
OVMF_DIR = Path("/usr/share/OVMF")
OVMF = {"uefi": ("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"),
        "uefi-secure": ("OVMF_CODE_4M.ms.fd", "OVMF_VARS_4M.ms.fd")}
FIRMWARES = ("bios", "uefi", "uefi-secure")
BOOTS = ("kernel", "cdrom", "usb", "net")
STATE_BUSES = ("virtio", "ahci", "nvme", "usb")

GUEST_HOST = "10.0.2.100"
GUEST_PORT = 8080


class LabError(BootpullError):
    stage = "lab"


@dataclass(frozen=True)
class UserNet:
    """QEMU user networking, restricted: only 10.0.2.100:8080 → 127.0.0.1:``port``."""

    port: int | None = None
    bootfile: str | None = None
    #: (port on 127.0.0.1, guest port) pairs: the host connects in (hostfwd), as a
    #: test logs in to a node's ssh role
    forwards: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class TapNet:
    """A tap device ``ifname`` that QEMU creates inside the network namespace ``netns``."""

    netns: str
    ifname: str


@dataclass(frozen=True)
class Nic:
    mac: Mac
    net: UserNet | TapNet = field(default_factory=UserNet)
    model: str = "virtio-net-pci"


def user_url(path: str = "/") -> str:
    """The URL the guest uses for ``path`` on the forwarded home base."""
    return f"http://{GUEST_HOST}:{GUEST_PORT}{path}"


DEFAULT_CONSOLE = "ttyS0,115200"


def kernel_cmdline(console: str = DEFAULT_CONSOLE, extra: Sequence[str] = ()) -> str:
    """The image's own default command line for ``console`` (its ``manifest.json``),
    then what the lab adds."""
    from bootpull_image.iso import kernel_cmdline as image_cmdline

    return " ".join([image_cmdline(console), "panic=-1", f"bootpull.console={console}",
                     *extra])


def image_console(image: Path) -> str:
    """The console the image was built for (``bootpull image build --console``), from
    its ``manifest.json``; an image without one gets the default."""
    try:
        console = json.loads((image / "manifest.json").read_text()).get("console")
    except (OSError, ValueError, AttributeError):
        return DEFAULT_CONSOLE
    return console if isinstance(console, str) and console else DEFAULT_CONSOLE


def make_state_disk(path: Path, size_mb: int = 64) -> Path:
    """An ext4 disk image for the node's state dir (kept across boots), made once."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as disk:
        disk.truncate(size_mb * 2**20)
    proc = subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "bootpull-state", str(path)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        path.unlink(missing_ok=True)
        raise LabError("could not make the state disk", why=proc.stderr.strip(),
                       hint="apt-get install e2fsprogs")
    return path


class Vm:
    """A running QEMU node; see the module docstring."""

    def __init__(
        self,
        image: Path,
        nics: Sequence[Nic],
        *,
        log: Path,
        memory: int = 256,
        cmdline: Sequence[str] = (),
        state_disk: Path | None = None,
        echo: Callable[[str], None] | None = None,
        accelerator: str | None = None,
        name: str = "bootpull-node",
        rtc_base: str | None = None,
        firmware: str = "bios",
        boot: str = "kernel",
        media: Path | None = None,
        state_bus: str = "virtio",
        state_cmdline: bool = True,
        qemu_args: Sequence[str] = (),
    ) -> None:
        if not nics and boot != "cdrom" and boot != "usb":
            raise LabError("a node needs at least one NIC")
        if firmware not in FIRMWARES or boot not in BOOTS or state_bus not in STATE_BUSES:
            raise LabError(f"unknown firmware {firmware!r}, boot {boot!r} or state bus "
                           f"{state_bus!r}", hint=f"firmware: {', '.join(FIRMWARES)}; boot: "
                           f"{', '.join(BOOTS)}; state_bus: {', '.join(STATE_BUSES)}")
        if boot in ("cdrom", "usb") and media is None:
            raise LabError(f"boot {boot!r} needs media (an ISO)")
        self.firmware = firmware
        self.boot = boot
        self.media = media
        self.state_bus = state_bus
        self.state_cmdline = state_cmdline
        self.qemu_args = list(qemu_args)  # more devices: a second disk, say
        self.image = Path(image)
        self.nics = list(nics)
        self.log_path = Path(log)
        self.memory = memory
        self.extra_cmdline = list(cmdline)
        self.state_disk = state_disk
        self.echo = echo
        self.name = name
        self.rtc_base = rtc_base  # the battery-backed clock's start, "2020-01-01" say
        self._accel = accelerator
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._lines: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._cursor = 0
        self._reader: threading.Thread | None = None
        self._t0 = 0.0

    # -- life cycle -----------------------------------------------------------------

    def kernel(self) -> Path:
        for name in ("vmlinux", "vmlinuz"):
            if (self.image / name).is_file():
                return self.image / name
        raise LabError(f"no kernel in {self.image}",
                       hint=f"run 'bootpull image build --out {self.image}'")

    def argv(self, qmp: Path) -> list[str]:
        """The QEMU command line (without any ``ip netns exec`` prefix)."""
        kernel = self.kernel()
        initrd = self.image / "initrd.img"
        if not initrd.is_file():
            raise LabError(f"no initrd.img in {self.image}",
                           hint=f"run 'bootpull image build --out {self.image}'")
        accel_name = self._accel or accel.choose(kernel)
        machine = "pc"
        if self.firmware == "uefi-secure":
            machine = "q35,smm=on"  # Secure Boot's variable store needs SMM
        elif self.firmware == "uefi":
            machine = "q35"
        argv = ["qemu-system-x86_64", "-name", self.name, "-M", machine, "-accel", accel_name,
                "-m", str(self.memory), "-smp", "1", "-nodefaults", "-no-user-config",
                "-display", "none", "-serial", "stdio", "-qmp", f"unix:{qmp},server=on,wait=off"]
        argv += self._firmware_argv(qmp.parent)
        if self.boot == "kernel":
            argv += ["-kernel", str(kernel), "-initrd", str(initrd)]
        else:
            argv += self._media_argv()
        extra = list(self.extra_cmdline)
        if accel_name == "kvm":
            argv += ["-cpu", "host"]
        else:
            # Every feature TCG emulates: glibc and Python then take their SSE4/AVX2
            # paths, which TCG runs on the host's vector unit; about 1.5 s of boot
            # (docs/benchmarks.md). TCG executes nothing speculatively, so the
            # kernel's Spectre/Meltdown mitigations guard against nothing here and cost
            # another second.
            argv += ["-cpu", "max"]
            extra.insert(0, "mitigations=off")
        if self.rtc_base is not None:
            # A box whose RTC battery died: the guest reads its wall clock from the RTC
            # only (kvmclock would hand it this machine's time).
            argv += ["-rtc", f"base={self.rtc_base},clock=vm"]
            extra.append("no-kvmclock")
        if self.state_disk is not None:
            argv += self._state_argv()
            if self.state_cmdline:
                extra.append("bootpull.state=" + {"virtio": "/dev/vda", "ahci": "/dev/sda",
                                                  "nvme": "/dev/nvme0n1",
                                                  "usb": "/dev/sda"}[self.state_bus])
        argv += self.qemu_args
        if self.boot == "kernel":
            argv += ["-append", kernel_cmdline(image_console(self.image), extra=extra)]
        forward = [sys.executable, "-m", "bootpull_lab.forward"]
        for index, nic in enumerate(self.nics):
            netdev = f"n{index}"
            if isinstance(nic.net, TapNet):
                argv += ["-netdev", f"tap,id={netdev},ifname={nic.net.ifname},script=no,"
                         "downscript=no"]
            else:
                opts = [f"user,id={netdev}", "restrict=on"]
                if nic.net.port is not None:
                    cmd = " ".join([*forward, str(nic.net.port)]).replace(",", ",,")
                    opts.append(f"guestfwd=tcp:{GUEST_HOST}:{GUEST_PORT}-cmd:{cmd}")
                for host_port, guest_port in nic.net.forwards:
                    opts.append(f"hostfwd=tcp:127.0.0.1:{host_port}-:{guest_port}")
                if nic.net.bootfile:
                    opts.append("bootfile=" + nic.net.bootfile.replace(",", ",,"))
                argv += ["-netdev", ",".join(opts)]
            boot = ",bootindex=0" if self.boot == "net" and index == 0 else ""
            if nic.model.startswith("usb-"):  # usb-net: a USB Ethernet adapter (cdc_ether)
                argv += ["-device", f"qemu-xhci,id=xhcinic{index}"]
                boot += f",bus=xhcinic{index}.0"
            argv += ["-device", f"{nic.model},netdev={netdev},id=nic{index},"
                     f"mac={nic.mac.colons}{boot}"]
        return argv

    def _firmware_argv(self, tmp: Path) -> list[str]:
        if self.firmware == "bios":
            return []
        code, variables = (OVMF_DIR / name for name in OVMF[self.firmware])
        if not code.exists() or not variables.exists():
            raise LabError(f"no OVMF firmware at {code}", hint="apt-get install ovmf")
        own = tmp / "OVMF_VARS.fd"  # each VM writes its own copy of the variables
        shutil.copyfile(variables, own)
        argv = ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
                "-drive", f"if=pflash,format=raw,unit=1,file={own}"]
        if self.firmware == "uefi-secure":
            argv += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
        return argv

    def _media_argv(self) -> list[str]:
        if self.boot == "cdrom":
            return ["-drive", f"file={self.media},media=cdrom,if=none,id=cd,readonly=on",
                    "-device", "ide-cd,drive=cd,bootindex=0" if self.firmware == "bios"
                    else "ide-cd,drive=cd,bootindex=0,bus=ide.0"]
        if self.boot == "usb":
            return ["-device", "qemu-xhci,id=xhci",
                    "-drive", f"file={self.media},format=raw,if=none,id=stick,readonly=on",
                    "-device", "usb-storage,bus=xhci.0,drive=stick,bootindex=0"]
        return []  # net: the NIC's ROM (bootindex on the NIC)

    def _state_argv(self) -> list[str]:
        if self.state_bus == "virtio":
            return ["-drive", f"file={self.state_disk},if=virtio,format=raw"]
        drive = f"file={self.state_disk},format=raw,if=none,id=state"
        device = {"ahci": "ahci,id=sata -device ide-hd,drive=state,bus=sata.0",
                  "nvme": "nvme,drive=state,serial=bootpull-state",
                  "usb": "qemu-xhci,id=xhci2 -device usb-storage,bus=xhci2.0,drive=state"}
        argv = ["-drive", drive]
        for part in device[self.state_bus].split(" -device "):
            argv += ["-device", part]
        return argv

    def start(self) -> Vm:
        self._tmp = tempfile.TemporaryDirectory(prefix="bootpull-vm-")
        qmp = Path(self._tmp.name) / "qmp.sock"
        argv = self.argv(qmp)
        netns = {nic.net.netns for nic in self.nics if isinstance(nic.net, TapNet)}
        if len(netns) > 1:
            raise LabError("all tap NICs of one node must be in one network namespace")
        if netns:
            argv = ["ip", "netns", "exec", netns.pop(), *argv]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._qmp_path = qmp
        self._t0 = time.monotonic()
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT)
        self._reader = threading.Thread(target=self._read, name=f"{self.name}-serial",
                                        daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        with open(self.log_path, "w", encoding="utf-8") as log:
            for raw in self._proc.stdout:
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n").replace("\r", "")
                stamp = time.monotonic() - self._t0
                log.write(f"{stamp:8.3f} {line}\n")
                log.flush()
                if self.echo is not None:
                    self.echo(line)
                with self._cond:
                    self._lines.append((stamp, line))
                    self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def send(self, text: str) -> None:
        """Type ``text`` on the serial console (the rescue shell reads it)."""
        if self._proc is None or self._proc.stdin is None:
            raise LabError(f"{self.name} is not running")
        self._proc.stdin.write(text.encode())
        self._proc.stdin.flush()

    def kill(self) -> None:
        """Stop QEMU at once (the power cord)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=30)
        if self._proc is not None and self._proc.stdin is not None:
            self._proc.stdin.close()
        if self._reader is not None:
            self._reader.join(timeout=10)

    def close(self) -> None:
        self.kill()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Vm:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- the console ----------------------------------------------------------------

    @property
    def lines(self) -> list[tuple[float, str]]:
        """Every console line so far, with its time since QEMU started."""
        with self._cond:
            return list(self._lines)

    @property
    def console(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def mark(self) -> None:
        """Make :meth:`wait_for` look only at lines printed from now on."""
        with self._cond:
            self._cursor = len(self._lines)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first console line (after the mark) matching ``pattern``; raise on timeout."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        checked = self._cursor
        with self._cond:
            while True:
                while checked < len(self._lines):
                    match = regex.search(self._lines[checked][1])
                    checked += 1
                    if match:
                        self._cursor = checked
                        return match
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self.running:
                    break
                self._cond.wait(min(remaining, 1.0))
        tail = "\n".join(line for _, line in self._lines[-15:])
        state = "still running" if self.running else "QEMU has exited"
        raise LabError(f"{self.name}: no console line matched {pattern!r} within {timeout:g}s",
                       why=f"{state}; the console ended with:\n{tail}",
                       hint=f"the whole console is in {self.log_path}")

    # -- the monitor ----------------------------------------------------------------

    def qmp(self, command: str, **arguments: Any) -> Any:
        """Run one QMP command and return its ``return`` value."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            for _ in range(50):
                try:
                    sock.connect(str(self._qmp_path))
                    break
                except (FileNotFoundError, ConnectionRefusedError):
                    time.sleep(0.1)
            stream = sock.makefile("rw", encoding="utf-8")
            stream.readline()  # the greeting
            for message in ({"execute": "qmp_capabilities"},
                            {"execute": command, "arguments": arguments}):
                stream.write(json.dumps(message) + "\n")
                stream.flush()
                while True:
                    reply = json.loads(stream.readline())
                    if "event" in reply:
                        continue
                    break
                if "error" in reply:
                    raise LabError(f"QMP {message['execute']} failed",
                                   why=reply["error"].get("desc", str(reply["error"])))
            return reply.get("return")

    def set_link(self, nic: int, up: bool) -> None:
        """Plug (``up=True``) or pull the cable of NIC number ``nic``."""
        self.qmp("set_link", name=f"nic{nic}", up=up)

    def reboot(self) -> None:
        """Press the reset button; :meth:`wait_for` then looks only at the new boot."""
        self.mark()
        self.qmp("system_reset")


def qemu_available() -> bool:
    return shutil.which("qemu-system-x86_64") is not None
