"""bootpull.iso under BIOS and UEFI, from a CD and as a USB stick, Secure Boot too.

One ISO is built per module from the session's image (``lab_image_dir``). Its layout
is checked without QEMU: the El Torito BIOS and UEFI entries, the GPT with the EFI
System partition, what is on that partition. Then four boots, each until the init's
first two lines (the image's banner and the firmware it booted on): SeaBIOS from the
CD, OVMF from the CD, OVMF from a USB stick, and OVMF with Secure Boot on (Microsoft's
keys enrolled) from the stick, which runs Debian's signed shim → GRUB → kernel.
"""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import pytest
from bootpull.mac import Mac
from bootpull_image import iso
from bootpull_image.settings import default_cache
from bootpull_lab.vm import OVMF, OVMF_DIR, Nic, UserNet, Vm

MAC = Mac.parse("52:54:00:12:34:56")
EPOCH = 1700000000
BOOT = 240.0
#: OVMF + GRUB 2.06 run out of memory loading the kernel and initramfs at 256 MB
#: (docs/lab.md); 384 MB boots, 512 MB leaves room
UEFI_MEMORY = 512
#: the EFI System partition's GPT type, C12A7328-F81F-11D2-BA4B-00A0C93EC93B, on disk
ESP_TYPE = bytes.fromhex("28732ac11ff8d211ba4b00a0c93ec93b")
BASIC_DATA_TYPE = bytes.fromhex("a2a0d0ebe5b9334487c068b6b72699c7")


@pytest.fixture(scope="module")
def iso_image(lab_image_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bootpull.iso made from the session's image (which is built without --iso)."""
    out = tmp_path_factory.mktemp("uefi-iso")
    for name in ("vmlinuz", "vmlinux", "initrd.img", "manifest.json"):
        (out / name).symlink_to(lab_image_dir / name)
    return iso.make(out, out / "work", "ttyS0,115200", EPOCH)


def _gpt(data: bytes) -> list[tuple[bytes, int, int]]:
    """(type GUID, first LBA, last LBA) of each used GPT entry (512-byte sectors)."""
    header = data[512:1024]
    assert header[:8] == b"EFI PART", "no GPT header at LBA 1"
    entries_lba, count, size = struct.unpack_from("<QII", header, 72)
    parts = []
    for n in range(count):
        entry = data[entries_lba * 512 + n * size:entries_lba * 512 + (n + 1) * size]
        if entry[:16] != bytes(16):
            first, last = struct.unpack_from("<QQ", entry, 32)
            parts.append((entry[:16], first, last))
    return parts


def _mtype(esp: bytes, path: str, tmp: Path) -> bytes:
    image = tmp / "esp.img"
    image.write_bytes(esp)
    return subprocess.run(["mtype", "-i", str(image), f"::/{path}"], check=True,
                          capture_output=True, env={**os.environ, "MTOOLS_SKIP_CHECK": "1"}
                          ).stdout


def test_grub_config_boots_what_isolinux_boots() -> None:
    cfg = iso.grub_config("ttyS1,9600", "/.disk/bootpull-0123")
    assert "serial --unit=1 --speed=9600" in cfg
    assert "terminal_input serial console" in cfg and "terminal_output serial console" in cfg
    assert "search --no-floppy --file --set=root /.disk/bootpull-0123" in cfg
    linux = next(line.split(None, 2)[2] for line in cfg.splitlines()
                 if line.strip().startswith("linux /boot/vmlinuz"))
    append = next(line for line in iso.boot_config("ttyS1,9600").splitlines()
                  if "APPEND" in line)
    assert append.split(None, 2)[2] == linux  # the same command line, after initrd=
    assert "initrd /boot/initrd.img" in cfg and "set timeout=0" in cfg


def test_grub_config_without_a_serial_console() -> None:
    cfg = iso.grub_config("tty0", "/.disk/bootpull-0123")
    assert "serial" not in cfg.replace("bootpull", "")
    assert "console=tty0" in cfg


@pytest.mark.slow
def test_iso_has_bios_and_uefi_entries_and_a_gpt_esp(iso_image: Path, tmp_path: Path,
                                                     lab_image_dir: Path) -> None:
    report = subprocess.run(["xorriso", "-indev", str(iso_image), "-report_el_torito",
                             "plain"], check=True, capture_output=True, text=True).stdout
    platforms = [line.split()[6] for line in report.splitlines()
                 if line.startswith("El Torito boot img :")]
    assert platforms == ["BIOS", "UEFI"], report
    data = iso_image.read_bytes()
    assert data[0x8001:0x8006] == b"CD001"
    # a protective MBR (type 0xee) in front of the GPT, and isolinux's MBR code
    assert data[510:512] == b"\x55\xaa" and data[446 + 4] == 0xEE
    parts = _gpt(data)
    esps = [(first, last) for kind, first, last in parts if kind == ESP_TYPE]
    assert len(esps) == 1, parts
    assert any(kind == BASIC_DATA_TYPE for kind, _, _ in parts)  # the ISO 9660 data
    first, last = esps[0]
    esp = data[first * 512:(last + 1) * 512]
    assert esp[54:62] == b"FAT12   " or esp[54:62] == b"FAT16   "
    assert esp[43:54] == iso.ESP_LABEL.encode()
    # the El Torito UEFI image is that same partition (its LBA counts 2048-byte blocks)
    uefi = next(line for line in report.splitlines()
                if line.startswith("El Torito boot img :") and "UEFI" in line)
    assert int(uefi.split()[-1]) * 4 == first, report
    loaders = tmp_path / "loaders"
    iso.fetch_loaders(default_cache(), loaders)
    for src, dest in iso.EFI_LOADERS.values():
        assert _mtype(esp, dest, tmp_path) == (loaders / src).read_bytes(), dest
    cfg = _mtype(esp, iso.GRUB_CFG_ESP, tmp_path).decode()
    manifest_cmdline = iso.kernel_cmdline("ttyS0,115200")
    assert f"linux /boot/vmlinuz {manifest_cmdline} bootpull.console=ttyS0,115200" in cfg
    # GRUB's fallback place (found by /.disk/info) holds the same config, and the tag
    # file it searches for is on the ISO 9660 file system
    tag = next(line.split()[-1] for line in cfg.splitlines() if line.startswith("search"))
    listing = subprocess.run(["xorriso", "-indev", str(iso_image), "-find", "/", "-type", "f"],
                             check=True, capture_output=True, text=True).stdout
    for path in (tag, "/.disk/info", "/" + iso.GRUB_CFG_ISO, "/boot/vmlinuz",
                 "/boot/initrd.img", "/isolinux/isolinux.bin"):
        assert f"'{path}'" in listing, path
    extracted = tmp_path / "grub.cfg"
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(iso_image), "-extract",
                    "/" + iso.GRUB_CFG_ISO, str(extracted)], check=True, capture_output=True)
    assert extracted.read_text() == cfg
    assert (lab_image_dir / "vmlinuz").read_bytes() in data  # the signed kernel, as is


