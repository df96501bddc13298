"""Fetch only what this node needs, over HTTP, into an object store.

:class:`GitRemote` reads the answer to ``info/refs`` and takes the cheapest rung of the
fetch ladder the server offers (:mod:`bootpull.fetch_ladder`): git protocol v2
(``gitprotocol-v2``), v0/v1 (:mod:`bootpull.gitwire_v0`) or dumb HTTP
(:mod:`bootpull.fetch_dumb`). Without a filter it takes the whole tip at depth 1;
with one (protocol v2 to ``git http-backend`` with ``uploadpack.allowFilter``):

- ``snapshot(ref)`` resolves the ref with ``ls-refs`` (only that ref is listed, tags
  peeled) and, unless the commit is already cached, fetches the commit and its root
  tree (``deepen 1``, ``filter tree:1``): no history, no other trees, no file
  contents. (A deeper filter would bring ``hosts/``, whose size grows with the fleet.)
- The returned :class:`GitSnapshot` (a :class:`bootpull.bundle.TreeReader`) fetches
  the rest by object id, only when asked: the trees on the paths it reads (one request
  per directory level, ``filter tree:0``), a listed directory's trees in one request
  (``filter blob:none``), and the blobs of ``read_many`` (or, by id, ``read_blobs``) in
  one request. So the bytes
  on the wire scale with the role, not with the repository; a change elsewhere in the
  repository costs only the trees on the path; and a reboot with nothing changed
  moves only the ref advertisement.
- Objects go straight into a bare git object store in ``cache_dir``
  (:mod:`bootpull.fetch_cache`); nothing is ever checked out, and what is cached is not
  fetched again.
- The first request (``info/refs``) follows redirects, and a URL that names a home base
  rather than a repository is tried once more with ``/repo.git``; :attr:`GitRemote.url`
  is the repository URL in effect afterwards.

Limits (:class:`FetchLimits`): one wall-clock deadline for the whole pull, enforced
even against a server that trickles one byte a second, a cap on bytes received across
all requests (both kept by :class:`bootpull.fetch_http.Budget`), and a cap on how far a
pack may inflate. Transient failures (connection refused or reset, a response cut
short, 5xx, 408, 429: :mod:`bootpull.fetch_http` tells them apart) are retried here
with full-jitter exponential backoff, honouring ``Retry-After``; each retry is counted
in :class:`~bootpull.backoff.Counters` and said on the console. Permanent failures
(404, 401/403, a server that is not git, a certificate the node cannot accept) fail
at once.

Errors: :class:`~bootpull.errors.FetchError` when the transport failed (exit 11: fall
back to the last-known-good), :class:`~bootpull.errors.VerifyError` when the server
sent git data that is wrong (a pack that fails its checksum or inflates past the cap,
an object that is not what was asked for, a ref that is not a commit): exit 12.

Why not dulwich's HTTP client (``dulwich.client.HttpGitClient``): its ``fetch_pack``
discovers references (a GET of info/refs, and ``ls-refs``) before every fetch, so each
lazy blob fetch would pay for a ref advertisement; and its transport can neither keep
a deadline across reads nor see ``Retry-After`` (:mod:`bootpull.fetch_http`). The
protocol bytes are small (:mod:`bootpull.gitwire`) and the transport is http.client
with a watchdog; dulwich does the part that is hard to get right: indexing and
checking packs, and parsing objects.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from bootpull import gitwire, gitwire_v0
from bootpull.backoff import Backoff, Counters
from bootpull.bundle import MAX_FILE_BYTES, MODE_EXEC, MODE_FILE, MODE_SYMLINK, TreeEntry
from bootpull.console import Console
from bootpull.errors import FetchError, NotFound, VerifyError
from bootpull.fetch_cache import ObjectCache, cache_problems
from bootpull.fetch_dumb import DumbObjects, parse_info_refs
from bootpull.fetch_http import (
    AGENT,
    Budget,
    DeadlinePassed,
    HttpTransport,
    Redirect,
    Response,
    Transient,
    parse_retry_after,
)
from bootpull.fetch_ladder import DUMB, Rung, choose_v0, choose_v2

if TYPE_CHECKING:
    import ssl

    from dulwich.objects import ShaFile
    from dulwich.repo import Repo

MODE_TREE = 0o040000
MODE_GITLINK = 0o160000
MAX_TREE_DEPTH = 256  # directory nesting; deeper than this is a hostile tree
MAX_REDIRECTS = 5
ADVERTISEMENT = "/info/refs?service=git-upload-pack"
HOME_BASE_REPO = "/repo.git"  # where `bootpull serve` serves the repository (docs/contract.md §4.1)


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
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._url = url.rstrip("/")
        self.cache_dir = Path(cache_dir)
        self.limits = limits
        self.console = console
        self.counters = counters
        self.requests = 0
        self._sleep = sleep
        self._budget = Budget(limits.deadline, limits.max_bytes, self._url, clock=clock)
        self._tls = tls  # https: every request's context, after a redirect too
        self._http = HttpTransport(self._url, self._budget, stall_timeout=limits.stall_timeout,
                                   tls=tls)
        self._caps: gitwire.Capabilities | None = None
        self.rung: Rung | None = None  # how this server is fetched from (fetch_ladder)
        self._v0: gitwire_v0.Advertisement | None = None  # the refs, from a v0 server
        self._dumb_refs: dict[str, gitwire.RemoteRef] | None = None
        self._dumb: DumbObjects | None = None
        self._cache = ObjectCache(self.cache_dir, max_bytes=limits.max_cache_bytes,
                                  console=console, counters=counters)

    @property
    def url(self) -> str:
        """The repository URL in effect: as given (without a trailing ``/``) until the
        first request; from then on where redirects and the home base's ``/repo.git``
        led. The base URL, never a request's (no ``/info/refs``)."""
        return self._url

    def _move_to(self, url: str) -> None:
        """Talk to the repository at ``url`` from now on (a redirect, or the home base's)."""
        self._http = HttpTransport(url, self._budget, stall_timeout=self.limits.stall_timeout,
                                   tls=self._tls)
        self._budget.url = url
        self._url = url

    # -- budget ----------------------------------------------------------------------

    def remaining(self) -> float:
        """Seconds left before the pull's deadline."""
        return self._budget.remaining()

    @property
    def bytes_received(self) -> int:
        """Bytes received across all requests, status lines and headers included."""
        return self._budget.bytes_received

    @property
    def store(self) -> Repo:
        return self._cache.store

    def close(self) -> None:
        """Close the object cache (snapshots of this remote can no longer read)."""
        if self._dumb is not None:
            self._dumb.close()
        self._cache.close()

    def __enter__(self) -> GitRemote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests with retries -----------------------------------------------------------

    def _call(self, what: str, method: str, path: str, *, body: bytes | None,
              headers: dict[str, str], sink_factory: Callable[[], Any]) -> tuple[Response, Any]:
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
            except DeadlinePassed:
                sink.abort()
                raise self._deadline_error(what) from None
            except Transient as exc:
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

    def _advertisement(self) -> tuple[Response, _AdvertisementSink]:
        """GET info/refs, following redirects (as git does for this first request) and,
        for a URL that names a home base rather than a repository, trying /repo.git."""
        tried_home_base = False
        for _ in range(MAX_REDIRECTS + 1):
            try:
                response, sink = self._call(
                    "reading the capability advertisement", "GET", ADVERTISEMENT, body=None,
                    headers={"Git-Protocol": "version=2"}, sink_factory=_AdvertisementSink)
                return response, sink
            except Redirect as redirect:
                self._follow(redirect)
            except FetchError as exc:
                if (not isinstance(exc, NotFound) or tried_home_base
                        or self._http.base_path.endswith(".git")):
                    raise
                tried_home_base = True
                repo_url = self.url + HOME_BASE_REPO
                self.console.info(f"fetch: no repository at {self.url}; trying the home "
                                  f"base's {repo_url}", stage="fetch")
                self._move_to(repo_url)
        raise FetchError(f"{self.url} redirects more than {MAX_REDIRECTS} times",
                         hint="point the node at the repository's final URL")

    def _follow(self, redirect: Redirect) -> None:
        from urllib.parse import urljoin

        try:
            target = urljoin(self._http.url_for(ADVERTISEMENT), redirect.location)
        except ValueError as exc:  # "Invalid IPv6 URL": a Location that is no URL
            raise FetchError(f"{redirect.location[:200]!r} is not a usable repository URL",
                             why=str(exc), hint="fix the server's redirect, or point the "
                             "node at the repository's final URL") from None
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
        self._move_to(new_base)

    def discover(self) -> Rung:
        """Read the advertisement once and choose the rung of the fetch ladder
        (:mod:`bootpull.fetch_ladder`): protocol v2, v0/v1, or dumb HTTP. Said once."""
        if self.rung is None:
            response, sink = self._advertisement()
            ctype = response.headers.get("Content-Type", "")
            if ctype == "application/x-git-upload-pack-advertisement":
                self.rung = self._smart(sink.data)
            elif (refs := parse_info_refs(sink.data)) is not None:
                self._dumb_refs, self.rung = refs, DUMB
                self._dumb = DumbObjects(self.url, self.get_file)
            else:
                raise FetchError(
                    f"{self.url} is not a git repository the node can fetch from",
                    why=f"info/refs came back as {ctype or 'no content type'!r}, neither "
                        "git smart HTTP nor a dumb HTTP ref list",
                    hint="serve the repository with git http-backend (smart HTTP) or "
                         "`bootpull serve`; for a static copy, run `git update-server-info` "
                         "in it")
            # said once per run, with the pull's figures (Narrator.fetched_over)
            self.console.debug(f"fetch: {self.rung.line()}")
        return self.rung

    def _smart(self, body: bytes) -> Rung:
        """The rung for a smart HTTP advertisement: v2 if the server speaks it, else v0."""
        try:
            self._caps = caps = gitwire.parse_capabilities(body)
        except gitwire.ServerRefused as exc:
            raise FetchError(f"{self.url} refused to advertise its refs", why=str(exc),
                             hint="check the server's git configuration") from None
        except gitwire.WireError as v2_error:
            return self._smart_v0(body, v2_error)
        self._check_format(caps.object_format)
        if not caps.supports("ls-refs"):
            raise FetchError(f"{self.url} does not offer ls-refs",
                             hint="use git 2.18 or newer on the server")
        return choose_v2(filter_ok=caps.supports("fetch", "filter"))

    def _smart_v0(self, body: bytes, v2_error: gitwire.WireError) -> Rung:
        try:
            self._v0 = adv = gitwire_v0.parse_advertisement(gitwire.parse_packets(body))
        except gitwire.WireError as exc:
            raise FetchError(f"the ref advertisement from {self.url} is malformed",
                             why=f"{v2_error}; as v0: {exc}",
                             hint="the server does not speak the git protocol "
                                  "correctly") from None
        self._check_format(adv.object_format)
        if not adv.supports("side-band-64k"):
            raise FetchError(f"{self.url} offers no side-band-64k",
                             hint="use git 1.7 or newer (git http-backend) on the server")
        return choose_v0(filter_ok=adv.supports("filter"), by_id=adv.by_id,
                         shallow_ok=adv.supports("shallow"))

    def _check_format(self, object_format: str) -> None:
        if object_format != "sha1":
            raise FetchError(f"{self.url} is a {object_format} repository",
                             why="the node's object cache holds sha1 objects only",
                             hint="keep the deploy repository in git's default sha1 format")

    def capabilities(self) -> gitwire.Capabilities:
        """The server's v2 capabilities (FetchError from a server that is not v2)."""
        self.discover()
        if self._caps is None:
            raise FetchError(f"{self.url} does not speak git protocol v2",
                             hint="pass the Git-Protocol header to git http-backend")
        return self._caps

    def get_file(self, path: str) -> bytes | None:
        """The file at ``path`` under the repository URL (dumb HTTP), None for a 404."""
        try:
            _response, sink = self._call(f"reading {path}", "GET", "/" + path, body=None,
                                         headers={}, sink_factory=_RawSink)
        except FetchError as exc:
            if isinstance(exc, NotFound):
                return None
            raise
        except Redirect as redirect:
            raise FetchError(f"{self.url}/{path} redirects", why=f"HTTP {redirect.status} to "
                             f"{redirect.location[:200]!r}",
                             hint="serve the repository's files without redirects") from None
        data: bytes = sink.data
        return data

    def _post(self, what: str, body: bytes, sink_factory: Callable[[], Any], *,
              v2: bool = True) -> Any:
        headers = {"Content-Type": "application/x-git-upload-pack-request",
                   "Accept": "application/x-git-upload-pack-result"}
        if v2:
            headers["Git-Protocol"] = "version=2"
        _response, sink = self._call(what, "POST", "/git-upload-pack", body=body,
                                     headers=headers, sink_factory=sink_factory)
        return sink

    # -- refs --------------------------------------------------------------------------

    def resolve(self, ref: str) -> gitwire.RemoteRef:
        """The commit ``ref`` names on the server (annotated tags peeled)."""
        try:
            candidates = gitwire.candidate_refs(ref)
        except ValueError as exc:
            raise FetchError(str(exc), hint="name a branch (main) or a full ref "
                                            "(refs/tags/role/web/1.0)") from None
        rung = self.discover()
        if rung.protocol == "v0":
            assert self._v0 is not None
            refs = self._v0.refs  # a v0 server lists every ref up front
        elif rung.protocol == "dumb":
            assert self._dumb_refs is not None
            refs = self._dumb_refs
        else:
            refs = self._ls_refs(ref, candidates)
        for name in candidates:
            if name in refs:
                return refs[name]
        raise FetchError(f"{ref} does not exist in {self.url}",
                         why=f"the server has no {' or '.join(candidates)}",
                         hint="push the branch or tag, or fix the name (a release is "
                              "refs/tags/role/<role>/<version>: `bootpull repo release`)")

    def _ls_refs(self, ref: str, candidates: list[str]) -> dict[str, gitwire.RemoteRef]:
        sink = self._post(f"listing {ref}", gitwire.ls_refs_request(candidates, agent=AGENT),
                          _BytesSink)
        try:
            return gitwire.parse_ls_refs(sink.data)
        except gitwire.ServerRefused as exc:
            raise FetchError(f"the server refused to list {ref}", why=str(exc),
                             hint="the server's message says why; check its git "
                                  "configuration and its logs") from None
        except gitwire.WireError as exc:
            raise FetchError(f"the ref listing from {self.url} is malformed", why=str(exc),
                             hint="the server does not speak git protocol v2 correctly") from None

    # -- objects -----------------------------------------------------------------------

    def has(self, oid: str) -> bool:
        return self._cache.has(oid)

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
            self._cache.discard(why)
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
        rung = self.discover()
        if not rung.lazy:
            filter_spec = None  # the whole tip came with the commit (snapshot)
        if rung.protocol == "dumb":
            self._fetch_dumb(missing)
        elif rung.protocol == "v0":
            self._fetch_v0(missing, what=what, depth=depth, filter_spec=filter_spec)
        else:
            self._fetch_v2(missing, what=what, depth=depth, filter_spec=filter_spec)
        still = [oid for oid in missing if not self.has(oid)]
        if still:
            raise VerifyError(
                f"the server's pack for {what} lacks {len(still)} of the objects asked for",
                why=f"missing {still[0]}" + (" and more" if len(still) > 1 else ""),
                expected=still[0], got="",
                hint="the repository server is broken or hostile; nothing was installed")

    def _fetch_v2(self, missing: list[str], *, what: str, depth: int | None,
                  filter_spec: str | None) -> None:
        caps = self.capabilities()
        if depth is not None and not caps.supports("fetch", "shallow"):
            raise FetchError(f"{self.url} cannot do shallow fetches",
                             hint="use git 2.18 or newer on the server")
        request = gitwire.fetch_request(missing, depth=depth, filter_spec=filter_spec,
                                        agent=AGENT)
        store = self.store.object_store
        with _refusal(what):
            self._post(what, request, lambda: _PackSink(store, self.limits.max_inflated))

    def _fetch_v0(self, missing: list[str], *, what: str, depth: int | None,
                  filter_spec: str | None) -> None:
        adv = self._v0
        assert adv is not None
        deepen = depth if depth is not None and adv.supports("shallow") else None
        request = gitwire_v0.fetch_request(
            missing, caps=[c for c in gitwire_v0.WANTED_CAPS if adv.supports(c)],
            depth=deepen, filter_spec=filter_spec, agent=AGENT)
        store = self.store.object_store
        with _refusal(what):
            self._post(what, request, lambda: _PackSink(
                store, self.limits.max_inflated,
                gitwire_v0.FetchResponse(deepen=deepen is not None)), v2=False)

    def _fetch_dumb(self, missing: list[str]) -> None:
        """Each object by id from the static files, checked, into the cache."""
        assert self._dumb is not None
        for oid in missing:
            obj = self._dumb.get(oid)
            if obj is None:
                continue  # the caller says which objects the server lacks
            try:
                self.store.object_store.add_object(obj)
            except OSError as exc:
                raise cache_write_error(exc) from None

    def snapshot(self, ref: str) -> GitSnapshot:
        """Resolve ``ref`` and make sure its commit is cached. On a lazy rung: the
        commit and its root tree (``deepen 1``, ``filter tree:1``), other trees and the
        files coming as the snapshot is read; otherwise the whole tip, at depth 1."""
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


