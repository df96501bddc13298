"""``bootpull image netboot``: a TFTP/HTTP tree that boots the image over the network.

From a built image (``vmlinuz``, ``initrd.img``, ``manifest.json``) it writes:

- ``undionly.kpxe`` (BIOS PXE), ``ipxe.efi`` and ``snponly.efi`` (UEFI), copied from
  Debian's ``ipxe`` package: what PXE firmware loads first, over TFTP;
- ``boot.ipxe``: the iPXE script. It loads ``vmlinuz`` and ``initrd.img`` by URLs
  relative to its own, so the same tree works over TFTP and over HTTP, with the
  image's kernel arguments (``iso.kernel_cmdline`` + ``bootpull.console=``, as the ISO);
- ``vmlinuz`` and ``initrd.img``;
- ``dnsmasq.conf`` and ``kea-dhcp4.json``: the DHCP lines that chain all this (iPXE
  known by option 175 or user class ``iPXE`` gets the script, never a binary again;
  BIOS (client-arch 0) gets ``undionly.kpxe``, UEFI (7, 9) ``ipxe.efi``; UEFI HTTP
  Boot (vendor class ``HTTPClient``, client-arch 16) the URL of ``ipxe.efi``, with
  option 60 ``HTTPClient`` echoed, when an HTTP base URL is known);
- ``netboot.json``: every file of the tree with its size and SHA-256, and where it
  came from.

Why a subcommand of its own and not ``image build --netboot DIR``: the tree is made
from a finished image and from site facts (the HTTP base URL, where the TFTP root
will be) that have nothing to do with building it. A separate step turns an image
that was built (and tested) once into trees for several sites without rebuilding
it, and the build's steps stay what they are.

The tree is reproducible: its contents depend only on the image, the ipxe package
and the options; every file's mtime is the image's ``source_date_epoch``; no
timestamp is written anywhere.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bootpull.errors import BootpullError, UsageError

from bootpull_image import iso

IPXE_DIR = Path("/usr/lib/ipxe")
#: what PXE firmware loads: BIOS (UNDI), UEFI (its own drivers), UEFI (the firmware's SNP)
IPXE_FILES = ("undionly.kpxe", "ipxe.efi", "snponly.efi")
IMAGE_FILES = ("vmlinuz", "initrd.img")
SCRIPT = "boot.ipxe"
DNSMASQ_CONF = "dnsmasq.conf"
KEA_CONF = "kea-dhcp4.json"
MANIFEST = "netboot.json"
#: DHCP option 93 (RFC 4578) values
ARCH_BIOS = 0
ARCH_EFI64 = (7, 9)
ARCH_EFI64_HTTP = 16
#: option 60 of a UEFI HTTP Boot client starts with this; the server echoes it
HTTP_CLIENT = "HTTPClient"
#: iPXE's "ignore ProxyDHCP" setting, inside its option 175
IPXE_NO_PXEDHCP = 176
#: dnsmasq tags and Kea classes (prefixed: they share a server with other sites' lines)
TAG = "bootpull-netboot"
# RFC 3986 characters, minus what dnsmasq, Kea's JSON or iPXE could not carry as is
# (quotes, backslash, comma, space, '$' (iPXE settings), '#' and '?')
_URL_CHARS = re.compile(r"^[A-Za-z0-9\-._~:/\[\]@!&'()*+;=%]+$")


class NetbootError(BootpullError):
    stage = "image"


@dataclass(frozen=True)
class Site:
    """Where the tree will be served from."""

    #: the HTTP base (``http://HOST/PATH/``, ending in ``/``), or None: TFTP only
    url: str | None
    #: the directory dnsmasq serves over TFTP (``tftp-root=``)
    tftp_root: str
    #: the TFTP server's address for Kea's ``next-server`` (dnsmasq is its own)
    tftp_server: str | None


def parse_base_url(text: str) -> str:
    """``--netboot-url``: an ``http://HOST[:PORT]/PATH/`` base, returned ending in ``/``."""
    parts = urlsplit(text)
    if parts.scheme != "http" or not parts.hostname:
        raise UsageError(f"--netboot-url {text!r} is not an http:// URL with a host",
                         hint="give the HTTP base the tree is served at, as in "
                         "http://10.0.0.1/bootpull/ (firmware HTTP boot and iPXE's "
                         "script fetch use plain http here)")
    if parts.query or parts.fragment or not _URL_CHARS.match(text):
        raise UsageError(f"--netboot-url {text!r} has a query, a fragment or characters "
                         "a DHCP server's configuration cannot carry",
                         hint="use a plain http://HOST/PATH/ URL")
    return text if text.endswith("/") else text + "/"


