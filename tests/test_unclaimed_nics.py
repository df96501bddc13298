"""Which network devices no driver claimed, read from a sysfs tree (pure logic: the
QEMU test in tests/test_lab_hardware.py boots a real one)."""

from __future__ import annotations

from pathlib import Path

from bootpull.discover import _no_driver
from bootpull.interfaces import unclaimed_network_devices


def _pci(bus: Path, slot: str, klass: str, vendor: str, device: str, *,
         driver: bool = False) -> None:
    dev = bus / "pci" / "devices" / slot
    dev.mkdir(parents=True)
    (dev / "class").write_text(klass + "\n")
    (dev / "vendor").write_text(vendor + "\n")
    (dev / "device").write_text(device + "\n")
    if driver:
        (dev / "driver").mkdir()


def _usb(bus: Path, name: str, vendor: str, product: str, classes: dict[str, str],
         claimed: tuple[str, ...] = ()) -> None:
    devices = bus / "usb" / "devices"
    dev = devices / name
    dev.mkdir(parents=True)
    (dev / "idVendor").write_text(vendor + "\n")
    (dev / "idProduct").write_text(product + "\n")
    for interface, klass in classes.items():
        path = devices / f"{name}:{interface}"
        path.mkdir()
        (path / "bInterfaceClass").write_text(klass + "\n")
        if interface in claimed:
            (path / "driver").mkdir()


def test_pci_network_controllers_without_a_driver_are_named(tmp_path: Path) -> None:
    _pci(tmp_path, "0000:00:03.0", "0x020000", "0x10ec", "0x8029")
    _pci(tmp_path, "0000:00:04.0", "0x020000", "0x8086", "0x10d3", driver=True)  # claimed
    _pci(tmp_path, "0000:00:05.0", "0x010601", "0x8086", "0x2922")  # a SATA controller
    assert unclaimed_network_devices(tmp_path) == [
        "PCI 10ec:8029 (network controller, class 0x020000) at 0000:00:03.0"]


def test_usb_adapters_are_named_once_by_their_ids(tmp_path: Path) -> None:
    _usb(tmp_path, "1-1", "0bda", "8153", {"1.0": "ff", "1.1": "02", "1.2": "0a"})
    _usb(tmp_path, "1-2", "0525", "a4a2", {"1.0": "02"}, claimed=("1.0",))  # cdc_ether has it
    _usb(tmp_path, "1-3", "046d", "c077", {"1.0": "03"})  # a mouse
    assert unclaimed_network_devices(tmp_path) == [
        "USB 0bda:8153 (interface class ff) at 1-1:1.0"]


def test_no_sysfs_bus_means_nothing_unclaimed(tmp_path: Path) -> None:
    assert unclaimed_network_devices(tmp_path / "missing") == []


def test_the_banner_names_the_ids_and_the_fix_not_the_cable(tmp_path: Path) -> None:
    _pci(tmp_path, "0000:00:03.0", "0x020000", "0x10ec", "0x8029")
    err = _no_driver([], tmp_path)
    assert err.what == ("no network interface: this image has no driver for this "
                        "machine's network device")
    assert "PCI 10ec:8029" in err.why
    assert "--modules NAME" in err.hint and "grep -i v000010ecd00008029" in err.hint
    assert "cable" not in err.hint
    usb = tmp_path / "usb-only"
    _usb(usb, "2-1", "0b95", "1790", {"1.0": "ff"})
    assert "grep -i v0b95p1790" in _no_driver([], usb).hint
    nothing = _no_driver([], tmp_path / "none")
    assert "shows no network device" in nothing.what