@contextlib.contextmanager
def _refusal(what: str) -> Iterator[None]:
    """An ``ERR`` from upload-pack as a FetchError, with the hint for the usual cause."""
    try:
        yield
    except gitwire.ServerRefused as exc:
        hint = "check the server's git configuration"
        if "not our ref" in str(exc):
            hint = ("set uploadpack.allowAnySHA1InWant=true (or allowReachableSHA1InWant) "
                    "in the served repository, so nodes can fetch single files by id")
        raise FetchError(f"the server refused to send {what}", why=str(exc),
                         hint=hint) from None


class _RawSink:
    """A whole response body in memory: dumb HTTP's files, up to :attr:`MAX`.

    dulwich's dumb client takes each file whole, and copies it, so one file is held
    about three times over: past 32 MiB (a pack of the whole history, say) the node
    says to serve the repository over smart HTTP instead of running out of memory.
    """

    MAX = 32 * 2**20

    def __init__(self) -> None:
        self._buf = bytearray()

    def write(self, data: bytes) -> None:
        if len(self._buf) + len(data) > self.MAX:
            raise FetchError(
                f"a file of the dumb HTTP repository is larger than {self.MAX // 2**20} MiB",
                why="dumb HTTP sends every pack whole, and the node holds a file in memory "
                    "while it reads it",
                hint="serve the repository with git http-backend (smart HTTP), which "
                     "sends only what the node asks for; or repack it into smaller packs "
                     "(git repack -a -d --max-pack-size=16m, then git update-server-info)")
        self._buf += data

    def finish(self) -> None:
        pass

    def abort(self) -> None:
        self._buf.clear()

    @property
    def data(self) -> bytes:
        return bytes(self._buf)


