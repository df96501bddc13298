"""Where is the repository? One function per source, in the order of docs/contract.md §2.1.

Each source returns an :class:`Attempt`: either ``found`` with a URL, or ``not-here``
(the source has nothing to say) or ``failed`` (it had something, and it was wrong or
could not be read), with a reason a person can act on. :data:`SOURCES` is the order,
and :func:`try_sources` the one loop over it: it stops at the first ``found``; every
attempt goes into ``tried[]`` (as a :class:`Tried`).

1. ``cmdline``    ``bootpull.repo=URL`` on the kernel command line (or ``--repo``):
                  tried once, before DHCP.
2. ``dhcp-43``    option 43 (vendor-encapsulated) sub-option 1.
3. ``dhcp-67``    option 67, or else the BOOTP ``file`` field, when an http(s) URL.
4. ``dns-srv``    ``_bootpull._tcp.<domain>`` SRV, plus its TXT ``path=``.
5. ``well-known`` ``http://bootpull.<domain>/``, if that name resolves.

Sources 2 to 5 are tried over each lease. ``<domain>`` is option 15, or failing that
the first entry of option 119. DNS questions go only to the DNS servers of the lease
(option 6), never to the host's resolver, through the :class:`Dns` interface;
:class:`LeaseDns` is the dnspython one. Option 43 sub-option 2, the report URL, is read
by :func:`report_url_43` (docs/contract.md §2.5).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from ipaddress import IPv4Address
from typing import Protocol

from bootpull import dhcp

FOUND, NOT_HERE, FAILED = "found", "not-here", "failed"
SERVICE = "_bootpull._tcp"
#: a Linux interface name: at most 15 characters, no whitespace, ``/`` or ``:``
_IFNAME = re.compile(r"[^\s:/]{1,15}")


@dataclass(frozen=True)
class Attempt:
    """What one source said: its result, the reason, and the URL when ``found``."""

    source: str
    result: str
    reason: str
    url: str | None = None

    def tried(self, interface: str | None = None) -> Tried:
        """This attempt as an entry of ``tried[]``, made over ``interface``'s lease."""
        return Tried(self.source, self.result, self.reason, interface)


@dataclass(frozen=True)
class Tried:
    """One entry of ``tried[]`` (docs/contract.md §3.2).

    ``interface`` is the interface whose lease the attempt was made over; ``None`` for
    ``cmdline``, and for an interface passed over before DHCP, whose ``reason`` names
    it in its own words. In JSON the reason starts with the interface name.
    """

    source: str
    result: str
    reason: str
    interface: str | None = None

    @property
    def text(self) -> str:
        """The reason as JSON and the banner show it: ``eth0: ...``."""
        return f"{self.interface}: {self.reason}" if self.interface else self.reason

    def to_json(self) -> dict[str, str]:
        return {"source": self.source, "result": self.result, "reason": self.text}

    @classmethod
    def from_json(cls, obj: Mapping[str, str]) -> Tried:
        """The inverse of :meth:`to_json`: an interface name before ``: `` is split off."""
        name, sep, rest = obj["reason"].partition(": ")
        if sep and obj["source"] != "cmdline" and _IFNAME.fullmatch(name):
            return cls(obj["source"], obj["result"], rest, name)
        return cls(obj["source"], obj["result"], obj["reason"])


class DnsFailure(Exception):
    """A DNS question that got no answer (timeout, SERVFAIL, refused...)."""


class Dns(Protocol):
    """The three questions discovery asks. An empty list means "no such record"."""

    def srv(self, name: str) -> list[tuple[int, int, int, str]]:
        """(priority, weight, port, target) for each SRV record."""
        ...

    def txt(self, name: str) -> list[list[bytes]]:
        """Each TXT record as its list of character-strings."""
        ...

    def addresses(self, name: str) -> list[str]:
        """The A records of ``name``."""
        ...


class LeaseDns:
    """dnspython against the lease's DNS servers only, with a short time limit."""

    def __init__(self, servers: Sequence[IPv4Address], *, source: IPv4Address | None = None,
                 lifetime: float = 4.0, deadline: float | None = None) -> None:
        import dns.resolver

        self._resolver = dns.resolver.Resolver(configure=False)
        self._resolver.nameservers = [str(s) for s in servers]
        self._resolver.timeout = 2.0
        self._lifetime = lifetime
        self._deadline = deadline  # time.monotonic() after which no question is asked
        self._source = str(source) if source else None

    def _answer(self, name: str, rdtype: str) -> list[object]:
        import time

        import dns.exception
        import dns.resolver

        lifetime = self._lifetime
        if self._deadline is not None:
            lifetime = min(lifetime, self._deadline - time.monotonic())
            if lifetime < 0.2:
                raise DnsFailure(f"{rdtype} {name}: not asked, the time limit is reached")
        try:
            answer = self._resolver.resolve(name, rdtype, source=self._source,
                                            search=False, raise_on_no_answer=False,
                                            lifetime=lifetime)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as exc:
            servers = ", ".join(self._resolver.nameservers)  # type: ignore[arg-type]
            raise DnsFailure(f"{rdtype} {name} via {servers}: "
                             f"{type(exc).__name__}: {exc}") from None
        except OSError as exc:
            raise DnsFailure(f"{rdtype} {name}: {exc}") from None
        return list(answer)

    def srv(self, name: str) -> list[tuple[int, int, int, str]]:
        return [(r.priority, r.weight, r.port, r.target.to_text(omit_final_dot=True))  # type: ignore[attr-defined]
                for r in self._answer(name, "SRV")]

    def txt(self, name: str) -> list[list[bytes]]:
        return [list(r.strings) for r in self._answer(name, "TXT")]  # type: ignore[attr-defined]

    def addresses(self, name: str) -> list[str]:
        return [r.address for r in self._answer(name, "A")]  # type: ignore[attr-defined]


