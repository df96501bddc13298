"""The node's own key: an Ed25519 key that signs its reports, and an age key.

The node signs every report (:mod:`bootpull.httpsig`) with its Ed25519 key, so the
home base can tell its events from anyone else's on the LAN, and publishes an age
(X25519) recipient that secrets for this node can be encrypted to.

With a state disk the keys live in the state directory and stay across boots::

    identity.key    the Ed25519 key, PKCS #8 PEM, unencrypted, mode 0600
    identity.age    the age secret key (``AGE-SECRET-KEY-1...``, as age-keygen writes
                    it: ``age -d -i identity.age`` reads it), mode 0600

both written atomically (a temporary file, fsync, rename, fsync of the directory),
``identity.age`` first: an ``identity.age`` without ``identity.key`` is a first boot
cut short, and both are made again. A diskless node (its state directory in memory)
makes a new key at every boot and writes nothing: ``kind == "ephemeral"``.

A file that cannot be read or does not parse is an :class:`~bootpull.errors.IdentityError`
whose hint says what to do; a new key that cannot be written (a full disk) is an
:class:`~bootpull.errors.IdentityUnwritable`, after which the caller can run with
:func:`generate`'s ephemeral key. A file readable by others is made
0600 again, not refused.

pyrage (age) is imported when a key is made or loaded, not with this module.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bootpull.errors import IdentityError, IdentityUnwritable
from bootpull.httpsig import fingerprint, public_text
from bootpull.state import disk_hint, disk_trouble, write_atomic

if TYPE_CHECKING:
    import pyrage

KEY_FILE = "identity.key"
AGE_FILE = "identity.age"
#: a key file larger than this is not a key file (and is not read whole)
MAX_FILE = 64 * 1024
MODE = 0o600


@dataclass(frozen=True)
class NodeIdentity:
    signing: Ed25519PrivateKey
    public: str  # ed25519:<base64 of the 32 raw bytes>
    fingerprint: str  # SHA256:<unpadded base64 of sha256(raw key)>
    age: pyrage.x25519.Identity
    recipient: str  # age1...
    kind: Literal["persistent", "ephemeral"]
    created: bool  # made in this run

    def describe(self) -> str:
        """``SHA256:... (persistent, made now)``: the console's and the event's words."""
        return f"{self.fingerprint} ({self.kind}{', made now' if self.created else ''})"


def _identity(signing: Ed25519PrivateKey, age: Any, *, kind: Literal["persistent",
              "ephemeral"], created: bool) -> NodeIdentity:
    raw = signing.public_key().public_bytes(serialization.Encoding.Raw,
                                            serialization.PublicFormat.Raw)
    public = public_text(raw)
    return NodeIdentity(signing=signing, public=public, fingerprint=fingerprint(public),
                        age=age, recipient=str(age.to_public()), kind=kind, created=created)


def generate(*, kind: Literal["persistent", "ephemeral"] = "ephemeral") -> NodeIdentity:
    """A new identity in memory."""
    from pyrage import x25519

    return _identity(Ed25519PrivateKey.generate(), x25519.Identity.generate(), kind=kind,
                     created=True)


def _pem(identity: NodeIdentity) -> bytes:
    return identity.signing.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())


def _age_text(identity: NodeIdentity) -> bytes:
    return (f"# bootpull node identity: the age key of {identity.fingerprint}\n"
            f"# public key: {identity.recipient}\n{identity.age}\n").encode()


def _remedy(state_dir: Path) -> str:
    return (f"restore {state_dir / KEY_FILE} and {state_dir / AGE_FILE} from a backup, or "
            f"move both away to make a new key at the next boot, then run 'bootpull repo "
            f"enroll <mac>' and publish so the home base takes the new key; until then "
            f"this node signs with a key made for this boot only")


def _read(path: Path, state_dir: Path, warn: Callable[[str], None] | None) -> bytes:
    """The file's bytes, after making it 0600 if it was more open."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise IdentityError(f"cannot read the node key {path}", why=str(exc),
                            hint=_remedy(state_dir)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise IdentityError(f"the node key {path} is not a file", hint=_remedy(state_dir))
        if stat.S_IMODE(info.st_mode) & ~MODE:
            try:
                os.fchmod(fd, MODE)
            except OSError as exc:
                raise IdentityError(
                    f"the node key {path} is readable by others and cannot be made 0600",
                    why=str(exc), hint=f"run 'chmod 600 {path}' as its owner") from None
            if warn is not None:
                warn(f"the node key {path} was mode {stat.S_IMODE(info.st_mode):o}; "
                     "made it 0600")
        if info.st_size > MAX_FILE:
            raise IdentityError(f"the node key {path} is not a key",
                                why=f"it is {info.st_size} bytes", hint=_remedy(state_dir))
        chunks = []
        while chunk := os.read(fd, MAX_FILE + 1):
            chunks.append(chunk)
            if sum(map(len, chunks)) > MAX_FILE:
                raise IdentityError(f"the node key {path} is not a key", why="it is too "
                                    "large", hint=_remedy(state_dir))
        return b"".join(chunks)
    except OSError as exc:
        raise IdentityError(f"cannot read the node key {path}", why=str(exc),
                            hint=_remedy(state_dir)) from None
    finally:
        os.close(fd)


