"""Network boot against direct kernel boot of the same image: seconds to the init's first line.

    sudo .venv/bin/python bench/netboot_time.py [--image DIR] [--runs N] [--ra]
                                                [--workdir DIR]

Boots one image, in the same run and interleaved, in these ways, and reads the serial
console (each line carries its arrival time since QEMU was launched) up to the
image's init's first line (``[init ...] bootpull image ...``), then kills the VM:

- ``direct (vmlinux, PVH)``: what the lab does (``Vm(boot="kernel")``): the reference;
- ``direct (vmlinuz)``: QEMU's -kernel with the bzImage, which PXE boots too, under
  SeaBIOS and under OVMF (the UEFI boots' firmware);
- ``BIOS PXE, TFTP``: SeaBIOS, the NIC's iPXE ROM, boot.ipxe + vmlinuz + initrd.img
  over TFTP (a tree without --netboot-url);
- ``BIOS PXE, HTTP``: the same, the script and the image over HTTP;
- ``UEFI PXE``: OVMF's own PXE (NIC without ROM), ipxe.efi over TFTP, then HTTP;
- ``UEFI HTTP Boot``: OVMF's HTTP Boot (its PXE switched off), ipxe.efi by URL.

The network boots run in a namespace with real dnsmasq (DHCP + TFTP, the tree's own
lines) and ``python -m http.server`` (``bootpull_lab.netboot_lab``); needs root.
``--ra`` makes dnsmasq send IPv6 router advertisements too: without them iPXE waits
about 15 s for one. The image: ``--image DIR``, else one built (and cached) in the
work dir with the example repository's trust anchors, as bench/boot_time.py does.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from bootpull.console import Console
from bootpull_image import netboot
from bootpull_lab import netlab
from bootpull_lab.deploy import ensure_image, make_repo
from bootpull_lab.netboot_lab import FIRST_LINE, MAC, NetbootSite, site_url
from bootpull_lab.vm import Nic, UserNet, Vm

TIMEOUT = 600.0
IPXE_CONFIGURING = re.compile(r"Configuring \(net0")


def _first(vm: Vm, pattern: re.Pattern[str]) -> float | None:
    return next((t for t, line in vm.lines if pattern.search(line)), None)


def direct(image: Path, log: Path, firmware: str = "bios") -> dict[str, float]:
    with Vm(image, [Nic(MAC, UserNet())], log=log, memory=512, firmware=firmware) as vm:
        vm.wait_for(FIRST_LINE, TIMEOUT)
        return {"init": _first(vm, re.compile(FIRST_LINE)) or 0.0}


def net(image: Path, work: Path, *, firmware: str, url: bool, rom: bool = True,
        pxe: bool = True, ra: bool = False) -> Callable[[Path], dict[str, float]]:
    def boot(log: Path) -> dict[str, float]:
        tree = work / f"tree-{'http' if url else 'tftp'}"
        if not tree.exists():
            netboot.make(image, tree, netboot.make_site(site_url() if url else None, tree))
        with netlab.Lab("bench") as lab:
            site = NetbootSite(lab, tree, http=url, ra=ra)
            with site.vm(tree, log, firmware=firmware, rom=rom, pxe=pxe) as vm:
                vm.wait_for(FIRST_LINE, TIMEOUT)
                result = {"init": _first(vm, re.compile(FIRST_LINE)) or 0.0}
                started = _first(vm, re.compile(r"Press Ctrl-B|iPXE initialising"))
                configured = _first(vm, re.compile(r"Configuring \(net0.*ok"))
                if started is not None and configured is not None:
                    result["ipxe_dhcp"] = configured - started
                return result
    return boot


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--image", type=Path, default=None, help="a built image")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--ra", action="store_true",
                        help="IPv6 router advertisements on the boot network")
    parser.add_argument("--workdir", type=Path, default=Path("out") / "bench")
    args = parser.parse_args()
    reason = netlab.available()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    if args.image is None:
        repo = make_repo(args.workdir)
        image = ensure_image(args.workdir / "image", repo.trust, Console())
    else:
        image = args.image
    with tempfile.TemporaryDirectory(prefix="bootpull-netboot-bench-") as tmp:
        work = Path(tmp)
        bz = work / "bzimage"
        bz.mkdir()
        for name in ("vmlinuz", "initrd.img", "manifest.json"):
            (bz / name).symlink_to((image / name).resolve())
        modes: dict[str, Callable[[Path], dict[str, float]]] = {
            "direct (vmlinux, PVH)": lambda log: direct(image, log),
            "direct (vmlinuz)": lambda log: direct(bz, log),
            "direct (vmlinuz, OVMF)": lambda log: direct(bz, log, firmware="uefi"),
            "BIOS PXE, TFTP": net(image, work, firmware="bios", url=False, ra=args.ra),
            "BIOS PXE, HTTP": net(image, work, firmware="bios", url=True, ra=args.ra),
            "UEFI PXE (TFTP, then HTTP)": net(image, work, firmware="uefi", url=True,
                                              rom=False, ra=args.ra),
            "UEFI HTTP Boot": net(image, work, firmware="uefi", url=True, rom=False,
                                  pxe=False, ra=args.ra),
        }
        results: dict[str, list[dict[str, float]]] = {name: [] for name in modes}
        for n in range(args.runs):
            for i, (name, boot) in enumerate(modes.items()):
                results[name].append(boot(work / f"node-{n}-{i}.log"))
                print(f"run {n + 1}: {name}: {results[name][-1]}", file=sys.stderr,
                      flush=True)
    def med(name: str, key: str) -> float | None:
        values = [r[key] for r in results[name] if key in r]
        return statistics.median(values) if values else None

    ref = med("direct (vmlinux, PVH)", "init") or 1.0
    bz_ref = med("direct (vmlinuz)", "init") or 1.0
    print(f"| boot (median of {args.runs}, TCG{', IPv6 RAs' if args.ra else ''}) | "
          "QEMU launch → init's first line, s | × direct vmlinux | × direct vmlinuz | "
          "of which iPXE's 2 s Ctrl-B prompt and its DHCP ('Configuring'), s |")
    print("|---|---:|---:|---:|---:|")
    for name in modes:
        total = med(name, "init") or 0.0
        dhcp = med(name, "ipxe_dhcp")
        print(f"| {name} | {total:.1f} | {total / ref:.2f} | {total / bz_ref:.2f} | "
              f"{'—' if dhcp is None else f'{dhcp:.1f}'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