# -- the sources ------------------------------------------------------------------------


def from_cmdline(url: str | None) -> Attempt:
    """``bootpull.repo=URL`` (or ``node run --repo URL``); ``None`` when not given."""
    if url is None:
        return Attempt("cmdline", NOT_HERE, "no bootpull.repo= on the kernel command line")
    try:
        dhcp.check_url(url, "bootpull.repo=")
    except dhcp.MalformedDhcp as exc:
        return Attempt("cmdline", FAILED, str(exc))
    return Attempt("cmdline", FOUND, f"bootpull.repo={url}", url=url)


def _suboption_url(lease: dhcp.Lease, code: int) -> str | None:
    """Option 43 sub-option ``code`` as a URL; raise MalformedDhcp if it is not one."""
    raw = lease.vendor.get(code)
    if raw is None:
        return None
    what = f"option 43 sub-option {code}"
    return dhcp.check_url(dhcp.decode_text(raw, what, limit=dhcp.MAX_URL), what)


def from_dhcp_43(lease: dhcp.Lease) -> Attempt:
    if dhcp.VENDOR_SPECIFIC in lease.problems:
        return Attempt("dhcp-43", FAILED, lease.problems[dhcp.VENDOR_SPECIFIC])
    try:
        url = _suboption_url(lease, dhcp.SUBOPT_REPO_URL)
    except dhcp.MalformedDhcp as exc:
        return Attempt("dhcp-43", FAILED, str(exc))
    if url is None:
        why = ("no option 43 in the lease" if not lease.vendor
               else "option 43 has no sub-option 1 (the repository URL)")
        return Attempt("dhcp-43", NOT_HERE, why)
    return Attempt("dhcp-43", FOUND, "option 43 sub-option 1", url=url)


def report_url_43(lease: dhcp.Lease) -> str | None:
    """Option 43 sub-option 2, the report URL (docs/contract.md §2.5, order 4).

    A malformed one is dropped (§2.2): the report URL has other choices, and the
    repository URL in sub-option 1 still counts.
    """
    try:
        return _suboption_url(lease, dhcp.SUBOPT_REPORT_URL)
    except dhcp.MalformedDhcp:
        return None


def from_dhcp_67(lease: dhcp.Lease) -> Attempt:
    reasons: list[str] = []
    for value, what, problem in (
        (lease.bootfile, "option 67", lease.problems.get(dhcp.BOOTFILE)),
        (lease.file, "the BOOTP file field", lease.problems.get(0)),
    ):
        if problem:
            reasons.append(problem)
        elif value is None:
            reasons.append("no option 67" if what == "option 67"
                           else "the BOOTP file field is empty")
        elif value.partition(":")[0].lower() not in ("http", "https"):  # a file name
            reasons.append(f"{what} {value[:80]!r} is not an http:// or https:// URL")
        else:
            try:
                return Attempt("dhcp-67", FOUND, what, url=dhcp.check_url(value, what))
            except dhcp.MalformedDhcp as exc:
                reasons.append(str(exc))
    failed = any("not an http" not in r and not r.startswith("no ") and not r.endswith("empty")
                 for r in reasons)
    return Attempt("dhcp-67", FAILED if failed else NOT_HERE, "; ".join(reasons))


def _dns_preconditions(lease: dhcp.Lease, source: str) -> Attempt | None:
    if lease.dns_domain is None:
        problems = dhcp.describe_problems(lease, (dhcp.DOMAIN_NAME, dhcp.DOMAIN_SEARCH))
        if problems:
            return Attempt(source, FAILED, f"no usable domain: {problems}")
        return Attempt(source, NOT_HERE, "the lease has no domain (option 15 or 119)")
    if not lease.dns_servers:
        problems = dhcp.describe_problems(lease, (dhcp.DNS_SERVER,))
        if problems:
            return Attempt(source, FAILED, f"no usable DNS server: {problems}")
        return Attempt(source, NOT_HERE, "the lease has no DNS servers (option 6)")
    return None


