"""The kernel: the ELF ``vmlinux`` inside Debian's bzImage, and the modules the node needs.

Pure functions over bytes, so they are easy to test:

- :func:`extract_vmlinux` reads the x86 boot header of a bzImage, finds the compressed
  payload and decompresses it. QEMU boots the resulting ELF through its PVH entry,
  which skips the BIOS and the kernel's self-decompression (about 0.5 s to the
  kernel banner instead of about 3 s under TCG).
- :func:`module_order` turns a list of wanted modules into the load order, from the
  ``depends=`` field of each module's ``.modinfo`` (Debian's package ships no
  ``modules.dep``; it is made by depmod at install time, which we never run).
"""

from __future__ import annotations

import gzip
import lzma
import struct
import subprocess
from collections.abc import Mapping

from bootpull.errors import BootpullError


class KernelError(BootpullError):
    stage = "image"


# The modules the node needs, beyond what Debian's kernel has built in (af_packet,
# unix sockets, the 8250 serial port, devtmpfs and ramfs are built in), in the groups
# the init loads them by (docs/image.md "Drivers"). A device driver is loaded only
# when a device of this machine matches one of its ids (coldplug, as udev would);
# the helpers they need always.
# The image's compiled code (other modules included) is a squashfs inside the
# initramfs: the loop device and squashfs come first, from the initramfs itself.
EARLY_MODULES = ("loop", "squashfs")
# PCI and virtio NICs: the lab's (virtio), QEMU's and VMware's models, and what field
# hardware has: Intel (e1000/e1000e/igb/igc/ixgbe/i40e), Realtek (r8169, 8139too),
# Broadcom (tg3, bnx2). Realtek's RTL8139C+ (QEMU's rtl8139 model too) shares its PCI
# id with the older RTL8139 but is 8139cp's: 8139too declines it, so both load.
NET_MODULES = ("virtio_pci", "virtio_net", "e1000", "e1000e", "igb", "igc", "ixgbe", "i40e",
               "r8169", "8139too", "8139cp", "tg3", "bnx2", "vmxnet3")
# The USB host controllers: a USB NIC or disk needs one (usbcore comes with them).
USB_MODULES = ("xhci_pci", "ehci_pci", "ohci_pci", "uhci_hcd")
# USB Ethernet adapters: Realtek (r8152), ASIX (ax88179_178a), and the two class
# drivers most others speak (CDC Ethernet, RNDIS).
USB_NET_MODULES = ("r8152", "ax88179_178a", "cdc_ether", "rndis_host")
# The state disk's modules, loaded only with bootpull.state=: the controllers (virtio,
# SATA/AHCI, NVMe, USB mass storage, SD/eMMC), the disk layers over them, ext4 (+ the
# crc32c it asks the crypto API for at mount time).
DISK_MODULES = ("virtio_blk", "virtio_scsi", "ahci", "nvme", "usb_storage", "uas",
                "sdhci_pci", "sd_mod", "mmc_block", "crc32c_generic", "ext4")
WANTED_MODULES = EARLY_MODULES + NET_MODULES + USB_MODULES + USB_NET_MODULES + DISK_MODULES
#: The aliases that name devices: a module with any of them is a device driver and
#: gets an ids file; the rest are helpers
DEVICE_ALIASES = ("pci:", "virtio:", "usb:")

_MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x1f\x8b\x08", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x5d\x00\x00", "lzma"),
)


def payload(bzimage: bytes) -> tuple[str, bytes]:
    """The compression name and the compressed kernel inside a bzImage."""
    if len(bzimage) < 0x250 or bzimage[0x202:0x206] != b"HdrS":
        raise KernelError("not an x86 bzImage", why="the 'HdrS' boot header is missing",
                          hint="pass the vmlinuz file from a linux-image-*-amd64 package")
    version = struct.unpack_from("<H", bzimage, 0x206)[0]
    if version < 0x208:
        raise KernelError(f"boot protocol {version:#x} is too old",
                          why="the payload location needs boot protocol 2.08 or later")
    setup_sects = bzimage[0x1F1] or 4
    offset, length = struct.unpack_from("<II", bzimage, 0x248)
    start = (setup_sects + 1) * 512 + offset
    data = bzimage[start:start + length]
    for magic, name in _MAGICS:
        if data.startswith(magic):
            return name, data
    raise KernelError("unknown kernel compression",
                      why=f"the payload starts with {data[:6].hex()}")


