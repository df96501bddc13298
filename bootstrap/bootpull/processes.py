"""Running a role's short commands (install hooks, health checks) with a hard bound.

Each runs in a session of its own with its output in a temporary file, not a pipe:
a command that leaves a background process behind can neither hang the node (a pipe
would stay open until that process ends) nor outlive the command — the whole group is
killed when the command returns or runs out of time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

OUTPUT_TAIL = 4096


def resolve_command(install_dir: Path, program: str) -> str:
    """argv[0] of a role command or hook: absolute as given, else in the install dir."""
    if program.startswith("/"):
        return program
    return str(install_dir / program)


@dataclass(frozen=True)
class Finished:
    returncode: int | None  # None: killed at the time limit
    output: str  # the last OUTPUT_TAIL bytes of stdout and stderr, decoded

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_bounded(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str],
                timeout: float) -> Finished:
    """Run ``argv`` to completion or ``timeout``; raise OSError if it cannot start."""
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        code: int | None
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        out.seek(max(0, out.seek(0, os.SEEK_END) - OUTPUT_TAIL))
        text = out.read().decode("utf-8", "replace")
    return Finished(code, text)
