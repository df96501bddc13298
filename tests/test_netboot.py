"""``bootpull image netboot``: the tree, its iPXE script and the DHCP lines it prints.

The tree is made from a stand-in image (small ``vmlinuz``/``initrd.img`` and a
``manifest.json``); the DHCP lines are judged by the servers themselves (``dnsmasq
--test``, ``kea-dhcp4 -t`` on a complete configuration) and, in a network namespace,
by a real dnsmasq answering each kind of client (BIOS and UEFI PXE firmware, iPXE,
UEFI HTTP Boot, the node itself). The QEMU boots are in tests/test_netboot_qemu.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bootpull_image import iso, netboot
from bootpull_lab import netlab as lab_net
from bootpull_repo.site_config import dnsmasq as site_dnsmasq
from bootpull_repo.site_config import kea_fragment as site_kea_fragment
from bootpull_repo.site_config import make_site as make_repo_site

URL = "http://10.0.0.1:8000/bootpull/"
EPOCH = 1700000000

needs_ipxe = pytest.mark.skipif(
    not all((netboot.IPXE_DIR / n).is_file() for n in netboot.IPXE_FILES),
    reason="Debian's ipxe package is not installed (/usr/lib/ipxe)")
needs_kea = pytest.mark.skipif(shutil.which("kea-dhcp4") is None,
                               reason="kea-dhcp4 is not installed (apt kea-dhcp4-server)")
needs_dnsmasq = pytest.mark.skipif(shutil.which("dnsmasq") is None,
                                   reason="dnsmasq is not installed")

pytestmark = needs_ipxe


def fake_image(path: Path, console: str = "ttyS0,115200") -> Path:
    path.mkdir(parents=True)
    (path / "vmlinuz").write_bytes(b"MZ kernel stand-in\n")
    (path / "initrd.img").write_bytes(b"\x02\x21\x4c\x18 initramfs stand-in\n")
    (path / "manifest.json").write_text(json.dumps({
        "bootpull": "0.1.0", "console": console, "source_date_epoch": EPOCH,
        "kernel": {"version": "6.1.0-test-amd64", "cmdline": iso.kernel_cmdline(console)},
        "outputs": {"vmlinuz": {"size": 19, "sha256": "x"},
                    "initrd.img": {"size": 24, "sha256": "y"}}}))
    return path


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bootpull", "image", "netboot", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_tree_holds_ipxe_the_script_the_image_and_the_dhcp_lines(tmp_path: Path) -> None:
    image = fake_image(tmp_path / "image")
    out = tmp_path / "tree"
    proc = cli("--from", str(image), "--out", str(out), "--netboot-url", URL)
    assert proc.returncode == 0, proc.stderr
    names = {"undionly.kpxe", "ipxe.efi", "snponly.efi", "boot.ipxe", "vmlinuz",
             "initrd.img", "dnsmasq.conf", "kea-dhcp4.json", "netboot.json"}
    assert {p.name for p in out.iterdir()} == names
    for name in netboot.IPXE_FILES:  # Debian's binaries, as they are
        assert (out / name).read_bytes() == (netboot.IPXE_DIR / name).read_bytes()
    for name in netboot.IMAGE_FILES:
        assert (out / name).read_bytes() == (image / name).read_bytes()
    script = (out / "boot.ipxe").read_text()
    assert script.startswith("#!ipxe\n")
    # relative names: fetched next to the script, by whatever protocol brought it
    cmdline = f"initrd=initrd.img {iso.kernel_cmdline('ttyS0,115200')} " \
              "bootpull.console=ttyS0,115200"
    assert f"\nkernel vmlinuz {cmdline}\n" in script
    assert "\ninitrd initrd.img\n" in script and script.endswith("boot\n")
    assert "://" not in script
    record = json.loads((out / "netboot.json").read_text())
    assert set(record["files"]) == names - {"netboot.json"}
    assert record["files"]["boot.ipxe"]["size"] == len(script.encode())
    assert record["cmdline"] == cmdline and record["url"] == URL
    assert record["tftp_root"] == str(out.resolve()) and record["tftp_server"] == "10.0.0.1"
    conf = (out / "dnsmasq.conf").read_text()
    assert f"tftp-root={out.resolve()}\n" in conf
    assert f"dhcp-boot=tag:bootpull-netboot-ipxe,{URL}boot.ipxe\n" in conf
    assert "dhcp-boot=tag:bootpull-netboot-bios,tag:!bootpull-netboot-ipxe,undionly.kpxe\n" \
        in conf
    assert "dhcp-boot=tag:bootpull-netboot-efi64,tag:!bootpull-netboot-ipxe,ipxe.efi\n" in conf
    assert f",{URL}ipxe.efi\n" in conf and ",60,HTTPClient\n" in conf


def test_the_script_follows_the_images_console(tmp_path: Path) -> None:
    image = fake_image(tmp_path / "image", console="ttyS1,9600")
    netboot.make(image, tmp_path / "tree", netboot.make_site(None, tmp_path / "tree"))
    script = (tmp_path / "tree" / "boot.ipxe").read_text()
    assert "console=ttyS1,9600 rootfstype=ramfs quiet bootpull.console=ttyS1,9600" in script
    # the same arguments as the ISO's isolinux.cfg, but for the initrd= path
    append = iso.boot_config("ttyS1,9600").split("APPEND ", 1)[1].strip()
    assert script.split("kernel vmlinuz ", 1)[1].split("\n", 1)[0] == \
        append.replace("initrd=/boot/initrd.img", "initrd=initrd.img")


def test_without_a_url_it_is_tftp_only(tmp_path: Path) -> None:
    image = fake_image(tmp_path / "image")
    netboot.make(image, tmp_path / "tree", netboot.make_site(None, "/srv/tftp/bootpull"))
    conf = (tmp_path / "tree" / "dnsmasq.conf").read_text()
    assert "dhcp-boot=tag:bootpull-netboot-ipxe,boot.ipxe\n" in conf
    assert "HTTPClient" not in conf.replace("No UEFI HTTP Boot", "")
    assert "http://" not in conf
    kea = json.loads((tmp_path / "tree" / "kea-dhcp4.json").read_text())["Dhcp4"]
    assert [c["name"] for c in kea["client-classes"]] == [
        "bootpull-netboot-ipxe", "bootpull-netboot-bios", "bootpull-netboot-efi64"]
    assert all("next-server" not in c for c in kea["client-classes"])


def test_the_tree_is_reproducible(tmp_path: Path) -> None:
    image = fake_image(tmp_path / "image")
    trees = []
    for name in ("a", "b"):
        out = tmp_path / name
        proc = cli("--from", str(image), "--out", str(out), "--netboot-url", URL,
                   "--tftp-root", "/srv/tftp/bootpull")
        assert proc.returncode == 0, proc.stderr
        trees.append(out)
    a, b = trees
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    for path in a.iterdir():
        assert path.read_bytes() == (b / path.name).read_bytes(), path.name
        assert int(path.stat().st_mtime) == EPOCH and (b / path.name).stat().st_mtime == EPOCH
        assert path.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("url", ["ftp://10.0.0.1/", "http:///x/", "http://h/a b/",
                                 "http://h/x?y=1", "http://h/a,b/"])
def test_a_bad_url_is_a_usage_error(tmp_path: Path, url: str) -> None:
    image = fake_image(tmp_path / "image")
    proc = cli("--from", str(image), "--out", str(tmp_path / "tree"), "--netboot-url", url)
    assert proc.returncode == 2, proc.stderr
    assert "--netboot-url" in proc.stderr
    assert not (tmp_path / "tree").exists()


def test_no_image_says_how_to_build_one(tmp_path: Path) -> None:
    proc = cli("--from", str(tmp_path / "nothing"), "--out", str(tmp_path / "tree"))
    assert proc.returncode != 0
    assert "bootpull image build" in proc.stderr


def test_the_url_gets_its_trailing_slash() -> None:
    assert netboot.parse_base_url("http://h:8080/boot") == "http://h:8080/boot/"
    site = netboot.make_site("http://boot.example.org/", "/srv/tftp")
    assert site.tftp_server is None  # a name, not an address: no Kea next-server guess


# -- the servers judge the lines ------------------------------------------------------


def _tree(tmp: Path, url: str | None = URL) -> Path:
    image = fake_image(tmp / "image")
    out = tmp / "tree"
    netboot.make(image, out, netboot.make_site(url, out))
    return out


@needs_dnsmasq
@pytest.mark.parametrize("url", [URL, None])
def test_dnsmasq_accepts_the_lines(tmp_path: Path, url: str | None) -> None:
    tree = _tree(tmp_path, url)
    # alone, and beside 'bootpull repo site-config' (the node's own discovery lines)
    both = tmp_path / "both.conf"
    both.write_text((tree / "dnsmasq.conf").read_text() +
                    site_dnsmasq(make_repo_site("http://10.0.0.1:8000/repo.git")))
    for conf in (tree / "dnsmasq.conf", both):
        proc = subprocess.run(["dnsmasq", "--test", f"--conf-file={conf}"],
                              capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr
        assert "syntax check OK" in proc.stderr


def _kea_check(tmp: Path, fragment: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    config = {"Dhcp4": {
        "interfaces-config": {"interfaces": []},
        "lease-database": {"type": "memfile", "persist": False},
        "subnet4": [{"id": 1, "subnet": "10.0.0.0/24",
                     "pools": [{"pool": "10.0.0.10 - 10.0.0.20"}]}],
        **fragment,
    }}
    path = tmp / "kea-full.conf"
    path.write_text(json.dumps(config))
    return subprocess.run(["kea-dhcp4", "-t", str(path)], capture_output=True, text=True,
                          timeout=60, check=False)


@needs_kea
@pytest.mark.parametrize("url", [URL, None])
def test_kea_accepts_the_snippet_in_a_complete_config(tmp_path: Path, url: str | None) -> None:
    tree = _tree(tmp_path, url)
    fragment = json.loads((tree / "kea-dhcp4.json").read_text())["Dhcp4"]
    proc = _kea_check(tmp_path, fragment)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # merged with site-config's fragment: the lists concatenate
    site = site_kea_fragment(make_repo_site("http://10.0.0.1:8000/repo.git"))
    merged = {key: site[key] + fragment[key] for key in ("option-def", "client-classes")}
    proc = _kea_check(tmp_path, merged)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # and Kea does reject a broken class test (the check is not a rubber stamp)
    broken = json.loads(json.dumps(fragment))
    broken["client-classes"][0]["test"] = "option[175].exists or"
    assert _kea_check(tmp_path, broken).returncode != 0


# -- a real dnsmasq answers each kind of client ---------------------------------------


Option = tuple[str | int, bytes]


def _ask(ns: lab_net.Namespace, iface: str, options: list[Option]) -> dict[str, str]:
    """One DHCPDISCOVER with ``options`` (scapy) in ``ns``: the offer's file field and
    options (bytes as hex; option 175 as hex too)."""
    script = f"""