def extract_vmlinux(bzimage: bytes) -> bytes:
    """The uncompressed ELF kernel inside a bzImage."""
    kind, data = payload(bzimage)
    try:
        if kind == "xz":
            # The payload is followed by 4 bytes of size; xz stops at the stream end.
            out = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data)
        elif kind == "lzma":
            out = lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(data)
        elif kind == "gzip":
            out = gzip.decompress(data)
        else:
            out = subprocess.run(["zstd", "-dc"], input=data, capture_output=True,
                                 check=True).stdout
    except (lzma.LZMAError, OSError, EOFError, subprocess.CalledProcessError) as exc:
        raise KernelError(f"the kernel payload does not decompress ({kind})",
                          why=str(exc) or type(exc).__name__,
                          hint="the vmlinuz file is damaged: download the package again") \
            from None
    if not out.startswith(b"\x7fELF"):
        raise KernelError("the decompressed kernel is not an ELF file",
                          why=f"it starts with {out[:4].hex()}")
    return out


def elf_section(elf: bytes, wanted: str) -> bytes:
    """The bytes of one named section of a 64-bit little-endian ELF file."""
    if not elf.startswith(b"\x7fELF\x02\x01"):
        raise KernelError("not a 64-bit little-endian ELF file")
    try:
        return _elf_section(elf, wanted)
    except (struct.error, ValueError, IndexError) as exc:
        raise KernelError(f"damaged ELF file: cannot read its {wanted} section",
                          why=str(exc)) from None


def _elf_section(elf: bytes, wanted: str) -> bytes:
    shoff = struct.unpack_from("<Q", elf, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)

    def header(index: int) -> tuple[int, int, int]:
        base = shoff + index * shentsize
        name = struct.unpack_from("<I", elf, base)[0]
        offset, size = struct.unpack_from("<QQ", elf, base + 0x18)
        return name, offset, size

    _, str_off, str_size = header(shstrndx)
    names = elf[str_off:str_off + str_size]
    for index in range(shnum):
        name, offset, size = header(index)
        end = names.index(b"\0", name)
        if names[name:end].decode() == wanted:
            return elf[offset:offset + size]
    raise KernelError(f"the ELF file has no {wanted} section")


def modinfo(ko: bytes) -> dict[str, str]:
    """``name``, ``depends`` and the other ``key=value`` fields of a module's .modinfo."""
    fields: dict[str, str] = {}
    for item in elf_section(ko, ".modinfo").split(b"\0"):
        key, sep, value = item.decode(errors="replace").partition("=")
        if sep:
            fields.setdefault(key, value)
    return fields


def aliases(ko: bytes) -> list[str]:
    """Every ``alias=`` of a module: the device ids (``pci:v00008086d0000100Esv*...``,
    ``virtio:d00000001v*``) it drives, as shell-style patterns."""
    found = []
    for item in elf_section(ko, ".modinfo").split(b"\0"):
        key, sep, value = item.decode(errors="replace").partition("=")
        if sep and key == "alias":
            found.append(value)
    return found


#: the characters a module alias may hold to become a shell ``case`` pattern as it is:
#: the glob characters and what is never special to the shell (device ids use no others)
_GLOB_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                       ":_.,+-/=@%*?[]!^")
#: how much of a modalias names the bus and the vendor (the virtio device): a pattern
#: whose literal start is at least this long is tried only against that vendor's devices
_VENDOR_PREFIX = {"pci:v": 13, "usb:v": 9, "virtio:d": 16}


