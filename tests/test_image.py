"""The boot image builder: pure parts (cpio, kernel, trim, ISO config) and a real build.

The real build is the session's one image (``lab_image_dir``, shared with the QEMU
scenarios); the reproducibility test builds a second one and compares bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import lzma
import re
import shlex
import shutil
import stat
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
from bootpull.console import Console
from bootpull_image import cpio, kernel, trim
from bootpull_image.iso import boot_config
from hypothesis import given, settings
from hypothesis import strategies as st

# -- cpio ---------------------------------------------------------------------------------

_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=12)
_paths = st.lists(_names, min_size=1, max_size=3).map("/".join)
_entries = st.dictionaries(
    _paths,
    st.tuples(st.sampled_from([stat.S_IFREG | 0o644, stat.S_IFREG | 0o755, stat.S_IFDIR | 0o755,
                               stat.S_IFLNK | 0o777]), st.binary(max_size=300)),
    max_size=12,
)


@given(_entries, st.integers(min_value=0, max_value=2**31))
def test_cpio_roundtrip_and_order_independence(entries: dict[str, tuple[int, bytes]],
                                               mtime: int) -> None:
    items = [cpio.Entry(path, mode, b"" if stat.S_ISDIR(mode) else data)
             for path, (mode, data) in entries.items()]
    archive = cpio.encode(items, mtime)
    assert cpio.encode(list(reversed(items)), mtime) == archive  # sorted: order-free
    assert len(archive) % 4 == 0
    assert cpio.decode(archive) == sorted(items, key=lambda e: e.path)


def test_cpio_refuses_duplicates_and_bad_magic() -> None:
    entry = cpio.Entry("a", stat.S_IFREG | 0o644, b"x")
    with pytest.raises(ValueError, match="duplicate"):
        cpio.encode([entry, entry], 0)
    with pytest.raises(ValueError, match="bad cpio magic"):
        cpio.decode(b"070702" + b"0" * 200)


def test_cpio_walk_keeps_modes_and_links(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "tool").write_bytes(b"#!/bin/sh\n")
    (tmp_path / "bin" / "tool").chmod(0o755)
    (tmp_path / "bin" / "sh").symlink_to("tool")
    got = {e.path: e for e in cpio.walk(tmp_path)}
    assert stat.S_IMODE(got["bin/tool"].mode) == 0o755
    assert stat.S_ISLNK(got["bin/sh"].mode) and got["bin/sh"].data == b"tool"
    assert stat.S_ISDIR(got["bin"].mode)


# -- the kernel ----------------------------------------------------------------------------

FAKE_ELF = b"\x7fELF\x02\x01\x01" + b"\0" * 57 + b"kernel text" * 100


def _bzimage(payload: bytes, *, setup_sects: int = 4, version: int = 0x20F) -> bytes:
    head = bytearray((setup_sects + 1) * 512)
    head[0x1F1] = setup_sects
    head[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", head, 0x206, version)
    struct.pack_into("<II", head, 0x248, 16, len(payload))
    return bytes(head) + b"\0" * 16 + payload + b"\0\0\0\0"


def test_extract_vmlinux_from_an_xz_bzimage() -> None:
    image = _bzimage(lzma.compress(FAKE_ELF, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32))
    assert kernel.payload(image)[0] == "xz"
    assert kernel.extract_vmlinux(image) == FAKE_ELF


def test_extract_vmlinux_refuses_what_is_not_a_kernel() -> None:
    with pytest.raises(kernel.KernelError, match="not an x86 bzImage") as info:
        kernel.extract_vmlinux(b"MZ" + b"\0" * 1000)
    assert "linux-image" in info.value.hint
    with pytest.raises(kernel.KernelError, match="too old"):
        kernel.extract_vmlinux(_bzimage(b"\xfd7zXZ\x00", version=0x206))
    with pytest.raises(kernel.KernelError, match="does not decompress"):
        kernel.extract_vmlinux(_bzimage(b"\xfd7zXZ\x00garbage"))
    not_elf = lzma.compress(b"plain text", format=lzma.FORMAT_XZ)
    with pytest.raises(kernel.KernelError, match="not an ELF"):
        kernel.extract_vmlinux(_bzimage(not_elf))


@given(st.binary(max_size=2048))
def test_hostile_kernel_bytes_raise_only_kernel_errors(data: bytes) -> None:
    for candidate in (data, _bzimage(data)):
        with contextlib.suppress(kernel.KernelError):
            kernel.extract_vmlinux(candidate)
    with contextlib.suppress(kernel.KernelError):
        kernel.modinfo(b"\x7fELF\x02\x01" + data)



@given(st.binary(max_size=2048), st.integers(1, 30))
def test_any_kernel_inside_a_bzimage_comes_out_whole(body: bytes, setup_sects: int) -> None:
    """The robustness test above, paired: what extract_vmlinux returns is the ELF inside."""
    elf = FAKE_ELF[:64] + body
    image = _bzimage(lzma.compress(elf, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32),
                     setup_sects=setup_sects)
    assert kernel.extract_vmlinux(image) == elf


def _elf_with_sections(sections: dict[str, bytes]) -> bytes:
    """A minimal 64-bit little-endian ELF: the given sections, then .shstrtab."""
    names = [*sections, ".shstrtab"]
    shstrtab = b"\0" + b"".join(n.encode() + b"\0" for n in names)
    blobs = [*sections.values(), shstrtab]
    body, offsets, at = b"", [], 64
    for blob in blobs:
        offsets.append(at + len(body))
        body += blob
    shoff = 64 + len(body)
    head = bytearray(64)
    head[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", head, 0x28, shoff)
    struct.pack_into("<HHH", head, 0x3A, 64, len(blobs) + 1, len(blobs))
    table = bytes(64)  # section 0 is empty
    name_at = 1
    for name, blob, offset in zip(names, blobs, offsets, strict=True):
        entry = bytearray(64)
        struct.pack_into("<I", entry, 0, name_at)
        struct.pack_into("<QQ", entry, 0x18, offset, len(blob))
        table += bytes(entry)
        name_at += len(name) + 1
    return bytes(head) + body + table


_FIELD = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="="),
                 min_size=1, max_size=12)


@given(st.dictionaries(_FIELD, _FIELD.filter(lambda v: "\0" not in v), max_size=8),
       st.lists(_FIELD, max_size=4))
def test_modinfo_and_aliases_read_back_what_the_module_carries(
        fields: dict[str, str], aliases: list[str]) -> None:
    """Paired with the robustness test: .modinfo's fields come back exactly."""
    fields = {k: v for k, v in fields.items() if k != "alias"}
    items = [f"{k}={v}" for k, v in fields.items()] + [f"alias={a}" for a in aliases]
    ko = _elf_with_sections({".text": b"\x90" * 16,
                             ".modinfo": b"".join(i.encode() + b"\0" for i in items)})
    got = kernel.modinfo(ko)
    assert {k: v for k, v in got.items() if k != "alias"} == fields
    assert kernel.aliases(ko) == aliases

