"""``bootpull image``: build the boot image (docs/contract.md §3.5)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bootpull.console import Console


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    build = sub.add_parser(
        "build", help="build vmlinuz, initrd.img and manifest.json (and bootpull.iso)",
        description="Build the boot image from Debian's kernel, busybox and Python packages "
        "plus the node agent. Downloads are cached (--cache); two builds from the same "
        "inputs are byte-identical.",
    )
    build.add_argument("--out", required=True, type=Path, metavar="DIR",
                       help="where to write the image")
    build.add_argument("--trust", type=Path, default=None, metavar="FILE",
                       help="trust anchors to bake in (from 'bootpull repo trust')")
    build.add_argument("--ca", type=Path, action="append", default=[], metavar="FILE",
                       help="a PEM CA certificate the node's https trusts besides the "
                       "public ones (repeatable)")
    build.add_argument("--console", default="ttyS0,115200", metavar="DEV",
                       help="the node's default console (default ttyS0,115200)")
    build.add_argument("--iso", action="store_true", help="also write bootpull.iso")
    build.add_argument("--cache", type=Path, default=None, metavar="DIR",
                       help="download cache (default ./cache or $BOOTPULL_CACHE)")
    build.add_argument("--modules", default="", metavar="NAME,...",
                       help="more kernel modules (with what they need), loaded when a "
                       "device matches their ids: as in --modules mlx4_en,atlantic")
    build.add_argument("--firmware", type=Path, default=None, metavar="DIR",
                       help="firmware files to add under /lib/firmware (a directory laid "
                       "out as /lib/firmware)")
    build.set_defaults(func=_build)
    # a subcommand of its own, not 'build --netboot': the tree is made from a finished
    # image and site facts (URL, TFTP root), so one tested image serves several sites
    # without a rebuild (bootpull_image/netboot.py)
    netboot = sub.add_parser(
        "netboot", help="write a TFTP/HTTP tree that boots a built image over the network",
        description="Write iPXE (BIOS and UEFI), boot.ipxe, vmlinuz, initrd.img, and the "
        "dnsmasq and Kea DHCP lines that chain them (PXE and UEFI HTTP Boot), with "
        "netboot.json listing the tree. Reproducible.",
    )
    netboot.add_argument("--from", dest="image", required=True, type=Path,
                         metavar="IMAGE_DIR", help="a built image ('image build --out')")
    netboot.add_argument("--out", required=True, type=Path, metavar="DIR",
                         help="where to write the tree")
    netboot.add_argument("--netboot-url", default=None, metavar="URL",
                         help="the tree's HTTP base, http://HOST/PATH/: iPXE fetches the "
                         "script and image over HTTP, and UEFI HTTP Boot is offered "
                         "(default: TFTP only)")
    netboot.add_argument("--tftp-root", default=None, metavar="PATH",
                         help="where the tree will be on the TFTP server (dnsmasq's "
                         "tftp-root; default: --out, absolute)")
    netboot.add_argument("--tftp-server", default=None, metavar="IP",
                         help="the TFTP server's IPv4 address for Kea's next-server "
                         "(default: --netboot-url's host, if an address)")
    netboot.set_defaults(func=_netboot)


def _netboot(args: argparse.Namespace) -> int:
    from bootpull_image import netboot

    site = netboot.make_site(args.netboot_url, args.tftp_root or args.out.resolve(),
                             args.tftp_server)
    record = netboot.make(args.image, args.out, site)
    Console().info(f"network boot tree in {args.out}: {len(record['files'])} files; "
                   f"DHCP lines in {args.out / netboot.DNSMASQ_CONF} and "
                   f"{args.out / netboot.KEA_CONF}")
    return 0


def _build(args: argparse.Namespace) -> int:
    from bootpull_image.build import build_image
    from bootpull_image.settings import BuildSettings

    kwargs = {} if args.cache is None else {"cache": args.cache}
    modules = tuple(m.strip() for m in args.modules.split(",") if m.strip())
    settings = BuildSettings(out=args.out, trust=args.trust, ca=tuple(args.ca),
                             console=args.console, iso=args.iso, modules=modules,
                             firmware=args.firmware, **kwargs)
    console = Console()
    manifest = build_image(settings, console)
    outputs = manifest["outputs"]
    total = outputs["vmlinuz"]["size"] + outputs["initrd.img"]["size"]
    console.info(f"image in {args.out}: vmlinuz + initrd.img = {total / 2**20:.1f} MiB "
                 f"(kernel {manifest['kernel']['version']}, "
                 f"{len(manifest['files'])} files in the initramfs)")
    return 0
