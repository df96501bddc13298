"""The one canonical MAC address type, shared by the node and the admin tools.

Accepted notations, in any letter case: ``52:54:00:12:34:56``, ``52-54-00-12-34-56``,
``5254.0012.3456`` and ``525400123456``. The one written form is the dashed, lowercase
``52-54-00-12-34-56`` (docs/contract.md §1.2), which is also the host file name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEX = "[0-9a-f]"
_NOTATIONS = (
    re.compile(rf"^({_HEX}{{2}})(?::({_HEX}{{2}})){{5}}$"),
    re.compile(rf"^({_HEX}{{2}})(?:-({_HEX}{{2}})){{5}}$"),
    re.compile(rf"^{_HEX}{{4}}\.{_HEX}{{4}}\.{_HEX}{{4}}$"),
    re.compile(rf"^{_HEX}{{12}}$"),
)


class MacError(ValueError):
    """A string that is not a MAC address in any accepted notation."""


@dataclass(frozen=True, order=True, slots=True)
class Mac:
    """A 48-bit MAC address. Compare, hash and sort by value; print canonically."""

    octets: bytes

    def __post_init__(self) -> None:
        if len(self.octets) != 6:
            raise MacError(f"a MAC address has 6 octets, not {len(self.octets)}")

    @classmethod
    def parse(cls, text: str) -> Mac:
        """Parse any accepted notation; raise MacError saying what is accepted."""
        cleaned = text.strip().lower()
        if any(pattern.match(cleaned) for pattern in _NOTATIONS):
            digits = re.sub(r"[^0-9a-f]", "", cleaned)
            return cls(bytes.fromhex(digits))
        raise MacError(
            f"{text!r} is not a MAC address: use 52:54:00:12:34:56, 52-54-00-12-34-56, "
            "5254.0012.3456 or 525400123456"
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> Mac:
        return cls(bytes(raw))

    @property
    def canonical(self) -> str:
        """``52-54-00-12-34-56``: the form bootpull writes, and the host file name."""
        return "-".join(f"{b:02x}" for b in self.octets)

    @property
    def colons(self) -> str:
        """``52:54:00:12:34:56``: the form ip(8) and dnsmasq print."""
        return ":".join(f"{b:02x}" for b in self.octets)

    @property
    def is_multicast(self) -> bool:
        return bool(self.octets[0] & 1)

    def __str__(self) -> str:
        return self.canonical

    def __repr__(self) -> str:
        return f"Mac({self.canonical!r})"