def pick_srv(records: list[tuple[int, int, int, str]],
             rng: random.Random | None = None) -> tuple[int, int, int, str] | None:
    """RFC 2782: the lowest priority, then a weighted random choice among those."""
    usable = [r for r in records if r[3] not in ("", ".")]
    if not usable:
        return None
    best = min(r[0] for r in usable)
    group = [r for r in usable if r[0] == best]
    total = sum(r[1] for r in group)
    if total == 0:
        return group[0]
    point = (rng or random).uniform(0, total)
    for record in group:
        point -= record[1]
        if point <= 0:
            return record
    return group[-1]


def txt_path(records: list[list[bytes]]) -> str | None:
    """The DNS-SD ``path=`` key of the first TXT record that has one."""
    for strings in records:
        for item in strings:
            key, sep, value = item.partition(b"=")
            if sep and key.lower() == b"path":
                return value.decode("utf-8", errors="strict")
    return None


def from_dns_srv(lease: dhcp.Lease, dns: Dns) -> Attempt:
    blocked = _dns_preconditions(lease, "dns-srv")
    if blocked:
        return blocked
    name = f"{SERVICE}.{lease.dns_domain}"
    try:
        records = dns.srv(name)
    except DnsFailure as exc:
        return Attempt("dns-srv", FAILED, str(exc))
    chosen = pick_srv(records)
    if chosen is None:
        return Attempt("dns-srv", NOT_HERE, f"no SRV record for {name}")
    _prio, _weight, port, target = chosen
    try:
        target = dhcp.check_domain(target, f"SRV target of {name}")
        path = txt_path(dns.txt(name)) or "/"
    except (dhcp.MalformedDhcp, UnicodeDecodeError) as exc:
        return Attempt("dns-srv", FAILED, f"{name}: {exc}")
    except DnsFailure as exc:
        return Attempt("dns-srv", FAILED, str(exc))
    if not path.startswith("/") or any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F
                                       for c in path):
        return Attempt("dns-srv", FAILED, f"TXT path={path[:80]!r} of {name} must start "
                                          "with / and have no spaces")
    try:
        url = dhcp.check_url(f"http://{target}:{port}{path}", f"the URL from SRV {name}")
    except dhcp.MalformedDhcp as exc:
        return Attempt("dns-srv", FAILED, str(exc))
    return Attempt("dns-srv", FOUND, f"SRV {name} -> {target}:{port}", url=url)


def from_well_known(lease: dhcp.Lease, dns: Dns) -> Attempt:
    blocked = _dns_preconditions(lease, "well-known")
    if blocked:
        return blocked
    name = f"bootpull.{lease.dns_domain}"
    try:
        found = dns.addresses(name)
    except DnsFailure as exc:
        return Attempt("well-known", FAILED, str(exc))
    if not found:
        return Attempt("well-known", NOT_HERE, f"{name} does not resolve")
    return Attempt("well-known", FOUND, f"{name} is {found[0]}", url=f"http://{name}/")


# -- the order ------------------------------------------------------------------------


@dataclass
class Clues:
    """What the sources read: the command line's URL at boot, or one lease.

    ``dns_factory`` makes the lease's :class:`Dns` when the first DNS source asks, so no
    DNS question is asked (nor a resolver made) when DHCP already answered.
    """

    repo_url: str | None = None
    lease: dhcp.Lease | None = None
    dns_factory: Callable[[dhcp.Lease], Dns] | None = None

    @property
    def leased(self) -> dhcp.Lease:
        assert self.lease is not None, "a lease source without a lease"
        return self.lease

    @cached_property
    def dns(self) -> Dns:
        assert self.dns_factory is not None, "a DNS source without a DNS factory"
        return self.dns_factory(self.leased)


@dataclass(frozen=True)
class Source:
    """One row of :data:`SOURCES`."""

    name: str  # the ``repo_url_source`` and the ``tried[]`` source it gives
    on_lease: bool  # False: tried once, before DHCP; True: tried over each lease
    find: Callable[[Clues], Attempt]


SOURCES: tuple[Source, ...] = (
    Source("cmdline", False, lambda clues: from_cmdline(clues.repo_url)),
    Source("dhcp-43", True, lambda clues: from_dhcp_43(clues.leased)),
    Source("dhcp-67", True, lambda clues: from_dhcp_67(clues.leased)),
    Source("dns-srv", True, lambda clues: from_dns_srv(clues.leased, clues.dns)),
    Source("well-known", True, lambda clues: from_well_known(clues.leased, clues.dns)),
)
ORDER = tuple(source.name for source in SOURCES)


def try_sources(clues: Clues) -> list[Attempt]:
    """The sources of :data:`SOURCES` that ``clues`` are for, in order, up to the first found.

    Without a lease that is ``cmdline`` alone; with one, the DHCP and DNS sources over it.
    """
    attempts: list[Attempt] = []
    for source in SOURCES:
        if source.on_lease != (clues.lease is not None):
            continue
        attempts.append(source.find(clues))
        if attempts[-1].result == FOUND:
            break
    return attempts
