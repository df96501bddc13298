"""Fetch only what this node needs, over git smart HTTP, into an object store.

:class:`GitRemote` speaks git protocol v2 (``gitprotocol-v2``) to a smart HTTP server
such as ``git http-backend``:

- ``snapshot(ref)`` resolves the ref with ``ls-refs`` (only that ref is listed, tags
  peeled) and, unless the commit is already cached, fetches the commit and its root
  tree (``deepen 1``, ``filter tree:1``): no history, no other trees, no file contents.
- The returned :class:`GitSnapshot` (a :class:`bootpull.bundle.TreeReader`) fetches
  the rest by object id, only when asked: the trees on the paths it reads (one request
  per directory level, ``filter tree:0``), a listed directory's trees in one request
  (``filter blob:none``), and the blobs of ``read_many`` in one request. So the bytes
  on the wire scale with the role, not with the repository; a change elsewhere in the
  repository costs only the trees on the path; and a reboot with nothing changed
  moves only the ref advertisement.
- Objects go straight into a bare git object store in ``cache_dir``; nothing is ever
  checked out, and what is cached is not fetched again.

Limits (:class:`FetchLimits`): one wall-clock deadline for the whole pull, enforced
even against a server that trickles one byte a second (a watchdog shuts the socket
down at the deadline), a cap on bytes received across all requests, and a cap on how
far a pack may inflate. Transient failures (connection refused or reset, a response
cut short, 5xx, 408, 429) are retried with full-jitter exponential backoff, honouring
``Retry-After``; each retry is counted in :class:`~bootpull.backoff.Counters` and said
on the console. Permanent failures (404, 401/403, a server that is not git or not v2)
fail at once.

Errors: :class:`~bootpull.errors.FetchError` when the transport failed (exit 11: fall
back to the last-known-good), :class:`~bootpull.errors.VerifyError` when the server
sent git data that is wrong (a pack that fails its checksum or inflates past the cap,
an object that is not what was asked for, a ref that is not a commit): exit 12.

Why not dulwich's HTTP client (``dulwich.client.HttpGitClient``): its ``fetch_pack``
discovers references (a GET of info/refs, and ``ls-refs``) before every fetch, so each
lazy blob fetch would pay for a ref advertisement; its urllib3 transport has a
per-socket timeout but no wall-clock deadline across reads, so a one-byte-a-second
trickle is never cut; and any status other than 200/401/404/407 becomes a bare
``GitProtocolError`` without the ``Retry-After`` header. The protocol bytes are small
(:mod:`bootpull.gitwire`) and the transport is http.client with a watchdog; dulwich does
the part that is hard to get right: indexing and checking packs, and parsing objects.
"""

from __future__ import annotations

import builtins
import contextlib
import email.utils
import http.client
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urlsplit

from bootpull import gitwire
from bootpull.backoff import Backoff, Counters
from bootpull.bundle import MODE_EXEC, MODE_FILE, MODE_SYMLINK, TreeEntry
from bootpull.console import Console
from bootpull.errors import FetchError, VerifyError

if TYPE_CHECKING:
    from dulwich.objects import ShaFile
    from dulwich.repo import Repo

AGENT = "bootpull/1"
MODE_TREE = 0o040000
MODE_GITLINK = 0o160000
MAX_TREE_DEPTH = 256  # directory nesting; deeper than this is a hostile tree
MAX_CACHE_PACKS = 256  # every fetch adds a pack; lookups slow down with too many
_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
_REDIRECTS = {301, 302, 303, 307, 308}
MAX_REDIRECTS = 5
ADVERTISEMENT = "/info/refs?service=git-upload-pack"
HOME_BASE_REPO = "/repo.git"  # where `bootpull serve` serves the repository (CONTRACT §4)
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class FetchLimits:
    """How long, how much, and how often one pull may try."""

    deadline: float = 300.0  # seconds for the whole pull, across all retries
    max_bytes: int = 256 * 2**20  # cap on bytes received, across all requests
    backoff: Backoff = field(default_factory=lambda: Backoff(base=1.0, cap=30.0))
    max_attempts: int = 8  # per request, the first try included
    stall_timeout: float = 30.0  # no byte at all for this long: the connection is dead
    max_inflated: int = 2**30  # what one pack may inflate to (zlib bombs), and one object
    max_cache_bytes: int = 2**30  # past this (or MAX_CACHE_PACKS packs) the cache starts afresh


