"""Benchmark: a role made from Debian packages, from ``role from-debs`` to running on a node.

    .venv/bin/python bench/role_debs.py [--workdir DIR] [--runs N] [--no-boot]

In one run, for the example's ``ids`` role (tcpdump) and ``ssh`` role (dropbear-bin):

1. **from-debs**: the seconds ``bootpull repo role from-debs ROLE PKG --update``
   takes with the .debs in the cache (apt resolves, the .debs are unpacked, the
   library closure followed, the role written and committed), against apt resolving
   the same packages and ``dpkg-deb -x`` of every .deb (the floor of any such tool);
2. **bytes**: the role's bytes against the size of the .debs it was made from (the
   ones used, and every one apt resolved);
3. **fetch**: the bytes a node fetches for the role over smart HTTP (bootpull's
   GitRemote, as a node reads it), against git's own partial clone + sparse checkout
   of the same role directory, from the same server;
4. **to running** (unless ``--no-boot``): the seconds from the start of ``from-debs``
   (then commit, publish) to the node printing that the role runs, with the node
   polling every 5 s, against the same for a change to the shell-only ``sensor``
   role (commit, publish, running), measured alternately in the same run.

Prints a Markdown section for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
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
from bootpull.mac import Mac  # noqa: E402
from bootpull_lab.deploy import LabRepo, ensure_image, make_repo  # noqa: E402
from bootpull_lab.homebase import HomeBase  # noqa: E402
from bootpull_lab.vm import Nic, UserNet, Vm, user_url  # noqa: E402
from bootpull_repo import role_debs  # noqa: E402
from gitserver import GitHttpServer  # noqa: E402

ROLES = {"ids": ["tcpdump"], "ssh": ["dropbear-bin"]}
MAC = Mac.parse("52:54:00:12:34:58")


class _Null:
    def write(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def _git(repo: Path, *args: str) -> None:
    from bootpull_repo.example import git_env

    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                   env=git_env())


def from_debs_seconds(repo: LabRepo, role: str) -> float:
    started = time.perf_counter()
    repo.bootpull("role", "from-debs", role, *ROLES[role], "--update")
    return time.perf_counter() - started


def unpack_seconds(packages: list[str], where: Path) -> float:
    """The floor of any such tool: apt resolves, then dpkg-deb -x of every .deb."""
    where.mkdir(parents=True)
    started = time.perf_counter()
    pins = role_debs.resolve(packages)
    for path in role_debs.download(pins, role_debs.default_cache()).values():
        subprocess.run(["dpkg-deb", "-x", str(path), str(where)], check=True)
    return time.perf_counter() - started


def fetch_bytes(repo: Path, role: str, tmp: Path) -> tuple[int, int]:
    """(bootpull's bytes, git partial clone's bytes) for one role, from one server."""
    bare = tmp / f"{role}.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(bare)], check=True)
    with GitHttpServer({"repo.git": bare}) as server:
        url = server.url.rsplit("/", 1)[0] + "/repo.git"
        server.reset_counters()
        with GitRemote(url, tmp / f"cache-{role}", limits=FetchLimits(deadline=600),
                       console=Console(_Null()), counters=Counters()) as remote:
            snap = remote.snapshot("main")
            paths = [e.path for e in snap.list(f"roles/{role}/files")]
            got = snap.read_many([*paths, f"roles/{role}/role.toml"])
            assert len(got) == len(paths) + 1
        ours = server.bytes_sent
        server.reset_counters()
        clone = tmp / f"partial-{role}"
        subprocess.run(["git", "-c", "protocol.version=2", "clone", "-q", "--filter=blob:none",
                        "--depth", "1", "--sparse", url, str(clone)], check=True,
                       capture_output=True)
        subprocess.run(["git", "-C", str(clone), "sparse-checkout", "set", f"roles/{role}"],
                       check=True, capture_output=True)
        return ours, server.bytes_sent


def to_running(vm: Vm, repo: LabRepo, change: str, role: str) -> float:
    """Seconds from the change (from-debs, or an edit) to the node running it."""
    started = time.perf_counter()
    if change == "from-debs":
        # a new build of the role: --update with a fresh lock, then a visible change
        repo.bootpull("role", "from-debs", role, *ROLES[role], "--update")
    path = repo.root / "roles" / role / "files" / "bench-stamp"
    path.write_text(f"{time.time()}\n")
    _git(repo.root, "add", "-A")
    _git(repo.root, "commit", "-q", "-m", f"bench: {role}")
    repo.bootpull("publish")
    # the node runs the deploy head: the publish's own commit
    commit = subprocess.run(["git", "-C", str(repo.root), "rev-parse", "HEAD"], check=True,
                            capture_output=True, text=True).stdout.strip()
    vm.wait_for(rf"\[finished\] run {role} head-{commit[:12]} \(", 600)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-boot", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-debs-") as tmp_name:
        tmp = Path(tmp_name)
        workdir = args.workdir or tmp / "work"
        console = Console()
        repo = make_repo(workdir) if not (workdir / "repo").exists() else LabRepo(
            workdir / "repo", workdir / "repo-keys")
        image = ensure_image(workdir / "image", repo.trust, console)
        rows = []
        for role, packages in ROLES.items():
            debs_s = statistics.median(from_debs_seconds(repo, role) for _ in range(args.runs))
            apt_s = statistics.median(unpack_seconds(packages, tmp / f"unpack-{role}{n}")
                                      for n in range(args.runs))
            lock = role_debs.read_lock(repo.root / "roles" / role)
            assert lock is not None
            role_dir = repo.root / "roles" / role / "files"
            role_bytes = sum(p.stat().st_size for p in role_dir.rglob("*") if p.is_file())
            used = sum(p.size for p in lock.debs if p.name in lock.used)
            every = sum(p.size for p in lock.debs)
            ours, git_partial = fetch_bytes(repo.root, role, tmp)
            rows.append((role, " ".join(packages), debs_s, apt_s, role_bytes, used, every,
                         ours, git_partial))
        boots: dict[str, list[float]] = {"ids": [], "sensor": []}
        if not args.no_boot:
            repo.bootpull("assign", MAC.colons, "ids")
            repo.bootpull("publish")
            with HomeBase(repo.root, db=tmp / "events.db", log=tmp / "hb.log") as hb:
                nic = Nic(MAC, UserNet(port=hb.port, bootfile=user_url("/repo.git")))
                with Vm(image, [nic], log=tmp / "node.log", cmdline=["bootpull.poll=5"]) as vm:
                    vm.wait_for(r"\[finished\] run ids \S+ \(", 600)
                    for _ in range(args.runs):
                        boots["ids"].append(to_running(vm, repo, "from-debs", "ids"))
                        repo.bootpull("assign", MAC.colons, "sensor")
                        boots["sensor"].append(to_running(vm, repo, "edit", "sensor"))
                        repo.bootpull("assign", MAC.colons, "ids")
    print(f"### A role from Debian packages (`bench/role_debs.py --runs {args.runs}`)\n")
    print(f"{platform.node()}, {platform.machine()}, Python {platform.python_version()}; "
          "the .debs in the cache (the first run on a machine downloads them).\n")
    print("| role | packages | from-debs s | resolve + dpkg-deb -x s | × that | role bytes | "
          ".debs used | all .debs | role ÷ debs used | node fetch bytes | git partial clone "
          "bytes | × git |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for role, packages, debs_s, apt_s, role_bytes, used, every, ours, git_partial in rows:
        print(f"| {role} | {packages} | {debs_s:.2f} | {apt_s:.2f} | {debs_s / apt_s:.2f} | "
              f"{role_bytes} | {used} | {every} | {role_bytes / used:.2f} | {ours} | "
              f"{git_partial} | {ours / git_partial:.3f} |")
    if boots["ids"]:
        ids_s, sensor_s = statistics.median(boots["ids"]), statistics.median(boots["sensor"])
        print(f"\nFrom `from-debs` (then commit, publish) to `ids` running on a node polling "
              f"every 5 s: median {ids_s:.1f} s over {args.runs}; a change to the shell-only "
              f"`sensor` role, alternately: {sensor_s:.1f} s; ratio {ids_s / sensor_s:.2f}.")
    if args.workdir is None:
        shutil.rmtree(tmp / "work", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
