"""Benchmark: a node's first boot and reboot against each kind of git server, and git's own.

The fetch ladder (bootpull.fetch_ladder) takes the cheapest way a server offers. This
measures every rung on the server kinds of tests/gitserver_kinds.py, each against the
git CLI talking to the same server in the same run:

| kind | rung | git reference |
|---|---|---|
| ``filter`` | v2+filter | partial clone: ``git clone --filter=blob:none --depth 1 --sparse`` |
| | | + ``git sparse-checkout set roles/<role>`` |
| ``no-protocol-header-filter`` | v0+filter | the same |
| ``stock`` | v2 | ``git clone --depth 1`` |
| ``no-protocol-header`` | v0 | ``git clone --depth 1`` |
| ``dulwich`` | v0 | ``git clone --depth 1`` |
| ``dumb``, ``dumb-loose`` | dumb | ``git clone`` (dumb HTTP has no depth) |

One signed repository (``bootpull repo init`` and ``publish``: real metadata in
``.bootpull/metadata/``) holds ROLES roles × ROLE_MB MB of random files and one host
file per role; the bare copy every server serves is one pack (``dumb-loose`` gets a copy
with every object loose). The node is :func:`bootpull.pull.pull` over a
:class:`~bootpull.fetch.GitRemote` with a fresh cache and state dir (a first boot: the
metadata, ``bootpull.toml`` and the host files in one ``read_many``, then the role),
then again with the same cache and state (a reboot with nothing changed), against
``git fetch`` in the reference clone. On the filter kinds a second git reference fetches
exactly the files the node reads (the role, the metadata and the host files, a
``--no-cone`` sparse checkout), so the bytes compare like for like.

Each server runs in its own process (this script with ``--serve KIND GITDIR``), which
answers on stdin/stdout with its URL and, around each client run, its counters: bytes
written to clients (status lines and headers included), one log entry per request, and
its CPU time (``getrusage`` of itself and its children, user + system: ``git
http-backend`` runs as one child per request, the static and dulwich servers in the
process itself; the table splits off the part spent in git's processes). Every client is
measured the same way, by the server. Runs alternate which side goes first, and every
figure is the median over the runs; the CPU ratios also show the lowest and highest run,
since on a shared 2-core machine one run's server CPU wanders by ±30 %.

    .venv/bin/python bench/fetch_servers.py [--roles 20] [--role-mb 1] [--runs 5]
        [--kinds filter,stock,...] [--logs]

Prints a Markdown section for docs/benchmarks.md (and, with ``--logs``, every client's
request log from the first run, on stderr). Nothing but 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any, Protocol

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from bootpull.backoff import Counters  # noqa: E402
from bootpull.console import Console  # noqa: E402
from bootpull.fetch import FetchLimits, GitRemote  # noqa: E402
from bootpull.mac import Mac  # noqa: E402
from bootpull.pull import pull  # noqa: E402
from gitserver import GitHttpServer  # noqa: E402
from gitserver_kinds import KINDS, STOCK  # noqa: E402

FILES_PER_ROLE = 5
#: the git CLI reference for each kind: what a site would run against that server
REFERENCE = {
    "filter": "partial", "no-protocol-header-filter": "partial",
    "stock": "depth1", "no-protocol-header": "depth1", "dulwich": "depth1",
    "dumb": "full", "dumb-loose": "full",
}
REFERENCE_LABEL = {
    "partial": "`git clone --filter=blob:none --depth 1 --sparse` + "
               "`git sparse-checkout set roles/<role>`",
    "depth1": "`git clone --depth 1`",
    "full": "`git clone`",
}
#: GitHttpServer's options per kind (as tests/gitserver_kinds.py's fixture sets them)
BACKEND_OPTIONS: dict[str, dict[str, Any]] = {
    "stock": {"git_config": STOCK},
    "filter": {"git_config": {"uploadpack.allowAnySHA1InWant": "false"}},
    "no-protocol-header": {"git_config": STOCK, "protocol_v2": False},
    "no-protocol-header-filter": {"protocol_v2": False},
}
IDENTITY = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
            "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}


# -- the server process ----------------------------------------------------------------------


def cpu_seconds() -> dict[str, float]:
    """User + system CPU of this process, and of its children that have been waited for."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"cpu_self": own.ru_utime + own.ru_stime,
            "cpu_children": kids.ru_utime + kids.ru_stime}


