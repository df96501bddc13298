"""A real git smart-HTTP server for tests: ``git http-backend`` behind a tiny CGI host.

Reusable by every test that needs a repository over HTTP (fetch, ``node run``, the lab):

    def test_x(git_http_server, tmp_path):
        bare = make_bare_repo(tmp_path / "repo.git", {"bootpull.toml": b"format = 1\\n"})
        server = git_http_server(bare)          # started; stopped after the test
        ... server.url ...                      # http://127.0.0.1:PORT/repo.git

:class:`GitHttpServer` is a :class:`~http.server.ThreadingHTTPServer` that runs
``git http-backend`` once per request (CGI), streaming its output back. The served
repository needs no configuration: partial clone (``uploadpack.allowFilter``) and
fetching objects by id (``uploadpack.allowAnySHA1InWant``) are switched on through
``GIT_CONFIG_*`` for the backend only; ``git_config=`` overrides them. Protocol v2 is
what git speaks when the client asks (``Git-Protocol: version=2``); ``protocol_v2=False``
hides that header from the backend, making a v0-only server.

Fault injection (:class:`Faults`, mutable while the server runs):

- ``fail_every_other``: answer every other request (the 1st, 3rd, ...) with that status;
- ``retry_after``: a queue of (status, Retry-After value) answers for the next requests;
- ``trickle_bps``: send every response at that many bytes per second;
- ``drop_after``: sever the connection after that many bytes of the next ``drops``
  upload-pack responses (the server process is "killed" mid-response);
- ``hold_after``: stall the next upload-pack response after that many bytes and set
  ``holding`` (a test then kills the server mid-fetch with ``stop()``);
- ``redirects`` (on the server, not a fault): path prefix → Location prefix, a 301;
- ``refuse_with``: answer every request with that status (401, 403, ...);
- ``flip_byte_at``: corrupt that byte of the next upload-pack response (tampering);
- ``stop(kill=True)`` shuts every open connection at once; ``start()`` again brings the
  server back on the same port.

``bytes_sent`` counts every byte written to clients (status line and headers
included), and ``log`` records each request as a :class:`Served`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

GIT_CONFIG_DEFAULTS = {
    "uploadpack.allowFilter": "true",
    "uploadpack.allowAnySHA1InWant": "true",
    "safe.directory": "*",
}
_MAX_REQUEST = 64 * 2**20


@dataclass
class Faults:
    fail_every_other: int | None = None  # e.g. 500
    retry_after: deque[tuple[int, str]] = field(default_factory=deque)
    trickle_bps: float | None = None
    drop_after: int | None = None  # bytes of an upload-pack response before the cut
    drops: int = 0  # how many responses to cut
    hold_after: int | None = None  # stall the next upload-pack response after this many bytes
    holding: threading.Event = field(default_factory=threading.Event)  # set while stalled
    flip_byte_at: int | None = None  # corrupt this byte of the next upload-pack response
    refuse_with: int | None = None  # answer every request with this status (401, 403, ...)

    def clear(self) -> None:
        self.fail_every_other = None
        self.retry_after.clear()
        self.trickle_bps = None
        self.drop_after = None
        self.drops = 0
        self.hold_after = None
        self.holding.clear()
        self.flip_byte_at = None
        self.refuse_with = None


@dataclass(frozen=True)
class Served:
    method: str
    path: str
    status: int
    bytes_sent: int
    fault: str = ""


class _Cut(Exception):
    """The injected fault closed the connection."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: GitHttpServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet; the owner keeps a structured log

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    # -- plumbing ------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        owner = self.server.owner
        if self._flip_at is not None and self._sent <= self._flip_at < self._sent + len(data):
            at = self._flip_at - self._sent
            data = data[:at] + bytes([data[at] ^ 0x55]) + data[at + 1:]
            self._flip_at = None
        if self._hold_at is not None and self._sent + len(data) >= self._hold_at:
            self._write(data[: max(0, self._hold_at - self._sent)])
            owner.faults.holding.set()
            generation = owner.generation
            while owner.generation == generation and not owner.stopping.wait(0.05):
                pass
            raise _Cut
        if self._cut_at is not None and self._sent + len(data) >= self._cut_at:
            data = data[: max(0, self._cut_at - self._sent)]
            self._write(data)
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            raise _Cut
        bps = owner.faults.trickle_bps
        if bps:
            for i in range(len(data)):
                if owner.stopping.is_set():
                    raise _Cut
                self._write(data[i : i + 1])
                time.sleep(1.0 / bps)
        else:
            self._write(data)

    def _write(self, data: bytes) -> None:
        if not data:
            return
        self.wfile.write(data)
        self.wfile.flush()
        self._sent += len(data)
        self.server.owner._count(len(data))

    def _head(self, status: int, reason: str, headers: list[tuple[str, str]]) -> None:
        lines = [f"HTTP/1.0 {status} {reason}"]
        lines += [f"{k}: {v}" for k, v in headers]
        lines.append("Connection: close")
        self._send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def _simple(self, status: int, reason: str, extra: list[tuple[str, str]] = ()) -> None:  # type: ignore[assignment]
        # No Content-Length: the client reads to the end of the connection, which closes
        # only after this request is logged, so tests can read the log without a race.
        body = f"{status} {reason}\n".encode()
        self._head(status, reason, [("Content-Type", "text/plain"), *extra])
        self._send(body)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
                if len(out) > _MAX_REQUEST:
                    raise ValueError("request too large")
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_REQUEST:
            raise ValueError("request too large")
        return self.rfile.read(length) if length else b""

    # -- one request ---------------------------------------------------------------------

    def _serve(self) -> None:
        owner = self.server.owner
        self._sent = 0
        self._cut_at: int | None = None
        self._hold_at: int | None = None
        self._flip_at: int | None = None
        status, fault = 0, ""
        owner._track(self.connection, True)
        try:
            number = owner._next_request()
            faults = owner.faults
            # Read the whole request first, even for an injected error: closing a socket
            # with unread data makes the kernel send a reset, which the client may see
            # before the status line.
            if self.headers.get("Expect", "").lower() == "100-continue":
                self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = self._read_body() if self.command == "POST" else b""
            if faults.retry_after:
                with owner.lock:
                    status, value = faults.retry_after.popleft() if faults.retry_after else (0, "")
                if status:
                    fault = "retry-after"
                    self._simple(status, "Slow Down", [("Retry-After", value)])
                    return
            if faults.refuse_with:
                status, fault = faults.refuse_with, "refuse"
                self._simple(status, "Refused", [("WWW-Authenticate", 'Basic realm="git"')])
                return
            if faults.fail_every_other and number % 2 == 1:
                status, fault = faults.fail_every_other, "fail-every-other"
                self._simple(status, "Injected Failure")
                return
            for old, new in owner.redirects.items():
                if self.path.startswith(old):
                    status, fault = 301, "redirect"
                    self._simple(301, "Moved Permanently",
                                 [("Location", new + self.path[len(old):])])
                    return
            if "git-upload-pack" in self.path and self.command == "POST":
                with owner.lock:
                    if faults.drop_after is not None and faults.drops > 0:
                        faults.drops -= 1
                        self._cut_at = faults.drop_after
                        fault = "drop"
                    if faults.hold_after is not None:
                        self._hold_at, faults.hold_after = faults.hold_after, None
                        fault = "hold"
                    if faults.flip_byte_at is not None:
                        self._flip_at, faults.flip_byte_at = faults.flip_byte_at, None
                        fault = "flip"
            status = self._run_backend(body)
        except (_Cut, BrokenPipeError, ConnectionResetError):
            fault = fault or "cut"
        finally:
            owner._track(self.connection, False)
            owner._record(Served(self.command, self.path, status, self._sent, fault))

    def _run_backend(self, body: bytes) -> int:
        owner = self.server.owner
        path, _, query = self.path.partition("?")
        found = owner._resolve(path)
        if found is None:
            self._simple(404, "Not Found")
            return 404
        gitdir, rest = found
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(gitdir.parent),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": f"/{gitdir.name}{rest}",
            "QUERY_STRING": query,
            "REQUEST_METHOD": self.command,
            "REMOTE_ADDR": self.client_address[0],
            "SERVER_PROTOCOL": "HTTP/1.1",
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "HOME": str(gitdir.parent),
            "GIT_CONFIG_NOSYSTEM": "1",
        }
        encoding = self.headers.get("Content-Encoding")
        if encoding:
            env["HTTP_CONTENT_ENCODING"] = encoding
        protocol = self.headers.get("Git-Protocol")
        if protocol and owner.protocol_v2:
            env["HTTP_GIT_PROTOCOL"] = protocol
        config = {**GIT_CONFIG_DEFAULTS, **owner.git_config}
        env["GIT_CONFIG_COUNT"] = str(len(config))
        for i, (key, value) in enumerate(config.items()):
            env[f"GIT_CONFIG_KEY_{i}"] = key
            env[f"GIT_CONFIG_VALUE_{i}"] = value
        proc = subprocess.Popen([owner.git, "http-backend"], env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        owner._procs.add(proc)
        try:
            assert proc.stdin is not None and proc.stdout is not None

            def feed() -> None:
                assert proc.stdin is not None
                with contextlib.suppress(OSError):
                    proc.stdin.write(body)
                    proc.stdin.close()

            writer = threading.Thread(target=feed, daemon=True)
            writer.start()
            raw = b""
            while b"\r\n\r\n" not in raw and b"\n\n" not in raw:
                more = proc.stdout.read1(65536)
                if not more:
                    break
                raw += more
            sep = b"\r\n\r\n" if b"\r\n\r\n" in raw else b"\n\n"
            head, _, rest = raw.partition(sep)
            status, reason, headers = 200, "OK", []
            for line in head.decode("latin-1").splitlines():
                key, _, value = line.partition(":")
                if key.lower() == "status":
                    code, _, reason = value.strip().partition(" ")
                    status = int(code)
                elif key:
                    headers.append((key.strip(), value.strip()))
            self._head(status, reason or "OK", headers)
            self._send(rest)
            while True:
                more = proc.stdout.read1(65536)
                if not more:
                    break
                self._send(more)
            writer.join(timeout=10)
            return status
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()
            owner._procs.discard(proc)


class GitHttpServer:
    """``git http-backend`` over HTTP on 127.0.0.1, serving one or more repositories."""

    def __init__(
        self,
        repos: dict[str, Path] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        git_config: dict[str, str] | None = None,
        protocol_v2: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.git = shutil.which("git") or "git"
        self.git_config = dict(git_config or {})
        self.protocol_v2 = protocol_v2
        self.faults = Faults()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.bytes_sent = 0
        self.generation = 0  # how many times the server was stopped
        self.redirects: dict[str, str] = {}  # path prefix → Location prefix (HTTP 301)
        self.log: list[Served] = []
        self._repos: dict[str, Path] = {}
        self._requests = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._procs: set[subprocess.Popen[bytes]] = set()
        for name, path in (repos or {}).items():
            self.add_repo(name, path)

    # -- repositories -------------------------------------------------------------------

    def add_repo(self, name: str, path: Path) -> str:
        """Serve the repository at ``path`` (bare, or a work tree with .git) as /name."""
        name = name.strip("/")
        gitdir = path / ".git" if (path / ".git").is_dir() else path
        if not (gitdir / "objects").is_dir():
            raise ValueError(f"{path} is not a git repository")
        self._repos[name] = gitdir.resolve()
        return self.url_for(name)

    def _resolve(self, path: str) -> tuple[Path, str] | None:
        for name, gitdir in sorted(self._repos.items(), key=lambda kv: -len(kv[0])):
            prefix = f"/{name}"
            if path == prefix or path.startswith(prefix + "/"):
                return gitdir, path[len(prefix):]
        return None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url_for(self, name: str) -> str:
        return f"{self.base_url}/{name.strip('/')}"

    @property
    def url(self) -> str:
        """The URL of the first repository served."""
        if not self._repos:
            raise ValueError("no repository is served yet")
        return self.url_for(next(iter(self._repos)))

    # -- counters -----------------------------------------------------------------------

    def _count(self, n: int) -> None:
        with self.lock:
            self.bytes_sent += n

    def _next_request(self) -> int:
        with self.lock:
            self._requests += 1
            return self._requests

    def _record(self, served: Served) -> None:
        with self.lock:
            self.log.append(served)

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self.lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def reset_counters(self) -> None:
        with self.lock:
            self.bytes_sent = 0
            self.log.clear()
            self._requests = 0

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> GitHttpServer:
        if self._server is not None:
            return self
        self.stopping.clear()
        deadline = time.monotonic() + 10
        while True:
            try:
                server = _Server((self.host, self.port), _Handler)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        server.owner = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"git-http-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self, *, kill: bool = True) -> None:
        """Stop listening; with ``kill``, also cut every open connection and backend."""
        server, self._server = self._server, None
        if server is None:
            return
        self.stopping.set()
        self.generation += 1
        server.shutdown()
        server.server_close()
        if kill:
            with self.lock:
                conns, procs = list(self._conns), list(self._procs)
            for conn in conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            for proc in procs:
                with contextlib.suppress(OSError):
                    proc.kill()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> GitHttpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- repositories made with the plain git CLI -----------------------------------------------


def git(*args: str, cwd: Path | None = None, input: bytes | None = None) -> str:
    """Run git with a fixed identity and no user/system config; return stdout."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cwd or Path.cwd()),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
        "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
    }
    done = subprocess.run(["git", *args], cwd=cwd, env=env, input=input, capture_output=True,
                          check=False, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.decode(errors='replace')}")
    return done.stdout.decode()


def commit_files(work: Path, files: dict[str, bytes | None], message: str = "update") -> str:
    """Write (or, for None, delete) files in work tree ``work``, commit, return the id."""
    for rel, data in files.items():
        target = work / rel
        if data is None:
            target.unlink(missing_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    git("add", "-A", cwd=work)
    git("commit", "-q", "--allow-empty", "-m", message, cwd=work)
    return git("rev-parse", "HEAD", cwd=work).strip()


def make_bare_repo(bare: Path, files: dict[str, bytes], *, branch: str = "main") -> Path:
    """A bare repository at ``bare`` whose ``branch`` has one commit with ``files``.

    Returns ``bare``; its work tree (for more commits, see :func:`commit_files` and
    :func:`push`) is ``bare`` with ``.work`` appended.
    """
    work = bare.with_name(bare.name + ".work")
    work.mkdir(parents=True)
    git("init", "-q", "-b", branch, cwd=work)
    commit_files(work, files, "initial")
    git("init", "-q", "--bare", "-b", branch, str(bare), cwd=work)
    push(work, bare, branch)
    return bare


def push(work: Path, bare: Path, *refs: str) -> None:
    git("push", "-q", "--force", str(bare), *refs, cwd=work)


# -- the pytest plugin -----------------------------------------------------------------------


@pytest.fixture
def git_http_server() -> Iterator[Callable[..., GitHttpServer]]:
    """Factory: ``git_http_server(repo_path, **options)`` → a started GitHttpServer.

    The repository is served under its directory name (``repo.git`` → /repo.git).
    Every server it made is stopped at the end of the test, whatever happened.
    """
    made: list[GitHttpServer] = []

    def factory(repo_path: Path, **options: object) -> GitHttpServer:
        server = GitHttpServer(**options)  # type: ignore[arg-type]
        server.add_repo(repo_path.name, repo_path)
        made.append(server)
        return server.start()

    try:
        yield factory
    finally:
        for server in made:
            server.stop()
