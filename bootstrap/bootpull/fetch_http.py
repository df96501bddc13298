"""One HTTP request at a time to a git smart HTTP server, under the pull's budget.

:class:`HttpTransport` sends one request to a repository's base URL and streams the
body of a 2xx response into a sink. :class:`Budget` is what the whole pull may spend,
shared by all its requests and retries: one wall-clock deadline, enforced even against
a server that trickles one byte a second (a watchdog shuts the socket down at the
deadline, and no byte at all for ``stall_timeout`` is a dead connection), and a cap on
bytes received (status lines and headers included).

Each answer is classified here; what to do about it is the caller's
(:class:`bootpull.fetch.GitRemote`), which knows when a git answer is whole:

- transient (connection refused or reset, a response cut short, 5xx, 408, 429):
  :class:`Transient`, with the wait the server asked for in ``Retry-After``;
- a redirect of a GET: :class:`Redirect`;
- the deadline passed: :class:`DeadlinePassed`;
- permanent (404, 401/403, any other status): a :class:`~bootpull.errors.FetchError`;
- a TLS handshake that no retry can mend (:func:`tls_failure`: a certificate from an
  unknown issuer, for another name, expired or not yet valid; no TLS on that port): a
  :class:`~bootpull.errors.TlsError` at once, never retried. A handshake cut short
  (the server closed the connection mid-way) stays transient.

https trusts the system's CAs (``SSL_CERT_FILE``: the image's bundle, which
``bootpull image build --ca`` extends) plus the ``--ca`` files of ``node run``, in one
:func:`tls_context` for all of a pull's connections.

Why http.client and not dulwich's transport (``dulwich.client.HttpGitClient`` on
urllib3): it has a per-socket timeout but no wall-clock deadline across reads, so a
one-byte-a-second trickle is never cut; and any status other than 200/401/404/407
becomes a bare ``GitProtocolError`` without the ``Retry-After`` header.
"""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from bootpull.errors import FetchError, NotFound, TlsError, UsageError

AGENT = "bootpull/1"
_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
_REDIRECTS = {301, 302, 303, 307, 308}
_CHUNK = 64 * 1024