class _AdvertisementSink(_RawSink):
    """The answer to ``info/refs``: smart HTTP (pkt-lines) or a dumb ref list.

    Only an answer that begins as git's smart advertisements do (``# service=`` or
    ``version 2`` in the first pkt-line) is checked for being whole, so a dumb
    ``info/refs``, whose object ids also begin with four hex digits, is not taken for
    a pkt-line stream that was cut short.
    """

    MAX = gitwire.MAX_ANSWER  # an advertisement lists refs; a longer one is broken or hostile

    def write(self, data: bytes) -> None:
        if len(self._buf) + len(data) > self.MAX:
            raise FetchError(
                f"the server's answer to info/refs is larger than {self.MAX // 2**20} MiB",
                why="a ref advertisement that long is not from a working git server",
                hint="the repository server is broken or hostile; check its URL")
        super().write(data)

    def finish(self) -> None:
        """A smart answer that stops mid-way (the server died) is worth another try."""
        data = bytes(self._buf)
        if not data[4:20].startswith((b"# service=", b"version 2")):
            return  # dumb HTTP, or not git at all: the caller says which
        parser = gitwire.PktParser()
        try:
            packets = parser.feed(data)
        except gitwire.WireError:
            return  # not git after all: the caller says so, clearly
        if parser.pending or not packets or packets[-1] is not gitwire.Special.FLUSH:
            raise Transient("the response was cut short", kind="cut-short")