class _Meter:
    """Bytes written and one (method, path, status, bytes) entry per connection."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bytes_sent = 0
        self.active = 0
        self.log: list[tuple[str, str, int, int]] = []

    def reset(self) -> None:
        with self.lock:
            self.bytes_sent = 0
            self.log.clear()


class _CountingWriter:
    """A handler's ``wfile`` that counts what passes through it."""

    def __init__(self, inner: Any, meter: _Meter) -> None:
        self._inner = inner
        self._meter = meter
        self.count = 0

    def write(self, data: bytes) -> Any:
        written = self._inner.write(data)
        self.count += len(data)
        with self._meter.lock:
            self._meter.bytes_sent += len(data)
        return written

    def __getattr__(self, name: str) -> Any:  # flush, close, closed
        return getattr(self._inner, name)


class _Counted(BaseHTTPRequestHandler):
    """Mixin: meter the response bytes of a handler (HTTP/1.0: one request a connection).

    A subclass per server sets ``meter``.
    """

    meter: _Meter

    def setup(self) -> None:
        super().setup()
        self._status = 0
        with self.meter.lock:
            self.meter.active += 1
        self.wfile = _CountingWriter(self.wfile, self.meter)  # type: ignore[assignment]

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self._status = int(code) if str(code).isdigit() else 0

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def finish(self) -> None:
        writer = self.wfile
        try:
            super().finish()
        finally:
            sent = writer.count if isinstance(writer, _CountingWriter) else 0
            with self.meter.lock:
                self.meter.log.append((getattr(self, "command", "") or "",
                                       getattr(self, "path", "") or "", self._status, sent))
                self.meter.active -= 1


class _StaticHandler(_Counted, SimpleHTTPRequestHandler):
    pass


class _Served(Protocol):
    url: str

    def busy(self) -> bool: ...

    def reset(self) -> None: ...

    def figures(self) -> dict[str, Any]: ...

    def stop(self) -> None: ...


class _Backend:
    """``git http-backend`` behind tests/gitserver.py's CGI host (the first four kinds)."""

    def __init__(self, kind: str, gitdir: Path) -> None:
        self.server = GitHttpServer(**BACKEND_OPTIONS[kind])
        self.server.add_repo("repo.git", gitdir)
        self.server.start()
        self.url = self.server.url
        self._idle_threads = threading.active_count()

    def busy(self) -> bool:
        return threading.active_count() > self._idle_threads

    def reset(self) -> None:
        self.server.reset_counters()

    def figures(self) -> dict[str, Any]:
        log = [(s.method, s.path, s.status, s.bytes_sent) for s in self.server.log]
        return {"bytes": self.server.bytes_sent, "requests": len(log), "log": log}

    def stop(self) -> None:
        self.server.stop()


