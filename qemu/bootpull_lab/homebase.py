"""The lab's home base: ``bootpull serve`` in a child process on 127.0.0.1.

    with HomeBase(repo_dir, db=path, log=path) as hb:
        hb.url                 # http://127.0.0.1:PORT
        hb.nodes()             # GET /api/v1/nodes
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from bootpull.errors import BootpullError


class HomeBaseError(BootpullError):
    stage = "lab"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class HomeBase:
    def __init__(self, repo: Path, *, db: Path, log: Path, port: int | None = None,
                 silent_after: int | None = None) -> None:
        self.repo = repo
        self.db = db
        self.log_path = log
        self.port = port or free_port()
        self.silent_after = silent_after
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HomeBase:
        argv = [sys.executable, "-m", "bootpull", "serve", "--repo", str(self.repo),
                "--listen", f"127.0.0.1:{self.port}", "--db", str(self.db)]
        if self.silent_after is not None:
            argv += ["--silent-after", str(self.silent_after)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise HomeBaseError("bootpull serve exited at start",
                                    why=self.log_path.read_text()[-600:])
            try:
                self.get("/healthz")
                return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise HomeBaseError("bootpull serve did not answer /healthz within 60 s",
                            hint=f"see {self.log_path}")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def __enter__(self) -> HomeBase:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=10) as reply:  # noqa: S310
            data: bytes = reply.read()
            return data

    def nodes(self) -> Any:
        return json.loads(self.get("/api/v1/nodes"))

    def node(self, mac: str) -> dict[str, Any] | None:
        """The home base's record of node ``mac`` (canonical form), or None."""
        data = self.nodes()
        items = data.get("nodes", data) if isinstance(data, dict) else data
        for item in items:
            if isinstance(item, dict) and item.get("node") == mac:
                return item
        return None