def test_module_order_puts_dependencies_first() -> None:
    deps = {"virtio_net": ["net_failover", "virtio", "virtio_ring"], "net_failover": ["failover"],
            "failover": [], "virtio": [], "virtio_ring": [], "ext4": ["jbd2", "mbcache"],
            "jbd2": [], "mbcache": []}
    order = kernel.module_order(("virtio_net", "ext4"), deps)
    assert set(order) == set(deps)
    for name, needs in deps.items():
        assert all(order.index(dep) < order.index(name) for dep in needs)


def test_module_order_names_unknown_modules_and_cycles() -> None:
    with pytest.raises(kernel.KernelError, match="'virtio_net' is not in the kernel package"):
        kernel.module_order(("virtio_net",), {})
    with pytest.raises(kernel.KernelError, match="cycle: a -> b -> a"):
        kernel.module_order(("a",), {"a": ["b"], "b": ["a"]})


BUSYBOX = shutil.which("busybox")


def _claimed(script: str, modaliases: list[str]) -> list[str]:
    """What claim() of a claims.sh says for each modalias, run by busybox's own shell."""
    assert BUSYBOX is not None, "busybox is not installed (the test setup installs it)"
    body = script + "".join(f'claimed=" "; claim {shlex.quote(a)}; echo "$claimed"\n'
                            for a in modaliases)
    out = subprocess.run([BUSYBOX, "sh", "-c", body], capture_output=True, text=True,
                         check=True).stdout
    return [line.strip() for line in out.splitlines()]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.text(alphabet="pciusbvd0123456789ABCDEF:*?[]!-^,", max_size=24),
                          st.text(alphabet="pciusbvd0123456789ABCDEF:[]!-^,", max_size=24)),
                min_size=1, max_size=20))
