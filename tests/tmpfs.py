"""A real, small filesystem for disk-full tests: a tmpfs mounted inside the test's own
temporary directory (root only, which the tests and CI are), always unmounted."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def mounted_tmpfs(where: Path, options: str) -> Iterator[Path]:
    """``where`` (made here) as a tmpfs with ``options`` (``size=1m``, ``ro,size=64k``)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                   check=True, timeout=30)
    try:
        yield where
    finally:
        done = subprocess.run(["umount", str(where)], capture_output=True, timeout=30)
        if done.returncode != 0:  # something still has a file open there: detach it
            subprocess.run(["umount", "-l", str(where)], check=True, timeout=30)
