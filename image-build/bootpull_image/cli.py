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
    build.set_defaults(func=_build)


def _build(args: argparse.Namespace) -> int:
    from bootpull_image.build import build_image
    from bootpull_image.settings import BuildSettings

    kwargs = {} if args.cache is None else {"cache": args.cache}
    settings = BuildSettings(out=args.out, trust=args.trust, ca=tuple(args.ca),
                             console=args.console, iso=args.iso, **kwargs)
    console = Console()
    manifest = build_image(settings, console)
    outputs = manifest["outputs"]
    total = outputs["vmlinuz"]["size"] + outputs["initrd.img"]["size"]
    console.info(f"image in {args.out}: vmlinuz + initrd.img = {total / 2**20:.1f} MiB "
                 f"(kernel {manifest['kernel']['version']}, "
                 f"{len(manifest['files'])} files in the initramfs)")
    return 0
