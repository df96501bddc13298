"""Metadata format 2: which delegated role signs which target path (docs/security.md).

The top-level ``targets.json`` signs ``bootpull.toml``, ``groups/*.toml`` and
``hosts/default.toml`` itself, and delegates everything else to named roles, all
terminating, in this order:

- ``hosts-<lo>-<hi>``: the host files and the node secrets of every MAC whose last octet
  is between ``lo`` and ``hi`` (hex): ``head/hosts/*-<octet>.toml`` and
  ``head/secrets/*-<octet>/*``. The bins split the 256 octets evenly; their number is
  a power of two between :data:`MIN_BINS` and :data:`MAX_BINS`, about one per
  :data:`HOSTS_PER_BIN` host files, and never goes down.
- ``role-<role>``: the role at the head (``head/roles/<role>/...``, its ``secrets/``
  too) and its releases (``release/<role>/<version>/...``), one pattern per directory
  depth that the role's files use.

A node reads the top-level metadata, then only its own bin and its own role's
metadata. Every delegated target carries ``custom.git_oid`` as well as
``custom.git_mode``: the node fetches each file by its blob id and never reads the
``hosts/`` or ``secrets/`` trees, whose size grows with the fleet.

python-tuf visits the delegations in order and stops at the first one whose paths
match (they are terminating): :func:`owner` is that rule, used by publish to place
each file and by the node to accept only the targets a role really owns.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase

DELEGATED_DIR = ".bootpull/delegated"  # <role name>.json, next to .bootpull/metadata/
HOST_BIN_PREFIX = "hosts-"
ROLE_PREFIX = "role-"
MIN_BINS = 16
MAX_BINS = 256
HOSTS_PER_BIN = 160
_HEX = "0123456789abcdef"
_WILDCARDS = "*?["


def bin_count(host_files: int, current: int = 0) -> int:
    """The number of host bins for ``host_files`` host files: never fewer than now."""
    count = MIN_BINS
    while count < MAX_BINS and count * HOSTS_PER_BIN < host_files:
        count *= 2
    return max(count, min(current, MAX_BINS))


def bins(count: int) -> list[tuple[str, list[str]]]:
    """(name, path patterns) of each of ``count`` bins, in octet order."""
    if count < 1 or count > MAX_BINS or count & (count - 1):
        raise ValueError(f"{count} bins: the number must be a power of two up to {MAX_BINS}")
    span = 256 // count
    out = []
    for lo in range(0, 256, span):
        hi = lo + span - 1
        octet = _octet_pattern(lo, hi)
        out.append((f"{HOST_BIN_PREFIX}{lo:02x}-{hi:02x}",
                    [f"head/hosts/*-{octet}.toml", f"head/secrets/*-{octet}/*"]))
    return out


_HOST_TARGET = re.compile(
    r"head/(?:hosts/[^/]*-([0-9a-f]{2})\.toml|secrets/[^/]*-([0-9a-f]{2})/[^/]+)")


def host_bin(path: str, count: int) -> str | None:
    """The bin of ``count`` (:func:`bins`) that owns ``path`` when it is a canonical host
    file or node secret target (``head/hosts/<mac>.toml``, ``head/secrets/<mac>/<f>``):
    what :class:`Owners` says of it, computed from the last octet instead of matching
    every bin's patterns. None for any other path (ask :class:`Owners`)."""
    found = _HOST_TARGET.fullmatch(path)
    if found is None:
        return None
    return _bin_names(count)[int(found.group(1) or found.group(2), 16)]


@functools.lru_cache(maxsize=16)
def _bin_names(count: int) -> tuple[str, ...]:
    """The name of the bin of ``count`` that owns each of the 256 last octets."""
    span = 256 // count
    return tuple(f"{HOST_BIN_PREFIX}{lo:02x}-{lo + span - 1:02x}"
                 for lo in (octet // span * span for octet in range(256)))


def _octet_pattern(lo: int, hi: int) -> str:
    """A pattern for the two hex digits ``lo``..``hi``: ``5[4567]``, ``3?``, ``a0``."""
    if lo >> 4 != hi >> 4:  # whole high nibbles: only for bins of 16 or more octets
        highs = "".join(_HEX[n] for n in range(lo >> 4, (hi >> 4) + 1))
        return f"[{highs}]?"
    high = _HEX[lo >> 4]
    if lo == hi:
        return f"{high}{_HEX[lo & 15]}"
    if hi - lo == 15:
        return f"{high}?"
    return f"{high}[{''.join(_HEX[n & 15] for n in range(lo, hi + 1))}]"


def role_patterns(role: str, head_depth: int, release_depth: int) -> list[str]:
    """``role-<role>``'s paths: every directory depth its files use (at least one).

    ``head_depth`` is the deepest ``head/roles/<role>/...`` path in components below
    the role directory, ``release_depth`` the same below ``release/<role>/<version>/``.
    """
    out = [f"head/roles/{role}/" + "/".join(["*"] * depth)
           for depth in range(1, max(head_depth, 1) + 1)]
    out += [f"release/{role}/*/" + "/".join(["*"] * depth)
            for depth in range(1, max(release_depth, 1) + 1)]
    return out


def literal_prefix(pattern: str) -> str:
    """The part of ``pattern`` before its first wildcard (a cheap first test)."""
    cut = min((i for i in (pattern.find(c) for c in _WILDCARDS) if i >= 0), default=len(pattern))
    return pattern[:cut]


def matches(path: str, pattern: str) -> bool:
    """python-tuf's rule: as many ``/``-separated parts, each matching its glob."""
    parts = path.split("/")
    globs = pattern.split("/")
    return len(parts) == len(globs) and all(
        fnmatchcase(part, glob) for part, glob in zip(parts, globs, strict=True))


class Owners:
    """Which delegated role (in order, all terminating) owns a target path."""

    def __init__(self, roles: Mapping[str, Sequence[str]] | Iterable[tuple[str, Sequence[str]]]
                 ) -> None:
        items = roles.items() if isinstance(roles, Mapping) else roles
        self._patterns: list[tuple[str, str, str]] = []  # literal prefix, pattern, role
        for name, patterns in items:
            self._patterns += [(literal_prefix(p), p, name) for p in patterns]

    def owner(self, path: str) -> str | None:
        """The first role whose patterns match ``path``; None: no delegation covers it."""
        for prefix, pattern, name in self._patterns:
            if path.startswith(prefix) and matches(path, pattern):
                return name
        return None
