"""The session's image booted over the network from a ``bootpull image netboot`` tree.

Each boot runs in a network namespace (``bootpull_lab.netboot_lab``): real dnsmasq
serving DHCP and TFTP from the tree with exactly its ``dnsmasq.conf`` lines, and
``python -m http.server`` serving the same tree. Each waits for the image's init's
first line, then the VM is killed (no repository is needed for that).

- BIOS (SeaBIOS): the NIC's option ROM, which under QEMU is iPXE itself (built from
  the same ipxe source as Debian's undionly.kpxe), so the lines rightly hand it
  ``boot.ipxe`` at once: it announces itself as every iPXE does (user class iPXE,
  option 175), as the chained undionly.kpxe would. ``undionly.kpxe`` is for vendor PXE
  ROMs, which QEMU lacks; which client gets it is checked against real dnsmasq and Kea
  in tests/test_netboot.py. A TFTP-only tree: the script, vmlinuz and initrd.img come
  over TFTP.
- UEFI PXE (OVMF, the NIC without option ROM, so OVMF's own virtio-net driver and PXE
  do it): ipxe.efi over TFTP, then iPXE fetches boot.ipxe, vmlinuz and initrd.img over
  HTTP (a tree with --netboot-url).
- UEFI HTTP Boot (OVMF's PXE options switched off by fw_cfg, so HTTP Boot is the
  NIC's only boot option): ipxe.efi by its URL over HTTP, then as above.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from bootpull_image import netboot
from bootpull_lab import netlab as lab_net
from bootpull_lab.netboot_lab import FIRST_LINE, NetbootSite, site_url
from bootpull_lab.vm import OVMF, OVMF_DIR

pytestmark = [pytest.mark.qemu, pytest.mark.slow, pytest.mark.netns]

BOOT = 600.0
needs_ovmf = pytest.mark.skipif(not (OVMF_DIR / OVMF["uefi"][0]).exists(),
                                reason="OVMF is not installed (apt ovmf)")


def _tree(image: Path, out: Path, url: str | None) -> Path:
    netboot.make(image, out, netboot.make_site(url, out))
    return out


def _sent(site: NetbootSite, name: str) -> bool:
    """dnsmasq's log says it sent ``name`` over TFTP."""
    return re.search(rf"sent \S*/{re.escape(name)} to ", site.dnsmasq.log()) is not None


def test_bios_pxe_boots_over_tftp(lab_image_dir: Path, netlab: lab_net.Lab,
                                  tmp_path: Path) -> None:
    tree = _tree(lab_image_dir, tmp_path / "tree", None)
    site = NetbootSite(netlab, tree, http=False, ra=True)  # ra: iPXE waits 16 s without
    with site.vm(tree, tmp_path / "node.log", firmware="bios") as vm:
        vm.wait_for(FIRST_LINE, BOOT)
    log = site.dnsmasq.log()
    assert "user class: iPXE" in log and "bootfile-name  boot.ipxe" in log
    for name in ("boot.ipxe", "vmlinuz", "initrd.img"):
        assert _sent(site, name), log[-3000:]


@needs_ovmf
def test_uefi_pxe_chains_ipxe_efi_then_http(lab_image_dir: Path, netlab: lab_net.Lab,
                                            tmp_path: Path) -> None:
    tree = _tree(lab_image_dir, tmp_path / "tree", site_url())
    site = NetbootSite(netlab, tree, ra=True)
    with site.vm(tree, tmp_path / "node.log", firmware="uefi", rom=False) as vm:
        vm.wait_for(r"NBP filename is ipxe\.efi", BOOT)
        vm.wait_for(r"Filename: http://\S+/boot\.ipxe", BOOT)
        vm.wait_for(FIRST_LINE, BOOT)
        console = vm.console
    assert "Start PXE over IPv4" in console and "iPXE" in console
    assert _sent(site, "ipxe.efi")
    http = site.http_log()
    for name in ("boot.ipxe", "vmlinuz", "initrd.img"):
        assert f'"GET /{name} HTTP/1.1" 200' in http, http


@needs_ovmf
def test_uefi_http_boot_fetches_ipxe_efi_by_url(lab_image_dir: Path, netlab: lab_net.Lab,
                                                tmp_path: Path) -> None:
    """This OVMF (Debian's) offers UEFI HTTPv4 boot on its own: the generated lines'
    HTTPClient answer (ipxe.efi's URL, option 60 echoed) is what it boots."""
    tree = _tree(lab_image_dir, tmp_path / "tree", site_url())
    site = NetbootSite(netlab, tree, ra=True)
    with site.vm(tree, tmp_path / "node.log", firmware="uefi", rom=False, pxe=False) as vm:
        vm.wait_for(r"Start HTTP Boot over IPv4", BOOT)
        vm.wait_for(rf"URI: {re.escape(site_url())}ipxe\.efi", BOOT)
        vm.wait_for(FIRST_LINE, BOOT)
        console = vm.console
    assert "Start PXE over" not in console
    assert "vendor class: HTTPClient" in site.dnsmasq.log()
    assert not _sent(site, "ipxe.efi")  # nothing over TFTP
    http = site.http_log()
    for name in ("ipxe.efi", "boot.ipxe", "vmlinuz", "initrd.img"):
        assert f'"GET /{name} HTTP/1.1" 200' in http, http
