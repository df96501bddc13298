"""``bootpull repo secret set|rewrap|list`` and lint's secret checks, in a real signed git
repository with keys in a temporary key directory: who each secret is encrypted to, the
admin key, rewrap after enroll/assign/unassign/reject, the plaintext never in git's
object store, and the age CLI decrypting with a node's own ``identity.age``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pyrage
import pytest
from bootpull import identity
from bootpull.cli import main
from bootpull.identity import AGE_FILE, NodeIdentity
from bootpull.mac import Mac
from bootpull_repo.identities import Pin
from bootpull_repo.lint import lint_repo
from bootpull_repo.secrets import (
    ADMIN_KEY_FILE,
    Fleet,
    parse_sidecar,
    role_recipients,
)
from hypothesis import given
from hypothesis import strategies as st
from signed_repo import MAC_DB, MAC_NEW, MAC_WEB, SignedRepo, targets_of

pytestmark = pytest.mark.formats(1, 2)  # signed metadata format 1 and 2

PLAIN = b"s3cr3t-token-do-not-leak-4f1c9a"
TOKEN = "roles/web/secrets/token.age"


def node_key(tmp_path: Path, name: str) -> NodeIdentity:
    """A node's persistent identity, in its own state directory (identity.age there)."""
    return identity.load_or_create(tmp_path / f"state-{name}", persistent=True)


def enroll(repo: SignedRepo, mac: Mac, key: NodeIdentity) -> None:
    repo.bootpull("enroll", mac.colons, "--key", key.public, "--age", key.recipient)


