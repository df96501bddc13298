"""A role's secret, end to end with real processes: two ``bootpull node run`` nodes of
one role report to a real home base, one is enrolled (``repo enroll``), the admin sets
a secret (``repo secret set``) and publishes; the enrolled node's role reads it from
``$BOOTPULL_SECRETS_DIR``; the other node cannot decrypt it and says what to do, and
its role never sees it. No plaintext reaches either node's state directory.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from bootpull.cli import main
from bootpull.mac import Mac
from bootpull_homebase.server import Running
from gitserver import GitHttpServer
from homebase_fixtures import FakeClock, settings_for
from marker_role import HEALTHY, ROLE
from signed_repo import MAC_NEW, MAC_WEB, SignedRepo
from test_pipeline import Node, node_cmd

SECRET = b"licence-key: 4f1c-77a2-hunter2\n"
RUN = b"""#!/bin/sh
if [ -r "$BOOTPULL_SECRETS_DIR/token" ]; then
    cp "$BOOTPULL_SECRETS_DIR/token" "$BOOTPULL_VAR_MARKER_DIR/token-seen"
fi
echo "$BOOTPULL_SECRETS_DIR" > "$BOOTPULL_VAR_MARKER_DIR/secrets-dir"
trap 'rm -f up; exit 0' TERM INT
touch up
sleep 600 &
wait
"""


def vault_role(repo: SignedRepo, report_url: str, markers: dict[Mac, Path]) -> None:
    repo.write("roles/vault/role.toml", ROLE.replace(b"writes a marker", b"reads a secret"))
    repo.write("roles/vault/files/run.sh", RUN, mode=0o755)
    repo.write("roles/vault/files/health.sh", HEALTHY, mode=0o755)
    for mac, where in markers.items():
        repo.write(f"hosts/{mac.canonical}.toml",
                   f'role = "vault"\n\n[vars]\nMARKER_DIR = "{where}"\n'.encode())
    settings = (repo.root / "bootpull.toml").read_text()
    repo.write("bootpull.toml", (settings + f'\n[report]\nurl = "{report_url}"\n').encode())
    repo.commit("vault role")
    repo.publish()


def run(node: Node, secrets: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BOOTPULL_SECRETS_ROOT": str(secrets)}
    done = subprocess.run(node_cmd(node, "--oneshot"), capture_output=True, text=True,
                          timeout=300, env=env)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def holds(root: Path, data: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()
            and data.strip() in p.read_bytes()]


def test_only_the_enrolled_node_of_a_role_reads_its_secret(
        signed_repo: SignedRepo, git_http_server: object, tmp_path: Path) -> None:
    markers = {MAC_NEW: tmp_path / "markers-a", MAC_WEB: tmp_path / "markers-b"}
    for where in markers.values():
        where.mkdir()
    with Running(settings_for(signed_repo.root, tmp_path / "events.db"),
                 clock=FakeClock(now=time.time())) as hb:
        hb.homebase.repo.refresh = 0.0
        vault_role(signed_repo, hb.url + "/api/v1/events", markers)
        server: GitHttpServer = git_http_server(signed_repo.root)  # type: ignore[operator]
        nodes = {}
        for name, mac in (("a", MAC_NEW), ("b", MAC_WEB)):
            (tmp_path / name).mkdir()
            nodes[mac] = Node(tmp_path / name, signed_repo, server.url, mac=mac)
        secrets = {MAC_NEW: tmp_path / "run-a", MAC_WEB: tmp_path / "run-b"}
        for mac, node in nodes.items():  # both boot once: their keys reach the home base
            assert run(node, secrets[mac]).returncode == 0
        assert main(["repo", "enroll", MAC_NEW.colons, "--homebase", hb.url,
                     "-C", str(signed_repo.root)]) == 0
        plain = tmp_path / "token.txt"
        plain.write_bytes(SECRET)
        assert main(["repo", "secret", "set", "vault", "token", str(plain), "-C",
                     str(signed_repo.root), "--keys", str(signed_repo.keys)]) == 0
        plain.unlink()
        signed_repo.publish()

        enrolled = run(nodes[MAC_NEW], secrets[MAC_NEW])
        assert enrolled.returncode == 0, enrolled.stderr
        assert (markers[MAC_NEW] / "token-seen").read_bytes() == SECRET
        seen_dir = Path((markers[MAC_NEW] / "secrets-dir").read_text().strip())
        assert seen_dir.is_relative_to(secrets[MAC_NEW])

        other = run(nodes[MAC_WEB], secrets[MAC_WEB])
        assert other.returncode != 0
        words = " ".join(other.stderr.split())
        assert "bootpull repo secret rewrap vault" in words, other.stderr
        assert not (markers[MAC_WEB] / "token-seen").exists()

    for root in (nodes[MAC_NEW].state, nodes[MAC_WEB].state, secrets[MAC_WEB]):
        assert holds(root, SECRET) == [], root
