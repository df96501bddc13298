"""Benchmark: bytes and time for one node to fetch one role, against git's own clones.

A repository of ROLES roles × ROLE_MB MB of random content is served by the same
``git http-backend`` test server (tests/gitserver.py) to every client in one run:

1. bootpull's GitRemote: snapshot of main, then the role's files in one read_many
   (plus bootpull.toml and the node's host file, as a real node reads them);
2. ``git clone --depth 1`` (the whole tree at the head);
3. ``git clone --filter=blob:none --depth 1 --sparse`` + ``git sparse-checkout set``
   of the role (git's own partial clone of the same role);
4. a second GitRemote snapshot with the same cache and nothing changed (a reboot),
   against ``git fetch`` in the partial clone (git's own no-op fetch);
5. a boot after a commit that changes another role (only the path's trees move).

Bytes are what the server wrote to the socket (status line and headers included), so
every client is measured the same way. Prints a Markdown section for docs/benchmarks.md.

    .venv/bin/python bench/fetch_role.py [--roles 20] [--role-mb 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from bootpull.backoff import Counters  # noqa: E402
from bootpull.console import Console  # noqa: E402
from bootpull.fetch import FetchLimits, GitRemote  # noqa: E402
from gitserver import GitHttpServer, commit_files, make_bare_repo, push  # noqa: E402

MAC = "52-54-00-12-34-56"
FILES_PER_ROLE = 5


class _Null:
    def write(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def build_repo(where: Path, roles: int, role_mb: float, role: str) -> Path:
    per_file = int(role_mb * 2**20) // FILES_PER_ROLE
    files = {"bootpull.toml": b"format = 1\n",
             f"hosts/{MAC}.toml": f'role = "{role}"\n'.encode()}
    for r in range(roles):
        files[f"roles/r{r:02d}/role.toml"] = b'format = 1\ndescription = "bench"\n'
        for i in range(FILES_PER_ROLE):
            files[f"roles/r{r:02d}/files/blob{i}.bin"] = os.urandom(per_file)
    return make_bare_repo(where / "bench.git", files)


def git_env(home: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}


def run_git(args: list[str], cwd: Path, home: Path) -> None:
    subprocess.run(["git", "-c", "protocol.version=2", *args], cwd=cwd, env=git_env(home),
                   check=True, capture_output=True, timeout=600)


def measure(server: GitHttpServer, action) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    server.reset_counters()
    started = time.perf_counter()
    action()
    return server.bytes_sent, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roles", type=int, default=20)
    parser.add_argument("--role-mb", type=float, default=5.0)
    parser.add_argument("--role", default=None, help="default: r07, or the last role")
    args = parser.parse_args()
    args.role = args.role or f"r{min(7, args.roles - 1):02d}"

    with tempfile.TemporaryDirectory(prefix="bench-fetch-") as tmp_name:
        tmp = Path(tmp_name)
        t0 = time.perf_counter()
        bare = build_repo(tmp, args.roles, args.role_mb, args.role)
        build_s = time.perf_counter() - t0
        role_dir = f"roles/{args.role}"
        role_bytes = sum(p.stat().st_size for p in (bare.with_name("bench.git.work") /
                                                      role_dir).rglob("*") if p.is_file())
        repo_bytes = sum(p.stat().st_size for p in (bare.with_name("bench.git.work")).rglob("*")
                         if p.is_file() and ".git" not in p.parts)
        results: dict[str, tuple[int, float]] = {}
        with GitHttpServer({"bench.git": bare}) as server:
            cache = tmp / "cache"
            limits = FetchLimits(deadline=600)

            def node_fetch() -> None:
                with GitRemote(server.url, cache, limits=limits, console=Console(_Null()),
                               counters=Counters()) as remote:
                    snap = remote.snapshot("main")
                    paths = [e.path for e in snap.list(role_dir)]
                    got = snap.read_many([*paths, "bootpull.toml", f"hosts/{MAC}.toml"])
                    assert len(got) == len(paths) + 2

            results["bootpull GitRemote (one role)"] = measure(server, node_fetch)
            results["bootpull GitRemote, second boot, no change"] = measure(server, node_fetch)

            def depth1() -> None:
                run_git(["clone", "-q", "--depth", "1", server.url, str(tmp / "depth1")],
                        tmp, tmp)

            results["git clone --depth 1"] = measure(server, depth1)

            def partial() -> None:
                run_git(["clone", "-q", "--filter=blob:none", "--depth", "1", "--sparse",
                         server.url, str(tmp / "partial")], tmp, tmp)
                run_git(["sparse-checkout", "set", role_dir], tmp / "partial", tmp)

            results["git partial clone + sparse checkout of the role"] = measure(server, partial)
            results["git fetch, no change (in the partial clone)"] = measure(
                server, lambda: run_git(["fetch", "-q", "origin"], tmp / "partial", tmp))
            work = bare.with_name("bench.git.work")
            other = "r00" if args.role != "r00" else "r01"
            commit_files(work, {f"roles/{other}/files/blob0.bin": os.urandom(2**20)},
                             "change another role")
            push(work, bare, "main")
            results[f"bootpull GitRemote, boot after a change to roles/{other}"] = measure(
                server, node_fetch)

    ours, ours_s = results["bootpull GitRemote (one role)"]
    git_partial, git_partial_s = results["git partial clone + sparse checkout of the role"]
    noop, _ = results["bootpull GitRemote, second boot, no change"]
    git_noop, _ = results["git fetch, no change (in the partial clone)"]
    command = f"`.venv/bin/python bench/fetch_role.py --roles {args.roles} " \
              f"--role-mb {args.role_mb:g}`"
    print(f"\n## Fetch: one role of {args.roles} × {args.role_mb:g} MB (bench/fetch_role.py)\n")
    git_version = subprocess.run(["git", "--version"], capture_output=True,
                                 text=True).stdout.split()[-1]
    print(f"Command: {command} — {time.strftime('%Y-%m-%d', time.gmtime())}, "
          f"git {git_version}"
          f", Python {platform.python_version()}; repository built in {build_s:.0f}s. "
          f"Bytes are what the test server (git http-backend) wrote to the socket, headers "
          f"included; times include git's process start-up. Role size: {role_bytes} bytes; "
          f"repository: {repo_bytes} bytes.\n")
    print("| client | bytes on the wire | × role size | × git partial clone | seconds |")
    print("|---|---:|---:|---:|---:|")
    for name, (sent, secs) in results.items():
        print(f"| {name} | {sent} | {sent / role_bytes:.4f} | {sent / git_partial:.4f} | "
              f"{secs:.2f} |")
    print(f"\nTargets: bootpull ≤ git's partial clone in bytes: {ours} vs {git_partial} "
          f"(ratio {ours / git_partial:.4f}, {'met' if ours <= git_partial else 'NOT met'}); "
          f"second boot ≤ 4096 bytes: {noop} ({'met' if noop <= 4096 else 'NOT met'}; git's "
          f"own no-op fetch: {git_noop}). Time, ours vs git partial: "
          f"{ours_s / git_partial_s:.2f}×.\n")
    return 0 if ours <= git_partial and noop <= 4096 else 1


if __name__ == "__main__":
    raise SystemExit(main())