class _Metered:
    """An http.server or wsgiref server in a thread, its handler metered (dumb, dulwich)."""

    def __init__(self, server: Any, url: str, meter: _Meter) -> None:
        self._server = server
        self._meter = meter
        self.url = url
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def busy(self) -> bool:
        return self._meter.active > 0

    def reset(self) -> None:
        self._meter.reset()

    def figures(self) -> dict[str, Any]:
        with self._meter.lock:
            return {"bytes": self._meter.bytes_sent, "requests": len(self._meter.log),
                    "log": list(self._meter.log)}

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def start_static(gitdir: Path) -> _Metered:
    """Static files (dumb HTTP) over ``gitdir``, as tests/gitserver_kinds.start_dumb serves
    them (after ``git update-server-info``), at ``/repo.git``."""
    subprocess.run(["git", "-C", str(gitdir), "update-server-info"], check=True)
    root = gitdir.parent / f"{gitdir.name}-static"
    root.mkdir(exist_ok=True)
    link = root / "repo.git"
    if not link.exists():
        link.symlink_to(gitdir)
    meter = _Meter()

    class Handler(_StaticHandler):
        pass

    Handler.meter = meter
    handler = functools.partial(Handler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    return _Metered(server, f"http://127.0.0.1:{server.server_address[1]}/repo.git", meter)


def start_dulwich(gitdir: Path) -> _Metered:
    """dulwich's smart HTTP server (``dulwich.web``) at ``/repo.git``."""
    from dulwich.repo import Repo
    from dulwich.server import BackendRepo, DictBackend
    from dulwich.web import WSGIRequestHandlerLogger, WSGIServerLogger, make_server, make_wsgi_chain

    class Handler(_Counted, WSGIRequestHandlerLogger):
        pass

    meter = _Meter()
    Handler.meter = meter
    repos: dict[str, BackendRepo] = {"/repo.git": Repo(str(gitdir))}
    app = make_wsgi_chain(DictBackend(repos))
    httpd = make_server("127.0.0.1", 0, app, handler_class=Handler,
                        server_class=WSGIServerLogger)
    return _Metered(httpd, f"http://127.0.0.1:{httpd.server_port}/repo.git", meter)


def serve(kind: str, gitdir: Path) -> int:
    """The child: start ``kind`` over ``gitdir``; answer ``start`` / ``read`` / ``quit``."""
    server: _Served
    if kind in ("dumb", "dumb-loose"):
        server = start_static(gitdir)
    elif kind == "dulwich":
        server = start_dulwich(gitdir)
    else:
        server = _Backend(kind, gitdir)
    print(json.dumps({"url": server.url}), flush=True)
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "quit":
                break
            deadline = time.monotonic() + 10  # let the last handler finish and log
            while server.busy() and time.monotonic() < deadline:
                time.sleep(0.01)
            if command == "start":
                server.reset()
                reply: dict[str, Any] = cpu_seconds()
            else:
                reply = {**cpu_seconds(), **server.figures()}
            print(json.dumps(reply), flush=True)
    finally:
        server.stop()
    return 0


# -- the parent's side of a server -----------------------------------------------------------


@dataclass
class Measured:
    bytes: int
    requests: int
    seconds: float
    cpu: float  # the server's CPU seconds during the run
    cpu_children: float  # of which its children's (git http-backend and what it runs)
    log: list[tuple[str, str, int, int]] = field(default_factory=list)
    error: str = ""
    rung: str = ""  # the node's rung (fetch_ladder), "" for git


class ServerProcess:
    """One server kind in a child process; :meth:`measure` runs a client against it."""

    def __init__(self, kind: str, gitdir: Path, errors: Path) -> None:
        self.kind = kind
        self._errors = errors
        with open(errors, "ab") as sink:
            self._proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--serve", kind, str(gitdir)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=sink, text=True)
        self.url: str = self._ask(None)["url"]

    def _ask(self, command: str | None) -> dict[str, Any]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        if command is not None:
            self._proc.stdin.write(command + "\n")
            self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.kind} server died: "
                               f"{self._errors.read_text(errors='replace')[-2000:]}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def measure(self, action: Callable[[], str]) -> Measured:
        """Run ``action`` (it returns the node's rung, or "") and the server's figures."""
        before = self._ask("start")
        started = time.perf_counter()
        error, rung = "", ""
        try:
            rung = action()
        except Exception as exc:
            error = f"{type(exc).__name__}: {str(exc)[:300]}"
        seconds = time.perf_counter() - started
        after = self._ask("read")
        own = after["cpu_self"] - before["cpu_self"]
        children = after["cpu_children"] - before["cpu_children"]
        return Measured(after["bytes"], after["requests"], seconds, own + children, children,
                        [(e[0], e[1], e[2], e[3]) for e in after["log"]], error, rung)

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            assert self._proc.stdin is not None
            self._proc.stdin.write("quit\n")
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