class _BytesSink:
    """A small answer (a ref list) parsed as it streams: :class:`gitwire.SmallAnswer`.

    Over :data:`gitwire.MAX_ANSWER` (1 MiB) it is a FetchError at once, never retried:
    no working server sends that much, and a hostile one must not fill the node's
    memory. ``answer_to`` names the request in that error.
    """

    def __init__(self, answer_to: str = "ls-refs") -> None:
        self._answer = gitwire.SmallAnswer(answer_to)

    def write(self, data: bytes) -> None:
        try:
            self._answer.feed(data)
        except gitwire.TooLarge as exc:
            not_git = self._answer.not_git
            raise _too_large(f"the server's answer to {exc.what}", exc.limit,
                             why=f"what it sends is not git ({not_git})" if not_git else
                             "a git server lists one ref in a few lines") from None

    def finish(self) -> None:
        """A git answer that stops mid-way (the server died) is worth another try; one
        that is not git at all is the caller's to report, clearly."""
        if self._answer.cut_short:
            raise Transient("the response was cut short", kind="cut-short")

    def abort(self) -> None:
        self._answer = gitwire.SmallAnswer(self._answer.what)

    @property
    def data(self) -> bytes:
        return self._answer.data

    @property
    def packets(self) -> list[gitwire.Packet]:
        """The answer's packets, parsed as they came (for ``gitwire.parse_*``)."""
        return self._answer.packets