def test_claims_match_what_fnmatch_matches(pairs: list[tuple[str, str]]) -> None:
    """The shell's case, as claim() uses it, and fnmatch (what modprobe uses) agree on
    every alias the build keeps."""
    import fnmatch

    kept = [(alias, modalias) for alias, modalias in pairs if kernel.alias_glob(alias)]
    if not kept:
        return
    ids = {f"m{n}": [alias] for n, (alias, _) in enumerate(kept)}
    got = _claimed(kernel.claims_script(ids), [modalias for _, modalias in kept])
    for n, ((alias, modalias), line) in enumerate(zip(kept, got, strict=True)):
        assert (f"m{n}" in line.split()) == fnmatch.fnmatchcase(modalias, alias), (alias,
                                                                                   modalias)


def test_claims_group_by_vendor_and_keep_the_ids_of_any_vendor() -> None:
    ids = {"e1000": ["pci:v00008086d0000100Esv*sd*bc*sc*i*"],
           "virtio_net": ["virtio:d00000001v*"],
           "ahci": ["pci:v*d*sv*sd*bc01sc06i01*"],
           "r8152": ["usb:v0BDAp8152d*dc*dsc*dp*ic*isc*ip*in*"],
           "odd": ["pci:v0000(12)*", "pci:v0000[12*"],  # none kept: always loaded
           "jbd2": []}
    script = kernel.claims_script(ids)
    assert "    pci:v00008086*)" in script and "    usb:v0BDA*)" in script
    assert 'with_ids=" ahci e1000 r8152 virtio_net "' in script
    assert _claimed(script, [
        "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00",  # QEMU's e1000
        "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01",  # QEMU's ICH9 AHCI
        "virtio:d00000001v00001AF4",
        "usb:v0BDAp8153d3000dc00dsc00dp00icFFisc00ip00in00",  # an RTL8153: not r8152's
        "pci:v000010ECd00008139sv00001AF4sd00001100bc02sc00i00"]) == [
        "e1000", "ahci", "virtio_net", "", ""]


def test_alias_glob_leaves_out_what_the_shell_would_read_otherwise() -> None:
    assert kernel.alias_glob("pci:v00001AF4d*") == "pci:v00001AF4d*"
    assert kernel.alias_glob("pci:v0000[12]*") == "pci:v0000[12]*"
    for odd in ("pci:v0000[12*", "pci:v0000(12)*", "a b", "pci:$x", "usb:v[]a]", "x[^a]",
                "x[!]a]", "x\\y", ""):
        assert kernel.alias_glob(odd) is None, odd


def test_module_name() -> None:
    assert kernel.module_name("kernel/drivers/net/virtio_net.ko") == "virtio_net"
    assert kernel.module_name("crc32c-generic.ko.xz") == "crc32c_generic"


# -- what is trimmed -----------------------------------------------------------------------


