"""The kernel command line: ``bootpull.*`` words (docs/contract.md §2.6), untyped.

Parsing is pure: give it the text of /proc/cmdline and get a dict back. Only
:mod:`bootpull.settings` reads it; that is where the keys are known (``KERNEL_KEYS``)
and typed, so nothing below it sees this dict.
"""

from __future__ import annotations

import shlex
from pathlib import Path


def parse(text: str) -> dict[str, list[str]]:
    """Every ``bootpull.KEY=VALUE`` on the line, in order; repeated keys keep all values.

    ``bootpull.interface=eth0,eth1`` and two ``bootpull.interface=`` both give
    ``["eth0", "eth1"]``. Unknown ``bootpull.*`` keys are kept too, so that
    :mod:`bootpull.settings` can warn about them instead of silently ignoring a typo.
    """
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    found: dict[str, list[str]] = {}
    for word in words:
        if not word.startswith("bootpull."):
            continue
        key, sep, value = word[len("bootpull."):].partition("=")
        if not key:
            continue
        values = found.setdefault(key, [])
        if not sep:
            values.append("1")
        elif key == "interface":
            values.extend(v for v in value.split(",") if v)
        else:
            values.append(value)
    return found


def last(params: dict[str, list[str]], key: str) -> str | None:
    """The value given last for ``key`` (the kernel's own rule for repeats)."""
    values = params.get(key)
    return values[-1] if values else None


def read(path: Path = Path("/proc/cmdline")) -> dict[str, list[str]]:
    """Parse the running kernel's command line; an unreadable one is empty."""
    try:
        return parse(path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return {}
