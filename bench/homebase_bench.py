"""What the home base benchmarks share: the deploy repository a ``bootpull serve`` needs.

Imported by bench/homebase_events.py and bench/homebase_feeds.py (run as scripts, so
bench/ is on sys.path); not a benchmark itself.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def make_repo(root: Path) -> Path:
    """A one-commit format-1 repository (``bootpull.toml`` only) at ``root/repo``."""
    repo = root / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    (repo / "bootpull.toml").write_text("format = 1\n")
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=b", "-c", "user.email=b@b",
                    "commit", "-q", "-m", "init"], check=True)
    return repo
