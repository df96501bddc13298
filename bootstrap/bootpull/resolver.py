"""Host names in the repository and report URLs, resolved through the lease's DNS servers.

Discovery can hand the node a URL with a host name in it (a DNS SRV target, the
well-known ``bootpull.<domain>``, or a name in option 43 or on the command line), but
it does not write ``/etc/resolv.conf``: inside the image there is no system resolver
configuration at all, so ``http.client`` and urllib3 could not resolve that name.

When ``node run`` configured an interface from a lease, it installs a
:class:`LeaseResolver` for the rest of the run (:func:`lease_names`): a small hook in
front of :func:`socket.getaddrinfo`, the one call every HTTP client of the node (fetch's
``http.client``, report's urllib3) goes through. For a host name it asks
the lease's DNS servers (option 6) for A records with dnspython, answers cached for
their TTL; IP literals and ``localhost`` go straight to the system call. A name with
no dot is looked up in the lease's search list first (option 119, else option 15:
``repo`` is asked as ``repo.lab.test``), then as it is; a name with a dot as it is
first, then in the search list (``ndots:1``, as a stub resolver does). A name the
lease's DNS servers do not know (NXDOMAIN, no A record) falls back to the system
resolver (``/etc/hosts``, a development machine's resolver); a DNS server that does not
answer is a resolution error (:class:`socket.gaierror`), which fetch retries with
backoff and report spools for, like any connection error.

Why a hook and not ``/etc/resolv.conf``: the answer does not depend on whether the
node runs as PID 1's child in the image or in a test namespace, and the hook is undone
when the run ends (:func:`lease_names` is a context manager). Inside the image the
node also writes ``/etc/resolv.conf`` and ``/etc/hosts`` for the role
(:mod:`bootpull.names`); :func:`update` points the hook at a changed lease.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
from collections.abc import Iterator, Sequence
from typing import Any

_original_getaddrinfo = socket.getaddrinfo
_lock = threading.Lock()
_active: LeaseResolver | None = None


class LeaseResolver:
    """A records of host names from the lease's DNS servers only (dnspython)."""

    def __init__(self, servers: Sequence[str], *, search: Sequence[str] = (),
                 timeout: float = 2.0, lifetime: float = 5.0) -> None:
        import dns.resolver

        self.servers = [str(s) for s in servers]
        self.search = [d.strip(".").lower() for d in search if d.strip(".")]
        self._resolver = dns.resolver.Resolver(configure=False)
        self._resolver.nameservers = list(self.servers)
        self._resolver.timeout = timeout
        self._resolver.lifetime = lifetime
        self._resolver.cache = dns.resolver.Cache()  # answers kept for their TTL

    def candidates(self, name: str) -> list[str]:
        """The names asked, in order: a trailing dot means as it is only; no dot, the
        search list first; a dot, as it is first (``ndots:1``)."""
        if name.endswith("."):
            return [name.rstrip(".")]
        searched = [f"{name}.{domain}" for domain in self.search]
        return [*searched, name] if "." not in name else [name, *searched]

    def addresses(self, name: str) -> list[str] | None:
        """The IPv4 addresses of ``name`` (or of the first search-list name that has
        some); None when the lease's DNS has none of them.

        Raises :class:`socket.gaierror` when the DNS servers do not answer.
        """
        for candidate in self.candidates(name):
            found = self._ask(candidate)
            if found is not None:
                return found
        return None

    def _ask(self, name: str) -> list[str] | None:
        import dns.exception
        import dns.resolver

        try:
            answer = self._resolver.resolve(name.rstrip(".") + ".", "A", search=False,
                                            raise_on_no_answer=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        except (dns.exception.DNSException, OSError) as exc:
            raise socket.gaierror(
                socket.EAI_AGAIN, f"{name}: no answer from the lease's DNS servers "
                f"{', '.join(self.servers)} ({type(exc).__name__}: {exc})") from None
        found = [str(r.address) for r in answer]
        return found or None


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0,
                 flags: int = 0) -> list[Any]:
    resolver = _active
    name = host.decode("ascii", "replace") if isinstance(host, bytes) else host
    if (resolver is None or not isinstance(name, str) or not name or _is_literal(name)
            or name.lower().rstrip(".") == "localhost"
            or family not in (socket.AF_UNSPEC, socket.AF_INET)):
        return _original_getaddrinfo(host, port, family, type, proto, flags)
    addresses = resolver.addresses(name)
    if addresses is None:  # not the lease's name: /etc/hosts, the system's resolver
        return _original_getaddrinfo(host, port, family, type, proto, flags)
    out: list[Any] = []
    for address in addresses:
        out += _original_getaddrinfo(address, port, socket.AF_INET, type, proto,
                                     flags | socket.AI_NUMERICHOST)
    return out


def resolve(host: str) -> list[str]:
    """The IPv4 addresses :func:`socket.getaddrinfo` gives ``host`` now (for messages)."""
    infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def update(servers: Sequence[str], search: Sequence[str] = ()) -> bool:
    """Point the active hook at a changed lease's DNS servers and search list (a lease
    renewed with other options). False when no hook is active (no ``lease_names``)."""
    global _active
    with _lock:
        if _active is None or not servers:
            return False
        if (list(map(str, servers)), list(search)) != (_active.servers, _active.search):
            _active = LeaseResolver(servers, search=search)
        return True


@contextlib.contextmanager
def lease_names(servers: Sequence[str], search: Sequence[str] = ()
                ) -> Iterator[LeaseResolver | None]:
    """Resolve host names through ``servers`` (and the ``search`` list) until the block
    ends (no servers: no-op)."""
    global _active
    if not servers:
        yield None
        return
    resolver = LeaseResolver(servers, search=search)
    with _lock:
        previous = _active
        _active = resolver
        socket.getaddrinfo = _getaddrinfo
    try:
        yield resolver
    finally:
        with _lock:
            _active = previous
            if previous is None:
                socket.getaddrinfo = _original_getaddrinfo