class _Transient(Exception):
    """A failure worth retrying: says why, and how long the server asked us to wait."""

    def __init__(self, reason: str, *, kind: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.retry_after = retry_after


class _DeadlinePassed(Exception):
    pass


class _Redirect(Exception):
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
    if value.isdigit():
        return float(min(int(value), 10**7))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class _Response:
    status: int
    headers: http.client.HTTPMessage


class _Http:
    """One HTTP request at a time, under the pull's deadline and byte cap."""

    def __init__(self, url: str, remote: GitRemote) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchError(f"{url!r} is not an http:// or https:// repository URL",
                             hint="give the repository as http://HOST[:PORT]/PATH, "
                                  "for example http://10.0.0.1:8080/repo.git")
        if parts.username or parts.password:
            raise FetchError("credentials in the repository URL are not supported",
                             hint="serve the repository read-only without authentication")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port
        self.base_path = parts.path.rstrip("/")
        self.remote = remote

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None,
        headers: dict[str, str],
        sink: Callable[[bytes], None],
    ) -> _Response:
        """Send one request and stream the body of a 2xx response into ``sink``.

        Raises _Transient (retry), FetchError (permanent), _DeadlinePassed.
        """
        remote = self.remote
        remaining = remote.remaining()
        if remaining <= 0:
            raise _DeadlinePassed
        timeout = min(remote.limits.stall_timeout, remaining)
        conn: http.client.HTTPConnection
        if self.scheme == "https":
            conn = http.client.HTTPSConnection(self.host, self.port, timeout=timeout)
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
                conn.request(method, self.base_path + path, body=body,
                             headers={"User-Agent": AGENT, **headers})
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                if fired.is_set() or remote.remaining() <= 0:
                    raise _DeadlinePassed from exc
                raise _Transient(f"{type(exc).__name__}: {exc}", kind="connect") from exc
            remote._add_bytes(_header_size(resp))
            status = resp.status
            if status in _TRANSIENT_STATUS:
                retry_after = parse_retry_after(resp.getheader("Retry-After"))
                with contextlib.suppress(OSError, http.client.HTTPException):
                    remote._add_bytes(len(resp.read(4096)))
                raise _Transient(f"HTTP {status} {resp.reason}", kind=f"http-{status}",
                                 retry_after=retry_after)
            if status in _REDIRECTS and method == "GET":
                raise _Redirect(resp.getheader("Location") or "", status)
            if not 200 <= status < 300:
                raise _permanent_http_error(status, resp.reason, self.url_for(path))
            try:
                while True:
                    if remote.remaining() <= 0:
                        raise _DeadlinePassed
                    chunk = resp.read1(_CHUNK)
                    if not chunk:
                        break
                    remote._add_bytes(len(chunk))
                    sink(chunk)
            except (OSError, http.client.HTTPException) as exc:
                if fired.is_set() or remote.remaining() <= 0:
                    raise _DeadlinePassed from exc
                raise _Transient(f"the response was cut short ({type(exc).__name__}: {exc})",
                                 kind="cut-short") from exc
            if fired.is_set():  # the watchdog's shutdown can read as a clean end of file
                raise _DeadlinePassed
            return _Response(status, resp.headers)
        finally:
            timer.cancel()
            conn.close()

    def url_for(self, path: str) -> str:
        port = f":{self.port}" if self.port else ""
        return f"{self.scheme}://{self.host}{port}{self.base_path}{path}"


def _header_size(resp: http.client.HTTPResponse) -> int:
    status_line = len(f"HTTP/1.1 {resp.status} {resp.reason}\r\n")
    return status_line + sum(len(k) + len(v) + 4 for k, v in resp.getheaders()) + 2


