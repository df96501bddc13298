"""pytest plugin: a real NTP server for the clock tests, Debian's chronyd.

``chronyd -x`` never touches the clock of the machine it runs on: it serves that clock
(``local stratum 8``) on one address and port, with no command port and no sources.
Installing the chrony package would replace this machine's time service, so
``.ci/setup --test`` only unpacks it (``apt-get download`` + ``dpkg-deb -x``) into
``cache/chrony/``; a chronyd on ``PATH`` is used as well.

Fixture ``chrony``: one chronyd on 127.0.0.1 and a free UDP port, for one test.
:func:`start_chrony` starts one anywhere (``popen`` of a lab namespace, say).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHECKOUT = Path(__file__).resolve().parents[1]
UNPACKED = CHECKOUT / "cache" / "chrony" / "usr" / "sbin" / "chronyd"


def chronyd_path() -> str | None:
    for candidate in (shutil.which("chronyd"), "/usr/sbin/chronyd", str(UNPACKED)):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@dataclass
class Chrony:
    proc: subprocess.Popen[bytes]
    address: str
    port: int
    log: Path

    @property
    def server(self) -> str:
        """``ADDRESS:PORT``, as ``bootpull.ntp=`` takes it."""
        return f"{self.address}:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def free_udp_port(address: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def start_chrony(workdir: Path, address: str, port: int, *,
                 popen: Callable[..., subprocess.Popen[bytes]] = subprocess.Popen,
                 wait: Callable[[str], None] | None = None, **popen_kw: Any) -> Chrony:
    """chronyd serving this clock on ``address:port``; ``wait(server)`` until it answers
    (default: ask it from here)."""
    binary = chronyd_path()
    if binary is None:
        pytest.skip("no chronyd (bash .ci/setup --test unpacks Debian's into cache/chrony)")
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "chrony.conf"
    conf.write_text(f"port {port}\nbindaddress {address}\ncmdport 0\nlocal stratum 8\n"
                    f"allow all\npidfile {workdir / 'chronyd.pid'}\n", encoding="ascii")
    log = workdir / "chronyd.log"
    argv = [binary, "-x", "-d", "-f", str(conf)]
    if os.geteuid() == 0:
        argv[1:1] = ["-u", "root"]  # no _chrony user: chrony is unpacked, not installed
    with log.open("wb") as out:
        proc = popen(argv, stdout=out, stderr=subprocess.STDOUT, **popen_kw)
    server = Chrony(proc, address, port, log)
    try:
        (wait or _wait_answers)(server.server)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_answers(server: str) -> None:
    from bootpull import sntp

    deadline = time.monotonic() + 10
    last = ""
    while time.monotonic() < deadline:
        try:
            sntp.query(server, timeout=0.3)
            return
        except sntp.BadReply as exc:
            last = str(exc)
        time.sleep(0.1)
    raise AssertionError(f"chronyd on {server} does not answer: {last}")


@pytest.fixture
def chrony(tmp_path: Path) -> Iterator[Chrony]:
    server = start_chrony(tmp_path / "chrony", "127.0.0.1", free_udp_port())
    try:
        yield server
    finally:
        server.stop()