@contextlib.contextmanager
def server_process(kind: str, gitdir: Path, errors: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(kind, gitdir, errors)
    try:
        yield server
    finally:
        server.close()


# -- the repository --------------------------------------------------------------------------


@dataclass(frozen=True)
class Repo:
    work: Path  # the admin's work tree
    bare: Path  # served by the smart kinds: one pack
    packed: Path  # a copy for ``dumb`` (update-server-info writes into it)
    loose: Path  # a copy with every object loose, for ``dumb-loose``
    trust: bytes
    role: str
    mac: Mac
    built_s: float

    def served(self, kind: str) -> Path:
        return {"dumb": self.packed, "dumb-loose": self.loose}.get(kind, self.bare)


def git(*args: str, cwd: Path | None = None, stdin: IO[bytes] | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, stdin=stdin, capture_output=True, check=True,
                          timeout=600)
    return done.stdout.decode()


def build_repo(where: Path, roles: int, role_mb: float, role_index: int) -> Repo:
    """``bootpull repo init`` over ROLES random roles and a host file each, published."""
    from bootpull_repo.init import init

    started = time.perf_counter()
    work, keys = where / "work", where / "keys"
    size = int(role_mb * 2**20) // FILES_PER_ROLE
    for r in range(roles):
        role = work / "roles" / f"r{r:02d}"
        (role / "files").mkdir(parents=True)
        (role / "role.toml").write_text(
            f'format = 1\ndescription = "bench role r{r:02d}"\n\n[run]\ncommand = ["./f0"]\n')
        for f in range(FILES_PER_ROLE):
            (role / "files" / f"f{f}").write_bytes(os.urandom(size))
        (role / "files" / "f0").chmod(0o755)  # run.command must be executable (lint)
        (work / "hosts").mkdir(exist_ok=True)
        (work / "hosts" / f"52-54-00-00-00-{r:02x}.toml").write_text(
            f'role = "r{r:02d}"\nhostname = "node-{r:02d}"\n')
    (work / "hosts" / "default.toml").write_text('# unknown nodes\nrole = "r00"\n')
    init(work, keys_override=str(keys), name="bench")
    bare = where / "bench.git"
    git("init", "-q", "--bare", "-b", "main", str(bare))
    git("push", "-q", str(bare), "main", cwd=work)
    git("-C", str(bare), "repack", "-a", "-d", "-q")
    packed = where / "dumb.git"
    shutil.copytree(bare, packed)
    loose = where / "dumb-loose.git"
    shutil.copytree(bare, loose)
    for pack in sorted((loose / "objects" / "pack").glob("*.pack")):
        moved = where / pack.name
        pack.rename(moved)
        pack.with_suffix(".idx").unlink()
        with open(moved, "rb") as data:
            git("unpack-objects", "-q", cwd=loose, stdin=data)
        moved.unlink()
    return Repo(work, bare, packed, loose, (keys / "trust.json").read_bytes(),
                f"r{role_index:02d}", Mac.parse(f"52-54-00-00-00-{role_index:02x}"),
                time.perf_counter() - started)


# -- the clients -----------------------------------------------------------------------------


class _Null:
    def write(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def node_boot(url: str, repo: Repo, cache: Path, state: Path) -> str:
    """What a node's fetch and verify stages do (pull_url without the image's files)."""
    quiet = Console(_Null())
    remote = GitRemote(url, cache, limits=FetchLimits(deadline=600), console=quiet,
                       counters=Counters())
    try:
        result = pull(remote, repo.mac, trust_root=repo.trust, state_dir=state, console=quiet,
                      counters=Counters())
    finally:
        remote.close()
    if result.bundle.role.name != repo.role or len(result.bundle.files) != FILES_PER_ROLE:
        raise RuntimeError(f"pulled {result.bundle.role.name} with "
                           f"{len(result.bundle.files)} files")
    return remote.rung.name if remote.rung else "?"


class GitCli:
    """The git CLI with an isolated HOME and no system or global config."""

    def __init__(self, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
                    "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
                    "GIT_TERMINAL_PROMPT": "0"}

    def run(self, *args: str, cwd: Path) -> str:
        done = subprocess.run(["git", "-c", "protocol.version=2", *args], cwd=cwd, env=self.env,
                              capture_output=True, timeout=600, check=False)
        if done.returncode:
            raise RuntimeError(f"git {' '.join(args[:2])} exited {done.returncode}: "
                               f"{done.stderr.decode(errors='replace').strip()[-300:]}")
        return ""

    def clone(self, how: str, url: str, dest: Path, sparse: list[str] | None = None) -> str:
        """``how``: partial (with the sparse patterns), depth1, or full."""
        flags = {"partial": ["--filter=blob:none", "--depth", "1", "--sparse"],
                 "depth1": ["--depth", "1"], "full": []}[how]
        self.run("clone", "-q", *flags, url, str(dest), cwd=dest.parent)
        if how == "partial":
            assert sparse
            exact = ["--no-cone"] if any(p.startswith("/") for p in sparse) else []
            self.run("sparse-checkout", "set", *exact, *sparse, cwd=dest)
        return ""


def node_files(repo: Repo) -> list[str]:
    """Non-cone sparse patterns for exactly what a node reads (pull._Prefetched + the role)."""
    return ["/bootpull.toml", "/.bootpull/metadata/", f"/hosts/{repo.mac.canonical}.toml",
            "/hosts/default.toml", f"/roles/{repo.role}/"]


# -- one run over every kind ----------------------------------------------------------------


Results = dict[str, dict[str, Measured]]  # kind → client → figures
CLIENTS = ["node", "node-reboot", "git", "git-fetch", "git-same-files"]


def run_kind(kind: str, repo: Repo, where: Path, *, git_first: bool) -> dict[str, Measured]:
    """One run on one server kind: the node's two boots and git's clone and fetch, in
    either order (runs alternate, so neither side always meets the colder server)."""
    where.mkdir(parents=True)
    cli = GitCli(where / "home")
    out: dict[str, Measured] = {}
    with server_process(kind, repo.served(kind), where / "server.log") as server:
        url = server.url
        cli.run("ls-remote", url, cwd=where)  # warm-up: first-request costs go to nobody
        cache, state = where / "cache", where / "state"
        how = REFERENCE[kind]
        clone = where / "clone"

        def node() -> None:
            out["node"] = server.measure(lambda: node_boot(url, repo, cache, state))
            out["node-reboot"] = server.measure(lambda: node_boot(url, repo, cache, state))

        def reference() -> None:
            out["git"] = server.measure(
                lambda: cli.clone(how, url, clone, [f"roles/{repo.role}"]))
            out["git-fetch"] = server.measure(
                lambda: cli.run("fetch", "-q", "origin", cwd=clone))
            if how == "partial":
                out["git-same-files"] = server.measure(
                    lambda: cli.clone(how, url, where / "clone-same", node_files(repo)))

        for step in (reference, node) if git_first else (node, reference):
            step()
    return {client: out[client] for client in sorted(out, key=CLIENTS.index)}


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def combine(runs: list[dict[str, Measured]]) -> dict[str, Measured]:
    """Medians across runs (bytes and requests are the same in every run that worked)."""
    out: dict[str, Measured] = {}
    for client in runs[0]:
        got = [r[client] for r in runs if client in r]
        ok = [m for m in got if not m.error] or got
        out[client] = Measured(int(median([m.bytes for m in ok])),
                               int(median([m.requests for m in ok])),
                               median([m.seconds for m in ok]), median([m.cpu for m in ok]),
                               median([m.cpu_children for m in ok]),
                               ok[0].log, "; ".join(sorted({m.error for m in got if m.error})),
                               ok[0].rung)
    return out


# -- the report ------------------------------------------------------------------------------


def ratio(a: float, b: float) -> str:
    return f"{a / b:.3f}" if b else "—"


def yes(ok: bool) -> str:
    return "met" if ok else "**NOT met**"


def spread(runs: list[dict[str, Measured]], a: str, b: str) -> str:
    """The lowest and highest per-run ratio of ``a``'s server CPU to ``b``'s."""
    got = [r[a].cpu / r[b].cpu for r in runs
           if a in r and b in r and r[b].cpu and not r[a].error and not r[b].error]
    return f" ({min(got):.2f}–{max(got):.2f})" if len(got) > 1 else ""


def report(args: argparse.Namespace, repo: Repo, results: Results,
           raw: dict[str, list[dict[str, Measured]]]) -> tuple[str, bool]:
    work = repo.work
    role_bytes = sum(p.stat().st_size for p in (work / "roles" / repo.role).rglob("*")
                     if p.is_file())
    repo_bytes = sum(p.stat().st_size for p in work.rglob("*")
                     if p.is_file() and ".git" not in p.parts)
    metadata = {p.name: p.stat().st_size
                for p in sorted((work / ".bootpull" / "metadata").glob("*.json"))}
    versions = {
        "git": subprocess.run(["git", "--version"], capture_output=True,
                              text=True).stdout.split()[-1],
        "Python": platform.python_version(),
    }
    import dulwich

    versions["dulwich"] = ".".join(str(n) for n in dulwich.__version__)
    lines: list[str] = []
    say = lines.append
    say("## Fetch by server kind: the fetch ladder against the git CLI (bench/fetch_servers.py)"
        "\n")
    command = (f"`.venv/bin/python bench/fetch_servers.py --roles {args.roles} "
               f"--role-mb {args.role_mb:g} --runs {args.runs}"
               + "`")
    say(f"Command: {command} — {time.strftime('%Y-%m-%d', time.gmtime())}, "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + f"; repository built and published in {repo.built_s:.0f} s"
        + (f"; medians of {args.runs} runs" if args.runs > 1 else "; one run") + ". "
        f"Role {repo.role}: {role_bytes:,} bytes ({FILES_PER_ROLE} random files + role.toml); "
        f"repository: {repo_bytes:,} bytes; metadata: "
        + ", ".join(f"{k} {v:,}" for k, v in metadata.items()) + ". "
        "The node is `pull()` over `GitRemote` (fresh cache and state dir, then the same "
        "again: the reboot). Every figure is the server's: bytes it wrote (status lines and "
        "headers included), requests it answered, and its CPU (user + system, its own and its "
        "children's: one `git http-backend` per request on the first four kinds); seconds "
        "are the client's wall time, git's process start-up included.\n")

    say("First boot, against the git reference on the same server (× = bootpull ÷ git):\n")
    per_run = " (lowest–highest run)" if args.runs > 1 else ""
    say("| server kind | rung | git reference | bytes | × git | requests (git) | seconds | "
        f"× git | server CPU ms | × git{per_run} | git processes' CPU × git |")
    say("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind, got in results.items():
        node, ref = got["node"], got["git"]
        if node.error:
            say(f"| `{kind}` | — | {REFERENCE_LABEL[REFERENCE[kind]]} | failed: {node.error} "
                "| | | | | | | |")
            continue
        rung = node.rung + ("" if node.rung == KINDS[kind] else f" (expected {KINDS[kind]})")
        say(f"| `{kind}` | {rung} | {short_ref(kind)} | {node.bytes:,} | "
            f"{ratio(node.bytes, ref.bytes)} | {node.requests} ({ref.requests}) | "
            f"{node.seconds:.2f} | {ratio(node.seconds, ref.seconds)} | {node.cpu * 1000:.0f} | "
            f"{ratio(node.cpu, ref.cpu)}{spread(raw[kind], 'node', 'git')} | "
            f"{ratio(node.cpu_children, ref.cpu_children)} |")
    say("")
    say("The git references, same run:\n")
    say("| server kind | git client | bytes | requests | seconds | server CPU ms | "
        "of which git processes |")
    say("|---|---|---:|---:|---:|---:|---:|")
    for kind, got in results.items():
        for client, label in (("git", REFERENCE_LABEL[REFERENCE[kind]]),
                              ("git-same-files", "the same, `--no-cone` sparse checkout of "
                               "exactly the node's files (role, metadata, host files)"),
                              ("git-fetch", "`git fetch`, nothing changed (in the clone)")):
            if client in got:
                m = got[client]
                if m.error:
                    say(f"| `{kind}` | {label} | failed: {m.error} | | | | |")
                else:
                    say(f"| `{kind}` | {label} | {m.bytes:,} | {m.requests} | {m.seconds:.2f} "
                        f"| {m.cpu * 1000:.0f} | {m.cpu_children * 1000:.0f} |")
    say("")
    say("Reboot with nothing changed (same cache and state dir), against `git fetch` in the "
        "reference clone:\n")
    say("| server kind | bytes | × git fetch | requests (git) | seconds | × git | "
        f"server CPU ms | × git{per_run} |")
    say("|---|---:|---:|---:|---:|---:|---:|---:|")
    for kind, got in results.items():
        node, ref = got["node-reboot"], got["git-fetch"]
        if node.error:
            say(f"| `{kind}` | failed: {node.error} | | | | | | |")
            continue
        say(f"| `{kind}` | {node.bytes:,} | {ratio(node.bytes, ref.bytes)} | "
            f"{node.requests} ({ref.requests}) | {node.seconds:.2f} | "
            f"{ratio(node.seconds, ref.seconds)} | {node.cpu * 1000:.0f} | "
            f"{ratio(node.cpu, ref.cpu)}{spread(raw[kind], 'node-reboot', 'git-fetch')} |")
    say("")
    text, all_met = targets(results)
    say(text)
    return "\n".join(lines), all_met


def short_ref(kind: str) -> str:
    return {"partial": "partial clone + sparse checkout of the role",
            "depth1": "`clone --depth 1`", "full": "`clone` (dumb)"}[REFERENCE[kind]]


def targets(results: Results) -> tuple[str, bool]:
    """The issue's targets, each per kind, judged on this run's figures."""
    partial = results.get("filter", {}).get("git")
    limit = partial.requests if partial and not partial.error else 7
    where = "git's partial clone of the role on `filter`" if partial else "7"
    out = ["Targets (each judged per kind, on this run's figures):\n"]
    all_met = True

    def judge(name: str, checks: list[tuple[str, bool, str]]) -> None:
        nonlocal all_met
        parts = []
        for kind, ok, figure in checks:
            all_met &= ok
            parts.append(f"`{kind}` {figure} ({yes(ok)})")
        out.append(f"- {name}: " + "; ".join(parts) + ".")

    ok = {k: g for k, g in results.items() if not g["node"].error and not g["git"].error}
    judge(f"first boot in no more requests than {where} ({limit})",
          [(k, g["node"].requests <= limit, str(g["node"].requests)) for k, g in ok.items()])
    judge("server CPU per node ≤ 1.0 × the git reference's",
          [(k, g["node"].cpu <= g["git"].cpu, f"{g['node'].cpu / g['git'].cpu:.2f} ×")
           for k, g in ok.items() if g["git"].cpu])
    judge("bytes with a filter ≤ 1.0 × git's partial clone of the role",
          [(k, g["node"].bytes <= g["git"].bytes, f"{g['node'].bytes / g['git'].bytes:.4f} ×"
            + (f", {g['node'].bytes / g['git-same-files'].bytes:.4f} × git fetching the same "
               "files" if "git-same-files" in g and not g["git-same-files"].error else ""))
           for k, g in ok.items() if REFERENCE[k] == "partial"])
    judge("bytes without a filter ≤ 1.05 × `git clone --depth 1`",
          [(k, g["node"].bytes <= 1.05 * g["git"].bytes,
            f"{g['node'].bytes / g['git'].bytes:.4f} ×")
           for k, g in ok.items() if REFERENCE[k] == "depth1"])
    reboot = {k: g for k, g in results.items()
              if not g["node-reboot"].error and not g["git-fetch"].error}
    judge("reboot with nothing changed ≤ git's own no-op fetch, in bytes",
          [(k, g["node-reboot"].bytes <= g["git-fetch"].bytes,
            f"{g['node-reboot'].bytes} B vs {g['git-fetch'].bytes} B")
           for k, g in reboot.items()])
    failed = [f"`{k}` {c}: {m.error}" for k, g in results.items() for c, m in g.items()
              if m.error]
    if failed:
        all_met = False
        out.append("- failed runs: " + "; ".join(failed) + ".")
    dumb = [(k, g) for k, g in ok.items() if REFERENCE[k] == "full"]
    if dumb:
        out.append("- dumb HTTP (no target; against `git clone`, which takes the history "
                   "too): " + "; ".join(f"`{k}` {g['node'].bytes / g['git'].bytes:.4f} × "
                                        "in bytes" for k, g in dumb) + ".")
    return "\n".join(out) + "\n", all_met


def print_logs(results: Results) -> None:
    for kind, got in results.items():
        for client, m in got.items():
            print(f"\n# {kind} / {client}: {m.requests} requests, {m.bytes} bytes, "
                  f"{m.cpu * 1000:.0f} ms server CPU{' — ' + m.error if m.error else ''}",
                  file=sys.stderr)
            for method, path, status, sent in m.log:
                print(f"  {method} {path} {status} {sent}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "GITDIR"), help=argparse.SUPPRESS)
    parser.add_argument("--roles", type=int, default=20)
    parser.add_argument("--role-mb", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=5, help="medians of this many runs")
    parser.add_argument("--kinds", default=",".join(REFERENCE),
                        help="comma-separated, from: " + ", ".join(REFERENCE))
    parser.add_argument("--logs", action="store_true", help="each run's request log on stderr")
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve[0], Path(args.serve[1]))
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if unknown := [k for k in kinds if k not in REFERENCE]:
        parser.error(f"unknown kinds: {', '.join(unknown)}")
    for key, value in {**IDENTITY, "GIT_CONFIG_NOSYSTEM": "1",
                       "GIT_CONFIG_GLOBAL": os.devnull}.items():
        os.environ.setdefault(key, value)
    with tempfile.TemporaryDirectory(prefix="bench-servers-") as tmp_name:
        tmp = Path(tmp_name)
        repo = build_repo(tmp, args.roles, args.role_mb, min(7, args.roles - 1))
        runs: dict[str, list[dict[str, Measured]]] = {k: [] for k in kinds}
        for n in range(args.runs):
            for kind in kinds:
                runs[kind].append(run_kind(kind, repo, tmp / f"run{n}" / kind,
                                           git_first=n % 2 == 1))
        results = {kind: combine(got) for kind, got in runs.items()}
        text, all_met = report(args, repo, results, runs)
    if args.logs:
        print_logs(results)
    print("\n" + text)
    return 0 if all_met else 1


if __name__ == "__main__":
    raise SystemExit(main())
