"""``bootpull.iso``: the same kernel and initramfs on one hybrid ISO that boots under
BIOS and UEFI (Secure Boot too), from a CD or written to a USB stick with dd.

- **BIOS**: isolinux → vmlinuz + initrd.img, from the CD's El Torito BIOS entry, or
  from a stick through the isohybrid MBR code (isohdpfx).
- **UEFI**: an EFI System partition (a small FAT image, ``esp.img``) that is both the
  CD's El Torito EFI entry and, for a stick, partition 2 of the image's GPT. On it,
  Debian's signed chain: shim (``EFI/BOOT/BOOTX64.EFI``, signed by Microsoft's UEFI CA)
  → GRUB (``EFI/BOOT/grubx64.efi``, signed by Debian; shim checks it) → Debian's
  signed kernel (GRUB has shim check it). The initramfs is not checked by either; the
  node verifies what it runs against its TUF anchors.

Debian's signed GRUB is monolithic and reads its config from ``$prefix``, which it
sets to ``/EFI/debian`` on the device it was loaded from (else it searches for
``/.disk/info`` and uses ``/boot/grub`` there): ``grub.cfg`` is in both places. It
finds the kernel on the ISO 9660 file system by a file named after the image
(``/.disk/bootpull-<id>``), so another stick plugged in beside it is not taken.

shim and GRUB come from ``shim-signed`` and ``grub-efi-amd64-signed``, fetched into
the download cache like the kernel (nothing is installed on the build host).
Reproducible: xorriso, mkfs.vfat and mtools honour ``SOURCE_DATE_EPOCH``, every file
date is set to it, and the FAT's serial number and label are fixed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from bootpull import __version__
from bootpull.errors import BootpullError

from bootpull_image import debs
from bootpull_image.settings import default_cache

ISOLINUX = Path("/usr/lib/ISOLINUX")
SYSLINUX_MODULES = Path("/usr/lib/syslinux/modules/bios")
#: Debian's signed boot loaders: package → (file in the package, path on the ESP)
EFI_LOADERS = {
    "shim-signed": ("usr/lib/shim/shimx64.efi.signed", "EFI/BOOT/BOOTX64.EFI"),
    "grub-efi-amd64-signed": ("usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed",
                              "EFI/BOOT/grubx64.efi"),
}
#: where Debian's signed GRUB looks for grub.cfg: its built-in $prefix on the ESP, and
#: its fallback on the ISO 9660 file system (found by /.disk/info)
GRUB_CFG_ESP = "EFI/debian/grub.cfg"
GRUB_CFG_ISO = "boot/grub/grub.cfg"
#: the FAT's label and serial number (fixed: the ISO is reproducible)
ESP_LABEL = "BOOTPULLEFI"
ESP_SERIAL = "b0071500"
VOLUME_ID = "BOOTPULL"


class IsoError(BootpullError):
    stage = "image"


def kernel_console(console: str) -> str:
    """The kernel's ``console=`` for the node's console ``--console``: a tty as given
    (``ttyS0,9600`` keeps its speed), anything else the first serial port at 115200."""
    return console if console.startswith("tty") else "ttyS0,115200"


def kernel_cmdline(console: str) -> str:
    """The image's default kernel command line (``manifest.json``, the ISO, the lab)."""
    return f"console={kernel_console(console)} rootfstype=ramfs quiet"


def _serial(console: str) -> tuple[str, str] | None:
    """(unit, speed) of the serial port the kernel console is on, or None."""
    name, _, speed = kernel_console(console).partition(",")
    if not name.startswith("ttyS") or not name[4:].isdigit():
        return None
    return name[4:], speed or "115200"


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


def grub_config(console: str, tag: str) -> str:
    """grub.cfg for UEFI: no menu, boots at once, the same command line as isolinux;
    ``tag`` is the file (``/.disk/bootpull-<id>``) that marks this image's ISO 9660."""
    lines = ["# bootpull: Debian's signed GRUB, started by shim (UEFI, Secure Boot or not)"]
    serial = _serial(console)
    if serial is not None:
        lines += [f"serial --unit={serial[0]} --speed={serial[1]}",
                  "terminal_input serial console", "terminal_output serial console"]
    lines += [
        "set timeout=0",
        "set default=0",
        f"search --no-floppy --file --set=root {tag}",
        "menuentry bootpull {",
        f"    linux /boot/vmlinuz {kernel_cmdline(console)} bootpull.console={console}",
        "    initrd /boot/initrd.img",
        "}",
    ]
    return "\n".join(lines) + "\n"


def image_id(vmlinuz: bytes, initrd: bytes, console: str, epoch: int) -> str:
    """A name for this image's ISO (16 hex digits), the same for the same inputs."""
    digest = hashlib.sha256()
    for part in (vmlinuz, initrd, console.encode(), str(epoch).encode()):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:16]