class Transient(Exception):
    """A failure worth retrying: says why, and how long the server asked us to wait."""

    def __init__(self, reason: str, *, kind: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.retry_after = retry_after


class DeadlinePassed(Exception):
    """The pull's deadline passed during (or before) the request."""


class Redirect(Exception):
    """A GET was answered with a redirect to ``location``."""

    def __init__(self, location: str, status: int) -> None:
        super().__init__(location)
        self.location = location
        self.status = status


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds to wait: delta-seconds or an HTTP date; None if absent
    or unreadable (then our own backoff applies)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "¹".isdigit(), but int() refuses it
        return float(min(int(value), 10**7))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class Response:
    """A 2xx answer: its status and headers (the body went to the sink)."""

    status: int
    headers: http.client.HTTPMessage


@dataclass
class Budget:
    """What one pull may still spend, across all its requests and retries.

    The deadline is ``deadline`` seconds from when the budget is made (on ``clock``);
    ``bytes_received`` counts every byte that arrived, status lines and headers included.
    """

    deadline: float  # seconds for the whole pull
    max_bytes: int  # cap on bytes received
    url: str  # the repository, named when the cap is passed (GitRemote moves it along)
    clock: Callable[[], float] = time.monotonic
    bytes_received: int = field(default=0, init=False)
    deadline_at: float = field(init=False)

    def __post_init__(self) -> None:
        self.deadline_at = self.clock() + self.deadline

    def remaining(self) -> float:
        """Seconds left before the pull's deadline."""
        return self.deadline_at - self.clock()

    def add_bytes(self, n: int) -> None:
        """Count ``n`` bytes received; a FetchError (never retried) once past the cap."""
        self.bytes_received += n
        if self.bytes_received > self.max_bytes:
            raise FetchError(
                f"the fetch from {self.url} passed its cap of {self.max_bytes} bytes",
                why=f"{self.bytes_received} bytes were received",
                hint="a role bundle should be far smaller; check what the repository serves, "
                     "or raise the cap (FetchLimits.max_bytes)")


class HttpTransport:
    """One HTTP request at a time to the repository at ``url``, spending ``budget``."""

    def __init__(self, url: str, budget: Budget, *, stall_timeout: float,
                 tls: ssl.SSLContext | None = None) -> None:
        hint = ("give the repository as http://HOST[:PORT]/PATH, for example "
                "http://10.0.0.1:8080/repo.git")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:  # "Invalid IPv6 URL", "Port out of range 0-65535", ...
            raise FetchError(f"{url[:200]!r} is not a usable repository URL", why=str(exc),
                             hint=hint) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchError(f"{url!r} is not an http:// or https:// repository URL",
                             hint=hint)
        if parts.username or parts.password:
            raise FetchError("credentials in the repository URL are not supported",
                             hint="serve the repository read-only without authentication")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = port
        self.base_path = parts.path.rstrip("/")
        self.budget = budget
        self.stall_timeout = stall_timeout
        self.tls = tls  # None: Python's default context (the system's CAs)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None,
        headers: dict[str, str],
        sink: Callable[[bytes], None],
    ) -> Response:
        """Send one request and stream the body of a 2xx response into ``sink``.

        Raises Transient (retry), FetchError (permanent), DeadlinePassed.
        """
        budget = self.budget
        remaining = budget.remaining()
        if remaining <= 0:
            raise DeadlinePassed
        timeout = min(self.stall_timeout, remaining)
        conn: http.client.HTTPConnection
        if self.scheme == "https":
            conn = http.client.HTTPSConnection(self.host, self.port, timeout=timeout,
                                               context=self.tls)
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        fired = threading.Event()

        def watchdog() -> None:
            fired.set()
            sock = conn.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

        timer = threading.Timer(remaining, watchdog)
        timer.daemon = True
        timer.start()
        try:
            try:
                try:
                    conn.connect()  # with https, the handshake
                except ssl.SSLError as exc:
                    failure = tls_failure(exc, self.host, datetime.now(UTC))
                    if failure is not None and not fired.is_set():
                        raise failure from None
                    raise
                conn.request(method, self.base_path + path, body=body,
                             headers={"User-Agent": AGENT, **headers})
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                if fired.is_set() or budget.remaining() <= 0:
                    raise DeadlinePassed from exc
                raise Transient(f"{type(exc).__name__}: {exc}", kind="connect") from exc
            budget.add_bytes(_header_size(resp))
            status = resp.status
            if status in _TRANSIENT_STATUS:
                retry_after = parse_retry_after(resp.getheader("Retry-After"))
                with contextlib.suppress(OSError, http.client.HTTPException):
                    budget.add_bytes(len(resp.read(4096)))
                raise Transient(f"HTTP {status} {resp.reason}", kind=f"http-{status}",
                                retry_after=retry_after)
            if status in _REDIRECTS and method == "GET":
                raise Redirect(resp.getheader("Location") or "", status)
            if not 200 <= status < 300:
                raise _permanent_http_error(status, resp.reason, self.url_for(path))
            try:
                while True:
                    if budget.remaining() <= 0:
                        raise DeadlinePassed
                    chunk = resp.read1(_CHUNK)
                    if not chunk:
                        break
                    budget.add_bytes(len(chunk))
                    sink(chunk)
            except (OSError, http.client.HTTPException) as exc:
                if fired.is_set() or budget.remaining() <= 0:
                    raise DeadlinePassed from exc
                raise Transient(f"the response was cut short ({type(exc).__name__}: {exc})",
                                kind="cut-short") from exc
            if fired.is_set():  # the watchdog's shutdown can read as a clean end of file
                raise DeadlinePassed
            return Response(status, resp.headers)
        finally:
            timer.cancel()
            conn.close()

    def url_for(self, path: str) -> str:
        port = f":{self.port}" if self.port else ""
        return f"{self.scheme}://{self.host}{port}{self.base_path}{path}"


def tls_context(ca_files: Sequence[Path]) -> ssl.SSLContext:
    """The context of a pull's https connections: the system's CAs (``SSL_CERT_FILE``,
    else OpenSSL's default paths) plus the PEM certificates in each of ``ca_files``.

    A file that cannot be read or holds no PEM certificate is a
    :class:`~bootpull.errors.UsageError` naming it (``node run --ca`` checks its files
    with this before anything else).
    """
    context = ssl.create_default_context()
    for path in ca_files:
        read_pem(path)
        try:
            context.load_verify_locations(cafile=str(path))
        except (ssl.SSLError, ValueError) as exc:
            raise UsageError(f"--ca {path}: not a PEM certificate file",
                             why=f"OpenSSL cannot read it ({exc})", hint=PEM_HINT) from None
    return context


PEM_HINT = ("give the CA certificate in PEM form (a file with '-----BEGIN CERTIFICATE-----' "
            "lines); 'openssl x509 -inform der -in FILE' converts DER")