import json, sys
from scapy.all import BOOTP, DHCP, IP, UDP, Ether, conf, get_if_hwaddr, srp1
conf.checkIPaddr = False
mac = get_if_hwaddr({iface!r})
options = [("message-type", "discover"), *{options!r},
           ("param_req_list", [1, 3, 6, 43, 60, 66, 67, 175]), "end"]
pkt = (Ether(dst="ff:ff:ff:ff:ff:ff", src=mac) / IP(src="0.0.0.0", dst="255.255.255.255")
       / UDP(sport=68, dport=67)
       / BOOTP(chaddr=bytes.fromhex(mac.replace(":", "")) + bytes(10), xid=0x5eed, flags=0x8000)
       / DHCP(options=options))
ans = srp1(pkt, iface={iface!r}, timeout=20, verbose=0)
if ans is None:
    sys.exit("no offer")
out = {{"siaddr": ans[BOOTP].siaddr}}
for opt in ans[DHCP].options:
    if isinstance(opt, tuple) and len(opt) == 2:
        value = opt[1]
        out[str(opt[0])] = value.hex() if isinstance(value, bytes) else str(value)
# the boot file: option 67 when the client asked for it (dnsmasq), else the BOOTP field
field = ans[BOOTP].file.rstrip(b"\\0").decode(errors="replace")
option67 = out.pop("boot-file-name", None)
out["file"] = bytes.fromhex(option67).rstrip(b"\\0").decode() if option67 else field
print(json.dumps(out))
"""
    proc = ns.run([sys.executable, "-c", script], timeout=120)
    return dict(json.loads(proc.stdout))


PXE_BIOS: list[Option] = [("pxe_client_architecture", b"\x00\x00"),
            ("vendor_class_id", b"PXEClient:Arch:00000:UNDI:002001")]
PXE_EFI: list[Option] = [("pxe_client_architecture", b"\x00\x07"),
           ("vendor_class_id", b"PXEClient:Arch:00007:UNDI:003000")]
IPXE_EFI: list[Option] = [*PXE_EFI, ("user_class", b"iPXE"), (175, b"\x13\x01\x01")]
HTTP_BOOT: list[Option] = [("pxe_client_architecture", b"\x00\x10"),
             ("vendor_class_id", b"HTTPClient:Arch:00016:UNDI:003001")]
NODE: list[Option] = [("vendor_class_id", b"bootpull")]


@pytest.mark.netns
@needs_dnsmasq
def test_dnsmasq_answers_each_kind_of_client(netlab: lab_net.Lab, tmp_path: Path) -> None:
    """The generated lines in a running dnsmasq (and site-config's beside them): each
    firmware gets its binary, iPXE the script (and no-pxedhcp), HTTP Boot the URL and
    option 60 back; the node's own DHCP gets none of it."""
    server = netlab.namespace("srv")
    client = netlab.namespace("cli")
    link = netlab.link(client, server, client_if="eth0")
    url = f"http://{link.server_ip}:8000/"
    image = fake_image(tmp_path / "image")
    tree = tmp_path / "tree"
    netboot.make(image, tree, netboot.make_site(url, tree))
    repo_url = f"http://{link.server_ip}:8080/repo.git"
    lines = [*link.dhcp_range(), *(tree / "dnsmasq.conf").read_text().splitlines(),
             *site_dnsmasq(make_repo_site(repo_url)).splitlines()]
    netlab.dnsmasq(server, [link], lines, ping=False)
    bios = _ask(client, "eth0", PXE_BIOS)
    assert bios["file"] == "undionly.kpxe" and bios["siaddr"] == str(link.server_ip)
    assert _ask(client, "eth0", PXE_EFI)["file"] == "ipxe.efi"
    ipxe = _ask(client, "eth0", IPXE_EFI)
    assert ipxe["file"] == f"{url}boot.ipxe"
    assert bytes.fromhex(ipxe["175"]).startswith(bytes([netboot.IPXE_NO_PXEDHCP, 1, 1]))
    for ipxe_bios in ([*PXE_BIOS, ("user_class", b"iPXE")], [*PXE_BIOS, (175, b"\x13\x01\x01")]):
        assert _ask(client, "eth0", ipxe_bios)["file"] == f"{url}boot.ipxe"  # no loop
    http = _ask(client, "eth0", HTTP_BOOT)
    assert http["file"] == f"{url}ipxe.efi"
    assert bytes.fromhex(http["vendor_class_id"]) == b"HTTPClient"
    node = _ask(client, "eth0", NODE)
    assert node["file"] in ("", repo_url)  # the node's own option 67, never a binary
    assert not any(name in json.dumps(node) for name in ("kpxe", "ipxe.efi", "boot.ipxe"))


@pytest.mark.netns
@needs_kea
def test_kea_answers_each_kind_of_client(netlab: lab_net.Lab, tmp_path: Path) -> None:
    """The Kea snippet in a running kea-dhcp4: the same answers as dnsmasq's lines."""
    import time

    server = netlab.namespace("srv")
    client = netlab.namespace("cli")
    link = netlab.link(client, server, client_if="eth0")
    url = f"http://{link.server_ip}:8000/"
    image = fake_image(tmp_path / "image")
    tree = tmp_path / "tree"
    netboot.make(image, tree, netboot.make_site(url, tree))
    fragment = json.loads((tree / "kea-dhcp4.json").read_text())["Dhcp4"]
    config = {"Dhcp4": {
        "interfaces-config": {"interfaces": [link.server_if]},
        "lease-database": {"type": "memfile", "persist": False},
        "valid-lifetime": 3600,
        "subnet4": [{"id": 1, "subnet": str(link.network),
                     "pools": [{"pool": f"{link.host(50)} - {link.host(150)}"}]}],
        **fragment,
    }}
    conf = tmp_path / "kea.conf"
    conf.write_text(json.dumps(config))
    run_dir = tmp_path / "kea-run"
    run_dir.mkdir()
    env = {**os.environ, "KEA_PIDFILE_DIR": str(run_dir), "KEA_LOCKFILE_DIR": str(run_dir),
           "KEA_LOGGER_DESTINATION": str(tmp_path / "kea.log")}
    with open(tmp_path / "kea.out", "wb") as log:
        proc = subprocess.Popen(server.argv(["kea-dhcp4", "-c", str(conf)]), stdout=log,
                                stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 30
        while not server.run(["ss", "-Hlun", "sport = :67"], check=False).stdout.strip():
            assert proc.poll() is None, (tmp_path / "kea.out").read_text()
            assert time.monotonic() < deadline, "kea-dhcp4 did not listen on port 67"
            time.sleep(0.1)
        bios = _ask(client, "eth0", PXE_BIOS)
        assert bios["file"] == "undionly.kpxe" and bios["siaddr"] == str(link.server_ip)
        assert _ask(client, "eth0", PXE_EFI)["file"] == "ipxe.efi"
        ipxe = _ask(client, "eth0", IPXE_EFI)
        assert ipxe["file"] == f"{url}boot.ipxe"
        assert bytes.fromhex(ipxe["175"]).startswith(bytes([netboot.IPXE_NO_PXEDHCP, 1, 1]))
        http = _ask(client, "eth0", HTTP_BOOT)
        assert http["file"] == f"{url}ipxe.efi"
        assert bytes.fromhex(http["vendor_class_id"]) == b"HTTPClient"
        assert _ask(client, "eth0", NODE)["file"] == ""
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
