"""What the node can say about its hardware, from /sys and /proc: the ``facts`` of the
``identity`` event (docs/contract.md §7.2), so an admin can tell which box a key is.

- ``dmi``: ``/sys/class/dmi/id/{sys_vendor, product_name, product_serial,
  product_uuid, product_version, board_vendor, board_name, board_serial,
  chassis_serial, bios_vendor, bios_version}``; a file that is missing or unreadable
  (the serials are root's only) is left out;
- ``nics``: each ``/sys/class/net/<name>`` with a ``device`` (a real NIC, not lo, a
  bridge or a veth): ``name``, ``mac``, ``driver`` (the name of ``device/driver``'s
  target) and ``speed`` (Mb/s) when readable;
- ``cpu``: ``model`` (the first ``model name`` of /proc/cpuinfo) and ``count`` (its
  ``processor`` lines);
- ``memory``: ``total`` in bytes (``MemTotal`` of /proc/meminfo);
- ``disks``: each ``/sys/block/<name>`` but loop, ram and zram devices: ``name``,
  ``size`` in bytes (``size`` × 512), ``model`` and ``rotational`` when readable.

The LLDP neighbour is heard later, on the network (bootpull.lldp), and added to a
repeated ``identity`` event. Everything here is bounded: a file is read up to
4 KiB, every string is cut at 200 characters, at most 64 NICs and 64 disks are listed,
and the whole is kept under 16 KiB of JSON (``truncated: true`` says a list was cut).
Nothing here raises: what cannot be read is absent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MAX_STRING = 200
MAX_ITEMS = 64
MAX_READ = 4096
MAX_JSON = 16 * 1024
CPUINFO_MAX = 4 * 2**20  # /proc/cpuinfo is long on big machines
DMI_FIELDS = ("sys_vendor", "product_name", "product_serial", "product_uuid",
              "product_version", "board_vendor", "board_name", "board_serial",
              "chassis_serial", "bios_vendor", "bios_version")
SKIPPED_DISKS = ("loop", "ram", "zram")


def _clean(text: str) -> str:
    """Printable, one line, at most MAX_STRING characters."""
    text = "".join(c if c.isprintable() else "?" for c in text.strip())
    return text[:MAX_STRING]


def _read(path: Path, limit: int = MAX_READ) -> str | None:
    """The first ``limit`` bytes of ``path`` as text (undecodable bytes replaced, NULs
    dropped), or None when it cannot be read. Never blocks on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except (OSError, ValueError):
        return None
    chunks: list[bytes] = []
    size = 0
    try:
        while size < limit and (chunk := os.read(fd, min(65536, limit - size))):
            chunks.append(chunk)
            size += len(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "replace").replace("\x00", "")


def _string(path: Path) -> str | None:
    text = _read(path)
    if text is None:
        return None
    cleaned = _clean(text)
    return cleaned or None


def _int(path: Path) -> int | None:
    text = _read(path)
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


def _entries(directory: Path) -> list[Path]:
    try:
        return sorted(directory.iterdir())[:4096]
    except (OSError, ValueError):
        return []


def dmi(root: Path) -> dict[str, str]:
    base = root / "sys" / "class" / "dmi" / "id"
    out = {}
    for name in DMI_FIELDS:
        value = _string(base / name)
        if value is not None:
            out[name] = value
    return out


def nics(root: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in _entries(root / "sys" / "class" / "net"):
        if len(out) > MAX_ITEMS:  # one more: collect() says the list was cut
            break
        if not (path / "device").exists():
            continue  # lo, bridges, veths, tunnels: not a NIC of this box
        try:
            driver: str | None = (path / "device" / "driver").readlink().name
        except OSError:
            driver = None
        nic: dict[str, Any] = {"name": _clean(path.name)}
        mac = _string(path / "address")
        if mac is not None:
            nic["mac"] = mac
        if driver:
            nic["driver"] = _clean(driver)
        speed = _int(path / "speed")
        if speed is not None and speed > 0:
            nic["speed"] = speed
        out.append(nic)
    return out


def cpu(root: Path) -> dict[str, Any]:
    text = _read(root / "proc" / "cpuinfo", CPUINFO_MAX)
    if text is None:
        return {}
    model, count = None, 0
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip()
        if key == "processor":
            count += 1
        elif key == "model name" and model is None:
            model = _clean(value)
    out: dict[str, Any] = {}
    if model:
        out["model"] = model
    if count:
        out["count"] = count
    return out


def memory(root: Path) -> dict[str, int]:
    text = _read(root / "proc" / "meminfo")
    for line in (text or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "MemTotal":
            words = value.split()
            if words and words[0].isdigit() and len(words[0]) <= 15:
                unit = words[1].lower() if len(words) > 1 else "b"
                return {"total": int(words[0]) * (1024 if unit == "kb" else 1)}
    return {}


def disks(root: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in _entries(root / "sys" / "block"):
        if len(out) > MAX_ITEMS:  # one more: collect() says the list was cut
            break
        if path.name.startswith(SKIPPED_DISKS):
            continue
        disk: dict[str, Any] = {"name": _clean(path.name)}
        sectors = _int(path / "size")
        if sectors is not None and 0 <= sectors < 2**62:
            disk["size"] = sectors * 512
        model = _string(path / "device" / "model")
        if model is not None:
            disk["model"] = model
        rotational = _int(path / "queue" / "rotational")
        if rotational in (0, 1):
            disk["rotational"] = bool(rotational)
        out.append(disk)
    return out


def collect(root: Path = Path("/")) -> dict[str, Any]:
    """The facts (see the module docstring); sections with nothing in them are left out."""
    root = Path(root)
    facts: dict[str, Any] = {}
    for name, part in (("dmi", dmi), ("nics", nics), ("cpu", cpu), ("memory", memory),
                       ("disks", disks)):
        try:
            value = part(root)
        except (OSError, ValueError, RecursionError):  # a sysfs too odd to read
            continue
        if isinstance(value, list) and len(value) > MAX_ITEMS:
            value, facts["truncated"] = value[:MAX_ITEMS], True
        if value:
            facts[name] = value
    while len(json.dumps(facts)) > MAX_JSON:
        longest = max(("nics", "disks"), key=lambda k: len(facts.get(k, [])))
        if not facts.get(longest):
            break
        facts[longest] = facts[longest][:-1]
        facts["truncated"] = True
    return facts