def read_pem(path: Path) -> bytes:
    """The bytes of a ``--ca`` file; UsageError naming it if it cannot be read or has no
    PEM certificate in it (``node run --ca``, ``image build --ca``)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"--ca {path}: cannot be read", why=exc.strerror or str(exc),
                         hint=PEM_HINT) from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise UsageError(f"--ca {path}: not a PEM certificate file",
                         why="it has no '-----BEGIN CERTIFICATE-----' line", hint=PEM_HINT)
    return data


#: OpenSSL's X509_V_ERR_* codes (openssl/x509_vfy.h) that say which fix applies
X509_CERT_NOT_YET_VALID = 9
X509_CERT_HAS_EXPIRED = 10
X509_UNKNOWN_ISSUER = frozenset({
    2,  # UNABLE_TO_GET_ISSUER_CERT
    18,  # DEPTH_ZERO_SELF_SIGNED_CERT
    19,  # SELF_SIGNED_CERT_IN_CHAIN
    20,  # UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21,  # UNABLE_TO_VERIFY_LEAF_SIGNATURE
})
X509_NAME_MISMATCH = frozenset({62, 64})  # HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH
#: handshake failures worth another try: the connection went away mid-way
_TLS_TRANSIENT = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError,
                  ssl.SSLWantReadError, ssl.SSLWantWriteError)
_CA_FIX = ("give the node the CA that signed the server's certificate: "
           "'bootpull image build --ca FILE' bakes it into the image, "
           "'bootpull node run --ca FILE' adds it on a host; or serve a certificate "
           "from a CA the node trusts already")
_NTP = "its NTP servers (bootpull.ntp=, else DHCP option 42)"


def tls_failure(exc: ssl.SSLError, host: str, now: datetime) -> TlsError | None:
    """What a failed handshake with ``host`` means and how to fix it, as a TlsError
    (permanent: exit 11 at once); None for a handshake cut short (worth a retry).

    ``now`` is the node's clock, which the banner quotes for a certificate that has
    expired or is not valid yet: a wrong clock is a common cause of both.
    """
    if isinstance(exc, _TLS_TRANSIENT):
        return None
    if not isinstance(exc, ssl.SSLCertVerificationError):
        why = str(exc.strerror or exc)
        hint = ("check that the server speaks TLS 1.2 or newer on that port, or use "
                "http:// if it serves plain http")
        if exc.reason == "WRONG_VERSION_NUMBER":
            hint = ("the server answered without TLS: use http:// for a plain http "
                    "server, or the port where it serves https")
        return TlsError(f"the TLS handshake with {host} failed", why=why, hint=hint)
    code = exc.verify_code
    message = (exc.verify_message or str(exc)).rstrip(".")
    clock = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if code in X509_UNKNOWN_ISSUER:
        return TlsError(f"the TLS certificate of {host} is from an unknown issuer",
                        why=f"{message}: the certificate is self-signed, or its CA is not "
                            "one this node trusts", hint=_CA_FIX)
    if code in X509_NAME_MISMATCH:
        return TlsError(
            f"the TLS certificate of {host} is for another name",
            why=f"the repository URL names {host!r}, which the certificate does not "
                f"hold ({message})",
            hint=f"use the repository URL with a name the certificate holds (its "
                 f"subjectAltName), or reissue the certificate with {host} in it")
    if code == X509_CERT_HAS_EXPIRED:
        return TlsError(
            f"the TLS certificate of {host} has expired",
            why=f"{message}, by this node's clock: {clock}",
            hint=f"renew the server's certificate (or its CA's); if it has not expired, "
                 f"this node's clock is ahead: check it, and {_NTP}")
    if code == X509_CERT_NOT_YET_VALID:
        return TlsError(
            f"the TLS certificate of {host} is not valid yet",
            why=f"{message}, by this node's clock: {clock}",
            hint=f"check this node's clock, which may be behind (a dead RTC battery, no "
                 f"NTP answer: check {_NTP}); if the clock is right, reissue the "
                 "certificate with a start time in the past")
    return TlsError(f"the TLS certificate of {host} was refused",
                    why=f"{message} (X509 error {code})",
                    hint="fix the server's certificate (openssl s_client -connect "
                         "HOST:PORT shows what it sends)")


def _header_size(resp: http.client.HTTPResponse) -> int:
    status_line = len(f"HTTP/1.1 {resp.status} {resp.reason}\r\n")
    return status_line + sum(len(k) + len(v) + 4 for k, v in resp.getheaders()) + 2


def _permanent_http_error(status: int, reason: str, url: str) -> FetchError:
    if status == 404:
        return NotFound(f"no git repository at {url}", why=f"the server said HTTP 404 {reason}",
                          hint="check the repository URL (bootpull.repo=, DHCP, DNS): it must "
                               "name a repository served over git smart HTTP, as in "
                               "http://HOST:PORT/repo.git")
    if status in (401, 403):
        return FetchError(f"the server refused access to {url}",
                          why=f"HTTP {status} {reason}",
                          hint="nodes fetch anonymously: serve the repository read-only "
                               "without authentication")
    return FetchError(f"the server refused the request for {url}", why=f"HTTP {status} {reason}",
                      hint="check that the URL names a git smart HTTP repository and that the "
                           "server runs git http-backend (or `bootpull serve`)")

