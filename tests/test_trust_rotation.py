"""Key rotation: nodes follow a new root by themselves; retired keys stop working."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from bootpull.errors import VerifyError
from bootpull.trust import load_floor
from bootpull_repo.keys import KeyStore
from bootpull_repo.publish import metadata_bytes
from signed_repo import MAC_WEB, SignedRepo, node_pull

pytestmark = pytest.mark.formats(1, 2)  # signed metadata format 1 and 2


@pytest.mark.parametrize("role", ["targets", "timestamp", "root"])
def test_node_with_old_anchors_follows_a_rotation(signed_repo: SignedRepo, tmp_path: Path,
                                                  role: str) -> None:
    anchors_v1 = signed_repo.trust
    state = tmp_path / "state"
    node_pull(signed_repo, MAC_WEB, state)  # caches root v1 and metadata by the old keys
    signed_repo.bootpull("rotate-key", role)
    meta = signed_repo.root / ".bootpull/metadata"
    assert (meta / "2.root.json").read_bytes() == (meta / "root.json").read_bytes()
    assert (signed_repo.keys / f"{role}.retired-v1.pem").is_file()
    assert signed_repo.git("status", "--porcelain") == ""
    # the node with its cache, and a fresh node, both start from the v1 anchors
    for where in (state, tmp_path / "fresh"):
        result = node_pull(signed_repo, MAC_WEB, where, trust_root=anchors_v1)
        assert result.metadata.root == 2
        assert load_floor(where).root == 2


def test_retired_key_is_refused_after_rotation(signed_repo: SignedRepo, tmp_path: Path) -> None:
    from tuf.api.metadata import Metadata

    signed_repo.bootpull("rotate-key", "timestamp")
    retired = KeyStore(signed_repo.keys)
    shutil.copy(signed_repo.keys / "timestamp.retired-v1.pem", tmp_path / "old.pem")
    meta = signed_repo.root / ".bootpull/metadata/timestamp.json"
    md = Metadata.from_bytes(meta.read_bytes())
    md.signed.version += 1
    (signed_repo.keys / "timestamp.pem").rename(tmp_path / "new.pem")
    shutil.copy(tmp_path / "old.pem", signed_repo.keys / "timestamp.pem")
    md.sign(retired.signer("timestamp"), append=False)
    meta.write_bytes(metadata_bytes(md))
    signed_repo.commit("timestamp signed by the retired key")
    with pytest.raises(VerifyError) as info:
        node_pull(signed_repo, MAC_WEB, tmp_path / "state")
    assert info.value.exit_code == 12 and "does not verify" in info.value.what


def test_rollback_to_before_a_root_rotation_is_refused_without_cache(
        signed_repo: SignedRepo, tmp_path: Path) -> None:
    from test_trust_security import CommitRemote, refused

    state = tmp_path / "state"
    before = signed_repo.git("rev-parse", "HEAD")
    signed_repo.bootpull("rotate-key", "targets")
    node_pull(signed_repo, MAC_WEB, state)
    shutil.rmtree(state / "trust" / "metadata")
    error = refused(CommitRemote(signed_repo, before), MAC_WEB, state, trust=signed_repo.trust)
    assert error.what.startswith("rollback refused: the repository offers root v1")


def test_rotation_needs_the_root_key(signed_repo: SignedRepo, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    from bootpull.cli import main

    online = tmp_path / "online"
    shutil.copytree(signed_repo.keys, online)
    (online / "root.pem").unlink()
    head = signed_repo.git("rev-parse", "HEAD")
    assert main(["repo", "-C", str(signed_repo.root), "--keys", str(online),
                 "rotate-key", "targets"]) == 1
    assert "the root key is not in" in capsys.readouterr().err
    assert signed_repo.git("rev-parse", "HEAD") == head
    assert (online / "targets.pem").is_file()


def test_expired_root_is_renewed_without_changing_keys(signed_repo: SignedRepo,
                                                       tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    from datetime import UTC, datetime, timedelta

    from bootpull.errors import ExpiredMetadata

    later = datetime.now(UTC) + timedelta(days=400)  # past root's 365 days
    signed_repo.publish("--timestamp-days", "500", "--snapshot-days", "500",
                        "--targets-days", "500")
    with pytest.raises(ExpiredMetadata) as info:
        node_pull(signed_repo, MAC_WEB, tmp_path / "state", now=later)
    assert "root.json is expired" in info.value.why
    assert "bootpull repo renew-root" in info.value.hint
    signed_repo.bootpull("renew-root", "--days", "800")
    assert "renew root: v2" in signed_repo.git("log", "-1", "--format=%s")
    result = node_pull(signed_repo, MAC_WEB, tmp_path / "state", now=later)
    assert result.metadata.root == 2


def test_publish_warns_before_root_expires(signed_repo: SignedRepo,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    signed_repo.publish()
    assert "renew-root" not in capsys.readouterr().err
    signed_repo.bootpull("renew-root", "--days", "10")
    signed_repo.publish()
    assert "note: root.json expires on" in capsys.readouterr().err