def _too_large(what: str, limit: int, *, why: str) -> FetchError:
    """``what`` passed a cap that no working git server comes near: exit 11, at once."""
    return FetchError(f"{what} was larger than {limit // 2**20} MiB",
                      why=f"the server is broken or hostile: {why}",
                      hint="check what answers at the repository URL; nothing from it was "
                           "installed")


def cache_write_error(exc: OSError) -> FetchError:
    """A full or failing state disk under the object cache: a fetch that cannot land.

    Exit 11, so a node with an install on disk keeps running it (docs/contract.md §5.2).
    """
    where = f" ({exc.filename})" if exc.filename else ""
    return FetchError("the node's git object cache could not be written",
                      why=f"{exc.strerror or exc}{where}",
                      hint="free space on the state disk ('df -h'), or check it ('dmesg'); "
                           "the fetch is retried on the next poll")


class _PackSink:
    """Streams a fetch response's pack into the object store; indexes it at the end.

    The pack is written to a temporary file as it arrives; only when the response is
    complete is it scanned (:func:`bootpull.packscan.scan_pack`: inflation bombs,
    malformed entries) and then indexed by dulwich, which checks the pack's checksum and
    computes every object's id from its content. An aborted try leaves nothing behind.

    Memory stays bounded whatever the server sends: pack data goes to the file; what
    the response carries besides (progress, acknowledgments) is capped by the parser
    (:class:`gitwire.TooLarge`: a FetchError, not retried); dulwich indexes the pack
    one object at a time, each built whole in memory, so no object may inflate past
    :attr:`MAX_OBJECT`, nor a delta's base or result past :attr:`MAX_DELTA` (a 0.5 MB
    pack can hold a 512 MiB blob of zeros). Measured (tests/test_fetch_hostile_memory.py):
    at these caps the node's peak RSS stays near 110 MiB; one 64 MiB object took it to
    156 MiB, one of 512 MiB to 600 MiB.
    """

    #: the largest whole object a pack may hold
    MAX_OBJECT = MAX_FILE_BYTES
    #: the largest base or result of a delta in a pack
    MAX_DELTA = 16 * 2**20

    def __init__(self, object_store: Any, max_inflated: int, parser: Any = None) -> None:
        self._store = object_store
        self._max_inflated = max_inflated
        self._parser = parser if parser is not None else gitwire.FetchResponse()
        self._file: BinaryIO | None = None
        self._commit: Callable[[], Any] | None = None
        self._abort: Callable[[], None] | None = None
        self.pack_bytes = 0

    def write(self, data: bytes) -> None:
        try:
            pack = self._parser.feed(data)
        except gitwire.ServerRefused:
            raise
        except gitwire.TooLarge as exc:
            self.abort()
            raise _too_large("what the server's answer to a fetch carried besides the pack "
                             "(progress messages, acknowledgments)", exc.limit,
                             why="git sends no progress when asked for none, and "
                                 "acknowledgments of a few lines") from None
        except gitwire.WireError as exc:
            raise Transient(f"the fetch response is malformed ({exc})", kind="wire") from exc
        if pack:
            try:
                if self._file is None:
                    self._file, self._commit, self._abort = self._store.add_pack()
                assert self._file is not None
                self._file.write(pack)
            except OSError as exc:
                self.abort()
                raise cache_write_error(exc) from None
            self.pack_bytes += len(pack)

    def finish(self) -> None:
        try:
            self._parser.finish()
        except gitwire.WireError as exc:
            raise Transient(str(exc), kind="cut-short") from exc
        if self._file is None:
            return
        from bootpull.packscan import ObjectTooLarge, PackProblem, scan_pack

        assert self._commit is not None
        try:
            self._file.flush()
            self._file.seek(0)
            scan_pack(self._file, max_inflated=self._max_inflated,
                      max_object=min(self.MAX_OBJECT, self._max_inflated),
                      max_delta=min(self.MAX_DELTA, self._max_inflated))
            self._file.seek(0, os.SEEK_END)
        except OSError as exc:
            self.abort()
            raise cache_write_error(exc) from None
        except ObjectTooLarge as exc:
            self.abort()
            raise VerifyError("the server sent a malformed or hostile pack", why=str(exc),
                              hint=f"the node holds each object whole in memory: a file it "
                                   f"fetches may have {self.MAX_OBJECT // 2**20} MiB, "
                                   f"{self.MAX_DELTA // 2**20} MiB if git sends it as a delta "
                                   "of another; with no file that large, the server is "
                                   "hostile. Nothing was installed") from None
        except PackProblem as exc:
            self.abort()
            raise VerifyError("the server sent a malformed or hostile pack", why=str(exc),
                              hint="the repository server is broken or hostile; nothing "
                                   "was installed") from None
        commit, self._commit, self._file, self._abort = self._commit, None, None, None
        try:
            commit()
        except OSError as exc:  # writing the index or moving the pack: the disk, not git
            raise cache_write_error(exc) from None
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
        blobs = self._blobs(ids)
        return {path: blobs[path] for path in ids}

    def read_blobs(self, oids: dict[str, str]) -> dict[str, bytes]:
        """The blobs named by id (``{name: oid}``, a name being what errors call it), all
        missing ones in one request, without reading any tree: what format 2 signs."""
        return self._blobs(oids)

    def _blobs(self, ids: dict[str, str]) -> dict[str, bytes]:
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
           "cache_problems", "parse_retry_after"]