def _permanent_http_error(status: int, reason: str, url: str) -> FetchError:
    if status == 404:
        return FetchError(f"no git repository at {url}", why=f"the server said HTTP 404 {reason}",
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


def _cache_is_full(cache_dir: Path, max_bytes: int) -> str:
    """Why the cache should start afresh, or "" when it need not."""
    packs = list((cache_dir / "objects" / "pack").glob("*.pack"))
    if len(packs) > MAX_CACHE_PACKS:
        return f"{len(packs)} packs (more than {MAX_CACHE_PACKS})"
    size = 0
    for pack in packs:
        with contextlib.suppress(OSError):
            size += pack.stat().st_size
    return f"{size} bytes (more than {max_bytes})" if size > max_bytes else ""


def _pack_problem(pack: Path) -> str:
    """What is wrong with one cached pack and its index, or "" when they are whole.

    Both files end in a SHA-1 of what precedes it, and the index also records the
    pack's: a file cut short by a power loss, left empty, or overwritten with garbage
    fails one of these checks. The whole pack is hashed, so this costs one read of the
    cache (a role's worth of objects) per run.
    """
    import hashlib

    idx = pack.with_suffix(".idx")
    try:
        idx_bytes = idx.read_bytes()
    except OSError as exc:
        return f"its index {idx.name} cannot be read ({exc.strerror or exc})"
    if len(idx_bytes) < 8 + 256 * 4 + 40 or not idx_bytes.startswith(b"\xfftOc\x00\x00\x00\x02"):
        return f"its index {idx.name} is cut short or not a version 2 index"
    if hashlib.sha1(idx_bytes[:-20]).digest() != idx_bytes[-20:]:  # noqa: S324 - git's own
        return f"its index {idx.name} fails its checksum"
    count = int.from_bytes(idx_bytes[8 + 255 * 4:8 + 256 * 4], "big")
    recorded = idx_bytes[-40:-20]
    digest = hashlib.sha1()  # noqa: S324 - git's pack checksum
    try:
        with pack.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 32:
                return f"{pack.name} is cut short ({size} bytes)"
            header = f.read(12)
            if header[:4] != b"PACK" or int.from_bytes(header[8:12], "big") != count:
                return f"{pack.name} has a bad header"
            digest.update(header)
            left = size - 12 - 20
            while left > 0:
                chunk = f.read(min(_CHUNK, left))
                if not chunk:
                    return f"{pack.name} is cut short"
                digest.update(chunk)
                left -= len(chunk)
            trailer = f.read(20)
    except OSError as exc:
        return f"{pack.name} cannot be read ({exc.strerror or exc})"
    if digest.digest() != trailer or trailer != recorded:
        return f"{pack.name} fails its checksum"
    return ""


def cache_problems(cache_dir: Path) -> list[tuple[Path, str]]:
    """Damaged files in the object cache's pack directory, each with what is wrong.

    A pack without its index and an index without its pack count as damaged (a power
    loss between the two writes leaves one of them).
    """
    pack_dir = Path(cache_dir) / "objects" / "pack"
    found: list[tuple[Path, str]] = []
    for idx in sorted(pack_dir.glob("*.idx")):
        if not idx.with_suffix(".pack").exists():
            found.append((idx, f"{idx.name} has no pack"))
    for pack in sorted(pack_dir.glob("*.pack")):
        why = _pack_problem(pack)
        if why:
            found.append((pack, why))
    return found


def _cache_damaged(console: Console, counters: Counters, why: str) -> None:
    counters.count("fallbacks", "fetch:cache-damaged")
    console.warn(f"fetch: the object cache is damaged ({why}); discarding it and fetching "
                 "from the repository", stage="fetch", reason="cache-damaged")


def _open_store(cache_dir: Path, *, max_bytes: int, console: Console,
                counters: Counters) -> Repo:
    """The bare object store at ``cache_dir``, made if missing.

    The cache only ever grows (each new commit adds a small pack, each new file version
    a blob), so past ``max_bytes`` or MAX_CACHE_PACKS packs it is started afresh: the
    next reads fetch the role once more, and nothing else changes.

    A cache damaged by a power loss mid-write (a pack or index cut short, empty, or
    garbage; see :func:`cache_problems`) loses its damaged packs; one that dulwich cannot
    open at all is started afresh. Either way it is said on the console and counted as a
    ``fallbacks`` with reason ``fetch:cache-damaged``; what was lost is fetched again.
    """
    import shutil

    from dulwich.repo import Repo

    if (cache_dir / "objects").is_dir():
        why = _cache_is_full(cache_dir, max_bytes)
        if why:
            console.info(f"fetch: the object cache holds {why}; starting it afresh",
                         stage="fetch")
            shutil.rmtree(cache_dir)
    elif cache_dir.exists() and any(cache_dir.iterdir()):
        _cache_damaged(console, counters, f"{cache_dir} has no objects directory")
        shutil.rmtree(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    if not (cache_dir / "objects").is_dir():
        return Repo.init_bare(str(cache_dir))
    # A pack being received when the node lost power (or got kill -9) stays behind as a
    # temporary file; it was never indexed, so it was never used. Reclaim the space.
    for where in (cache_dir / "objects" / "pack", cache_dir / "objects"):
        for stray in where.glob("tmp*"):
            with contextlib.suppress(OSError):
                stray.unlink()
    for damaged, why in cache_problems(cache_dir):
        _cache_damaged(console, counters, why)
        for part in (damaged.with_suffix(".pack"), damaged.with_suffix(".idx")):
            with contextlib.suppress(OSError):
                part.unlink()
    try:
        return Repo(str(cache_dir), bare=True)
    except Exception as exc:  # noqa: BLE001 - a broken config, HEAD, ...: start afresh
        _cache_damaged(console, counters, f"{type(exc).__name__}: {exc}")
    shutil.rmtree(cache_dir, ignore_errors=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    return Repo.init_bare(str(cache_dir))


class GitRemote:
    """A repository over git smart HTTP (protocol v2), cached in a bare object store."""

    def __init__(
        self,
        url: str,
        cache_dir: Path,
        *,
        limits: FetchLimits,
        console: Console,
        counters: Counters,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url.rstrip("/")
        self.cache_dir = Path(cache_dir)
        self.limits = limits
        self.console = console
        self.counters = counters
        self.bytes_received = 0
        self.requests = 0
        self._sleep = sleep
        self._clock = clock
        self._deadline_at = clock() + limits.deadline
        self._http = _Http(self.url, self)
        self._caps: gitwire.Capabilities | None = None
        self._store: Repo | None = None

    # -- budget ----------------------------------------------------------------------

    def remaining(self) -> float:
        """Seconds left before the pull's deadline."""
        return self._deadline_at - self._clock()

    def _add_bytes(self, n: int) -> None:
        self.bytes_received += n
        if self.bytes_received > self.limits.max_bytes:
            raise FetchError(
                f"the fetch from {self.url} passed its cap of {self.limits.max_bytes} bytes",
                why=f"{self.bytes_received} bytes were received",
                hint="a role bundle should be far smaller; check what the repository serves, "
                     "or raise the cap (FetchLimits.max_bytes)")

    @property
    def store(self) -> Repo:
        if self._store is None:
            self._store = _open_store(self.cache_dir, max_bytes=self.limits.max_cache_bytes,
                                      console=self.console, counters=self.counters)
        return self._store

    def _discard_cache(self, why: str) -> None:
        """An object could not be read from the cache: start the cache afresh."""
        import shutil

        _cache_damaged(self.console, self.counters, why)
        store, self._store = self._store, None
        if store is not None:
            with contextlib.suppress(Exception):  # its mmaps may still be referenced
                store.close()
        shutil.rmtree(self.cache_dir, ignore_errors=True)

    def close(self) -> None:
        """Close the object cache (snapshots of this remote can no longer read)."""
        store, self._store = self._store, None
        if store is not None:
            store.close()

    def __enter__(self) -> GitRemote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests with retries -----------------------------------------------------------

    def _call(self, what: str, method: str, path: str, *, body: bytes | None,
              headers: dict[str, str], sink_factory: Callable[[], Any]) -> tuple[_Response, Any]:
        """Run one request with retries; ``sink_factory()`` gives a fresh sink per try."""
        attempt = 0
        while True:
            sink = sink_factory()
            try:
                self.requests += 1
                response = self._http.request(method, path, body=body, headers=headers,
                                              sink=sink.write)
                sink.finish()
                return response, sink
            except _DeadlinePassed:
                sink.abort()
                raise self._deadline_error(what) from None
            except _Transient as exc:
                sink.abort()
                attempt += 1
                if attempt >= self.limits.max_attempts:
                    raise FetchError(
                        f"{what} failed after {attempt} attempts", why=exc.reason,
                        hint=f"check that the server at {self.url} is up and reachable; a "
                             "node with a last-known-good role keeps running it") from None
                delay = self.limits.backoff.delay(attempt - 1)
                if exc.retry_after is not None:
                    delay = max(delay, exc.retry_after)
                if delay >= self.remaining():
                    why = (f"the server asked to wait {exc.retry_after:.0f}s (Retry-After)"
                           if exc.retry_after is not None and exc.retry_after >= self.remaining()
                           else exc.reason)
                    raise FetchError(
                        f"{what} did not succeed within the {self.limits.deadline:.0f}s "
                        "deadline", why=why,
                        hint="the server is overloaded or failing; a node with a "
                             "last-known-good role keeps running it and tries again at the "
                             "next boot") from None
                self.counters.count("retries", f"fetch:{exc.kind}")
                after = " (Retry-After)" if exc.retry_after is not None else ""
                self.console.warn(
                    f"fetch: {what}: {exc.reason}; retry {attempt} of "
                    f"{self.limits.max_attempts - 1} in {delay:.1f}s{after}",
                    stage="fetch", retry=attempt, reason=exc.kind, delay=round(delay, 3))
                self._sleep(delay)
            except BaseException:
                sink.abort()
                raise

    def _deadline_error(self, what: str) -> FetchError:
        return FetchError(
            f"{what} did not finish within the {self.limits.deadline:.0f}s deadline",
            why=f"{self.bytes_received} bytes arrived in that time; the server or the "
                "network is too slow",
            hint="check the network path to the repository server; a node with a "
                 "last-known-good role keeps running it")

    def _advertisement(self) -> tuple[_Response, _BytesSink]:
        """GET info/refs, following redirects (as git does for this first request) and,
        for a URL that names a home base rather than a repository, trying /repo.git."""
        tried_home_base = False
        for _ in range(MAX_REDIRECTS + 1):
            try:
                response, sink = self._call(
                    "reading the capability advertisement", "GET", ADVERTISEMENT, body=None,
                    headers={"Git-Protocol": "version=2"}, sink_factory=_BytesSink)
                return response, sink
            except _Redirect as redirect:
                self._follow(redirect)
            except FetchError as exc:
                if ("404" not in exc.why or tried_home_base
                        or self._http.base_path.endswith(".git")):
                    raise
                tried_home_base = True
                repo_url = self.url + HOME_BASE_REPO
                self.console.info(f"fetch: no repository at {self.url}; trying the home "
                                  f"base's {repo_url}", stage="fetch")
                self._http = _Http(repo_url, self)
                self.url = repo_url
        raise FetchError(f"{self.url} redirects more than {MAX_REDIRECTS} times",
                         hint="point the node at the repository's final URL")

    def _follow(self, redirect: _Redirect) -> None:
        from urllib.parse import urljoin

        target = urljoin(self._http.url_for(ADVERTISEMENT), redirect.location)
        if not redirect.location or not target.endswith(ADVERTISEMENT):
            raise FetchError(f"{self.url} redirects somewhere that is not a git repository",
                             why=f"HTTP {redirect.status} to {redirect.location[:200]!r}",
                             hint="point the node at the repository's final URL")
        new_base = target[: -len(ADVERTISEMENT)]
        if self._http.scheme == "https" and not new_base.startswith("https:"):
            raise FetchError(f"{self.url} redirects from https to plain http",
                             why=f"HTTP {redirect.status} to {new_base}",
                             hint="fix the server's redirect; a downgrade is never followed")
        self.console.info(f"fetch: {self.url} moved to {new_base} (HTTP {redirect.status})",
                          stage="fetch")
        self._http = _Http(new_base, self)
        self.url = new_base

    def capabilities(self) -> gitwire.Capabilities:
        """The server's v2 capabilities (asked once per GitRemote)."""
        if self._caps is None:
            response, sink = self._advertisement()
            ctype = response.headers.get("Content-Type", "")
            if ctype != "application/x-git-upload-pack-advertisement":
                raise FetchError(
                    f"{self.url} is not a git smart HTTP repository",
                    why=f"info/refs came back as {ctype or 'no content type'!r}",
                    hint="serve the repository with git http-backend (smart HTTP) or "
                         "`bootpull serve`; dumb HTTP is not supported")
            try:
                caps = gitwire.parse_capabilities(sink.data)
            except gitwire.WireError as exc:
                raise FetchError(f"{self.url} does not speak git protocol v2", why=str(exc),
                                 hint="use git 2.18 or newer on the server "
                                      "(protocol v2 is the default from git 2.26)") from None
            if caps.object_format != "sha1":
                raise FetchError(f"{self.url} is a {caps.object_format} repository",
                                 why="the node's object cache holds sha1 objects only",
                                 hint="keep the deploy repository in git's default sha1 format")
            self._caps = caps
        return self._caps

    def _post(self, what: str, body: bytes, sink_factory: Callable[[], Any]) -> Any:
        _response, sink = self._call(
            what, "POST", "/git-upload-pack", body=body,
            headers={"Git-Protocol": "version=2",
                     "Content-Type": "application/x-git-upload-pack-request",
                     "Accept": "application/x-git-upload-pack-result"},
            sink_factory=sink_factory)
        return sink

    # -- refs --------------------------------------------------------------------------

    def resolve(self, ref: str) -> gitwire.RemoteRef:
        """The commit ``ref`` names on the server (annotated tags peeled)."""
        try:
            candidates = gitwire.candidate_refs(ref)
        except ValueError as exc:
            raise FetchError(str(exc), hint="name a branch (main) or a full ref "
                                            "(refs/tags/role/web/1.0)") from None
        caps = self.capabilities()
        if not caps.supports("ls-refs"):
            raise FetchError(f"{self.url} does not offer ls-refs",
                             hint="use git 2.18 or newer on the server")
        sink = self._post(f"listing {ref}", gitwire.ls_refs_request(candidates, agent=AGENT),
                          _BytesSink)
        try:
            refs = gitwire.parse_ls_refs(sink.data)
        except gitwire.ServerRefused as exc:
            raise FetchError(f"the server refused to list {ref}", why=str(exc)) from None
        except gitwire.WireError as exc:
            raise FetchError(f"the ref listing from {self.url} is malformed", why=str(exc),
                             hint="the server does not speak git protocol v2 correctly") from None
        for name in candidates:
            if name in refs:
                return refs[name]
        raise FetchError(f"{ref} does not exist in {self.url}",
                         why=f"the server has no {' or '.join(candidates)}",
                         hint="push the branch or tag, or fix the name (a release is "
                              "refs/tags/role/<role>/<version>: `bootpull repo release`)")

    # -- objects -----------------------------------------------------------------------

    def has(self, oid: str) -> bool:
        from dulwich.objects import ObjectID

        try:
            return ObjectID(oid.encode()) in self.store.object_store
        except Exception as exc:  # noqa: BLE001 - a damaged cache raises many kinds
            why = f"{type(exc).__name__}: {exc}"
        self._discard_cache(why)
        return False

    def get(self, oid: str) -> ShaFile:
        """The object from the cache. One that cannot be read there (the cache was
        damaged after it was opened, or started afresh since) is fetched again."""
        from dulwich.objects import ObjectID

        try:
            return self.store.object_store[ObjectID(oid.encode())]
        except KeyError:  # the cache was started afresh since the caller looked
            why = ""
        except Exception as exc:  # noqa: BLE001 - a damaged cache raises many kinds
            why = f"{type(exc).__name__}: {exc}"
        if why:
            self._discard_cache(why)
        self.fetch_objects([oid], what=f"object {oid[:12]} again", filter_spec="tree:0")
        try:
            return self.store.object_store[ObjectID(oid.encode())]
        except Exception as exc:  # noqa: BLE001
            raise VerifyError(f"object {oid[:12]} cannot be read even when fetched afresh",
                              why=f"{type(exc).__name__}: {exc}",
                              hint=f"remove {self.cache_dir}; check the disk") from None

    def fetch_objects(self, wants: Iterable[str], *, what: str, depth: int | None = None,
                      filter_spec: str | None = None) -> None:
        """Fetch the wanted objects (and, for commits/trees, what the filter lets through)
        into the cache, in one request. Objects already cached are skipped."""
        missing = sorted({oid for oid in wants if not self.has(oid)})
        if not missing:
            return
        caps = self.capabilities()
        if depth is not None and not caps.supports("fetch", "shallow"):
            raise FetchError(f"{self.url} cannot do shallow fetches",
                             hint="use git 2.18 or newer on the server")
        if filter_spec is not None and not caps.supports("fetch", "filter"):
            raise FetchError(f"{self.url} does not allow partial fetches (filter)",
                             hint="set uploadpack.allowFilter=true in the served repository "
                                  "(git config uploadpack.allowFilter true)")
        request = gitwire.fetch_request(missing, depth=depth, filter_spec=filter_spec,
                                        agent=AGENT)
        store = self.store.object_store
        try:
            self._post(what, request, lambda: _PackSink(store, self.limits.max_inflated))
        except gitwire.ServerRefused as exc:
            hint = "check the server's git configuration"
            if "not our ref" in str(exc):
                hint = ("set uploadpack.allowAnySHA1InWant=true (or allowReachableSHA1InWant) "
                        "in the served repository, so nodes can fetch single files by id")
            raise FetchError(f"the server refused to send {what}", why=str(exc),
                             hint=hint) from None
        still = [oid for oid in missing if not self.has(oid)]
        if still:
            raise VerifyError(
                f"the server's pack for {what} lacks {len(still)} of the objects asked for",
                why=f"missing {still[0]}" + (" and more" if len(still) > 1 else ""),
                expected=still[0], got="",
                hint="the repository server is broken or hostile; nothing was installed")

    def snapshot(self, ref: str) -> GitSnapshot:
        """Resolve ``ref`` and make sure its commit is cached: the commit and its root
        tree (``deepen 1``, ``filter tree:1``). Other trees come as the snapshot is read."""
        remote_ref = self.resolve(ref)
        commit_id = remote_ref.target
        self.fetch_objects([commit_id], what=f"commit {commit_id[:12]} ({ref})", depth=1,
                           filter_spec="tree:1")
        commit = self.get(commit_id)
        if commit.type_name != b"commit":
            raise VerifyError(f"{ref} names a {commit.type_name.decode()}, not a commit",
                              expected="commit", got=commit.type_name.decode(),
                              hint="point the branch or tag at a commit")
        tree_id = commit.tree.decode()  # type: ignore[attr-defined]
        return GitSnapshot(self, commit_id, tree_id, ref=ref)


class _BytesSink:
    """Collects a small response (advertisements, ref lists) in memory."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def write(self, data: bytes) -> None:
        self._buf += data

    def finish(self) -> None:
        """A git answer that stops mid-way (the server died) is worth another try."""
        parser = gitwire.PktParser()
        try:
            packets = parser.feed(bytes(self._buf))
        except gitwire.WireError:
            return  # not git at all: the caller says so, clearly
        if parser.pending or not packets or packets[-1] is not gitwire.Special.FLUSH:
            raise _Transient("the response was cut short", kind="cut-short")

    def abort(self) -> None:
        self._buf.clear()

    @property
    def data(self) -> bytes:
        return bytes(self._buf)


class _PackSink:
    """Streams a fetch response's pack into the object store; indexes it at the end.

    The pack is written to a temporary file as it arrives; only when the response is
    complete is it scanned (:func:`bootpull.packscan.scan_pack`: inflation bombs,
    malformed entries) and then indexed by dulwich, which checks the pack's checksum and
    computes every object's id from its content. An aborted try leaves nothing behind.
    """

    def __init__(self, object_store: Any, max_inflated: int) -> None:
        self._store = object_store
        self._max_inflated = max_inflated
        self._parser = gitwire.FetchResponse()
        self._file: BinaryIO | None = None
        self._commit: Callable[[], Any] | None = None
        self._abort: Callable[[], None] | None = None
        self.pack_bytes = 0

    def write(self, data: bytes) -> None:
        try:
            pack = self._parser.feed(data)
        except gitwire.ServerRefused:
            raise
        except gitwire.WireError as exc:
            raise _Transient(f"the fetch response is malformed ({exc})", kind="wire") from exc
        if pack:
            if self._file is None:
                self._file, self._commit, self._abort = self._store.add_pack()
            assert self._file is not None
            self._file.write(pack)
            self.pack_bytes += len(pack)

    def finish(self) -> None:
        try:
            self._parser.finish()
        except gitwire.WireError as exc:
            raise _Transient(str(exc), kind="cut-short") from exc
        if self._file is None:
            return
        from bootpull.packscan import PackProblem, scan_pack

        assert self._commit is not None
        self._file.flush()
        self._file.seek(0)
        try:
            scan_pack(self._file, max_inflated=self._max_inflated)
            self._file.seek(0, os.SEEK_END)
        except PackProblem as exc:
            self.abort()
            raise VerifyError("the server sent a malformed or hostile pack", why=str(exc),
                              hint="the repository server is broken or hostile; nothing "
                                   "was installed") from None
        commit, self._commit, self._file, self._abort = self._commit, None, None, None
        try:
            commit()
        except Exception as exc:  # noqa: BLE001 - dulwich raises many kinds for bad packs
            raise VerifyError("the server sent a pack that does not check out",
                              why=f"{type(exc).__name__}: {exc}",
                              hint="the repository server is broken or hostile; nothing "
                                   "was installed") from None

    def abort(self) -> None:
        if self._abort is not None:
            abort, self._abort, self._file, self._commit = self._abort, None, None, None
            with contextlib.suppress(OSError):
                abort()


class GitSnapshot:
    """One commit of the remote repository, read from the object cache.

    Implements :class:`bootpull.bundle.TreeReader`. Trees are local after
    :meth:`GitRemote.snapshot`; blobs are fetched by id on first read.
    """

    def __init__(self, remote: GitRemote, commit: str, tree: str, *, ref: str) -> None:
        self._remote = remote
        self._commit = commit
        self._tree = tree
        self.ref = ref

    @property
    def commit(self) -> str:
        return self._commit

    @property
    def bytes_received(self) -> int:
        return self._remote.bytes_received

    # -- trees -------------------------------------------------------------------------

    def _tree_items(self, tree_id: str) -> builtins.list[tuple[str, int, str]]:
        self._ensure_trees([tree_id], subtrees=False)
        obj = self._remote.get(tree_id)
        if obj.type_name != b"tree":
            raise VerifyError(f"object {tree_id[:12]} should be a tree, but is a "
                              f"{obj.type_name.decode()}", expected="tree",
                              got=obj.type_name.decode(),
                              hint="the repository server is broken or hostile")
        items = []
        for entry in obj.iteritems():  # type: ignore[attr-defined]
            if entry.path in (b"", b".", b"..") or b"/" in entry.path or b"\0" in entry.path:
                raise VerifyError(f"tree {tree_id[:12]} has an entry named {entry.path!r}",
                                  why="git never writes such a name; the tree was crafted",
                                  hint="the repository is hostile or corrupt; nothing was "
                                       "installed")
            name = entry.path.decode("utf-8", "surrogateescape")
            items.append((name, int(entry.mode), entry.sha.decode()))
        return items

    def _ensure_trees(self, tree_ids: Iterable[str], *, subtrees: bool) -> None:
        """Fetch the missing trees among ``tree_ids`` in one request: each tree alone
        (``filter tree:0``), or with every tree below it (``filter blob:none``)."""
        missing = sorted({t for t in tree_ids if not self._remote.has(t)})
        if missing:
            self._remote.fetch_objects(
                missing, what=f"{len(missing)} director{'y' if len(missing) == 1 else 'ies'} "
                              f"of {self._commit[:12]}",
                filter_spec="blob:none" if subtrees else "tree:0")

    def _lookup_many(self, paths: Iterable[str]) -> dict[str, tuple[int, str] | None]:
        """(mode, id) of each path, or None where there is none. ``""`` is the root tree.

        The paths are walked together, one directory level at a time, so the trees
        missing from the cache cost one request per level, not one per directory.
        """
        walks: dict[str, tuple[list[str], int, int, str]] = {}  # path → parts, at, mode, id
        found: dict[str, tuple[int, str] | None] = {}
        for path in paths:
            parts = [p for p in path.strip("/").split("/") if p]
            if len(parts) > MAX_TREE_DEPTH:
                found[path] = None
            else:
                walks[path] = (parts, 0, MODE_TREE, self._tree)
        while walks:
            for path, (parts, at, mode, oid) in list(walks.items()):
                if at == len(parts):
                    found[path] = (mode, oid)
                    del walks[path]
                elif mode != MODE_TREE:
                    found[path] = None
                    del walks[path]
            self._ensure_trees((oid for _p, _a, _m, oid in walks.values()), subtrees=False)
            for path, (parts, at, _mode, oid) in list(walks.items()):
                entry = next(((m, i) for name, m, i in self._tree_items(oid)
                              if name == parts[at]), None)
                if entry is None:
                    found[path] = None
                    del walks[path]
                else:
                    walks[path] = (parts, at + 1, entry[0], entry[1])
        return found

    def _lookup(self, path: str) -> tuple[int, str] | None:
        return self._lookup_many([path])[path]

    def list(self, prefix: str) -> builtins.list[TreeEntry]:
        """Every file under directory ``prefix`` (recursively), sorted by path.

        The trees under ``prefix`` that are not cached come in one request (with all
        the trees below them), so listing a role costs one round trip at most.
        """
        found = self._lookup(prefix)
        if found is None or found[0] != MODE_TREE:
            return []
        base = "/".join(p for p in prefix.strip("/").split("/") if p)
        out: builtins.list[TreeEntry] = []
        level = [(base, found[1])]
        depth = 0
        while level:
            if depth > MAX_TREE_DEPTH:
                raise VerifyError(f"{level[0][0] or '/'} nests directories more than "
                                  f"{MAX_TREE_DEPTH} deep", hint="the tree is hostile")
            self._ensure_trees((tree_id for _where, tree_id in level), subtrees=True)
            below: builtins.list[tuple[str, str]] = []
            for where, tree_id in level:
                for name, mode, oid in self._tree_items(tree_id):
                    path = f"{where}/{name}" if where else name
                    if mode == MODE_TREE:
                        below.append((path, oid))
                    else:
                        out.append(TreeEntry(path, mode, oid))
            level = below
            depth += 1
        return sorted(out, key=lambda e: e.path)

    # -- blobs -------------------------------------------------------------------------

    def read(self, path: str) -> bytes | None:
        """The file's bytes (a symlink's target), or None if there is no such file."""
        return self.read_many([path]).get(path)

    def read_many(self, paths: builtins.list[str]) -> dict[str, bytes]:
        """The files among ``paths`` that exist, fetching all missing blobs in one request."""
        ids: dict[str, str] = {}
        for path, found in self._lookup_many(paths).items():
            if found is not None and found[0] not in (MODE_TREE, MODE_GITLINK):
                ids[path] = found[1]
        missing = sorted({oid for oid in ids.values() if not self._remote.has(oid)})
        if missing:
            self._remote.fetch_objects(missing, what=f"{len(missing)} file(s) of "
                                                     f"{self._commit[:12]}")
        out: dict[str, bytes] = {}
        for path, oid in ids.items():
            obj = self._remote.get(oid)
            if obj.type_name != b"blob":
                raise VerifyError(f"{path} should be a file, but its object is a "
                                  f"{obj.type_name.decode()}", expected="blob",
                                  got=obj.type_name.decode(),
                                  hint="the repository server is broken or hostile")
            out[path] = obj.as_raw_string()
        return out


__all__ = ["MODE_EXEC", "MODE_FILE", "MODE_SYMLINK", "FetchLimits", "GitRemote", "GitSnapshot",
           "parse_retry_after"]
