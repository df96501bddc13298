"""The repository at fleet scale: publish, lint, show, history and a node's bytes.

    .venv/bin/python bench/repo_scale.py [--sizes 500,1000,5000,10000] [--roles 50]
                                         [--format 2]

For each size, one repository is made (``bootpull repo init``; ROLES roles of one
64 KiB file each; HOSTS host files spread over them; one commit) and measured. Every
figure has a reference: git's own operation on the same repository, in the same run.

- ``repo publish``, first (everything is signed) and after a one-host change (the
  median of five, each a new commit; each size ÷ the first is printed), against
  ``git cat-file --batch`` of every blob at HEAD (reading each file once, the least
  any signer must do before hashing);
- ``repo lint`` against reading every tracked file and parsing each TOML one;
- ``repo show MAC --no-verify`` against ``git cat-file --batch`` of the role's files;
- ``repo history MAC`` against ``git log --first-parent`` of the node's paths;
- a node's first fetch (``pull()`` over smart HTTP from ``git http-backend``, with a
  new cache and state directory) against git's own partial clone of the role and the
  host file (``clone --filter=blob:none --depth 1 --sparse`` + ``sparse-checkout``);
- a reboot with nothing changed, against ``git fetch`` in that clone;
- a reboot after another host's file changed and was published, against ``git fetch``
  after the same commits: a host in another of format 2's host bins (its last MAC octet
  128 away), then a host in the node's own bin (the same last octet).

``--format`` is the signed metadata format (bootpull.toml's ``format``; 2 by default).

Bytes are what the server wrote to the socket, status lines and headers included.
Prints Markdown for docs/benchmarks.md. Every loop is bounded by ``--sizes``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from bootpull.backoff import Counters  # noqa: E402
from bootpull.cli import main as cli  # noqa: E402
from bootpull.console import Console  # noqa: E402
from bootpull.fetch import FetchLimits, GitRemote  # noqa: E402
from bootpull.mac import Mac  # noqa: E402
from bootpull.pull import pull  # noqa: E402
from gitserver import GitHttpServer  # noqa: E402

ROLE_BYTES = 64 * 1024
REPEAT = 5  # one-host publishes per size: the median is the figure
ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
       "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid",
       "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}


class _Null:
    def write(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


QUIET = Console(_Null())


@dataclass
class Row:
    what: str
    ours: float
    reference: float
    unit: str  # "s" or "B"
    ref_what: str


@dataclass
class Size:
    hosts: int
    rows: list[Row] = field(default_factory=list)


def git(root: Path, *args: str, data: bytes | None = None) -> bytes:
    return subprocess.run(["git", "-c", "protocol.version=2", *args], cwd=root,
                          input=data, check=True, capture_output=True, timeout=1800).stdout


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def quiet(argv: list[str]) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = cli(argv)
    if code != 0:
        raise SystemExit(f"bootpull {' '.join(argv)} exited {code}:\n{out.getvalue()}")


def mac_of(n: int) -> Mac:
    return Mac.parse(f"02:00:00:{n >> 16:02x}:{(n >> 8) & 255:02x}:{n & 255:02x}")


def build(base: Path, hosts: int, roles: int, fmt: int) -> tuple[Path, Path]:
    from bootpull_repo.init import init
    from bootpull_repo.publish import with_format

    root, keys = base / "repo", base / "keys"
    init(root, keys_override=str(keys), name="scale")
    settings = root / "bootpull.toml"
    settings.write_bytes(with_format(settings.read_bytes(), fmt))
    for r in range(roles):
        role = root / "roles" / f"r{r:03d}"
        (role / "files").mkdir(parents=True)
        (role / "role.toml").write_text(
            f'format = 1\ndescription = "r{r:03d}"\n\n[run]\ncommand = ["./run"]\n')
        head = b"#!/bin/sh\nexec sleep 1000000\n"  # then random bytes: they do not compress
        (role / "files" / "run").write_bytes(head + os.urandom(ROLE_BYTES - len(head)))
        (role / "files" / "run").chmod(0o755)
    for n in range(hosts):
        (root / "hosts" / f"{mac_of(n).canonical}.toml").write_text(
            f'role = "r{n % roles:03d}"\nhostname = "n{n}"\n')
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", f"{hosts} hosts, {roles} roles")
    return root, keys


def read_every_blob(root: Path) -> None:
    listing = git(root, "ls-tree", "-r", "HEAD").decode().splitlines()
    oids = "".join(line.split()[2] + "\n" for line in listing)
    git(root, "cat-file", "--batch", data=oids.encode())


def read_and_parse(root: Path) -> None:
    for name in git(root, "ls-files", "-z").decode().split("\0"):
        if name:
            data = (root / name).read_bytes()
            if name.endswith(".toml"):
                tomllib.loads(data.decode())


def measure(hosts: int, roles: int, base: Path, fmt: int) -> Size:
    size = Size(hosts)
    root, keys = build(base, hosts, roles, fmt)
    publish = ["repo", "-C", str(root), "--keys", str(keys), "publish"]
    ref_sign = timed(lambda: read_every_blob(root))
    size.rows.append(Row("publish, first", timed(lambda: quiet(publish)), ref_sign, "s",
                         "`git cat-file --batch` of every blob"))
    host0 = root / "hosts" / f"{mac_of(0).canonical}.toml"

    def edit(path: Path, n: int) -> None:
        path.write_text(path.read_text() + f"# edit {n}\n")
        git(root, "commit", "-q", "-am", f"edit {path.name}")

    ours, refs = [], []
    for n in range(REPEAT):  # the median of REPEAT one-host changes, each published
        edit(host0, n + 1)
        refs.append(timed(lambda: read_every_blob(root)))
        ours.append(timed(lambda: quiet(publish)))
    size.rows.append(Row(f"publish after a one-host change (median of {REPEAT})",
                         statistics.median(ours), statistics.median(refs), "s",
                         "`git cat-file --batch` of every blob"))
    size.rows.append(Row("`repo lint`", timed(lambda: quiet(["repo", "-C", str(root), "lint"])),
                         timed(lambda: read_and_parse(root)), "s",
                         "read every file, parse every TOML"))
    node_number = 7
    node = mac_of(node_number)
    role_dir = f"roles/r{7 % roles:03d}"
    listing = git(root, "ls-tree", "-r", "HEAD", "--", role_dir + "/").decode().splitlines()
    oids = "".join(line.split()[2] + "\n" for line in listing).encode()
    size.rows.append(Row("`repo show MAC --no-verify`",
                         timed(lambda: quiet(["repo", "-C", str(root), "show", node.colons,
                                              "--no-verify"])),
                         timed(lambda: git(root, "cat-file", "--batch", data=oids)), "s",
                         "`git cat-file --batch` of the role's files"))
    host_file = f"hosts/{node.canonical}.toml"
    size.rows.append(Row("`repo history MAC`",
                         timed(lambda: quiet(["repo", "-C", str(root), "history", node.colons])),
                         timed(lambda: git(root, "log", "--first-parent", "--format=%H %s",
                                           "main", "--", host_file, "hosts/default.toml",
                                           "bootpull.toml", role_dir)),
                         "s", "`git log --first-parent` of the node's paths"))

    bare = base / "served.git"
    git(base, "clone", "-q", "--bare", str(root), str(bare))
    trust = (keys / "trust.json").read_bytes()
    cache, state = base / "cache", base / "state"
    clone = base / "partial"
    with GitHttpServer({"repo.git": bare}) as server:
        url = server.url

        def node_boot() -> int:
            server.reset_counters()
            with GitRemote(url, cache, limits=FetchLimits(deadline=1800), console=QUIET,
                           counters=Counters()) as remote:
                pull(remote, node, trust_root=trust, state_dir=state, console=QUIET,
                     counters=Counters())
            return server.bytes_sent

        def git_bytes(*args: str, cwd: Path) -> int:
            server.reset_counters()
            git(cwd, *args)
            return server.bytes_sent

        first = node_boot()
        ref_first = git_bytes("clone", "-q", "--filter=blob:none", "--depth", "1", "--sparse",
                              url, str(clone), cwd=base)
        server.reset_counters()
        git(clone, "sparse-checkout", "set", "--no-cone", role_dir + "/", "/" + host_file)
        ref_first += server.bytes_sent
        size.rows.append(Row("first fetch (role + metadata)", first, ref_first, "B",
                             "git's partial clone of the role and the host file"))
        noop = node_boot()
        size.rows.append(Row("reboot, nothing changed", noop,
                             git_bytes("fetch", "-q", "origin", cwd=clone), "B",
                             "`git fetch` in that clone"))
        def after_change(what: str, host: Path, n: int) -> None:
            edit(host, n)
            quiet(publish)
            git(root, "push", "-q", "--force", str(bare), "main")
            ours = node_boot()
            size.rows.append(Row(what, ours, git_bytes("fetch", "-q", "origin", cwd=clone),
                                 "B", "`git fetch` after the same commits"))

        # another bin at every size: bins split the last octet, and this one is 128 away
        after_change("reboot after another host's change",
                     root / "hosts" / f"{mac_of(node_number + 128).canonical}.toml", 2)
        neighbour = root / "hosts" / f"{mac_of(node_number + 256).canonical}.toml"
        if neighbour.exists():  # the same last octet: the node's own host bin
            after_change("reboot after a change to a host in its bin", neighbour, 3)
    return size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="500,1000,5000,10000",
                        help="host counts, comma-separated")
    parser.add_argument("--roles", type=int, default=50)
    parser.add_argument("--format", type=int, choices=(1, 2), default=2,
                        help="signed metadata format (default 2)")
    args = parser.parse_args()
    os.environ.update(ENV)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    results = []
    for hosts in sizes:
        base = Path(tempfile.mkdtemp(prefix=f"bench-scale-{hosts}-"))
        try:
            started = time.perf_counter()
            results.append(measure(hosts, args.roles, base, args.format))
            print(f"{hosts} hosts measured in {time.perf_counter() - started:.0f} s",
                  file=sys.stderr)
        finally:
            shutil.rmtree(base, ignore_errors=True)
    git_version = subprocess.run(["git", "--version"], capture_output=True,
                                 text=True).stdout.split()[-1]
    print(f"Command: `.venv/bin/python bench/repo_scale.py --sizes {args.sizes} "
          f"--roles {args.roles} --format {args.format}` — "
          f"{time.strftime('%Y-%m-%d', time.gmtime())}, git "
          f"{git_version}, Python {platform.python_version()}, {os.cpu_count()} cores; "
          f"{args.roles} roles of {ROLE_BYTES:,} B of random bytes (a node's budget for its "
          f"first fetch: {ROLE_BYTES + 32 * 1024:,} B, the role + 32 KB).\n")
    print("| operation | " + " | ".join(f"{s.hosts:,} hosts" for s in results) + " |")
    print("|---|" + "---:|" * len(results))
    for i, row in enumerate(results[0].rows):
        cells = []
        for s in results:
            r = s.rows[i]
            figure = f"{r.ours:.2f} s" if r.unit == "s" else f"{int(r.ours):,} B"
            cells.append(f"{figure} ({r.ours / r.reference:.1f} ×)" if r.reference else figure)
        print(f"| {row.what} | " + " | ".join(cells) + " |")
    print()
    if len(results) > 1:
        first = results[0]
        a = first.rows[1].ours
        ratios = ", ".join(f"{s.hosts:,}: {s.rows[1].ours:.3f} s ÷ {a:.3f} s = "
                           f"{s.rows[1].ours / a:.2f} ×" for s in results[1:])
        print(f"Publish after a one-host change, against {first.hosts:,} hosts: {ratios}.\n")
    print("× is against the reference on the same repository in the same run:")
    for row in results[0].rows:
        refs = ", ".join(
            f"{s.rows[results[0].rows.index(row)].reference:.3f} s"
            if row.unit == "s" else f"{int(s.rows[results[0].rows.index(row)].reference):,} B"
            for s in results)
        print(f"- {row.what}: {row.ref_what} ({refs})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