def _load_signing(data: bytes, path: Path, state_dir: Path) -> Ed25519PrivateKey:
    from cryptography.exceptions import UnsupportedAlgorithm

    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise IdentityError(f"the node key {path} does not parse",
                            why=f"it is not an unencrypted PKCS #8 PEM key ({why})",
                            hint=_remedy(state_dir)) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(f"the node key {path} is not an Ed25519 key",
                            why=f"it holds a {type(key).__name__.lstrip('_')}",
                            hint=_remedy(state_dir))
    return key


def _load_age(data: bytes, path: Path, state_dir: Path) -> Any:
    import pyrage
    from pyrage import x25519

    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        text = ""
    keys = [line.strip() for line in text.splitlines()
            if line.strip() and not line.startswith("#")]
    if len(keys) != 1 or not keys[0].startswith("AGE-SECRET-KEY-1"):
        raise IdentityError(f"the node's age key {path} does not parse",
                            why="it does not hold exactly one AGE-SECRET-KEY-1... line",
                            hint=_remedy(state_dir))
    try:
        return x25519.Identity.from_str(keys[0])
    except (pyrage.IdentityError, ValueError) as exc:
        raise IdentityError(f"the node's age key {path} does not parse", why=str(exc),
                            hint=_remedy(state_dir)) from None


def _write(path: Path, data: bytes, state_dir: Path) -> None:
    try:
        write_atomic(path, data, mode=MODE)
    except OSError as exc:
        raise IdentityUnwritable(
            f"cannot write the node key {path}: {disk_trouble(exc)}",
            why=f"{exc}; this boot signs with a key made for it only, which the home base "
            "does not know", hint=disk_hint(state_dir, exc)) from None


def load_or_create(state_dir: Path, *, persistent: bool,
                   warn: Callable[[str], None] | None = None) -> NodeIdentity:
    """The node's identity: with ``persistent``, loaded from ``state_dir`` or made and
    written there; without, made for this run only (nothing written).

    Raises IdentityError (a file that cannot be read or parsed; nothing is changed) or
    IdentityUnwritable (a new key could not be written: a full or failing disk; the
    caller goes on with ``generate()``). ``warn`` hears about a file made 0600 again.
    """
    if not persistent:
        return generate(kind="ephemeral")
    state_dir = Path(state_dir)
    key_path, age_path = state_dir / KEY_FILE, state_dir / AGE_FILE
    if key_path.exists() or key_path.is_symlink():
        signing = _load_signing(_read(key_path, state_dir, warn), key_path, state_dir)
        if not (age_path.exists() or age_path.is_symlink()):
            raise IdentityError(f"the node's age key {age_path} is missing",
                                why=f"{key_path} is there, so it was deleted",
                                hint=_remedy(state_dir))
        age = _load_age(_read(age_path, state_dir, warn), age_path, state_dir)
        return _identity(signing, age, kind="persistent", created=False)
    made = generate(kind="persistent")
    # identity.age first: a crash between the two leaves an identity.age alone, which is
    # a first boot cut short, made again here
    with contextlib.suppress(OSError):
        state_dir.mkdir(parents=True, exist_ok=True)
    _write(age_path, _age_text(made), state_dir)
    _write(key_path, _pem(made), state_dir)
    return made

