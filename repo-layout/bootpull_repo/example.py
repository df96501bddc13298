"""The example repository (``repo-layout/example/``): where it is, and a git copy of it.

The demo, the lab and the tests all start from the same plain files: they copy the
folder, ``git init`` the copy and commit it, then publish it with their own keys.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from bootpull.errors import UsageError

#: The node the demo boots: the first QEMU box of the lab has this MAC.
DEMO_MAC = "52-54-00-12-34-56"
SENSOR_MAC = "52-54-00-12-34-57"
ROLES = ("web", "sensor", "ids", "ssh")
#: The roles made from Debian packages: the source tree has their debs.lock, and
#: :func:`make_example_repo` builds their files/debs/ and files/bin/ from it.
DEBS_ROLES = ("ids", "ssh")


def example_dir() -> Path:
    """``repo-layout/example`` in this source checkout."""
    path = Path(__file__).resolve().parent.parent / "example"
    if not (path / "bootpull.toml").is_file():
        raise UsageError(
            "the example repository is not here",
            why=f"{path} has no bootpull.toml (it ships with the source tree, not the wheel)",
            hint="run this from a bootpull source checkout (an editable install)",
        )
    return path


def git_env(name: str = "bootpull example", email: str = "example@bootpull.invalid",
            ) -> dict[str, str]:
    """An environment in which git commits without asking who the author is."""
    env = dict(os.environ)
    env.update({
        "GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email,
        "GIT_CONFIG_NOSYSTEM": "1",
    })
    return env


def make_example_repo(dest: Path, *, branch: str = "main") -> Path:
    """Copy the example to ``dest`` (which must not exist), ``git init`` it and commit.

    Modes are kept (the role scripts are executable). Returns ``dest``.
    """
    if dest.exists():
        raise UsageError(f"{dest} already exists", hint="pass a path that does not exist yet")
    shutil.copytree(example_dir(), dest, symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "log"))
    build_debs_roles(dest)
    env = git_env()
    for argv in (
        ["git", "init", "-q", "-b", branch],
        ["git", "add", "-A"],
        ["git", "commit", "-q", "-m", "Example repository: web, sensor, ids and ssh roles"],
    ):
        subprocess.run(argv, cwd=dest, env=env, check=True, capture_output=True)
    return dest


def build_debs_roles(root: Path, cache: Path | None = None) -> list[str]:
    """Build files/debs/ and files/bin/ of each role under ``root`` that has a debs.lock
    and no build yet, exactly as the lock says; return the roles built.

    A build is kept under ``<cache>/roles/<role>-<hash of the lock>/``, so the tests and
    the lab, which make many copies of the example, unpack the .debs once.
    """
    from bootpull_repo import role_debs

    debs_cache = cache or role_debs.default_cache()
    built = []
    for role_dir in sorted((root / "roles").iterdir()):
        lock = role_dir / role_debs.LOCK_FILE
        if not lock.is_file() or (role_dir / role_debs.DEBS_DIR).exists():
            continue
        key = hashlib.sha256(lock.read_bytes()).hexdigest()[:16]
        kept = debs_cache.parent / "roles" / f"{role_dir.name}-{key}"
        if not kept.is_dir():
            kept.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=kept.parent) as tmp:
                work = Path(tmp) / "repo"
                shutil.copytree(role_dir, work / "roles" / role_dir.name, symlinks=True)
                role_debs.from_debs(work, role_dir.name, [], cache=debs_cache, manifest=None,
                                    locked=True, say=lambda _: None)
                files = work / "roles" / role_dir.name / "files"
                out = Path(tmp) / "out"
                out.mkdir()
                (files / "debs").rename(out / "debs")
                if (files / "bin").is_dir():
                    (files / "bin").rename(out / "bin")
                try:
                    out.rename(kept)
                except OSError:  # another process built the same lock first: use its copy
                    if not kept.is_dir():
                        raise
        shutil.copytree(kept / "debs", role_dir / role_debs.DEBS_DIR, symlinks=True)
        if (kept / "bin").is_dir():
            shutil.copytree(kept / "bin", role_dir / role_debs.BIN_DIR, symlinks=True,
                            dirs_exist_ok=True)
        built.append(role_dir.name)
    return built