@pytest.mark.slow
def test_uefi_iso_is_reproducible(iso_image: Path, lab_image_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for name in ("vmlinuz", "initrd.img"):
        (out / name).symlink_to(lab_image_dir / name)
    again = iso.make(out, tmp_path / "work", "ttyS0,115200", EPOCH)
    assert again.read_bytes() == iso_image.read_bytes()


def _boot(lab_image_dir: Path, iso_image: Path, log: Path, *, firmware: str,
          boot: str) -> str:
    """Boot until the init's firmware line; return what it says."""
    if firmware != "bios" and not all((OVMF_DIR / n).exists() for n in OVMF[firmware]):
        pytest.skip("no OVMF firmware (apt-get install ovmf)")
    memory = 256 if firmware == "bios" else UEFI_MEMORY
    with Vm(lab_image_dir, [Nic(MAC, UserNet())], log=log, firmware=firmware, boot=boot,
            media=iso_image, memory=memory) as vm:
        vm.wait_for(r"\[init [\d.]+\] bootpull image \S+: kernel \S+ up", BOOT)
        said = vm.wait_for(r"\[init [\d.]+\] firmware: (.*)$", 30).group(1)
        console = vm.console
    assert "IMAGE IS BROKEN" not in console
    return said.strip()


@pytest.mark.slow
@pytest.mark.qemu
def test_bios_cd_still_boots(lab_image_dir: Path, iso_image: Path, tmp_path: Path) -> None:
    assert _boot(lab_image_dir, iso_image, tmp_path / "node.log", firmware="bios",
                 boot="cdrom") == "BIOS"
    assert "ISOLINUX" in (tmp_path / "node.log").read_text()


@pytest.mark.slow
@pytest.mark.qemu
def test_uefi_cd_boots(lab_image_dir: Path, iso_image: Path, tmp_path: Path) -> None:
    assert _boot(lab_image_dir, iso_image, tmp_path / "node.log", firmware="uefi",
                 boot="cdrom") == "UEFI, Secure Boot off"
    assert "GRUB" in (tmp_path / "node.log").read_text()


@pytest.mark.slow
@pytest.mark.qemu
def test_uefi_usb_stick_boots(lab_image_dir: Path, iso_image: Path, tmp_path: Path) -> None:
    assert _boot(lab_image_dir, iso_image, tmp_path / "node.log", firmware="uefi",
                 boot="usb") == "UEFI, Secure Boot off"


@pytest.mark.slow
@pytest.mark.qemu
def test_secure_boot_usb_stick_boots_through_the_signed_chain(
        lab_image_dir: Path, iso_image: Path, tmp_path: Path) -> None:
    """OVMF with Microsoft's keys: shim (Microsoft-signed) → GRUB and the kernel
    (Debian-signed); the kernel then says Secure Boot is on and locks itself down."""
    assert _boot(lab_image_dir, iso_image, tmp_path / "node.log", firmware="uefi-secure",
                 boot="usb") == "UEFI, Secure Boot on"
