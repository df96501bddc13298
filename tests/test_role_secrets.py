"""The node's side of secrets: pulled and verified with the role (only this node's host
secrets), decrypted at install with the node's age key into ``$BOOTPULL_SECRETS_DIR``
(0400 files, a 0700 directory, replaced atomically, old ones wiped), and refused with an
actionable InstallError when this node is not a recipient; tampering fails the signed
hash before anything is decrypted. Real repositories, keys and files; no network."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from bootpull import identity, role_secrets
from bootpull.bundle import MODE_FILE, Bundle, BundleFile, TreeEntry, TreeReader
from bootpull.console import Console
from bootpull.errors import InstallError, VerifyError
from bootpull.identity import NodeIdentity
from bootpull.install_stage import install_bundle
from bootpull.localgit import LocalRemote
from bootpull.mac import Mac
from bootpull.narrator import Narrator
from bootpull.state import StateDir
from bootpull.supervise import Identity, role_env
from fakes import CapturingWriter
from sample_bundles import make_bundle
from signed_repo import MAC_DB, MAC_WEB, SignedRepo, node_pull

pytestmark = pytest.mark.formats(1, 2)  # signed metadata format 1 and 2

PLAIN = b"hunter2-but-longer-9c1d"
TOKEN = "roles/web/secrets/token.age"


@pytest.fixture
def secrets_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "run-secrets"
    monkeypatch.setenv(role_secrets.ROOT_ENV, str(root))
    return root


def node(tmp_path: Path, name: str) -> tuple[NodeIdentity, StateDir]:
    state = StateDir(tmp_path / f"state-{name}")
    return identity.load_or_create(state.root, persistent=True), state


def enroll(repo: SignedRepo, mac: Mac, key: NodeIdentity) -> None:
    repo.bootpull("enroll", mac.colons, "--key", key.public, "--age", key.recipient)


def set_secret(repo: SignedRepo, where: str, name: str, data: bytes = PLAIN) -> None:
    src = repo.root.parent / f"{name}.plain"
    src.write_bytes(data)
    repo.bootpull("secret", "set", where, name, str(src))


def narrator(state: StateDir, mac: Mac, key: NodeIdentity | None
             ) -> tuple[Narrator, Console, CapturingWriter]:
    out = CapturingWriter()
    console = Console(out)
    say = Narrator(console, state, stale=lambda: False)
    say.key = key
    say.start(Identity(mac), url=None, log_servers=[], oneshot=True)
    return say, console, out


def install_for(bundle: Bundle, state: StateDir, mac: Mac, key: NodeIdentity | None,
                age: object = "same") -> tuple[bool, str]:
    say, console, out = narrator(state, mac, key)
    try:
        changed = install_bundle(bundle, state, say, console,
                                 age_identity=(key.age if key else None) if age == "same"
                                 else age)
    finally:
        say.close()
    return changed, out.text


def listing(directory: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (stat.S_IMODE(p.stat().st_mode), p.read_bytes())
            for p in sorted(directory.iterdir())}


@pytest.fixture
def web(signed_repo: SignedRepo, tmp_path: Path) -> tuple[NodeIdentity, StateDir]:
    key, state = node(tmp_path, "web")
    enroll(signed_repo, MAC_WEB, key)
    return key, state


def test_install_decrypts_the_roles_and_the_nodes_secrets_into_the_secrets_dir(
        signed_repo: SignedRepo, web: tuple[NodeIdentity, StateDir],
        secrets_root: Path) -> None:
    key, state = web
    set_secret(signed_repo, "web", "token")
    set_secret(signed_repo, MAC_WEB.colons, "tls.key", b"-----BEGIN KEY-----\n")
    set_secret(signed_repo, MAC_WEB.colons, "token", b"mine wins")  # host over role
    signed_repo.publish()
    result = node_pull(signed_repo, MAC_WEB, state.root)
    assert sorted(f.path for f in result.bundle.secrets) == [
        TOKEN, f"secrets/{MAC_WEB.canonical}/tls.key.age",
        f"secrets/{MAC_WEB.canonical}/token.age"]
    assert all(PLAIN not in f.data for f in result.bundle.secrets)
    changed, text = install_for(result.bundle, state, MAC_WEB, key)
    assert changed
    directory = secrets_root / "web"
    assert listing(directory) == {"tls.key": (0o400, b"-----BEGIN KEY-----\n"),
                                  "token": (0o400, b"mine wins")}
    assert stat.S_IMODE(directory.resolve().stat().st_mode) == 0o700
    assert stat.S_IMODE(secrets_root.stat().st_mode) == 0o700
    assert "2 secrets into" in text and PLAIN.decode() not in text
    installed = state.current()
    assert installed is not None
    env = role_env(installed, Identity(MAC_WEB))
    assert env["BOOTPULL_SECRETS_DIR"] == str(directory)
    # nothing of the plaintext on the state disk
    for path in state.root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert b"mine wins" not in path.read_bytes(), path
    # the tmpfs check: this test's directory is on a disk, said once
    assert text.count("is not on a tmpfs") <= 1


def test_hooks_see_the_secrets_and_a_failed_install_puts_the_previous_ones_back(
        tmp_path: Path, secrets_root: Path) -> None:
    key, state = node(tmp_path, "a")
    mac = MAC_WEB

    def bundle(version: str, value: bytes, hook: bytes) -> Bundle:
        b = make_bundle(version, files={"run.sh": b"#!/bin/sh\nexec sleep 60\n",
                                        "setup.sh": hook}, hooks=(("./setup.sh",),))
        ciphertext = encrypt(value, key)
        return Bundle(role=b.role, version=b.version, commit=b.commit, files=b.files,
                      assignment=b.assignment, role_toml=b.role_toml,
                      secrets=(BundleFile(TOKEN, MODE_FILE, ciphertext),))

    good = b'#!/bin/sh\ntest "$(cat "$BOOTPULL_SECRETS_DIR/token")" = one && touch seen\n'
    install_for(bundle("1.0", b"one", good), state, mac, key)
    cur = state.current()
    assert cur is not None and (cur.path / "seen").exists()
    first = (secrets_root / "web").resolve()
    with pytest.raises(InstallError, match="exited with 3"):
        install_for(bundle("2.0", b"two", b"#!/bin/sh\nexit 3\n"), state, mac, key)
    assert listing(secrets_root / "web") == {"token": (0o400, b"one")}
    assert (secrets_root / "web").resolve() == first
    assert sorted(p.name for p in secrets_root.iterdir()) == sorted(["web", first.name])


def encrypt(value: bytes, *keys: NodeIdentity) -> bytes:
    import pyrage

    return bytes(pyrage.encrypt(value, [k.age.to_public() for k in keys]))


def test_a_node_that_is_not_a_recipient_gets_an_actionable_error_and_nothing_is_written(
        signed_repo: SignedRepo, web: tuple[NodeIdentity, StateDir], tmp_path: Path,
        secrets_root: Path) -> None:
    key, state = web
    signed_repo.publish()
    install_for(node_pull(signed_repo, MAC_WEB, state.root).bundle, state, MAC_WEB, key)
    before = state.current()
    assert before is not None
    set_secret(signed_repo, "web", "token")
    signed_repo.publish()
    bundle = node_pull(signed_repo, MAC_WEB, state.root).bundle
    other = identity.generate(kind="persistent")  # a re-imaged box: not the enrolled key
    with pytest.raises(InstallError) as err:
        install_for(bundle, state, MAC_WEB, other)
    text = f"{err.value.what} {err.value.why} {err.value.hint}"
    assert f"node {MAC_WEB.canonical}" in err.value.what
    assert other.fingerprint in err.value.what and other.recipient in err.value.what
    assert f"cannot decrypt {TOKEN}: it is not encrypted to this node" in err.value.what
    assert "bootpull repo secret rewrap web" in err.value.hint
    assert "Traceback" not in text and err.value.exit_code == 13
    assert not secrets_root.exists()
    assert state.current() == before  # the previous install keeps running

    with pytest.raises(InstallError, match="no age key to decrypt them"):
        install_for(bundle, state, MAC_WEB, key, age=None)
    assert not secrets_root.exists() and state.current() == before


def test_a_tampered_secret_fails_its_signed_hash_before_decryption(
        signed_repo: SignedRepo, web: tuple[NodeIdentity, StateDir],
        monkeypatch: pytest.MonkeyPatch, metadata_format: int) -> None:
    """Format 1 refuses the swapped or added secret; format 2 reads the signed blob ids,
    so its node gets the published ciphertext and never the unpublished one."""
    key, state = web
    set_secret(signed_repo, "web", "token")
    signed_repo.publish()
    published = (signed_repo.root / TOKEN).read_bytes()
    # a valid age file for the same node, committed without publishing
    signed_repo.write(TOKEN, encrypt(b"attacker's value", key))
    signed_repo.commit("swap the secret")
    if metadata_format == 2:
        bundle = node_pull(signed_repo, MAC_WEB, state.root).bundle
        assert [(f.path, f.data) for f in bundle.secrets] == [(TOKEN, published)]
        signed_repo.write("roles/web/secrets/extra.age", encrypt(b"x", key))
        signed_repo.commit("an unpublished secret")
        bundle = node_pull(signed_repo, MAC_WEB, state.root).bundle
        assert [f.path for f in bundle.secrets] == [TOKEN]
        return
    decrypted: list[bytes] = []
    import pyrage

    monkeypatch.setattr(pyrage, "decrypt", lambda *a: decrypted.append(a[0]))
    with pytest.raises(VerifyError, match=f"{TOKEN} does not match its signed hash"):
        node_pull(signed_repo, MAC_WEB, state.root)
    assert decrypted == []
    # a secret added without publishing is refused too
    signed_repo.git("reset", "-q", "--hard", "HEAD~1")
    signed_repo.write("roles/web/secrets/extra.age", encrypt(b"x", key))
    signed_repo.commit("an unpublished secret")
    with pytest.raises(VerifyError, match=r"extra\.age is in the commit but not in the signed"):
        node_pull(signed_repo, MAC_WEB, state.root)


class Recording:
    """A remote whose snapshots record every path read."""

    def __init__(self, inner: LocalRemote) -> None:
        self.inner = inner
        self.read: list[str] = []

    def snapshot(self, ref: str) -> TreeReader:
        tree = self.inner.snapshot(ref)
        outer = self

        class Tree:
            commit = tree.commit

            def read(self, path: str) -> bytes | None:
                outer.read.append(path)
                return tree.read(path)

            def list(self, prefix: str) -> list[TreeEntry]:
                return tree.list(prefix)

            def read_many(self, paths: list[str]) -> dict[str, bytes]:
                outer.read.extend(paths)
                return tree.read_many(paths)

            def read_blobs(self, oids: dict[str, str]) -> dict[str, bytes]:  # format 2
                outer.read.extend(oids)
                return tree.read_blobs(oids)  # type: ignore[attr-defined, no-any-return]

        return Tree()


def test_a_node_reads_only_its_own_host_secrets(
        signed_repo: SignedRepo, web: tuple[NodeIdentity, StateDir], tmp_path: Path) -> None:
    _, state = web
    db_key, _ = node(tmp_path, "db")
    enroll(signed_repo, MAC_DB, db_key)
    set_secret(signed_repo, MAC_DB.colons, "dbpass")
    set_secret(signed_repo, MAC_WEB.colons, "mine")
    signed_repo.publish()
    remote = Recording(signed_repo.remote())
    result = node_pull(remote, MAC_WEB, state.root, trust_root=signed_repo.trust)
    assert [f.path for f in result.bundle.secrets] == [
        f"secrets/{MAC_WEB.canonical}/mine.age"]
    assert not [p for p in remote.read if p.startswith(f"secrets/{MAC_DB.canonical}")]
    assert not [p for p in remote.read if p.endswith(".recipients")]


def test_removed_secrets_disappear_and_the_old_directory_is_wiped(
        signed_repo: SignedRepo, web: tuple[NodeIdentity, StateDir],
        secrets_root: Path) -> None:
    key, state = web
    set_secret(signed_repo, "web", "token")
    set_secret(signed_repo, "web", "other", b"other value")
    signed_repo.publish()
    install_for(node_pull(signed_repo, MAC_WEB, state.root).bundle, state, MAC_WEB, key)
    first = (secrets_root / "web").resolve()
    assert sorted(p.name for p in first.iterdir()) == ["other", "token"]
    signed_repo.git("rm", "-q", "roles/web/secrets/other.age",
                    "roles/web/secrets/other.age.recipients")
    signed_repo.commit("no more other")
    signed_repo.publish()
    changed, _ = install_for(node_pull(signed_repo, MAC_WEB, state.root).bundle, state,
                             MAC_WEB, key)
    assert changed  # a changed secret is a new install id
    assert listing(secrets_root / "web") == {"token": (0o400, PLAIN)}
    assert not first.exists()
    assert sorted(p.name for p in secrets_root.iterdir()) == sorted(
        ["web", (secrets_root / "web").resolve().name])
    # the same bundle again: nothing is rewritten
    now = (secrets_root / "web").resolve()
    changed, _ = install_for(node_pull(signed_repo, MAC_WEB, state.root).bundle, state,
                             MAC_WEB, key)
    assert not changed and (secrets_root / "web").resolve() == now
    # every secret gone: so is the directory
    signed_repo.git("rm", "-q", "-r", "roles/web/secrets")
    signed_repo.commit("no secrets")
    signed_repo.publish()
    install_for(node_pull(signed_repo, MAC_WEB, state.root).bundle, state, MAC_WEB, key)
    assert list(secrets_root.iterdir()) == []


def test_a_role_without_secrets_never_touches_the_secrets_root(
        tmp_path: Path, secrets_root: Path) -> None:
    key, state = node(tmp_path, "plain")
    changed, _ = install_for(make_bundle("1.0"), state, MAC_WEB, key)
    assert changed and not secrets_root.exists()


def test_a_secrets_root_on_a_disk_is_warned_about_once(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/sda1 / ext4 rw 0 0\ntmpfs {tmp_path / 'mem'} tmpfs rw 0 0\n")
    said: list[str] = []
    plain = [role_secrets.Plain("token", TOKEN, b"x")]
    for _ in range(2):
        role_secrets.place(plain, "web", tmp_path / "disk", warn=said.append,
                           mounts_file=mounts).done()
    role_secrets.place(plain, "web", tmp_path / "mem", warn=said.append,
                       mounts_file=mounts).done()
    assert len(said) == 1 and "is not on a tmpfs" in said[0]
    assert str(tmp_path / "disk") in said[0]


def test_a_file_that_is_not_age_or_has_a_bad_name_is_refused(tmp_path: Path) -> None:
    key = identity.generate()
    with pytest.raises(InstallError, match="is not an age file"):
        role_secrets.decrypt([BundleFile(TOKEN, MODE_FILE, b"plain text")], key.age,
                             role="web", who="node x")
    with pytest.raises(InstallError, match="is not a secret name"):
        role_secrets.decrypt([BundleFile("roles/web/secrets/-x.age", MODE_FILE,
                                         encrypt(b"x", key))], key.age, role="web",
                             who="node x")
    broken = encrypt(b"x" * 100, key)[:-10]
    with pytest.raises(InstallError, match="the age file is broken"):
        role_secrets.decrypt([BundleFile(TOKEN, MODE_FILE, broken)], key.age, role="web",
                             who="node x")
    assert "data=" not in repr(role_secrets.Plain("a", "b", b"secret"))
