"""The example repository (repo-layout/example) through ``bootpull node run --oneshot``:
its web role (install hook, health check on a real port) and, for a node with no host
file, the default sensor role. Served by ``git http-backend`` on 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from bootpull.mac import Mac
from signed_repo import SignedRepo

WEB = Mac.parse("52:54:00:12:34:56")
UNKNOWN = Mac.parse("52:54:00:77:77:77")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def node_run(repo: SignedRepo, url: str, mac: Mac, tmp_path: Path
             ) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
    trust = tmp_path / "trust.json"
    trust.write_bytes(repo.trust)
    state = tmp_path / f"state-{mac.canonical}"
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("console=ttyS0 bootpull.report_deadline=0\n")
    proc = subprocess.run([sys.executable, "-m", "bootpull", "node", "run", "--oneshot",
                           "--repo", url, "--mac", mac.colons, "--trust", str(trust),
                           "--state-dir", str(state), "--cmdline", str(cmdline)],
                          capture_output=True, text=True, timeout=300)
    status = subprocess.run([sys.executable, "-m", "bootpull", "node", "status",
                             "--state-dir", str(state), "--json"], capture_output=True,
                            text=True, timeout=60, check=True)
    return proc, json.loads(status.stdout)


@pytest.mark.slow
def test_example_web_and_default_sensor_roles_run(example_repo: SignedRepo,
                                                  git_http_server: object,
                                                  tmp_path: Path) -> None:
    host = example_repo.root / f"hosts/{WEB.canonical}.toml"
    text = host.read_text().replace('PORT = "8080"', f'PORT = "{free_port()}"')
    example_repo.write(f"hosts/{WEB.canonical}.toml",
                       (text + 'LISTEN = "127.0.0.1"\n').encode())
    example_repo.commit("tests: a free port on loopback")
    example_repo.publish()
    server = git_http_server(example_repo.root)  # type: ignore[operator]

    proc, info = node_run(example_repo, server.url, WEB, tmp_path)
    # no home base here: the role ran, its events stay spooled (exit 15)
    assert proc.returncode == 15, proc.stderr
    assert info["role"] == "web" and info["health"] == "stopped"
    assert "role web passed its health check" in proc.stderr

    proc, info = node_run(example_repo, server.url, UNKNOWN, tmp_path)
    # no home base here: the role ran, its events stay spooled (exit 15)
    assert proc.returncode == 15, proc.stderr
    assert info["role"] == "sensor"
    log = Path(str(info["path"])) / "log" / "sensor.log"
    assert "host=node-52-54-00-77-77-77" in log.read_text()
