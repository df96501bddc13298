"""Hardware facts (bootpull.facts) from a fake /sys and /proc under tmp_path, from
hostile ones (huge, binary, not UTF-8, unreadable), and from this machine's own."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from bootpull import facts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz
flags\t\t: fpu vme

processor\t: 1
model name\t: Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz
"""
MEMINFO = "MemTotal:        8123456 kB\nMemFree:         1234 kB\n"


def write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)


def fake_machine(root: Path) -> None:
    dmi = root / "sys/class/dmi/id"
    write(dmi / "sys_vendor", "QEMU\n")
    write(dmi / "product_name", "Standard PC (Q35 + ICH9, 2009)\n")
    write(dmi / "product_uuid", "8d3f1c2e-0000-4000-8000-000000000001\n")
    write(dmi / "board_vendor", "  Canonical Ltd.  \n")
    drivers = root / "sys/bus/pci/drivers"
    for name, mac, driver, speed in (("eth0", "52:54:00:aa:bb:cc", "virtio_net", "1000"),
                                     ("eth1", "52:54:00:aa:bb:cd", "e1000e", "-1")):
        nic = root / "sys/class/net" / name
        write(nic / "address", mac + "\n")
        write(nic / "speed", speed + "\n")
        device = root / "sys/devices/pci0000:00" / name
        device.mkdir(parents=True)
        (drivers / driver).mkdir(parents=True, exist_ok=True)
        (device / "driver").symlink_to(drivers / driver)
        (nic / "device").symlink_to(device)
    write(root / "sys/class/net/lo/address", "00:00:00:00:00:00\n")  # no device: not a NIC
    write(root / "sys/class/net/br0/address", "02:00:00:00:00:01\n")
    write(root / "proc/cpuinfo", CPUINFO)
    write(root / "proc/meminfo", MEMINFO)
    write(root / "sys/block/vda/size", "2097152\n")
    write(root / "sys/block/vda/queue/rotational", "1\n")
    write(root / "sys/block/vda/device/model", "QEMU HARDDISK   \n")
    write(root / "sys/block/nvme0n1/size", "1000\n")
    write(root / "sys/block/nvme0n1/queue/rotational", "0\n")
    for skipped in ("loop0", "ram0", "zram0"):
        write(root / "sys/block" / skipped / "size", "8\n")


def test_a_fake_machine_gives_exactly_its_facts(tmp_path: Path) -> None:
    fake_machine(tmp_path)
    assert facts.collect(tmp_path) == {
        "dmi": {"sys_vendor": "QEMU", "product_name": "Standard PC (Q35 + ICH9, 2009)",
                "product_uuid": "8d3f1c2e-0000-4000-8000-000000000001",
                "board_vendor": "Canonical Ltd."},
        "nics": [{"name": "eth0", "mac": "52:54:00:aa:bb:cc", "driver": "virtio_net",
                  "speed": 1000},
                 {"name": "eth1", "mac": "52:54:00:aa:bb:cd", "driver": "e1000e"}],
        "cpu": {"model": "Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz", "count": 2},
        "memory": {"total": 8123456 * 1024},
        "disks": [{"name": "nvme0n1", "size": 512000, "rotational": False},
                  {"name": "vda", "size": 2097152 * 512, "model": "QEMU HARDDISK",
                   "rotational": True}],
    }


def test_nothing_there_is_no_facts_and_no_error(tmp_path: Path) -> None:
    assert facts.collect(tmp_path) == {}
    assert facts.collect(tmp_path / "missing") == {}


def test_unreadable_files_are_left_out(tmp_path: Path) -> None:
    """A file that cannot be read (a directory in its place: unreadable for root too,
    whose reads ignore modes) is left out, and the rest is kept."""
    fake_machine(tmp_path)
    serial = tmp_path / "sys/class/dmi/id/product_serial"
    serial.unlink(missing_ok=True)
    serial.mkdir()
    meminfo = tmp_path / "proc/meminfo"
    meminfo.unlink()
    meminfo.mkdir()
    got = facts.collect(tmp_path)
    assert "product_serial" not in got["dmi"] and "memory" not in got
    assert got["dmi"] and got["cpu"]["count"] >= 1


def test_hostile_contents_are_bounded_and_never_raise(tmp_path: Path) -> None:
    fake_machine(tmp_path)
    dmi = tmp_path / "sys/class/dmi/id"
    write(dmi / "sys_vendor", "A" * 10_000_000)  # huge
    write(dmi / "product_name", bytes(range(256)) * 4)  # binary, not UTF-8
    write(dmi / "board_vendor", b"\xff\xfe\xfd\n")
    (dmi / "product_uuid").unlink()
    (dmi / "product_uuid").mkdir()  # a directory where a file was
    os.mkfifo(dmi / "bios_vendor")  # a FIFO nobody writes: must not block
    write(tmp_path / "sys/class/net/eth0/speed", "99999999999999999999999999\n")
    write(tmp_path / "proc/meminfo", "MemTotal: 99999999999999999999999 kB\n")
    write(tmp_path / "proc/cpuinfo", b"model name : \x00\xff" + b"x" * 5000 + b"\n"
          + b"processor : 0\n" * 3)
    write(tmp_path / "sys/block/nvme0n1/size", "-5\n")
    for i in range(100):  # too many disks
        write(tmp_path / "sys/block" / f"sd{i:03d}" / "size", "1\n")
        write(tmp_path / "sys/block" / f"sd{i:03d}" / "device/model", "M" * 500)
    got = facts.collect(tmp_path)
    dumped = json.dumps(got)
    assert len(dumped) <= facts.MAX_JSON
    assert got["dmi"]["sys_vendor"] == "A" * 200
    assert len(got["dmi"]["product_name"]) <= 200 and got["dmi"]["product_name"].isprintable()
    assert "product_uuid" not in got["dmi"] and "bios_vendor" not in got["dmi"]
    assert "memory" not in got  # not a number it believes
    assert got["cpu"]["count"] == 3 and len(got["cpu"]["model"]) <= 200
    assert len(got["disks"]) <= facts.MAX_ITEMS and got.get("truncated") is True
    assert all(len(d.get("model", "")) <= 200 for d in got["disks"])
    assert "size" not in got["disks"][0] and got["disks"][0]["name"] == "nvme0n1"


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(
    st.sampled_from(["sys/class/dmi/id/sys_vendor", "sys/class/net/eth0/address",
                     "sys/class/net/eth0/speed", "proc/cpuinfo", "proc/meminfo",
                     "sys/block/sda/size", "sys/block/sda/queue/rotational",
                     "sys/block/sda/device/model"]),
    st.binary(max_size=300), max_size=8))
def test_any_bytes_in_any_file_never_raise(tmp_path_factory: pytest.TempPathFactory,
                                           files: dict[str, bytes]) -> None:
    root = tmp_path_factory.mktemp("sysfs")
    (root / "sys/class/net/eth0").mkdir(parents=True)
    (root / "sys/class/net/eth0/device").mkdir()
    for name, data in files.items():
        write(root / name, data)
    got = facts.collect(root)
    assert len(json.dumps(got)) <= facts.MAX_JSON
    for nic in got.get("nics", []):
        assert all(len(str(v)) <= 200 for v in nic.values())


def test_this_machine_has_at_least_cpu_and_memory() -> None:
    got = facts.collect()
    assert got["cpu"]["count"] >= 1 and got["memory"]["total"] > 2**20
    json.dumps(got)
    assert len(json.dumps(got)) <= facts.MAX_JSON