@pytest.mark.parametrize(("path", "dropped"), [
    ("usr/lib/python3.11/test/test_os.py", True),
    ("usr/lib/python3.11/tkinter/__init__.py", True),
    ("usr/lib/python3.11/lib-dynload/_testcapi.cpython-311-x86_64-linux-gnu.so", True),
    ("usr/lib/python3.11/lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so", False),
    ("usr/lib/python3.11/encodings/cp1250.py", True),
    ("usr/lib/python3.11/encodings/utf_8.py", False),
    ("usr/lib/python3.11/encodings/idna.py", False),
    ("usr/lib/python3.11/json/decoder.py", False),
    ("usr/lib/python3/dist-packages/dulwich/tests/test_repo.py", True),
    ("usr/lib/python3/dist-packages/scapy/layers/dhcp.py", False),
    ("usr/lib/python3/dist-packages/scapy/layers/kerberos.py", True),
    ("usr/lib/python3/dist-packages/scapy/contrib/bgp.py", True),
    ("usr/lib/python3/dist-packages/bootpull/pipeline.py", False),
    ("usr/lib/python3/dist-packages/dns/resolver.py", False),
    ("usr/lib/python3/dist-packages/tuf-7.0.1.dist-info/METADATA", False),
    ("usr/lib/python3/dist-packages/tuf-7.0.1.dist-info/RECORD", True),
    ("usr/lib/python3/dist-packages/requests/README.md", True),
    ("usr/share/doc/libc6/copyright", True),
    ("usr/lib/python3.11/unittest/mock.py", True),
    ("usr/lib/python3.11/xml/dom/minidom.py", True),
    ("usr/lib/python3.11/xml/etree/ElementTree.py", False),
    ("usr/lib/python3/dist-packages/cffi/api.py", True),
    ("usr/lib/python3/dist-packages/_cffi_backend.cpython-311-x86_64-linux-gnu.so", False),
    ("usr/lib/python3/dist-packages/cffi-2.1.1.dist-info/METADATA", False),
    ("usr/lib/python3/dist-packages/dulwich/_diff_tree.cpython-311-x86_64-linux-gnu.so",
     True),
    ("usr/lib/python3/dist-packages/dulwich/_pack.cpython-311-x86_64-linux-gnu.so", False),
])
def test_trim_rules(path: str, dropped: bool) -> None:
    reason = trim.reason_to_drop(path)
    assert (reason is not None) == dropped, reason
    if dropped:
        assert reason  # every removal says why (docs/image.md lists them)


def test_iso_boot_config_follows_the_console() -> None:
    cfg = boot_config("ttyS1,9600")
    assert "SERIAL 1 9600" in cfg
    assert "console=ttyS1,9600" in cfg and "bootpull.console=ttyS1,9600" in cfg
    assert "rootfstype=ramfs" in cfg and "initrd=/boot/initrd.img" in cfg


# -- a real build (the session's image) ----------------------------------------------------


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def initramfs(lab_image_dir: Path) -> dict[str, cpio.Entry]:
    raw = subprocess.run(["lz4", "-dc", str(lab_image_dir / "initrd.img")], check=True,
                         capture_output=True).stdout
    return {entry.path: entry for entry in cpio.decode(raw)}


