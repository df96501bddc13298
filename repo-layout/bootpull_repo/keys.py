"""The signing keys of one deploy repository: where they live and how they are used.

Four TUF roles sign the repository's metadata (docs/security.md):

========= ============================================ ==================================
key       signs                                        where it should live
========= ============================================ ==================================
root      ``root.json``: which keys are trusted         offline (a USB stick, ``--keys``)
targets   ``targets.json``: every published file       the admin's machine
snapshot  ``snapshot.json``: which targets version     admin machine or the home base
timestamp ``timestamp.json``: freshness                admin machine or the home base
========= ============================================ ==================================

Private keys never live inside the repository. They are ed25519 keys in PEM (PKCS#8)
files ``<role>.pem`` (mode 0600) in the key directory: ``--keys DIR``, else
``$BOOTPULL_KEYS``, else ``~/.config/bootpull/keys/<repo name>/`` (the name is
``name`` in ``bootpull.toml``, else the repository directory's name).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from bootpull.errors import BootpullError

if TYPE_CHECKING:
    from securesystemslib.signer import CryptoSigner

ROLES = ("root", "targets", "snapshot", "timestamp")
ENV = "BOOTPULL_KEYS"
TRUST_FILE = "trust.json"


class KeysError(BootpullError):
    """A signing key is missing, unreadable, or in the wrong place."""

    stage = "keys"


def default_key_dir(repo_name: str) -> Path:
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "bootpull" / "keys" / repo_name


def resolve_key_dir(override: str | None, repo_root: Path, repo_name: str | None) -> Path:
    """``--keys DIR``, else ``$BOOTPULL_KEYS``, else the per-repository default."""
    if override:
        chosen = Path(override).expanduser()
    elif os.environ.get(ENV):
        chosen = Path(os.environ[ENV]).expanduser()
    else:
        chosen = default_key_dir(repo_name or repo_root.resolve().name)
    chosen = chosen.resolve()
    root = repo_root.resolve()
    if chosen == root or root in chosen.parents:
        raise KeysError(
            f"the key directory {chosen} is inside the repository",
            why="private keys must never be committed",
            hint="keep keys outside the repository: --keys DIR, $BOOTPULL_KEYS, or the "
            "default ~/.config/bootpull/keys/<name>/")
    return chosen


class KeyStore:
    """The private keys in one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, role: str) -> Path:
        return self.directory / f"{role}.pem"

    def has(self, role: str) -> bool:
        return self.path(role).is_file()

    def generate(self, role: str) -> CryptoSigner:
        """A new ed25519 key for ``role``, written 0600 (refuses to overwrite)."""
        from securesystemslib.signer import CryptoSigner

        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.path(role)
        signer = CryptoSigner.generate_ed25519()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(signer.private_bytes)
        return signer

    def signer(self, role: str) -> CryptoSigner:
        """The signer for ``role``; a clear error when its key is not here."""
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
        from securesystemslib.signer import CryptoSigner

        path = self.path(role)
        try:
            pem = path.read_bytes()
        except FileNotFoundError:
            offline = " (the root key is meant to be kept offline)" if role == "root" else ""
            raise KeysError(
                f"the {role} key is not in {self.directory}", why=f"{path} does not exist",
                hint=f"point --keys (or $BOOTPULL_KEYS) at the directory that holds "
                f"{role}.pem{offline}") from None
        try:
            return CryptoSigner(load_pem_private_key(pem, None))
        except (ValueError, TypeError) as exc:
            raise KeysError(f"{path} is not a usable private key", why=str(exc),
                            hint="restore it from your backup") from None