def _run(argv: list[str], what: str, env: dict[str, str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise IsoError(f"{what} failed",
                       why=(proc.stderr or proc.stdout).strip()[-400:] or
                       f"{argv[0]} exited {proc.returncode}")


def _check_tools() -> None:
    missing = [str(p) for p in (ISOLINUX / "isolinux.bin", SYSLINUX_MODULES / "ldlinux.c32",
                                ISOLINUX / "isohdpfx.bin") if not p.exists()]
    missing += [tool for tool in ("xorriso", "mkfs.vfat", "mmd", "mcopy")
                if shutil.which(tool) is None]
    if missing:
        raise IsoError("cannot build the ISO", why=f"missing: {', '.join(missing)}",
                       hint="apt-get install xorriso isolinux syslinux-common mtools "
                       "dosfstools (or run 'bash .ci/setup')")


def fetch_loaders(cache: Path, dest: Path) -> dict[str, str]:
    """Unpack shim-signed and grub-efi-amd64-signed (from the cache, or downloaded into
    it) under ``dest``; return their versions."""
    found = debs.fetch(list(EFI_LOADERS), cache / "debs")
    dest.mkdir(parents=True, exist_ok=True)
    for deb in found:
        debs.extract(deb, dest)
    for name, (path, _) in EFI_LOADERS.items():
        if not (dest / path).is_file():
            raise IsoError(f"{name} holds no {Path(path).name}", why=f"{path} is missing")
    return {deb.name: deb.version for deb in found}


def make_esp(path: Path, files: dict[str, Path], env: dict[str, str]) -> Path:
    """A FAT image holding ``files`` (path on the ESP → source), sized to fit them;
    every date is ``SOURCE_DATE_EPOCH`` (in ``env``) and the serial number fixed."""
    payload = sum(source.stat().st_size for source in files.values())
    size = (payload + 2 * 2**20 + 2**20 - 1) // 2**20 * 2**20  # room for the FAT itself
    path.unlink(missing_ok=True)
    with open(path, "wb") as img:
        img.truncate(size)
    _run(["mkfs.vfat", "--invariant", "-i", ESP_SERIAL, "-n", ESP_LABEL, str(path)],
         "making the EFI System partition (mkfs.vfat)", env)
    env = {**env, "MTOOLS_SKIP_CHECK": "1"}
    dirs = sorted({parent.as_posix() for dest in files for parent in Path(dest).parents
                   if parent.as_posix() != "."})
    if dirs:
        _run(["mmd", "-i", str(path), *(f"::/{d}" for d in dirs)],
             "making directories on the EFI System partition (mmd)", env)
    for dest, source in sorted(files.items()):
        _run(["mcopy", "-m", "-i", str(path), str(source), f"::/{dest}"],
             f"copying {dest} to the EFI System partition (mcopy)", env)
    return path


def make(out: Path, work: Path, console: str, epoch: int, cache: Path | None = None,
         packages: dict[str, str] | None = None) -> Path:
    """Write ``out/bootpull.iso`` from ``out/vmlinuz`` and ``out/initrd.img``.

    ``cache`` is the download cache (``BuildSettings.cache``: ``.deb`` files in its
    ``debs/``); the boot loaders' package versions are added to ``packages``."""
    _check_tools()
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch), "TZ": "UTC"}
    versions = fetch_loaders(cache if cache is not None else default_cache(),
                             work / "loaders")
    if packages is not None:
        packages.update(versions)
    vmlinuz = (out / "vmlinuz").read_bytes()
    initrd = (out / "initrd.img").read_bytes()
    tag = f"/.disk/bootpull-{image_id(vmlinuz, initrd, console, epoch)}"
    grub_cfg = grub_config(console, tag)

    tree = work / "tree"
    for d in ("isolinux", "boot/grub", ".disk"):
        (tree / d).mkdir(parents=True)
    shutil.copyfile(ISOLINUX / "isolinux.bin", tree / "isolinux" / "isolinux.bin")
    shutil.copyfile(SYSLINUX_MODULES / "ldlinux.c32", tree / "isolinux" / "ldlinux.c32")
    (tree / "isolinux" / "isolinux.cfg").write_text(boot_config(console))
    (tree / "boot" / "vmlinuz").write_bytes(vmlinuz)
    (tree / "boot" / "initrd.img").write_bytes(initrd)
    (tree / GRUB_CFG_ISO).write_text(grub_cfg)
    (tree / ".disk" / "info").write_text(f"bootpull image {__version__}\n")
    (tree / tag.lstrip("/")).write_text(f"bootpull image {__version__}\n")

    esp_files = {dest: work / "loaders" / src for src, dest in EFI_LOADERS.values()}
    (work / "grub.cfg").write_text(grub_cfg)
    esp_files[GRUB_CFG_ESP] = work / "grub.cfg"
    for path in [tree, *tree.rglob("*"), *esp_files.values()]:
        os.utime(path, (epoch, epoch), follow_symlinks=False)
    esp = make_esp(work / "esp.img", esp_files, env)

    iso = out / "bootpull.iso"
    # The layout of Debian's own hybrid ISOs: isolinux for BIOS (El Torito, and the
    # isohybrid MBR for a stick); the ESP appended after the ISO 9660 file system as
    # GPT partition 2 (the MBR is then protective), and the CD's El Torito EFI entry
    # points at that same partition rather than at a second copy inside the tree.
    _run(["xorriso", "-as", "mkisofs", "-quiet", "-o", str(iso), "-V", VOLUME_ID,
          "-isohybrid-mbr", str(ISOLINUX / "isohdpfx.bin"),
          "-c", "isolinux/boot.cat", "-b", "isolinux/isolinux.bin", "-no-emul-boot",
          "-boot-load-size", "4", "-boot-info-table",
          "-eltorito-alt-boot", "-e", "--interval:appended_partition_2:all::",
          "-no-emul-boot",
          "-append_partition", "2", "0xef", str(esp), "-appended_part_as_gpt",
          "-r", str(tree)], "xorriso", env)
    return iso
