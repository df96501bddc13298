"""The ``marker`` role the pipeline tests deploy: it proves that a role ran, and how.

Its command writes its ``BOOTPULL_*`` environment and working directory to
``$BOOTPULL_VAR_MARKER_DIR/marker-<version>``, appends the version to ``runs``, then
creates ``up`` in its install directory and stays up (removing ``up`` on SIGTERM); its
health check passes once ``up`` is there, so a passed check means all was written.
"""

from __future__ import annotations

from pathlib import Path

from bootpull.mac import Mac
from signed_repo import MAC_NEW, SignedRepo

ROLE = b"""format = 1
description = "writes a marker and stays up"

[run]
command = ["./run.sh"]
restart = "on-failure"

[health]
command = ["./health.sh"]
interval = 1
timeout = 5
"""
RUN = b"""#!/bin/sh
env | grep '^BOOTPULL_' | sort > "$BOOTPULL_VAR_MARKER_DIR/marker-$BOOTPULL_VERSION"
pwd >> "$BOOTPULL_VAR_MARKER_DIR/marker-$BOOTPULL_VERSION"
echo "$BOOTPULL_VERSION" >> "$BOOTPULL_VAR_MARKER_DIR/runs"
echo $$ > "$BOOTPULL_VAR_MARKER_DIR/pid"
trap 'rm -f up; exit 0' TERM INT
touch up
sleep 600 &
wait
"""
# healthy once run.sh has written everything (``up`` lives only while it runs)
HEALTHY = b"#!/bin/sh\n[ -e up ]\n"
SICK = b"#!/bin/sh\necho 'port 80 is closed' >&2\nexit 1\n"


def add_marker_role(repo: SignedRepo, markers: Path, report_url: str | None,
                    health: bytes = HEALTHY, mac: Mac = MAC_NEW) -> None:
    """Add the role, assign it to ``mac`` (hostname marker-1), set [report] url, publish."""
    repo.write("roles/marker/role.toml", ROLE)
    repo.write("roles/marker/files/run.sh", RUN, mode=0o755)
    repo.write("roles/marker/files/health.sh", health, mode=0o755)
    repo.write(f"hosts/{mac.canonical}.toml",
               f'role = "marker"\nhostname = "marker-1"\n\n[vars]\n'
               f'MARKER_DIR = "{markers}"\n'.encode())
    if report_url:
        settings = (repo.root / "bootpull.toml").read_text()
        if "\n[report]" not in settings:
            repo.write("bootpull.toml",
                       (settings + f'\n[report]\nurl = "{report_url}"\n').encode())
    repo.commit("marker role")
    repo.publish()
