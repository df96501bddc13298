"""The node's key (bootpull.identity): kept across boots on a state disk, 0600, a new
one per boot when diskless; broken files are actionable errors; the age key decrypts
what was encrypted to its recipient (with pyrage, and with the age CLI when there)."""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pyrage
import pytest
from bootpull import identity
from bootpull.errors import BootpullError, IdentityError, IdentityUnwritable
from bootpull.identity import AGE_FILE, KEY_FILE, load_or_create
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def raw_public(ident: identity.NodeIdentity) -> bytes:
    return ident.signing.public_key().public_bytes(serialization.Encoding.Raw,
                                                   serialization.PublicFormat.Raw)


def test_a_persistent_key_survives_a_reload(tmp_path: Path) -> None:
    first = load_or_create(tmp_path, persistent=True)
    assert first.kind == "persistent" and first.created
    again = load_or_create(tmp_path, persistent=True)
    assert not again.created and again.kind == "persistent"
    assert again.public == first.public and again.recipient == first.recipient
    assert again.fingerprint == first.fingerprint
    raw = raw_public(first)
    assert first.public == "ed25519:" + base64.b64encode(raw).decode()
    assert len(base64.b64decode(first.public.removeprefix("ed25519:"))) == 32
    assert first.fingerprint == "SHA256:" + base64.b64encode(
        hashlib.sha256(raw).digest()).decode().rstrip("=")
    assert first.recipient.startswith("age1") and len(first.recipient) == 62
    for name in (KEY_FILE, AGE_FILE):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600
    assert (tmp_path / KEY_FILE).read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    lines = (tmp_path / AGE_FILE).read_text().splitlines()
    assert next(ln for ln in lines if not ln.startswith("#")).startswith("AGE-SECRET-KEY-1")
    assert not [p.name for p in tmp_path.iterdir() if p.name not in (KEY_FILE, AGE_FILE)]


def test_a_looser_mode_is_made_0600_again(tmp_path: Path) -> None:
    first = load_or_create(tmp_path, persistent=True)
    (tmp_path / KEY_FILE).chmod(0o644)
    (tmp_path / AGE_FILE).chmod(0o640)
    said: list[str] = []
    again = load_or_create(tmp_path, persistent=True, warn=said.append)
    assert again.public == first.public
    assert (tmp_path / KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert (tmp_path / AGE_FILE).stat().st_mode & 0o777 == 0o600
    assert len(said) == 2 and "made it 0600" in said[0]


def test_ephemeral_makes_a_new_key_each_time_and_writes_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    one = load_or_create(state, persistent=False)
    two = load_or_create(state, persistent=False)
    assert one.kind == two.kind == "ephemeral" and one.created and two.created
    assert one.public != two.public and one.recipient != two.recipient
    assert not state.exists()


def ec_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.mark.parametrize(("name", "content", "words"), [
    (KEY_FILE, b"not a key at all\n", "does not parse"),
    (KEY_FILE, b"", "does not parse"),
    (KEY_FILE, b"truncated", "does not parse"),
    (KEY_FILE, None, "is not an Ed25519 key"),  # an EC key: the wrong type
    (KEY_FILE, b"\xff\xfe\x00" * 100, "does not parse"),
    (AGE_FILE, b"AGE-SECRET-KEY-1QQQQ\n", "does not parse"),
    (AGE_FILE, b"# only a comment\n", "does not parse"),
    (AGE_FILE, b"\xff\xfe binary", "does not parse"),
    (KEY_FILE, b"x" * (identity.MAX_FILE + 1), "is not a key"),
])
def test_a_broken_key_file_is_an_actionable_error(tmp_path: Path, name: str,
                                                  content: bytes | None, words: str) -> None:
    load_or_create(tmp_path, persistent=True)
    path = tmp_path / name
    path.write_bytes(ec_pem() if content is None else content)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(IdentityError) as caught:
        load_or_create(tmp_path, persistent=True)
    err = caught.value
    assert isinstance(err, BootpullError) and words in err.what and str(path) in err.what
    assert "bootpull repo enroll" in err.hint and "Traceback" not in str(err)
    assert err.__suppress_context__ or err.__cause__ is None  # no chained traceback
    # nothing was changed: the broken file stays for the admin to look at
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_directory_instead_of_the_key_and_a_missing_age_key(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE).mkdir()
    with pytest.raises(IdentityError, match="is not a file"):
        load_or_create(tmp_path, persistent=True)
    (tmp_path / KEY_FILE).rmdir()
    load_or_create(tmp_path, persistent=True)
    (tmp_path / AGE_FILE).unlink()
    with pytest.raises(IdentityError, match="is missing") as caught:
        load_or_create(tmp_path, persistent=True)
    assert "move both away" in caught.value.hint


def test_an_age_key_alone_is_a_first_boot_cut_short(tmp_path: Path) -> None:
    load_or_create(tmp_path, persistent=True)
    (tmp_path / KEY_FILE).unlink()
    made = load_or_create(tmp_path, persistent=True)
    assert made.created and (tmp_path / KEY_FILE).exists()
    assert load_or_create(tmp_path, persistent=True).public == made.public


def test_a_full_disk_is_a_catchable_error_and_leaves_no_key(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            ) -> None:
    real_write = os.write

    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(IdentityUnwritable) as caught:
        load_or_create(tmp_path, persistent=True)
    monkeypatch.setattr(os, "write", real_write)
    assert "no space left on the state disk" in caught.value.what
    assert "free space" in caught.value.hint
    assert isinstance(caught.value, IdentityError)
    assert not list(tmp_path.iterdir())  # no temp file, no half key
    assert load_or_create(tmp_path, persistent=True).created  # and later it works


def test_the_age_identity_decrypts_what_was_encrypted_to_its_recipient(
        tmp_path: Path) -> None:
    ident = load_or_create(tmp_path, persistent=True)
    recipient = pyrage.x25519.Recipient.from_str(ident.recipient)
    secret = b"the role's database password\n"
    sealed = pyrage.encrypt(secret, [recipient])
    assert pyrage.decrypt(sealed, [ident.age]) == secret
    reloaded = load_or_create(tmp_path, persistent=True)
    assert pyrage.decrypt(sealed, [reloaded.age]) == secret
    age = shutil.which("age")
    if age is None:
        pytest.skip("no age CLI (Debian package age): only pyrage decrypted")
    (tmp_path / "sealed.age").write_bytes(sealed)
    out = subprocess.run([age, "-d", "-i", str(tmp_path / AGE_FILE), str(tmp_path / "sealed.age")],
                         capture_output=True, check=True, timeout=30)
    assert out.stdout == secret
    # and the other way round: the CLI encrypts to the recipient, pyrage decrypts
    made = subprocess.run([age, "-r", ident.recipient], input=secret, capture_output=True,
                          check=True, timeout=30)
    assert pyrage.decrypt(made.stdout, [reloaded.age]) == secret


def test_importing_the_module_does_not_load_pyrage() -> None:
    import sys

    code = ("import sys, bootpull.identity, bootpull.httpsig; "
            "print('pyrage' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "False"
