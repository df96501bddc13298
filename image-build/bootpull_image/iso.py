"""``bootpull.iso``: the same kernel and initramfs on a CD that boots with isolinux.

The CD boots as the original proof of concept did: BIOS → isolinux → vmlinuz +
initrd.img, console on the serial port. It is also a hybrid image (isohdpfx), so it
can be written to a USB stick with dd. xorriso honours SOURCE_DATE_EPOCH, and every
file date is set to it, so the ISO is reproducible too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from bootpull.errors import BootpullError

ISOLINUX = Path("/usr/lib/ISOLINUX")
SYSLINUX_MODULES = Path("/usr/lib/syslinux/modules/bios")


class IsoError(BootpullError):
    stage = "image"


def kernel_console(console: str) -> str:
    """The kernel's ``console=`` for the node's console ``--console``: a tty as given
    (``ttyS0,9600`` keeps its speed), anything else the first serial port at 115200."""
    return console if console.startswith("tty") else "ttyS0,115200"


def kernel_cmdline(console: str) -> str:
    """The image's default kernel command line (``manifest.json``, the ISO, the lab)."""
    return f"console={kernel_console(console)} rootfstype=ramfs quiet"


def boot_config(console: str) -> str:
    """isolinux.cfg: one entry, no menu, boots at once; the kernel console follows ``console``."""
    serial_port = kernel_console(console).removeprefix("ttyS").split(",", 1)
    speed = serial_port[1] if len(serial_port) > 1 else "115200"
    return (
        f"SERIAL {serial_port[0]} {speed}\n"
        "DEFAULT bootpull\n"
        "TIMEOUT 0\n"
        "PROMPT 0\n"
        "LABEL bootpull\n"
        "  KERNEL /boot/vmlinuz\n"
        f"  APPEND initrd=/boot/initrd.img {kernel_cmdline(console)} "
        f"bootpull.console={console}\n"
    )


def make(out: Path, work: Path, console: str, epoch: int) -> Path:
    """Write ``out/bootpull.iso`` from ``out/vmlinuz`` and ``out/initrd.img``."""
    missing = [p for p in (ISOLINUX / "isolinux.bin", SYSLINUX_MODULES / "ldlinux.c32",
                           ISOLINUX / "isohdpfx.bin") if not p.exists()]
    if missing or shutil.which("xorriso") is None:
        raise IsoError("cannot build the ISO",
                       why=f"missing: {', '.join(str(p) for p in missing) or 'xorriso'}",
                       hint="apt-get install xorriso isolinux syslinux-common "
                       "(or run 'bash .ci/setup')")
    tree = work / "tree"
    (tree / "isolinux").mkdir(parents=True)
    (tree / "boot").mkdir()
    shutil.copyfile(ISOLINUX / "isolinux.bin", tree / "isolinux" / "isolinux.bin")
    shutil.copyfile(SYSLINUX_MODULES / "ldlinux.c32", tree / "isolinux" / "ldlinux.c32")
    (tree / "isolinux" / "isolinux.cfg").write_text(boot_config(console))
    shutil.copyfile(out / "vmlinuz", tree / "boot" / "vmlinuz")
    shutil.copyfile(out / "initrd.img", tree / "boot" / "initrd.img")
    for path in [tree, *tree.rglob("*")]:
        os.utime(path, (epoch, epoch), follow_symlinks=False)
    iso = out / "bootpull.iso"
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
    proc = subprocess.run(
        ["xorriso", "-as", "mkisofs", "-quiet", "-o", str(iso), "-V", "BOOTPULL",
         "-isohybrid-mbr", str(ISOLINUX / "isohdpfx.bin"),
         "-c", "isolinux/boot.cat", "-b", "isolinux/isolinux.bin", "-no-emul-boot",
         "-boot-load-size", "4", "-boot-info-table", "-r", str(tree)],
        capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise IsoError("xorriso failed", why=proc.stderr.strip()[-400:])
    return iso
