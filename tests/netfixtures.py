"""pytest plugin: lab networks (namespaces + veth + real dnsmasq) for the node tests.

Fixtures:

- ``netlab``        a function-scoped :class:`bootpull_lab.netlab.Lab` (own namespaces).
- ``netlab_module`` one Lab per test module, for a dnsmasq shared by its tests.
- ``run_discover``  runs ``bootpull node discover --json`` in a namespace as a subprocess
                    and returns a :class:`DiscoverRun` (exit code, JSON, stderr, seconds).

Every namespace, process and temp dir is removed when the fixture ends, also when the
test fails; at session start, namespaces left behind by dead test processes are swept.
Tests using these must be marked ``@pytest.mark.netns``; without root they are skipped.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from bootpull_lab import netlab as lab_net


def _need_lab() -> None:
    reason = lab_net.available()
    if reason:
        pytest.skip(f"lab network unavailable: {reason}")


@pytest.fixture(scope="session", autouse=False)
def netlab_swept() -> None:
    """Remove namespaces left by earlier, dead test runs (once per session)."""
    if lab_net.available() is None:
        lab_net.sweep()


@pytest.fixture
def netlab(netlab_swept: None) -> Iterator[lab_net.Lab]:
    _need_lab()
    with lab_net.Lab() as lab:
        yield lab


@pytest.fixture(scope="module")
def netlab_module(netlab_swept: None) -> Iterator[lab_net.Lab]:
    _need_lab()
    with lab_net.Lab("m") as lab:
        yield lab


@dataclass
class DiscoverRun:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def json(self) -> dict[str, Any]:
        try:
            value = json.loads(self.stdout)
        except ValueError as exc:
            raise AssertionError(f"stdout is not JSON ({exc}):\n{self.stdout}\n"
                                 f"stderr:\n{self.stderr}") from None
        assert isinstance(value, dict)
        return value

    @property
    def tried(self) -> list[dict[str, str]]:
        tried = self.json["tried"]
        assert isinstance(tried, list)
        return tried

    def reasons(self, source: str) -> list[str]:
        return [t["reason"] for t in self.tried if t["source"] == source]

    def explain(self) -> str:
        return f"exit {self.returncode} in {self.seconds:.1f}s\n{self.stdout}\n{self.stderr}"


RunDiscover = Callable[..., DiscoverRun]


@pytest.fixture
def run_discover(tmp_path: Path) -> RunDiscover:
    """``run_discover(ns, "eth0", timeout=15, cmdline="bootpull.dhcp_delay=0", extra=[])``.

    With no interface named it runs as the boot image does (``tests/in_image.py``): outside
    the image discover would refuse (exit 2) instead of trying every interface."""
    counter = iter(range(1000))

    def run(ns: lab_net.Namespace, *interfaces: str, timeout: float = 15,
            cmdline: str = "", extra: tuple[str, ...] = ()) -> DiscoverRun:
        cmd_file = tmp_path / f"cmdline{next(counter)}"
        cmd_file.write_text(f"console=ttyS0 bootpull.dhcp_delay=0 {cmdline}\n", encoding="utf-8")
        argv = ["node", "discover", "--json", "--timeout", str(timeout),
                "--cmdline", str(cmd_file), *extra]
        for name in interfaces:
            argv += ["--interface", name]
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        command = lab_net.bootpull_argv(*argv)
        if not interfaces:  # every interface, as in the image (outside it: exit 2)
            marker = tmp_path / "image.conf"
            marker.write_text("# stands in for the image's /etc/bootpull/image.conf\n")
            command = [sys.executable, str(Path(__file__).with_name("in_image.py")),
                       str(marker), *argv]
        started = time.monotonic()
        proc = ns.run(command, check=False, timeout=timeout + 60, env=env)
        return DiscoverRun(proc.returncode, proc.stdout, proc.stderr,
                           time.monotonic() - started)

    return run