@pytest.mark.slow
def test_build_outputs(lab_image_dir: Path, initramfs: dict[str, cpio.Entry],
                       lab_manifest: dict[str, Any]) -> None:
    assert (lab_image_dir / "vmlinuz").read_bytes()[0x202:0x206] == b"HdrS"
    assert (lab_image_dir / "vmlinux").read_bytes()[:4] == b"\x7fELF"
    # lz4 legacy frame: the format the kernel's initramfs unpacker reads
    assert (lab_image_dir / "initrd.img").read_bytes()[:4] == bytes.fromhex("02214c18")
    init = initramfs["init"]
    assert stat.S_IMODE(init.mode) & 0o111 and init.data.startswith(b"#!/bin/sh")
    assert initramfs["bin/sh"].data == b"busybox"
    listed = [line.split() for line in initramfs["lib/modules/load.list"].data.decode()
              .splitlines()]
    order = [fields[1] for fields in listed]
    assert listed[:2] == [["early", "loop"], ["early", "squashfs"]]
    assert any(f[:2] == ["net", "virtio_net"] and set(f[2].split(",")) >= {"net_failover"}
               for f in listed)
    assert any(f[:2] == ["disk", "ext4"] for f in listed)
    # a module only others need is loaded only with one of them
    assert any(f[:2] == ["dep", "mdio"] for f in listed)
    assert order.index("virtio_ring") < order.index("virtio_net")
    assert "virtio_pci" in order and "ext4" in order
    # the two that mount the squashfs are in the initramfs; the rest are links into it
    assert kernel.modinfo(initramfs["lib/modules/squashfs.ko"].data)["name"] == "squashfs"
    claims = initramfs["lib/modules/claims.sh"].data.decode()
    assert _claimed(claims, [
        "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",  # a virtio NIC
        "virtio:d00000001v00001AF4",
        "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00",  # QEMU's default e1000
        "pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00"]) == [  # its e1000e
        "virtio_pci", "virtio_net", "e1000", "e1000e"]
    with_ids = re.search(r'with_ids=" (.*) "', claims)
    assert with_ids is not None and {"e1000e", "igb", "r8169"} <= set(with_ids[1].split())
    # the kernel modules and mke2fs (read whole, seldom) in the xz squashfs; what Python
    # maps (the libraries, the extensions, OpenSSL) in the zstd one; the interpreter and
    # its loader stay unpacked
    assert initramfs["usr/lib/modules/virtio_net.ko"].data == \
        b"/lib/bootpull/rare/usr/lib/modules/virtio_net.ko"
    assert initramfs["sbin/mke2fs"].data == b"/lib/bootpull/rare/sbin/mke2fs"
    assert initramfs["lib/x86_64-linux-gnu/libext2fs.so.2"].data.startswith(b"/lib/bootpull/rare/")
    for real in ("usr/bin/python3.11", "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"):
        assert stat.S_ISREG(initramfs[real].mode), real
    for mapped in ("lib/x86_64-linux-gnu/libc.so.6", "usr/lib/x86_64-linux-gnu/libcrypto.so.3",
                   "usr/lib/python3/dist-packages/cryptography/hazmat/bindings/_rust.abi3.so"):
        assert initramfs[mapped].data == f"/lib/bootpull/binaries/{mapped}".encode(), mapped
    assert initramfs["lib/bootpull/binaries.sqfs"].data[:4] == b"hsqs"
    assert initramfs["lib/bootpull/rare.sqfs"].data[:4] == b"hsqs"
    assert lab_manifest["binaries"]["options"][:2] == ["-comp", "zstd"]
    assert lab_manifest["rare"]["options"][:2] == ["-comp", "xz"]
    # precompiled: the stdlib and the dependencies as bytecode, bootpull with its sources
    assert "usr/lib/python3.11/json/decoder.pyc" in initramfs
    # compiled without column tables (-X no_debug_ranges): line numbers only
    import marshal

    code = marshal.loads(initramfs["usr/lib/python3.11/json/decoder.pyc"].data[16:])
    positions = [p for c in [code, *(k for k in code.co_consts if hasattr(k, "co_positions"))]
                 for p in c.co_positions()]
    assert any(line for line, *_ in positions)
    assert all(col is None for _l, _e, col, _ec in positions)
    assert b"Emptied" in initramfs["usr/lib/python3/dist-packages/scapy/libs/bluetoothids.pyc"].data
    assert "usr/lib/python3.11/json/decoder.py" not in initramfs
    assert "usr/lib/python3/dist-packages/bootpull/pipeline.py" in initramfs
    assert not any(p.startswith("usr/lib/python3.11/test/") for p in initramfs)
    conf = initramfs["etc/bootpull/image.conf"].data.decode()
    assert "NODE_COMMAND=run" in conf and "IMAGE_CONSOLE=ttyS0,115200" in conf


