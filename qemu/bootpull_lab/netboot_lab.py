"""A network boot site in a namespace: real dnsmasq (DHCP + TFTP) and an HTTP server
serving a tree from ``bootpull image netboot``, and a QEMU node that boots from it.

    with Lab("pxe") as lab:
        site = NetbootSite(lab, tree)              # tree made with site_url() as its URL
        with site.vm(image, tmp / "node.log", firmware="uefi") as vm:
            vm.wait_for(FIRST_LINE, 600)

Everything stays inside the namespace: a tap device ``tap0`` with the site's address,
which QEMU attaches to (``TapNet``), dnsmasq on it with a DHCP range plus exactly the
tree's ``dnsmasq.conf`` lines, and ``python -m http.server`` on the site's address.
Needs root (:func:`bootpull_lab.netlab.available`). Used by
``tests/test_netboot_qemu.py`` and ``bench/netboot_time.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from bootpull.mac import Mac

from bootpull_lab.netlab import Dnsmasq, Lab, Link
from bootpull_lab.vm import Nic, TapNet, Vm

NETWORK = IPv4Network("10.77.9.0/24")
SERVER = str(NETWORK.network_address + 1)
HTTP_PORT = 8000
#: the link's IPv6 prefix (ULA), with ``ra=True``
IPV6_PREFIX = "fd00:77:9::"
MAC = Mac.parse("52:54:00:12:34:56")
#: the image's init's first console line ("[init 3.12] bootpull image 0.1.0: kernel ... up")
FIRST_LINE = r"\[init [\d.]+\] bootpull image"


def site_url() -> str:
    """The HTTP base to make the tree with (``--netboot-url``)."""
    return f"http://{SERVER}:{HTTP_PORT}/"


class NetbootSite:
    """The namespace, tap0, dnsmasq and the HTTP server; all stopped with the lab."""

    def __init__(self, lab: Lab, tree: Path, *, drop: Sequence[str] = (),
                 http: bool = True, ra: bool = False) -> None:
        """``drop``: leave out the tree's dnsmasq lines that contain one of these
        strings (a test that must keep the firmware off one path). ``ra``: dnsmasq
        also sends IPv6 router advertisements (``enable-ra``), as on a network with
        IPv6: without them iPXE waits about 15 s for one before it goes on."""
        self.lab = lab
        self.tree = tree
        self.ns = lab.namespace("pxe")
        self.ns.ip("tuntap", "add", "dev", "tap0", "mode", "tap")
        self.ns.ip("addr", "add", f"{SERVER}/{NETWORK.prefixlen}", "dev", "tap0")
        self.ns.ip("link", "set", "tap0", "up")
        self.link = Link(self.ns, self.ns, "tap0", "tap0", NETWORK, MAC)
        if http:
            proc = lab.start(self.ns, [sys.executable, "-m", "http.server", "--bind", SERVER,
                                       "--directory", str(tree), str(HTTP_PORT)],
                             log="http.log")
            lab.wait_tcp(self.ns, HTTP_PORT, proc=proc)
        lines = [line for line in (tree / "dnsmasq.conf").read_text().splitlines()
                 if not any(d in line for d in drop)]
        if ra:
            self.ns.ip("addr", "add", f"{IPV6_PREFIX}1/64", "dev", "tap0")
            lines += ["enable-ra", "dhcp-range=::,constructor:tap0,ra-only"]
        # dnsmasq's DNS stays off (port=0): the site answers DHCP and TFTP only
        self.dnsmasq: Dnsmasq = lab.dnsmasq(self.ns, [self.link],
                                            [*self.link.dhcp_range(), "port=0", *lines],
                                            ping=False)

    def http_log(self) -> str:
        path = self.lab.dir / "http.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def vm(self, image: Path, log: Path, *, firmware: str = "bios", memory: int = 512,
           model: str = "virtio-net-pci", rom: bool = True, pxe: bool = True) -> Vm:
        """A node with one NIC on tap0 that boots from it (``boot="net"``).

        ``rom=False`` leaves out the NIC's option ROM (QEMU's is iPXE, for BIOS and
        UEFI): under OVMF the firmware's own PXE and HTTP boot then do the boot, with
        OVMF's virtio-net driver, as on a PC whose NIC has no iPXE in it. ``pxe=False``:
        OVMF offers UEFI HTTP Boot only (:class:`NetVm`)."""
        device = model if rom else f"{model},romfile="
        return NetVm(image, [Nic(MAC, TapNet(self.ns.name, "tap0"), model=device)], log=log,
                     firmware=firmware, boot="net", memory=memory, pxe=pxe)


class NetVm(Vm):
    """A :class:`Vm` whose OVMF may be told to skip its PXE boot options.

    ``pxe=False`` sets OVMF's ``opt/org.tianocore/IPv4PXESupport`` and
    ``IPv6PXESupport`` to ``n`` (fw_cfg), so that UEFI HTTP Boot is the NIC's only
    boot option: otherwise OVMF tries PXEv4 and PXEv6 first, about a minute each
    under TCG when no PXE offer comes."""

    def __init__(self, *args: Any, pxe: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pxe = pxe

    def argv(self, qmp: Path) -> list[str]:
        argv = super().argv(qmp)
        if not self.pxe and self.firmware != "bios":
            for knob in ("IPv4PXESupport", "IPv6PXESupport"):
                argv += ["-fw_cfg", f"name=opt/org.tianocore/{knob},string=n"]
        return argv
