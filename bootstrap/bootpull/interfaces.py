"""Which network interfaces the node tries, and in what order.

Candidates are the Ethernet interfaces (ARPHRD_ETHER; not loopback, not a bridge or
bond master, not Wi-Fi) in the kernel's interface-index order, which is the order
``ip link`` lists them and, on one machine, the order the NICs were probed. When
``--interface`` or ``bootpull.interface=`` names interfaces, exactly those are
used, in the order given.

Each candidate is brought up and given a short time to report carrier; one
without carrier is passed over with that reason. Everything here reads
``/sys/class/net`` (the namespace's own, under ``ip netns exec``) and runs ``ip``.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bootpull.mac import Mac, MacError

SYS_NET = Path("/sys/class/net")
ARPHRD_ETHER = 1


@dataclass(frozen=True)
class Interface:
    name: str
    index: int
    mac: Mac


@dataclass(frozen=True)
class Unusable:
    """An interface that was named or seen but cannot be used, and why."""

    name: str
    reason: str


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None


def describe(name: str, sys_net: Path = SYS_NET) -> Interface | Unusable:
    """The interface ``name`` as a candidate, or why it is not one."""
    base = sys_net / name
    if "/" in name or not base.exists():
        return Unusable(name, f"there is no interface {name!r}")
    if _read(base / "type") != str(ARPHRD_ETHER):
        return Unusable(name, f"{name} is not an Ethernet interface")
    try:
        mac = Mac.parse(_read(base / "address") or "")
        index = int(_read(base / "ifindex") or "0")
    except (MacError, ValueError) as exc:
        return Unusable(name, f"{name} has no usable MAC address ({exc})")
    if mac.octets == bytes(6):
        return Unusable(name, f"{name} has an all-zero MAC address")
    return Interface(name=name, index=index, mac=mac)


def ethernet_interfaces(sys_net: Path = SYS_NET) -> list[Interface]:
    """Every Ethernet candidate, in interface-index order."""
    found: list[Interface] = []
    try:
        names = sorted(p.name for p in sys_net.iterdir())
    except OSError:
        return []
    for name in names:
        base = sys_net / name
        if name == "lo" or any((base / sub).exists()
                               for sub in ("bridge", "bonding", "wireless", "phy80211")):
            continue  # bridge/bond masters; Wi-Fi cannot lease before it associates
        item = describe(name, sys_net)
        if isinstance(item, Interface):
            found.append(item)
    return sorted(found, key=lambda i: i.index)


SYS_BUS = Path("/sys/bus")
#: USB interface classes a network adapter shows: CDC communications and data,
#: wireless controller (RNDIS), vendor specific (Realtek's and ASIX's own protocols)
_USB_NET_CLASSES = ("02", "0a", "e0", "ff")


def unclaimed_network_devices(sys_bus: Path = SYS_BUS) -> list[str]:
    """The network devices no driver of this image claimed, with their ids: the PCI
    network controllers (class 0x02) and the USB interfaces of a network-like class."""
    found: list[str] = []
    pci = sys_bus / "pci" / "devices"
    for dev in sorted(pci.iterdir()) if pci.is_dir() else ():
        klass = _read(dev / "class") or ""
        if not klass.startswith("0x02") or (dev / "driver").exists():
            continue
        vendor, device = (_read(dev / "vendor") or "?"), (_read(dev / "device") or "?")
        found.append(f"PCI {vendor.removeprefix('0x')}:{device.removeprefix('0x')} "
                     f"(network controller, class {klass}) at {dev.name}")
    usb = sys_bus / "usb" / "devices"
    for dev in sorted(usb.iterdir()) if usb.is_dir() else ():
        if ":" not in dev.name or (dev / "driver").exists():
            continue  # a device, not an interface; or a claimed interface
        klass = (_read(dev / "bInterfaceClass") or "").lower()
        if klass not in _USB_NET_CLASSES:
            continue
        parent = dev.parent if (dev.parent / "idVendor").exists() else usb / dev.name.split(":")[0]
        vendor, product = _read(parent / "idVendor") or "?", _read(parent / "idProduct") or "?"
        if any(entry.startswith(f"USB {vendor}:{product} ") for entry in found):
            continue
        found.append(f"USB {vendor}:{product} (interface class {klass}) at {dev.name}")
    return found


def has_carrier(name: str, sys_net: Path = SYS_NET) -> bool:
    return _read(sys_net / name / "carrier") == "1"


def bring_up(name: str) -> None:
    subprocess.run(["ip", "link", "set", name, "up"], capture_output=True, timeout=30,
                   check=False)


def candidates(
    names: list[str], *, carrier_wait: float = 3.0, sys_net: Path = SYS_NET,
    up: Callable[[str], None] = bring_up,
) -> tuple[list[Interface], list[Unusable]]:
    """The interfaces to try, in order, and the ones passed over with the reason.

    ``names`` empty means every Ethernet interface. Each one is brought up, then
    up to ``carrier_wait`` seconds pass for all of them to report carrier.
    """
    unusable: list[Unusable] = []
    chosen: list[Interface] = []
    if names:
        for name in dict.fromkeys(names):
            item = describe(name, sys_net)
            if isinstance(item, Interface):
                chosen.append(item)
            else:
                unusable.append(item)
    else:
        chosen = ethernet_interfaces(sys_net)
        if not chosen:
            unusable.append(Unusable("*", "there are no Ethernet interfaces"))
    for item in chosen:
        up(item.name)
    end = time.monotonic() + carrier_wait
    while time.monotonic() < end and not all(has_carrier(i.name, sys_net) for i in chosen):
        time.sleep(0.1)
    ready = []
    for item in chosen:
        if has_carrier(item.name, sys_net):
            ready.append(item)
        else:
            unusable.append(Unusable(item.name, f"{item.name} has no carrier (no link after "
                                                f"{carrier_wait:.0f}s: is the cable in?)"))
    return ready, unusable