@pytest.mark.slow
def test_manifest_matches_the_image(lab_image_dir: Path, lab_manifest: dict[str, Any],
                                    initramfs: dict[str, cpio.Entry], tmp_path: Path) -> None:
    for name in ("vmlinuz", "vmlinux", "initrd.img"):
        data = (lab_image_dir / name).read_bytes()
        assert lab_manifest["outputs"][name] == {"size": len(data), "sha256": _sha(data)}
    files = lab_manifest["files"]
    regular = {p: e for p, e in initramfs.items() if stat.S_ISREG(e.mode)}
    assert set(regular) <= set(files)
    for path, entry in regular.items():
        assert files[path]["size"] == len(entry.data), path
        assert files[path]["sha256"] == _sha(entry.data), path
    # the two squashfs: every file in them is in the manifest, and every link into them
    # resolves
    packed: dict[str, Path] = {}
    for pack in ("binaries", "rare"):
        sqfs = tmp_path / f"{pack}.sqfs"
        sqfs.write_bytes(initramfs[f"lib/bootpull/{pack}.sqfs"].data)
        assert files[f"lib/bootpull/{pack}.sqfs"]["holds"] == f"lib/bootpull/{pack}/"
        subprocess.run(["unsquashfs", "-q", "-n", "-d", str(tmp_path / pack), str(sqfs)],
                       check=True, capture_output=True)
        mine = {f"lib/bootpull/{pack}/{p.relative_to(tmp_path / pack).as_posix()}": p
                for p in (tmp_path / pack).rglob("*") if p.is_file()}
        assert len(mine) > 5, pack
        packed |= mine
    assert set(packed) <= set(files)
    for path, real in packed.items():
        assert files[path]["sha256"] == _sha(real.read_bytes()), path
    links = [e.data.decode() for e in initramfs.values() if stat.S_ISLNK(e.mode)
             and e.data.startswith((b"/lib/bootpull/binaries/", b"/lib/bootpull/rare/"))]
    assert sorted(link.lstrip("/") for link in links) == sorted(packed)
    debian = lab_manifest["packages"]["debian"]
    assert any(name.startswith("linux-image-") for name in debian)
    assert debian["python3.11-minimal"].startswith("3.11")
    python = lab_manifest["packages"]["python"]
    for dep in ("dulwich", "dnspython", "scapy", "pyserial", "urllib3", "cryptography", "tuf",
                "securesystemslib", "bootpull"):
        assert python[dep], dep
    assert "requests" not in python  # the node does not import it (report uses urllib3)
    assert lab_manifest["removed"]["by_reason"]
    unpacked = sum(len(e.data) for p, e in regular.items()
                   if p not in ("lib/bootpull/binaries.sqfs", "lib/bootpull/rare.sqfs"))
    assert sum(p["size"] for p in lab_manifest["components"].values()) == \
        unpacked + sum(real.stat().st_size for real in packed.values())


@pytest.mark.slow
def test_trust_anchors_are_baked_in(lab_template: Any, lab_manifest: dict[str, Any],
                                    initramfs: dict[str, cpio.Entry]) -> None:
    trust = lab_template.trust.read_bytes()
    assert initramfs["etc/bootpull/trust.json"].data == trust
    assert lab_manifest["trust"] == {"path": "/etc/bootpull/trust.json", "sha256": _sha(trust)}
    json.loads(trust)


@pytest.mark.slow
def test_size_budget(lab_manifest: dict[str, Any]) -> None:
    """A regression guard on the compressed size (the benchmark reports the figure)."""
    outputs = lab_manifest["outputs"]
    total = outputs["vmlinuz"]["size"] + outputs["initrd.img"]["size"]
    assert total <= 30 * 10**6, f"vmlinuz + initrd.img = {total / 1e6:.1f} MB"


@pytest.mark.slow
def test_two_builds_are_byte_identical(lab_image_dir: Path, lab_template: Any,
                                       node_source: Path, site_pki: Any,
                                       tmp_path: Path) -> None:
    from bootpull_image.build import build_image
    from bootpull_image.settings import BuildSettings

    again = tmp_path / "again"  # the settings of lab_image_dir (tests/lab_fixtures.py)
    build_image(BuildSettings(out=again, trust=lab_template.trust, source_date_epoch=1700000000,
                              node_source=node_source, ca=(site_pki.ca_file,)), Console())
    first = json.loads((lab_image_dir / "manifest.json").read_text())["files"]
    second = json.loads((again / "manifest.json").read_text())["files"]
    differ = sorted(p for p in set(first) | set(second) if first.get(p) != second.get(p))
    assert not differ, f"{len(differ)} files differ, e.g. {differ[:10]}"
    for name in ("vmlinuz", "vmlinux", "initrd.img", "manifest.json"):
        assert _sha((again / name).read_bytes()) == _sha((lab_image_dir / name).read_bytes()), \
            name


@pytest.mark.slow
def test_iso_is_reproducible(lab_image_dir: Path, tmp_path: Path) -> None:
    from bootpull_image import iso

    digests = []
    for n in (1, 2):
        out = tmp_path / f"out{n}"
        out.mkdir()
        for name in ("vmlinuz", "initrd.img"):
            (out / name).symlink_to(lab_image_dir / name)
        made = iso.make(out, tmp_path / f"work{n}", "ttyS0,115200", 1700000000)
        digests.append(_sha(made.read_bytes()))
        assert made.read_bytes()[0x8001:0x8006] == b"CD001"
    assert digests[0] == digests[1]


