"""Names from the lease: the search list, ``/etc/resolv.conf`` and ``/etc/hosts``.

The node resolves its own names through :mod:`bootpull.resolver` (the lease's DNS
servers and search list, in process). A role is a separate program with the system's
resolver (glibc, musl, busybox), which reads ``/etc/resolv.conf`` and ``/etc/hosts``;
the boot image has neither. So inside the image, and only there, :func:`apply` writes
both from the lease:

- ``/etc/resolv.conf``: ``nameserver`` per DNS server (option 6, the first three, the
  most a stub resolver reads) and ``search`` with the search list (option 119, else
  option 15: :func:`search_list`);
- ``/etc/hosts``: ``localhost`` and the node's hostname (the host file's, else option
  12, else ``node-<mac>``) at the leased address, also as ``HOSTNAME.DOMAIN``.

Each is written atomically (:func:`bootpull.state.write_atomic`, mode 0644), and only
when its text changed. Outside the image (:func:`image_targets` is None: no
``/etc/bootpull/image.conf``) nothing is written: a developer's or CI machine keeps its
own files. Tests pass :class:`Targets` of their own.

:func:`apply` is also what a lease change calls (a renewal that brings other DNS
servers, another search list or hostname): it points the node's resolver at the new
servers and rewrites the files.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bootpull import resolver
from bootpull.console import Console
from bootpull.dhcp import MalformedDhcp, check_domain
from bootpull.settings import IMAGE_MARKER as IMAGE_MARKER  # the one marker of the image
from bootpull.state import write_atomic

#: how many ``nameserver`` lines glibc and musl read (MAXNS)
MAX_NAMESERVERS = 3
#: how many ``search`` domains are written (glibc before 2.26 read six)
MAX_SEARCH = 6


class LeaseNames(Protocol):
    """What :func:`apply` reads: a :class:`bootpull.dhcp.Lease` or a
    :class:`bootpull.discover.Discovery` both have it."""

    @property
    def dns_servers(self) -> Sequence[object]: ...

    @property
    def domain(self) -> str | None: ...

    @property
    def search(self) -> Sequence[str]: ...

    @property
    def hostname(self) -> str | None: ...

    @property
    def ip(self) -> object: ...


@dataclass(frozen=True)
class Targets:
    """Where :func:`apply` writes."""

    resolv_conf: Path
    hosts: Path


def image_targets(marker: Path = IMAGE_MARKER) -> Targets | None:
    """``/etc/resolv.conf`` and ``/etc/hosts`` inside the boot image; None elsewhere."""
    if not marker.is_file():
        return None
    return Targets(Path("/etc/resolv.conf"), Path("/etc/hosts"))


def search_list(domain: str | None, search: Sequence[str]) -> list[str]:
    """Option 119 when given, else option 15 (docs/contract.md §2.3), without repeats."""
    names = list(search) if search else [domain] if domain else []
    return list(dict.fromkeys(n.strip(".").lower() for n in names if n and n.strip(".")))


def resolv_conf_text(servers: Sequence[object], search: Sequence[str]) -> str:
    lines = ["# written by bootpull from the DHCP lease; rewritten when the lease changes"]
    lines += [f"nameserver {s}" for s in list(servers)[:MAX_NAMESERVERS]]
    if search:
        lines.append("search " + " ".join(search[:MAX_SEARCH]))
    return "\n".join(lines) + "\n"


def hosts_text(hostname: str | None, ip: str, domain: str | None) -> str:
    lines = ["# written by bootpull from the DHCP lease; rewritten when the lease changes",
             "127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    name = _hostname(hostname)
    if name:
        names = [f"{name}.{domain}", name] if domain and "." not in name else [name]
        lines.append(f"{ip or '127.0.1.1'}\t{' '.join(names)}")
    return "\n".join(lines) + "\n"


def _hostname(text: str | None) -> str | None:
    if not text:
        return None
    try:
        return check_domain(text, "hostname")
    except MalformedDhcp:
        return None  # not a name another program could look up


def apply(lease: LeaseNames, *, hostname: str | None = None,
          targets: Targets | None = None) -> list[Path]:
    """Use ``lease``'s names: the node's resolver, and inside the image the role's files.

    ``hostname`` is the node's (default: the lease's option 12). ``targets`` defaults to
    :func:`image_targets`: nothing is written outside the image. Returns the files
    written (those whose text changed).
    """
    servers = [str(s) for s in lease.dns_servers]
    search = search_list(lease.domain, lease.search)
    resolver.update(servers, search)
    where = targets if targets is not None else image_targets()
    if where is None:
        return []
    domain = lease.domain or (search[0] if search else None)
    ip = str(lease.ip) if lease.ip else ""
    written = []
    for path, text in ((where.resolv_conf, resolv_conf_text(servers, search)),
                       (where.hosts, hosts_text(hostname or lease.hostname, ip, domain))):
        try:
            if path.read_text(encoding="utf-8") == text:
                continue
        except (OSError, UnicodeDecodeError):
            pass
        write_atomic(path, text.encode(), mode=0o644)
        written.append(path)
    return written


def apply_said(lease: LeaseNames | None, hostname: str, console: Console) -> None:
    """:func:`apply` for the running node: each file written is said on the console, a
    failure to write one is a warning (the role runs without it). ``None``: no lease
    (``--repo`` and ``--mac``), nothing to do."""
    if lease is None:
        return
    try:
        for path in apply(lease, hostname=hostname):
            console.info(f"wrote {path} from the lease", stage="discover")
    except OSError as exc:
        console.warn(f"could not write the role's name files: {exc}", stage="discover")


def use_lease(lease: LeaseNames, console: Console) -> contextlib.AbstractContextManager[object]:
    """The node's own lookups go to ``lease``'s DNS servers, with its search list, until
    the returned context ends (said on the console; no servers: nothing changes)."""
    search = search_list(lease.domain, lease.search)
    if not lease.dns_servers:
        return contextlib.nullcontext()
    servers = [str(s) for s in lease.dns_servers]
    console.info(f"host names resolve through the lease's DNS servers {', '.join(servers)}"
                 + (f", search {' '.join(search)}" if search else ""), stage="discover")
    return resolver.lease_names(servers, search)
