"""The example repository (``repo-layout/example/``): where it is, and a git copy of it.

The demo, the lab and the tests all start from the same plain files: they copy the
folder, ``git init`` the copy and commit it, then publish it with their own keys.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from bootpull.errors import UsageError

#: The node the demo boots: the first QEMU box of the lab has this MAC.
DEMO_MAC = "52-54-00-12-34-56"
SENSOR_MAC = "52-54-00-12-34-57"
ROLES = ("web", "sensor")


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
    env = git_env()
    for argv in (
        ["git", "init", "-q", "-b", branch],
        ["git", "add", "-A"],
        ["git", "commit", "-q", "-m", "Example repository: web and sensor roles"],
    ):
        subprocess.run(argv, cwd=dest, env=env, check=True, capture_output=True)
    return dest