def run(repo: SignedRepo, *args: str, stdin: bytes | None = None,
        capsys: pytest.CaptureFixture[str] | None = None,
        monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[int, str, str]:
    if stdin is not None:
        assert monkeypatch is not None
        import io
        import sys

        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    code = main(["repo", "-C", str(repo.root), "--keys", str(repo.keys), *args])
    out, err = capsys.readouterr() if capsys is not None else ("", "")
    return code, out, err


def secret_file(repo: SignedRepo, data: bytes = PLAIN) -> Path:
    path = repo.root.parent / "plain.txt"  # outside the repository
    path.write_bytes(data)
    return path


def sidecar_nodes(repo: SignedRepo, rel: str = TOKEN) -> dict[str, str]:
    found, problems = parse_sidecar((repo.root / f"{rel}.recipients").read_bytes(), rel)
    assert found is not None, problems
    return found.nodes


def lint_lines(repo: SignedRepo) -> list[str]:
    return [str(p) for p in lint_repo(repo.root).problems]


def decrypts(key: NodeIdentity, path: Path) -> bool:
    try:
        return bytes(pyrage.decrypt(path.read_bytes(), [key.age])) == PLAIN
    except pyrage.DecryptError:
        return False


def all_objects(repo: SignedRepo) -> bytes:
    return subprocess.run(["git", "-C", str(repo.root), "cat-file", "--batch-all-objects",
                           "--batch"], capture_output=True, check=True).stdout


@pytest.fixture
def web_key(signed_repo: SignedRepo, tmp_path: Path) -> NodeIdentity:
    key = node_key(tmp_path, "web")
    enroll(signed_repo, MAC_WEB, key)
    return key


def test_set_encrypts_to_the_roles_enrolled_nodes_and_the_admin_key(
        signed_repo: SignedRepo, web_key: NodeIdentity, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    repo = signed_repo
    db_key = node_key(tmp_path, "db")
    enroll(repo, MAC_DB, db_key)
    capsys.readouterr()
    code, out, err = run(repo, "secret", "set", "web", "token", str(secret_file(repo)),
                         capsys=capsys)
    assert code == 0, err
    assert PLAIN.decode() not in out + err
    assert "roles/web/secrets/token.age" in out and MAC_WEB.canonical in out
    data = (repo.root / TOKEN).read_bytes()
    assert data.startswith(b"age-encryption.org/v1\n") and PLAIN not in data
    assert sidecar_nodes(repo) == {MAC_WEB.canonical: web_key.recipient}
    assert decrypts(web_key, repo.root / TOKEN)
    assert not decrypts(db_key, repo.root / TOKEN)  # db is not assigned web
    admin = repo.keys / ADMIN_KEY_FILE
    assert admin.stat().st_mode & 0o777 == 0o600
    admin_id = pyrage.x25519.Identity.from_str(
        next(ln for ln in admin.read_text().splitlines() if ln.startswith("AGE-SECRET")))
    assert bytes(pyrage.decrypt(data, [admin_id])) == PLAIN
    assert repo.git("log", "-1", "--format=%s") == "secret set web token for 1 node"
    assert repo.git("status", "--porcelain") == ""
    assert lint_lines(repo) == []


def test_the_age_cli_decrypts_with_the_nodes_identity_file(
        signed_repo: SignedRepo, web_key: NodeIdentity, tmp_path: Path) -> None:
    age = shutil.which("age")
    if age is None:
        pytest.skip("the age CLI is not installed (apt-get install age)")
    signed_repo.bootpull("secret", "set", "web", "token", str(secret_file(signed_repo)))
    done = subprocess.run([age, "-d", "-i", str(tmp_path / "state-web" / AGE_FILE),
                           str(signed_repo.root / TOKEN)], capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout == PLAIN


def test_the_plaintext_is_never_in_gits_object_store(
        signed_repo: SignedRepo, web_key: NodeIdentity, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    repo = signed_repo
    code, _, err = run(repo, "secret", "set", "web", "token", stdin=PLAIN, capsys=capsys,
                       monkeypatch=monkeypatch)
    assert code == 0, err
    repo.bootpull("secret", "set", MAC_WEB.canonical, "host-token", str(secret_file(repo)))
    repo.bootpull("assign", MAC_NEW.colons, "web")
    enroll(repo, MAC_NEW, node_key(tmp_path, "new"))
    repo.bootpull("secret", "rewrap")
    repo.publish()
    objects = all_objects(repo)
    assert len(objects) > 10_000 and PLAIN not in objects
    assert PLAIN not in b"".join(p.read_bytes() for p in (repo.root / ".git").rglob("*")
                                 if p.is_file())


def test_rewrap_follows_enroll_assign_unassign_and_reject(
        signed_repo: SignedRepo, web_key: NodeIdentity, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    repo = signed_repo
    repo.bootpull("secret", "set", "web", "token", str(secret_file(repo)))
    new_key = node_key(tmp_path, "new")
    repo.bootpull("assign", MAC_NEW.colons, "web")
    enroll(repo, MAC_NEW, new_key)
    assert lint_lines(repo) == [
        f"{TOKEN}: node {MAC_NEW.canonical} cannot decrypt {TOKEN} — run 'bootpull repo "
        "secret rewrap web' (then publish)"]
    before = int(repo.git("rev-list", "--count", "HEAD"))
    capsys.readouterr()
    code, out, err = run(repo, "secret", "rewrap", "web", capsys=capsys)
    assert code == 0, err
    assert f"{TOKEN}: +{MAC_NEW.canonical} (2 nodes)" in out
    assert int(repo.git("rev-list", "--count", "HEAD")) == before + 1
    assert repo.git("log", "-1", "--format=%s") == "secret rewrap: 1 secret (+1 -0 nodes)"
    assert decrypts(new_key, repo.root / TOKEN) and decrypts(web_key, repo.root / TOKEN)
    assert lint_lines(repo) == []

    # nothing to do: no commit
    code, out, _ = run(repo, "secret", "rewrap", capsys=capsys)
    assert code == 0 and "nothing to commit" in out
    assert int(repo.git("rev-list", "--count", "HEAD")) == before + 1

    repo.bootpull("unassign", MAC_WEB.colons)
    assert lint_lines(repo) == [
        f"{TOKEN}: is still encrypted to node {MAC_WEB.canonical}, a node the repository "
        "no longer assigns web — run 'bootpull repo secret rewrap web' (then publish)"]
    code, out, _ = run(repo, "secret", "rewrap", capsys=capsys)
    assert code == 0 and f"-{MAC_WEB.canonical}" in out
    assert not decrypts(web_key, repo.root / TOKEN) and decrypts(new_key, repo.root / TOKEN)

    repo.bootpull("reject", MAC_NEW.colons, "--key", new_key.public)
    assert lint_lines(repo) == [
        f"{TOKEN}: is still encrypted to node {MAC_NEW.canonical}, a key that is no longer "
        "enrolled — run 'bootpull repo secret rewrap web' (then publish)"]
    code, out, _ = run(repo, "secret", "rewrap", "web", capsys=capsys)
    assert code == 0 and "only the admin key can" in out
    assert sidecar_nodes(repo) == {}
    assert lint_lines(repo) == []


def test_a_reimaged_node_is_named_as_unable_to_decrypt(
        signed_repo: SignedRepo, web_key: NodeIdentity, tmp_path: Path) -> None:
    repo = signed_repo
    repo.bootpull("secret", "set", "web", "token", str(secret_file(repo)))
    enroll(repo, MAC_WEB, node_key(tmp_path, "web-again"))  # a new key for the same MAC
    assert lint_lines(repo) == [
        f"{TOKEN}: node {MAC_WEB.canonical} cannot decrypt {TOKEN} (it is encrypted to its "
        "previous key) — run 'bootpull repo secret rewrap web' (then publish)"]


def test_host_secrets_and_list(signed_repo: SignedRepo, web_key: NodeIdentity,
                               tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = signed_repo
    db_key = node_key(tmp_path, "db")
    enroll(repo, MAC_DB, db_key)
    repo.bootpull("secret", "set", MAC_DB.colons, "dbpass", str(secret_file(repo)))
    rel = f"secrets/{MAC_DB.canonical}/dbpass.age"
    assert sidecar_nodes(repo, rel) == {MAC_DB.canonical: db_key.recipient}
    assert decrypts(db_key, repo.root / rel) and not decrypts(web_key, repo.root / rel)
    assert repo.git("log", "-1", "--format=%s") == \
        f"secret set {MAC_DB.canonical} dbpass for 1 node"
    repo.bootpull("secret", "set", "web", "token", str(secret_file(repo)))
    capsys.readouterr()
    code, out, _ = run(repo, "secret", "list", capsys=capsys)
    assert code == 0
    assert out.splitlines() == [
        f"{TOKEN}  role web  token: {MAC_WEB.canonical} + admin",
        f"{rel}  node {MAC_DB.canonical}  dbpass: {MAC_DB.canonical} + admin"]
    assert PLAIN.decode() not in out


def test_default_toml_assigns_enrolled_nodes_without_a_host_file(
        signed_repo: SignedRepo, web_key: NodeIdentity, tmp_path: Path) -> None:
    repo = signed_repo
    repo.write("hosts/default.toml", b'role = "web"\n')
    repo.commit("everyone else is web")
    new_key = node_key(tmp_path, "new")
    enroll(repo, MAC_NEW, new_key)  # no host file: hosts/default.toml gives it web
    enroll(repo, MAC_DB, node_key(tmp_path, "db"))  # its host file says db
    repo.bootpull("secret", "set", "web", "token", str(secret_file(repo)))
    assert sidecar_nodes(repo) == {MAC_WEB.canonical: web_key.recipient,
                                   MAC_NEW.canonical: new_key.recipient}
    assert repo.git("log", "-1", "--format=%s") == "secret set web token for 2 nodes"


@pytest.mark.parametrize(("args", "expected"), [
    (["nosuchrole", "token"], "there is no role 'nosuchrole'"),
    (["web", "bad/name"], "is not a secret name"),
    (["web", ".hidden"], "is not a secret name"),
    (["db", "token"], "no enrolled node could decrypt a secret for db"),
    (["52:54:00:aa:bb:cc", "token"], "no enrolled node could decrypt a secret for"),
])
def test_set_refuses_with_an_actionable_error(
        signed_repo: SignedRepo, web_key: NodeIdentity, args: list[str], expected: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    code, out, err = run(signed_repo, "secret", "set", *args, str(secret_file(signed_repo)),
                         capsys=capsys)
    assert code == 2 and expected in err and "do:" in err, err
    assert "Traceback" not in err and PLAIN.decode() not in out + err
    assert not (signed_repo.root / "roles/web/secrets").exists()


def test_set_refuses_an_empty_secret_from_stdin(
        signed_repo: SignedRepo, web_key: NodeIdentity, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run(signed_repo, "secret", "set", "web", "token", stdin=b"",
                       capsys=capsys, monkeypatch=monkeypatch)
    assert code == 2 and "is empty" in err


def test_rewrap_without_the_admin_key_says_where_it_should_be(
        signed_repo: SignedRepo, web_key: NodeIdentity, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    repo = signed_repo
    repo.bootpull("secret", "set", "web", "token", str(secret_file(repo)))
    (repo.keys / ADMIN_KEY_FILE).rename(tmp_path / "away.age")
    repo.bootpull("assign", MAC_NEW.colons, "web")
    enroll(repo, MAC_NEW, node_key(tmp_path, "new"))
    capsys.readouterr()
    code, _, err = run(repo, "secret", "rewrap", capsys=capsys)
    assert code == 2 and "there is no admin secrets key" in err and "--keys" in err
    # another admin key cannot decrypt it: said, nothing changed
    repo.bootpull("secret", "set", "web", "other", str(secret_file(repo)))  # makes a new key
    before = (repo.root / TOKEN).read_bytes()
    code, _, err = run(repo, "secret", "rewrap", "web", capsys=capsys)
    assert code == 2 and f"cannot decrypt {TOKEN} with the admin key" in err
    assert (repo.root / TOKEN).read_bytes() == before


def test_lint_reports_files_that_are_not_age_bad_names_and_stray_sidecars(
        signed_repo: SignedRepo, web_key: NodeIdentity) -> None:
    repo = signed_repo
    repo.bootpull("secret", "set", "web", "token", str(secret_file(repo)))
    repo.write("roles/web/secrets/plain.age", b"password=hunter2\n")
    repo.write("roles/web/secrets/-bad.age", b"age-encryption.org/v1\n")
    repo.write("roles/web/secrets/gone.age.recipients", b"format = 1\n")
    repo.write("roles/web/secrets/notes.txt", b"x\n")
    repo.write("secrets/52:54:00:12:34:56/x.age", b"age-encryption.org/v1\n")
    found = "\n".join(lint_lines(repo))
    assert "roles/web/secrets/plain.age: is not an age file" in found
    assert "roles/web/secrets/plain.age: has no plain.age.recipients" in found
    assert "roles/web/secrets/-bad.age: '-bad' is not a secret name" in found
    assert "roles/web/secrets/gone.age.recipients: is left over: there is no gone.age" \
        in found
    assert "roles/web/secrets/notes.txt: is not a secret (NAME.age)" in found
    assert ("secrets/52:54:00:12:34:56/x.age: the directory is not named by the canonical "
            "MAC — git mv secrets/52:54:00:12:34:56 secrets/52-54-00-12-34-56") in found


def test_publish_signs_role_and_host_secrets(signed_repo: SignedRepo,
                                             web_key: NodeIdentity) -> None:
    repo = signed_repo
    repo.bootpull("secret", "set", "web", "token", str(secret_file(repo)))
    repo.bootpull("secret", "set", MAC_WEB.colons, "mine", str(secret_file(repo)))
    repo.publish()
    signed = set(targets_of(repo.root))
    for path in (TOKEN, f"{TOKEN}.recipients", f"secrets/{MAC_WEB.canonical}/mine.age",
                 f"secrets/{MAC_WEB.canonical}/mine.age.recipients"):
        assert f"head/{path}" in signed, path


# -- the recipient computation, pure -------------------------------------------------

MACS = [f"52-54-00-00-00-{i:02x}" for i in range(6)]
ROLES = ["web", "db", None]


@given(hosts=st.dictionaries(st.sampled_from(MACS), st.sampled_from(ROLES)),
       default=st.sampled_from(ROLES),
       pins=st.dictionaries(st.sampled_from(MACS), st.booleans()),
       role=st.sampled_from(["web", "db"]))
def test_role_recipients_are_the_enrolled_nodes_the_repository_assigns_the_role(
        hosts: dict[str, str | None], default: str | None, pins: dict[str, bool],
        role: str) -> None:
    age = {mac: f"age1{mac}" for mac in MACS}
    fleet = Fleet(hosts, default, {
        mac: Pin("ed25519:x" if has_key else None, age[mac] if has_key else None)
        for mac, has_key in pins.items()})
    got = role_recipients(role, fleet)
    for mac in MACS:
        assigned = hosts.get(mac, default)
        should = pins.get(mac, False) and assigned == role
        assert (mac in got) == should
        if should:
            assert got[mac] == age[mac]


@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_parse_sidecar_never_raises(data: bytes) -> None:
    found, problems = parse_sidecar(data, TOKEN + ".recipients")
    assert (found is None) == bool(problems)


@given(nodes=st.dictionaries(st.sampled_from(MACS), st.just(
    "age1vny3dtyp7zsg3l9h085q5em3hddj2yglnlsmk9tw0q0z3rjwae6qp4vg4g")))
def test_the_sidecar_round_trips(nodes: dict[str, str]) -> None:
    from bootpull_repo.secrets import render_sidecar

    admin = "age1vny3dtyp7zsg3l9h085q5em3hddj2yglnlsmk9tw0q0z3rjwae6qp4vg4g"
    found, problems = parse_sidecar(render_sidecar(TOKEN, admin, nodes).encode(), TOKEN)
    assert not problems and found is not None
    assert found.nodes == nodes and found.admin == admin