def make_site(url: str | None, tftp_root: Path | str, tftp_server: str | None = None) -> Site:
    base = None if url is None else parse_base_url(url)
    if tftp_server is None and base is not None:
        host = urlsplit(base).hostname or ""
        try:
            if ipaddress.ip_address(host).version == 4:
                tftp_server = host
        except ValueError:
            pass
    elif tftp_server is not None:
        try:
            ipaddress.IPv4Address(tftp_server)
        except ValueError:
            raise UsageError(f"--tftp-server {tftp_server!r} is not an IPv4 address",
                             hint="the address PXE firmware fetches the first binary "
                             "from (BOOTP next-server)") from None
    root = str(tftp_root)
    if not root.startswith("/") or any(c in root for c in ",\n\"'") or " " in root:
        raise UsageError(f"--tftp-root {root!r} is not an absolute path dnsmasq can take",
                         hint="an absolute path without spaces, commas or quotes")
    return Site(base, root, tftp_server)


def image_cmdline(console: str) -> str:
    """The kernel arguments of ``boot.ipxe``: the ISO's (``iso.boot_config``), with
    ``initrd=`` naming the file iPXE loads (the UEFI stub finds it by that name)."""
    return (f"initrd=initrd.img {iso.kernel_cmdline(console)} "
            f"bootpull.console={console}")


def boot_script(console: str) -> str:
    """``boot.ipxe``: relative URLs resolve against the script's own (TFTP or HTTP)."""
    return (
        "#!ipxe\n"
        "# bootpull boot image (made by 'bootpull image netboot'). vmlinuz and\n"
        "# initrd.img are fetched relative to this script's own URL: over TFTP when it\n"
        "# came over TFTP, over HTTP when it came over HTTP.\n"
        "echo bootpull: loading vmlinuz and initrd.img\n"
        f"kernel vmlinuz {image_cmdline(console)}\n"
        "initrd initrd.img\n"
        "boot\n"
    )


def _script_location(site: Site) -> str:
    return SCRIPT if site.url is None else site.url + SCRIPT


def dnsmasq_conf(site: Site) -> str:
    """Lines for a dnsmasq that already hands out addresses (its ``dhcp-range``)."""
    t = TAG
    lines = [
        "# bootpull network boot: dnsmasq lines (made by 'bootpull image netboot').",
        "# Add them to a dnsmasq that hands out addresses on the nodes' network (its",
        "# dhcp-range), e.g. as /etc/dnsmasq.d/bootpull-netboot.conf.",
        "# Check: dnsmasq --test --conf-file=dnsmasq.conf",
        "#",
        "# TFTP from the tree: PXE firmware fetches its first binary over TFTP only.",
        "enable-tftp",
        f"tftp-root={site.tftp_root}",
        "# iPXE says so by option 175 or user class \"iPXE\": it gets the script, never a",
        "# binary again (no loop).",
        f"dhcp-match=set:{t}-ipxe,175",
        f"dhcp-userclass=set:{t}-ipxe,iPXE",
        "# The firmware's architecture, option 93 (RFC 4578): 0 BIOS, 7 and 9 x86-64",
        "# UEFI, 16 x86-64 UEFI HTTP Boot.",
        f"dhcp-match=set:{t}-bios,option:client-arch,{ARCH_BIOS}",
        *(f"dhcp-match=set:{t}-efi64,option:client-arch,{a}" for a in ARCH_EFI64),
        f"dhcp-match=set:{t}-efihttp,option:client-arch,{ARCH_EFI64_HTTP}",
        "# BIOS PXE: iPXE over the firmware's UNDI driver. UEFI PXE: iPXE for UEFI.",
        f"dhcp-boot=tag:{t}-bios,tag:!{t}-ipxe,undionly.kpxe",
        f"dhcp-boot=tag:{t}-efi64,tag:!{t}-ipxe,ipxe.efi",
        "# iPXE: the boot script (it loads vmlinuz and initrd.img next to itself), and",
        "# iPXE's no-pxedhcp (175.176 = 1): the boot file is here, so iPXE need not wait",
        "# for ProxyDHCP offers (without it each iPXE DHCP takes about 3 s longer).",
        f"dhcp-boot=tag:{t}-ipxe,{_script_location(site)}",
        f"dhcp-option=tag:{t}-ipxe,encap:175,{IPXE_NO_PXEDHCP},1",
    ]
    if site.url is not None:
        lines += [
            "# UEFI HTTP Boot: the firmware says vendor class HTTPClient (option 60) and",
            "# client-arch 16; it gets the URL of a bootable EFI binary (iPXE, which then",
            "# fetches the script as above), and option 60 HTTPClient back, without which",
            "# the firmware ignores the offer.",
            f"dhcp-vendorclass=set:{t}-httpclient,{HTTP_CLIENT}",
            f"dhcp-option-force=tag:{t}-efihttp,tag:{t}-httpclient,60,{HTTP_CLIENT}",
            f"dhcp-boot=tag:{t}-efihttp,tag:{t}-httpclient,{site.url}ipxe.efi",
        ]
    else:
        lines += ["# No UEFI HTTP Boot lines: they need the tree's HTTP URL (--netboot-url)."]
    return "\n".join(lines) + "\n"


