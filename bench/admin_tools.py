"""How the admin tools scale with a large fleet: lint, show and history.

A repository is built from the example (repo-layout/example) plus ``--hosts`` host
files, ``--roles`` extra roles and ``--commits`` commits, each touching one host file
(a day of assignments). Each figure is a ratio to a reference measured in the same run:

- ``repo lint`` against reading every file ``git add -A`` would take and parsing every
  TOML file with tomllib (the least any validator must do);
- ``repo show MAC --no-verify`` against ``git cat-file`` of the role's files at HEAD;
- ``repo history MAC`` against the plain ``git log --first-parent`` an admin would type
  for the same question (the node's host file, the default, ``bootpull.toml``,
  ``roles/``).

Usage: .venv/bin/python bench/admin_tools.py [--hosts 2000] [--roles 20] [--commits 300]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

from bootpull.cli import main
from bootpull_repo.example import example_dir, git_env


def best(fn: Callable[[], object], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def quiet(argv: list[str]) -> None:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = main(argv)
    assert code == 0, argv


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, env=git_env(), check=True,
                          capture_output=True, text=True).stdout


def build(root: Path, hosts: int, roles: int, commits: int) -> None:
    shutil.copytree(example_dir(), root)
    for n in range(roles):
        shutil.copytree(root / "roles" / "web", root / "roles" / f"web{n:02d}")
    for n in range(hosts):
        mac = f"02-00-00-00-{n >> 8:02x}-{n & 0xFF:02x}"
        role = f"web{n % roles:02d}" if roles else "web"
        (root / "hosts" / f"{mac}.toml").write_text(
            f'role = "{role}"\nhostname = "n{n}"\n\n[vars]\nPORT = "{8000 + n % 100}"\n')
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "fleet")
    for n in range(commits):
        mac = f"02-00-00-00-{(n % hosts) >> 8:02x}-{(n % hosts) & 0xFF:02x}"
        with open(root / "hosts" / f"{mac}.toml", "a") as f:
            f.write(f"# touched {n}\n")
        git(root, "commit", "-q", "-am", f"touch {mac}")
    git(root, "gc", "-q")  # a repository in use is packed


def reference_read_and_parse(root: Path) -> None:
    names = git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for name in names.split("\0"):
        if not name:
            continue
        data = (root / name).read_bytes()
        if name.endswith(".toml"):
            tomllib.loads(data.decode())


def main_bench() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=2000)
    parser.add_argument("--roles", type=int, default=20)
    parser.add_argument("--commits", type=int, default=300)
    args = parser.parse_args()
    os.environ.update(git_env())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "fleet"
        build(root, args.hosts, args.roles, args.commits)
        mac = "02:00:00:00:00:05"

        ref_lint = best(lambda: reference_read_and_parse(root))
        lint = best(lambda: quiet(["repo", "-C", str(root), "lint"]))

        files = git(root, "ls-tree", "-r", "HEAD", "--", "roles/web05/files/").splitlines()
        oids = "".join(line.split()[2] + "\n" for line in files)
        ref_show = best(lambda: subprocess.run(["git", "-C", str(root), "cat-file", "--batch"],
                                               input=oids.encode(), capture_output=True,
                                               check=True))
        show = best(lambda: quiet(["repo", "-C", str(root), "show", mac, "--no-verify"]))

        canonical = mac.replace(":", "-")
        ref_hist = best(lambda: git(root, "log", "--first-parent", "--format=%H %an %aI %s",
                                    "main", "--", f"hosts/{canonical}.toml",
                                    "hosts/default.toml", "bootpull.toml", "roles/"))
        hist = best(lambda: quiet(["repo", "-C", str(root), "history", mac]))

    print(f"repository: {args.hosts} hosts, {args.roles + 2} roles, {args.commits + 1} commits")
    print("| operation | seconds | ratio |")
    print("|---|---:|---:|")
    print(f"| reference: read every file, parse every TOML | {ref_lint:.3f} | 1 |")
    print(f"| `repo lint` | {lint:.3f} | {lint / ref_lint:.1f} × reference |")
    print(f"| reference: `git cat-file --batch` of the role's files | {ref_show:.3f} | 1 |")
    print(f"| `repo show MAC --no-verify` | {show:.3f} | {show / ref_show:.1f} × reference |")
    print(f"| reference: `git log --first-parent -- <the node's paths>` | {ref_hist:.3f} | 1 |")
    print(f"| `repo history MAC` | {hist:.3f} | {hist / ref_hist:.1f} × reference |")


if __name__ == "__main__":
    main_bench()