def alias_glob(alias: str) -> str | None:
    """A module alias as a pattern for the shell's ``case``, matching what ``fnmatch``
    matches; None for one this cannot promise that for (a character the shell treats
    specially, an escape, or a bracket that does not close)."""
    if not alias or not set(alias) <= _GLOB_SAFE:
        return None
    rest = alias
    while "[" in rest:  # each [ opens a plain class that closes: read alike by both
        rest = rest[rest.index("[") + 1:]
        if rest.startswith(("]", "!]", "^")) or "]" not in rest:
            return None
        rest = rest[rest.index("]") + 1:]
    return alias


def _vendor(glob: str) -> str | None:
    """The bus-and-vendor start of a pattern (``pci:v00008086``), or None for one that
    matches devices of any vendor (a PCI class, a USB interface class)."""
    for bus, length in _VENDOR_PREFIX.items():
        if glob.startswith(bus):
            head = glob[:length]
            return head if len(head) == length and not set(head) & set("*?[") else None
    return None


def claims_script(ids: Mapping[str, list[str]]) -> str:
    """A shell function, ``claim MODALIAS``, that adds to ``$claimed`` (" a b ") each
    driver in ``ids`` (driver → its aliases) with an alias matching the device, and
    ``$with_ids``: the drivers it knows.

    Matching happens inside the shell (``case``), with no process per driver; the
    patterns are grouped by bus and vendor so a device is tried only against its own
    vendor's ids and the ids that name no vendor.
    """
    by_vendor: dict[str, dict[str, list[str]]] = {}
    any_vendor: dict[str, list[str]] = {}
    for driver in sorted(ids):
        for alias in ids[driver]:
            glob = alias_glob(alias)
            if glob is None:
                continue
            vendor = _vendor(glob)
            bucket = any_vendor if vendor is None else by_vendor.setdefault(vendor, {})
            bucket.setdefault(driver, []).append(glob)

    def cases(drivers: dict[str, list[str]], indent: str) -> list[str]:
        return [f'{indent}case $1 in {"|".join(globs)}) claimed="${{claimed}}{name} " ;; esac'
                for name, globs in drivers.items()]

    lines = ["# made by bootpull image build: which drivers claim a device, by its modalias",
             "claim() {", '    case $1 in']
    for vendor in sorted(by_vendor):
        lines += [f"    {vendor}*)", *cases(by_vendor[vendor], "        "), "        ;;"]
    lines += ["    esac", *cases(any_vendor, "    "), "}"]
    named = sorted({name for bucket in (*by_vendor.values(), any_vendor) for name in bucket})
    lines += ["# the drivers claim() knows; any other is loaded whatever the devices",
              f'with_ids=" {" ".join(named)} "', ""]
    return "\n".join(lines)


def module_order(wanted: tuple[str, ...], depends: Mapping[str, list[str]]) -> list[str]:
    """The wanted modules and everything they need, each after its dependencies.

    ``depends`` maps a module name to the names in its ``depends=`` field. A name that
    is not in ``depends`` at all is unknown and refused (it may be built in: then it
    should not be asked for).
    """
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in visiting:
            raise KernelError(f"module dependency cycle: {' -> '.join((*chain, name))}")
        if name not in depends:
            raise KernelError(f"module {name!r} is not in the kernel package",
                              why=f"needed by {' -> '.join(chain) or 'the image'}",
                              hint="check the kernel config: it may be built in")
        visiting.add(name)
        for dep in sorted(depends[name]):
            visit(dep, (*chain, name))
        visiting.discard(name)
        order.append(name)

    for name in wanted:
        visit(name, ())
    return order


def module_name(filename: str) -> str:
    """``virtio_net.ko`` → ``virtio_net`` (modinfo names use underscores)."""
    base = filename.rsplit("/", 1)[-1]
    for suffix in (".ko.xz", ".ko.zst", ".ko"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return base.replace("-", "_")