def kea_fragment(site: Site) -> dict[str, Any]:
    """The ``option-def`` and ``client-classes`` to merge into kea-dhcp4's ``Dhcp4``."""
    t = TAG
    tftp = {} if site.tftp_server is None else {"next-server": site.tftp_server}
    efi = " or ".join(f"option[93].hex == 0x{a:04x}" for a in ARCH_EFI64)
    classes: list[dict[str, Any]] = [
        {"name": f"{t}-ipxe",
         "test": "option[175].exists or option[77].hex == 'iPXE'",
         "boot-file-name": _script_location(site), **tftp,
         "option-data": [{"name": "ipxe-encap-opts"},
                         {"name": "ipxe-no-pxedhcp", "space": "ipxe", "data": "1"}]},
        {"name": f"{t}-bios",
         "test": f"option[93].hex == 0x{ARCH_BIOS:04x} and not member('{t}-ipxe')",
         "boot-file-name": "undionly.kpxe", **tftp},
        {"name": f"{t}-efi64",
         "test": f"({efi}) and not member('{t}-ipxe')",
         "boot-file-name": "ipxe.efi", **tftp},
    ]
    if site.url is not None:
        classes.append({
            "name": f"{t}-efihttp",
            "test": (f"option[93].hex == 0x{ARCH_EFI64_HTTP:04x} and "
                     f"substring(option[60].hex,0,{len(HTTP_CLIENT)}) == '{HTTP_CLIENT}'"),
            "boot-file-name": site.url + "ipxe.efi",
            "option-data": [{"name": "vendor-class-identifier", "data": HTTP_CLIENT,
                             "always-send": True}],
        })
    # iPXE's option 175 holds its own options; no-pxedhcp (176) is the one sent here
    option_defs = [
        {"name": "ipxe-encap-opts", "code": 175, "type": "empty", "encapsulate": "ipxe"},
        {"name": "ipxe-no-pxedhcp", "code": IPXE_NO_PXEDHCP, "space": "ipxe",
         "type": "uint8"},
    ]
    return {"option-def": option_defs, "client-classes": classes}


def kea_text(site: Site) -> str:
    """``kea-dhcp4.json``: the fragment, as JSON (Kea's own comments would not parse
    as JSON elsewhere; what to do with it is in docs/image.md)."""
    return json.dumps({"Dhcp4": kea_fragment(site)}, indent=2, sort_keys=True) + "\n"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ipxe_version(ipxe_dir: Path = IPXE_DIR) -> str | None:
    """The installed ipxe package's version (dpkg), for the manifest; None without dpkg
    or outside /usr/lib/ipxe."""
    if ipxe_dir != IPXE_DIR or shutil.which("dpkg-query") is None:
        return None
    proc = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "ipxe"],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() or None


def make(image: Path, out: Path, site: Site, ipxe_dir: Path = IPXE_DIR) -> dict[str, Any]:
    """Write the tree into ``out``; return its manifest (``netboot.json``)."""
    try:
        manifest = json.loads((image / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise NetbootError(f"{image} is not a bootpull image",
                           why=f"its manifest.json cannot be read ({exc})",
                           hint=f"build one: bootpull image build --out {image}") from None
    missing = [str(image / n) for n in IMAGE_FILES if not (image / n).is_file()]
    missing += [str(ipxe_dir / n) for n in IPXE_FILES if not (ipxe_dir / n).is_file()]
    if missing:
        raise NetbootError("cannot make the network boot tree",
                           why=f"missing: {', '.join(missing)}",
                           hint="apt-get install ipxe (for /usr/lib/ipxe), and build the "
                           "image first ('bootpull image build')")
    console = manifest.get("console") or "ttyS0,115200"
    epoch = int(manifest.get("source_date_epoch") or 0)
    out.mkdir(parents=True, exist_ok=True)
    for name in IPXE_FILES:
        shutil.copyfile(ipxe_dir / name, out / name)
    for name in IMAGE_FILES:
        shutil.copyfile(image / name, out / name)
    (out / SCRIPT).write_text(boot_script(console))
    (out / DNSMASQ_CONF).write_text(dnsmasq_conf(site))
    (out / KEA_CONF).write_text(kea_text(site))
    names = sorted([*IPXE_FILES, *IMAGE_FILES, SCRIPT, DNSMASQ_CONF, KEA_CONF])
    record: dict[str, Any] = {
        "format": 1,
        "image": {"bootpull": manifest.get("bootpull"),
                  "kernel": manifest.get("kernel", {}).get("version"),
                  "source_date_epoch": epoch,
                  "outputs": {n: manifest.get("outputs", {}).get(n) for n in IMAGE_FILES}},
        "ipxe": {"package": ipxe_version(ipxe_dir), "files": list(IPXE_FILES)},
        "cmdline": image_cmdline(console),
        "url": site.url,
        "tftp_root": site.tftp_root,
        "tftp_server": site.tftp_server,
        "files": {n: {"size": (out / n).stat().st_size, "sha256": _sha256(out / n)}
                  for n in names},
    }
    (out / MANIFEST).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    for name in [*names, MANIFEST]:
        (out / name).chmod(0o644)
        os.utime(out / name, (epoch, epoch))
    return record