@pytest.mark.slow
@pytest.mark.qemu
def test_iso_boots_to_the_init(lab_image_dir: Path, tmp_path: Path) -> None:
    """BIOS → isolinux → vmlinuz + initrd.img from the CD, console on the serial port,
    through the init's mount of the squashfs and its module loading."""
    import os
    import time

    from bootpull_image import iso
    from bootpull_lab.accel import choose

    out = tmp_path / "out"
    out.mkdir()
    for name in ("vmlinuz", "vmlinux", "initrd.img"):
        (out / name).symlink_to(lab_image_dir / name)
    image = iso.make(out, tmp_path / "work", "ttyS0,115200", 1700000000)
    argv = ["qemu-system-x86_64", "-M", "pc", "-accel", choose(out / "vmlinux"), "-m", "256",
            "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
            "-cdrom", str(image), "-boot", "d"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    seen = b""
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and b"modules loaded" not in seen:
            seen += proc.stdout.read() or b""
            time.sleep(0.5)
    finally:
        proc.kill()
        proc.wait()
    assert b"modules loaded: " in seen, seen[-2000:].decode(errors="replace")
    # no NIC at all: no driver matches, so the init falls back to loading every one
    assert b"no NIC matched a driver's ids: loading every NIC driver" in seen
    assert b"IMAGE IS BROKEN" not in seen


@pytest.mark.slow
def test_the_drivers_field_boxes_need_are_in_the_image(lab_manifest: dict[str, Any],
                                                       initramfs: dict[str, cpio.Entry]) -> None:
    modules = set(lab_manifest["kernel"]["modules"])
    wanted = {"e1000", "e1000e", "igb", "igc", "ixgbe", "i40e", "r8169", "8139too", "tg3",
              "bnx2", "vmxnet3", "virtio_net", "r8152", "ax88179_178a", "cdc_ether",
              "rndis_host", "ahci", "nvme", "sd_mod", "usb_storage", "uas", "mmc_block",
              "sdhci_pci", "virtio_blk", "virtio_scsi", "xhci_pci", "ext4"}
    assert wanted <= modules, wanted - modules
    groups = {line.split()[1]: line.split()[0] for line in
              initramfs["lib/modules/load.list"].data.decode().splitlines()}
    assert groups["xhci_pci"] == "usb" and groups["r8152"] == "usbnet"
    assert groups["nvme"] == "disk" and groups["igb"] == "net"
    # coldplug: USB drivers match USB ids, and the helpers have none (always loaded)
    claims = initramfs["lib/modules/claims.sh"].data.decode()
    assert _claimed(claims, ["usb:v0BDAp8153d3000dc00dsc00dp00icFFisc00ip00in00"]) == [
        "r8152"]
    assert " jbd2 " not in claims.split("with_ids=")[1]
    assert stat.S_ISLNK(initramfs["sbin/mke2fs"].mode)  # packed, for blank state disks


@pytest.mark.slow
def test_modules_and_firmware_can_be_added(lab_template: Any, node_source: Path,
                                           tmp_path: Path) -> None:
    from bootpull_image.build import BuildError, build_image
    from bootpull_image.settings import BuildSettings

    firmware = tmp_path / "firmware"
    (firmware / "rtl_nic").mkdir(parents=True)
    (firmware / "rtl_nic" / "rtl8168h-2.fw").write_bytes(b"firmware bytes")
    out = tmp_path / "image"
    manifest = build_image(BuildSettings(out=out, trust=lab_template.trust,
                                         source_date_epoch=1700000000, node_source=node_source,
                                         modules=("atlantic",), firmware=firmware), Console())
    assert "atlantic" in manifest["kernel"]["modules"]
    assert manifest["files"]["lib/firmware/rtl_nic/rtl8168h-2.fw"]["size"] == 14
    with pytest.raises(BuildError) as err:
        build_image(BuildSettings(out=tmp_path / "bad", trust=lab_template.trust,
                                  node_source=node_source, modules=("no_such_driver",)),
                    Console())
    assert "--modules" in err.value.what and "no_such_driver" in err.value.what
