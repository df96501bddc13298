"""Benchmark: the cost of verification in pull(), against reading and hashing the same bytes.

Builds a signed repository (``bootpull repo init``, N roles of M random MB, one node per
role, ``repo publish``) and measures, from the local object store (no network):

- reference: snapshot + ``read_many`` of one role's files + SHA-256 of them (what any
  client must do to get and check those bytes);
- ``pull()`` with a fresh state directory (ngclient starts from the trust anchors);
- ``pull()`` again with the same state directory (cached metadata, floor present).

Usage: .venv/bin/python bench/verify_pull.py [--roles 20] [--role-mb 5] [--runs 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bootpull.backoff import Counters
from bootpull.console import Console
from bootpull.localgit import LocalRemote
from bootpull.mac import Mac
from bootpull.pull import pull

FILES_PER_ROLE = 5


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def build(base: Path, roles: int, role_mb: float) -> tuple[Path, bytes]:
    from bootpull_repo.cli import configure  # noqa: F401 - the admin tools are installed
    from bootpull_repo.init import init

    root, keys = base / "repo", base / "keys"
    init(root, keys_override=str(keys), name="bench")
    size = int(role_mb * 2**20 / FILES_PER_ROLE)
    for r in range(roles):
        role = root / "roles" / f"r{r:02d}"
        (role / "files").mkdir(parents=True)
        (role / "role.toml").write_text(
            f'format = 1\ndescription = "r{r:02d}"\n[run]\ncommand = ["./f0"]\n')
        for f in range(FILES_PER_ROLE):
            (role / "files" / f"f{f}").write_bytes(os.urandom(size))
        (root / "hosts" / f"52-54-00-00-00-{r:02x}.toml").write_text(f'role = "r{r:02d}"\n')
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "bench roles")
    from bootpull.cli import main

    assert main(["repo", "-C", str(root), "--keys", str(keys), "publish"]) == 0
    return root, (keys / "trust.json").read_bytes()


def timed(fn: object, runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--roles", type=int, default=20)
    parser.add_argument("--role-mb", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for key, value in {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@example.invalid",
                       "GIT_COMMITTER_NAME": "bench",
                       "GIT_COMMITTER_EMAIL": "b@example.invalid"}.items():
        os.environ.setdefault(key, value)
    base = Path(tempfile.mkdtemp(prefix="bench-verify-"))
    try:
        t0 = time.perf_counter()
        root, trust = build(base, args.roles, args.role_mb)
        built = time.perf_counter() - t0
        role = f"r{args.roles // 2:02d}"
        mac = Mac.parse(f"52-54-00-00-00-{args.roles // 2:02x}")
        remote = LocalRemote(root)
        quiet = Console(writer=type("Null", (), {"write": lambda s, t: None,
                                                 "close": lambda s: None})())

        def reference() -> None:
            tree = remote.snapshot("main")
            paths = [e.path for e in tree.list(f"roles/{role}")]
            for data in tree.read_many(paths).values():
                hashlib.sha256(data).hexdigest()

        def fresh() -> None:
            state = base / "state-fresh"
            shutil.rmtree(state, ignore_errors=True)
            pull(remote, mac, trust_root=trust, state_dir=state, console=quiet,
                 counters=Counters())

        warm_state = base / "state-warm"
        pull(remote, mac, trust_root=trust, state_dir=warm_state, console=quiet,
             counters=Counters())

        def warm() -> None:
            pull(remote, mac, trust_root=trust, state_dir=warm_state, console=quiet,
                 counters=Counters())

        ref = timed(reference, args.runs)
        t_fresh = timed(fresh, args.runs)
        t_warm = timed(warm, args.runs)
        targets = (root / ".bootpull/metadata/targets.json").stat().st_size
        print(f"repository built and published in {built:.1f} s; targets.json {targets} bytes")
        print(f"| measurement | seconds (median of {args.runs}) | × reference |")
        print("|---|---:|---:|")
        print(f"| reference: read + SHA-256 of role {role} ({args.role_mb} MB) | {ref:.3f} "
              "| 1.00 |")
        print(f"| pull(), fresh state dir | {t_fresh:.3f} | {t_fresh / ref:.2f} |")
        print(f"| pull(), second boot (cache + floor) | {t_warm:.3f} | {t_warm / ref:.2f} |")
        print(f"| verification overhead (second boot − reference) | {t_warm - ref:.3f} | "
              f"{(t_warm - ref) / ref:.2f} |")
        remote.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
