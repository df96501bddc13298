"""Signed reports: HTTP Message Signatures (RFC 9421) over a Content-Digest (RFC 9530).

The node signs every ``POST /api/v1/events`` with its Ed25519 key
(:mod:`bootpull.identity`); the home base checks it with :func:`verify_request`. One
module for both sides, so the two cannot disagree about a byte. A signed request
carries (docs/contract.md §4.2)::

    Content-Type: application/json
    Content-Digest: sha-256=:<base64 of sha256(body)>:
    Bootpull-Key: ed25519:<base64 of the 32-byte public key>
    Bootpull-Age: age1...
    Signature-Input: bootpull=("@method" "@path" "content-type" "content-digest"
        "bootpull-key" "bootpull-age");created=<unix>;nonce="<32 hex>";
        keyid="<the Bootpull-Key value>";alg="ed25519"
    Signature: bootpull=:<base64 of the Ed25519 signature>:

(``Signature-Input`` is one line.) The signature base is RFC 9421 §2.5's: one line
``"<component>": <value>`` per covered component, in the order ``Signature-Input``
lists them, then ``"@signature-params": <the inner list, serialized>``, joined by
``\\n`` with no newline at the end. Field values are trimmed, and several field lines
of one name joined by ``", "`` (§2.1).

The verifier is strict: the one label ``bootpull`` in both headers, exactly the six
components above (any order, each once, no component parameters), exactly the
parameters ``created``, ``nonce``, ``keyid`` and ``alg``, ``keyid`` equal to
``Bootpull-Key``, ``alg`` ``ed25519``, and a ``sha-256`` digest that matches the body.
Only the part of Structured Fields (RFC 8941) these headers use is parsed: integers,
strings, tokens, byte sequences and booleans, in dictionaries, inner lists and
parameters. Whatever does not fit is a :class:`SignatureError` with a short reason,
never another exception. Whether ``created`` is recent enough and a nonce new is the
caller's policy (``max_skew`` checks the first).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # cryptography is imported when a signature is made or checked, so
    # the admin tools' --help and the verify modules stay light (tests/test_pull.py)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

LABEL = "bootpull"
ALG = "ed25519"
KEY_PREFIX = "ed25519:"
#: what every signature covers, in the order the node signs them
COMPONENTS = ("@method", "@path", "content-type", "content-digest", "bootpull-key",
              "bootpull-age")
PARAMS = ("created", "nonce", "keyid", "alg")
#: a header value longer than this is refused before it is parsed
MAX_FIELD = 8192
_NONCE = re.compile(r"[0-9a-f]{32}")
_KEY_CHAR = re.compile(r"[a-z0-9_.*-]")
_TOKEN_CHAR = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z:/]")
_BASE64 = re.compile(r"[A-Za-z0-9+/=]*")


class SignatureError(ValueError):
    """A request whose signature is missing, malformed or wrong. ``str()`` is a short
    reason for a 401 answer."""


class Signer(Protocol):
    """What signing needs of a :class:`bootpull.identity.NodeIdentity`."""

    @property
    def signing(self) -> Ed25519PrivateKey: ...

    @property
    def public(self) -> str: ...

    @property
    def recipient(self) -> str: ...


@dataclass(frozen=True)
class Verified:
    """A request whose signature verified: who signed it and the signature's metadata."""

    key: str  # the Bootpull-Key value, ed25519:<base64>
    age: str  # the Bootpull-Age value, age1...
    created: int
    nonce: str
    keyid: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.key)


# -- keys ----------------------------------------------------------------------------


def public_text(raw: bytes) -> str:
    """``ed25519:<standard, padded base64 of the 32 raw bytes>``."""
    return KEY_PREFIX + base64.b64encode(raw).decode()


def raw_public(text: str) -> bytes:
    """The 32 raw bytes of an ``ed25519:<base64>`` key; SignatureError unless it is
    exactly that, canonically encoded."""
    if not text.startswith(KEY_PREFIX):
        raise SignatureError("Bootpull-Key is not ed25519:<base64 of 32 bytes>")
    b64 = text[len(KEY_PREFIX):]
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("Bootpull-Key is not ed25519:<base64 of 32 bytes>") from None
    if len(raw) != 32 or base64.b64encode(raw).decode() != b64:
        raise SignatureError("Bootpull-Key is not ed25519:<base64 of 32 bytes>")
    return raw


def fingerprint(public: str) -> str:
    """``SHA256:<unpadded base64 of sha256(raw key)>``, printed the way OpenSSH prints
    fingerprints (OpenSSH hashes its own key blob, so ``ssh-keygen -l`` differs)."""
    digest = hashlib.sha256(raw_public(public)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _bech32_polymod(values: Iterable[int]) -> int:
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            chk ^= gen[i] if (top >> i) & 1 else 0
    return chk


def is_age_recipient(text: str) -> bool:
    """An X25519 age recipient: ``age1`` and 58 bech32 characters (32 bytes and the
    checksum), lowercase, with a valid BIP 173 checksum."""
    if len(text) != 62 or not text.startswith("age1"):
        return False
    data = text[4:]
    if any(c not in _BECH32 for c in data):
        return False
    values = [_BECH32.index(c) for c in data]
    hrp = [ord(c) >> 5 for c in "age"] + [0] + [ord(c) & 31 for c in "age"]
    if _bech32_polymod(hrp + values) != 1:
        return False
    return values[51] & 0b1111 == 0  # 52 groups of 5 bits: 256 bits and 4 zero bits


# -- structured fields (RFC 8941), the subset these headers use ------------------------


class Token(str):
    """A Structured Field token (as opposed to a string)."""


Bare = int | str | bytes | bool  # a Token is a str
Params = list[tuple[str, Bare]]


@dataclass
class Member:
    """A dictionary member: an item (``items`` None) or an inner list."""

    value: Bare | None
    items: list[tuple[Bare, Params]] | None
    params: Params


class _Parser:
    def __init__(self, text: str, what: str) -> None:
        if len(text) > MAX_FIELD:
            raise SignatureError(f"{what} is too long")
        if not text.isascii():
            raise SignatureError(f"{what} is not ASCII")
        self.text = text.strip(" ")
        self.pos = 0
        self.what = what

    def fail(self, why: str) -> SignatureError:
        return SignatureError(f"{self.what} is malformed: {why} at character {self.pos}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip(self, chars: str) -> None:
        while self.peek() and self.peek() in chars:
            self.pos += 1

    def dictionary(self) -> dict[str, Member]:
        out: dict[str, Member] = {}
        if not self.text:
            return out
        while True:
            key = self.key()
            if key in out:
                raise self.fail(f"{key!r} twice")
            if self.peek() == "=":
                self.pos += 1
                out[key] = self.item_or_inner_list()
            else:
                out[key] = Member(True, None, self.params())
            self.skip(" \t")
            if not self.peek():
                return out
            if self.peek() != ",":
                raise self.fail("expected ','")
            self.pos += 1
            self.skip(" \t")
            if not self.peek():
                raise self.fail("a trailing ','")

    def item_or_inner_list(self) -> Member:
        if self.peek() == "(":
            self.pos += 1
            items: list[tuple[Bare, Params]] = []
            while True:
                self.skip(" ")
                if self.peek() == ")":
                    self.pos += 1
                    return Member(None, items, self.params())
                items.append((self.bare(), self.params()))
                if self.peek() not in (" ", ")"):
                    raise self.fail("expected ' ' or ')' in an inner list")
        value = self.bare()
        return Member(value, None, self.params())

    def params(self) -> Params:
        out: Params = []
        seen: set[str] = set()
        while self.peek() == ";":
            self.pos += 1
            self.skip(" ")
            key = self.key()
            if key in seen:
                raise self.fail(f"parameter {key!r} twice")
            seen.add(key)
            value: Bare = True
            if self.peek() == "=":
                self.pos += 1
                value = self.bare()
            out.append((key, value))
        return out

    def key(self) -> str:
        start = self.pos
        first = self.peek()
        if not first or not (first.islower() or first == "*"):
            raise self.fail("expected a key")
        self.pos += 1
        while self.peek() and _KEY_CHAR.fullmatch(self.peek()):
            self.pos += 1
        return self.text[start:self.pos]

    def bare(self) -> Bare:
        c = self.peek()
        if c == "-" or c.isdigit():
            return self.integer()
        if c == '"':
            return self.string()
        if c == ":":
            return self.byte_sequence()
        if c == "?":
            flag = self.text[self.pos + 1:self.pos + 2]
            if flag not in ("0", "1"):
                raise self.fail("a boolean is ?0 or ?1")
            self.pos += 2
            return flag == "1"
        if c.isalpha() or c == "*":
            start = self.pos
            self.pos += 1
            while self.peek() and _TOKEN_CHAR.fullmatch(self.peek()):
                self.pos += 1
            return Token(self.text[start:self.pos])
        raise self.fail("expected an item")

    def integer(self) -> int:
        start = self.pos
        if self.peek() == "-":
            self.pos += 1
        digits = self.pos
        while self.peek().isdigit():
            self.pos += 1
        if self.peek() == ".":
            raise self.fail("decimals are not used here")
        if not 1 <= self.pos - digits <= 15:
            raise self.fail("an integer has 1 to 15 digits")
        return int(self.text[start:self.pos])

    def string(self) -> str:
        self.pos += 1
        out: list[str] = []
        while True:
            c = self.peek()
            if not c:
                raise self.fail("an unterminated string")
            self.pos += 1
            if c == '"':
                return "".join(out)
            if c == "\\":
                nxt = self.peek()
                if nxt not in ('"', "\\") or not nxt:
                    raise self.fail("a bad escape in a string")
                self.pos += 1
                out.append(nxt)
            elif not 0x20 <= ord(c) <= 0x7E:
                raise self.fail("a control character in a string")
            else:
                out.append(c)

    def byte_sequence(self) -> bytes:
        self.pos += 1
        end = self.text.find(":", self.pos)
        if end < 0:
            raise self.fail("an unterminated byte sequence")
        b64 = self.text[self.pos:end]
        if not _BASE64.fullmatch(b64):
            raise self.fail("a byte sequence is base64")
        try:
            raw = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise self.fail("a byte sequence is base64") from None
        if base64.b64encode(raw).decode() != b64:
            raise self.fail("a byte sequence is canonical, padded base64")
        self.pos = end + 1
        return raw


def parse_dictionary(text: str, what: str) -> dict[str, Member]:
    """A Structured Field Dictionary (RFC 8941 §4.2.2), the subset above; SignatureError
    if it is anything else. A key twice is refused (not "the last wins")."""
    return _Parser(text, what).dictionary()


def _serialize_bare(value: Bare) -> str:
    if isinstance(value, bool):
        return "?1" if value else "?0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, bytes):
        return ":" + base64.b64encode(value).decode() + ":"
    if isinstance(value, Token):
        return str(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _serialize_params(params: Params) -> str:
    return "".join(f";{key}" if value is True else f";{key}={_serialize_bare(value)}"
                   for key, value in params)


def _serialize_inner_list(items: list[tuple[Bare, Params]], params: Params) -> str:
    inner = " ".join(_serialize_bare(v) + _serialize_params(p) for v, p in items)
    return f"({inner}){_serialize_params(params)}"


# -- the signature base -----------------------------------------------------------------


def _fields(headers: Mapping[str, str]) -> dict[str, str]:
    """Header fields by lowercase name: each line's value trimmed, several lines of a
    name joined by ", " (RFC 9421 §2.1). Takes a mapping (names in any case) or an
    email.message.Message (http.server's headers, whose items() may hold a name twice)."""
    lines: dict[str, list[str]] = {}
    try:
        pairs = list(headers.items())
    except (TypeError, ValueError, AttributeError):
        raise SignatureError("the headers cannot be read") from None
    for pair in pairs:
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise SignatureError("the headers cannot be read")
        name, value = pair
        if not isinstance(name, str) or not isinstance(value, str):
            raise SignatureError("a header name or value is not text")
        lines.setdefault(name.lower(), []).append(value.strip(" \t"))
    return {name: ", ".join(values) for name, values in lines.items()}


def _value(component: str, *, method: str, path: str, fields: Mapping[str, str]) -> str:
    if component == "@method":
        value = method
    elif component == "@path":
        value = path or "/"
    elif component in fields:
        value = fields[component]
    else:
        raise SignatureError(f"the signature covers {component}, which the request "
                             "does not have")
    if not value.isascii() or any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F
                                  for c in value):
        raise SignatureError(f"{component} is not printable ASCII")
    return value


def signature_base(components: Iterable[str], params: str, *, method: str, path: str,
                   fields: Mapping[str, str]) -> bytes:
    """RFC 9421 §2.5: the covered components' lines, then ``"@signature-params"``."""
    lines = [f'"{c}": {_value(c, method=method, path=path, fields=fields)}'
             for c in components]
    lines.append(f'"@signature-params": {params}')
    return "\n".join(lines).encode("ascii")


def content_digest(body: bytes) -> str:
    """RFC 9530: ``sha-256=:<base64 of sha256(body)>:``."""
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"


# -- signing -------------------------------------------------------------------------


def sign_request(identity: Signer, *, method: str, path: str, body: bytes,
                 created: int | None = None, nonce: str | None = None) -> dict[str, str]:
    """The headers that sign ``body`` sent as ``method path`` by ``identity`` (a fresh
    ``created`` and ``nonce`` unless given). The caller sends them with the body."""
    created = int(time.time()) if created is None else created
    nonce = secrets.token_hex(16) if nonce is None else nonce
    headers = {
        "Content-Type": "application/json",
        "Content-Digest": content_digest(body),
        "Bootpull-Key": identity.public,
        "Bootpull-Age": identity.recipient,
    }
    params = _serialize_inner_list(
        [(c, []) for c in COMPONENTS],
        [("created", created), ("nonce", nonce), ("keyid", identity.public), ("alg", ALG)])
    base = signature_base(COMPONENTS, params, method=method, path=path,
                          fields=_fields(headers))
    signature = identity.signing.sign(base)
    headers["Signature-Input"] = f"{LABEL}={params}"
    headers["Signature"] = f"{LABEL}=:{base64.b64encode(signature).decode()}:"
    return headers


# -- verifying -------------------------------------------------------------------------


def _one_member(fields: Mapping[str, str], name: str) -> Member:
    value = fields.get(name.lower())
    if value is None:
        raise SignatureError(f"no {name} header")
    members = parse_dictionary(value, name)
    if list(members) != [LABEL]:
        labels = ", ".join(members) or "none"
        raise SignatureError(f"{name} must hold exactly the label {LABEL} (it has {labels})")
    return members[LABEL]


def _covered(member: Member) -> list[str]:
    if member.items is None:
        raise SignatureError("Signature-Input is not an inner list of components")
    covered: list[str] = []
    for value, params in member.items:
        if isinstance(value, Token) or not isinstance(value, str):
            raise SignatureError("a covered component is not a string")
        if params:
            raise SignatureError(f"component {value} has parameters; none are used here")
        if value in covered:
            raise SignatureError(f"component {value} is covered twice")
        if value not in COMPONENTS:
            raise SignatureError(f"the signature covers {value}, which is not used here")
        covered.append(value)
    for component in COMPONENTS:
        if component not in covered:
            raise SignatureError(f"the signature does not cover {component}")
    return covered


def _metadata(member: Member) -> tuple[int, str, str]:
    params = dict(member.params)
    for name in params:
        if name not in PARAMS:
            raise SignatureError(f"unexpected signature parameter {name}")
    for name in PARAMS:
        if name not in params:
            raise SignatureError(f"the signature has no {name} parameter")
    created, nonce, keyid, alg = (params[p] for p in PARAMS)
    if isinstance(alg, Token) or alg != ALG:
        raise SignatureError("alg is not ed25519")
    if isinstance(created, bool) or not isinstance(created, int) or created < 0:
        raise SignatureError("created is not a non-negative integer")
    if isinstance(nonce, Token) or not isinstance(nonce, str) or not _NONCE.fullmatch(nonce):
        raise SignatureError("nonce is not 32 lowercase hex digits")
    if isinstance(keyid, Token) or not isinstance(keyid, str):
        raise SignatureError("keyid is not a string")
    return created, nonce, keyid


def _check_digest(fields: Mapping[str, str], body: bytes) -> None:
    value = fields.get("content-digest")
    if value is None:
        raise SignatureError("no Content-Digest header")
    digests = parse_dictionary(value, "Content-Digest")
    sha256 = digests.get("sha-256")
    if sha256 is None or not isinstance(sha256.value, bytes) or sha256.items is not None:
        raise SignatureError("Content-Digest has no sha-256 byte sequence")
    if not secrets.compare_digest(sha256.value, hashlib.sha256(body).digest()):
        raise SignatureError("Content-Digest does not match the body")
    sha512 = digests.get("sha-512")
    if sha512 is not None and (not isinstance(sha512.value, bytes) or not
                               secrets.compare_digest(sha512.value,
                                                      hashlib.sha512(body).digest())):
        raise SignatureError("Content-Digest does not match the body")


def verify_request(*, method: str, path: str, headers: Mapping[str, str], body: bytes,
                   now: float | None = None, max_skew: float | None = None) -> Verified:
    """Check the signature of a request (names of ``headers`` in any case; an
    email.message.Message as http.server has it works too). Returns who signed it, or
    raises SignatureError with a short reason. With ``max_skew``, ``created`` must be
    within that many seconds of ``now`` (default: time.time())."""
    try:
        return _verify(method=method, path=path, headers=headers, body=body, now=now,
                       max_skew=max_skew)
    except SignatureError:
        raise
    except (ValueError, TypeError, AttributeError, IndexError, KeyError,
            OverflowError) as exc:  # a bug here must still be a 401, never a 500
        raise SignatureError(f"the signature cannot be checked ({type(exc).__name__})") \
            from None


def _verify(*, method: str, path: str, headers: Mapping[str, str], body: bytes,
            now: float | None, max_skew: float | None) -> Verified:
    if not isinstance(body, bytes | bytearray | memoryview):
        raise SignatureError("the body is not bytes")
    body = bytes(body)
    fields = _fields(headers)
    signature = _one_member(fields, "Signature")
    if not isinstance(signature.value, bytes) or signature.items is not None:
        raise SignatureError("Signature is not a byte sequence")
    if len(signature.value) != 64:
        raise SignatureError("the signature is not 64 bytes (Ed25519)")
    sig_input = _one_member(fields, "Signature-Input")
    covered = _covered(sig_input)
    created, nonce, keyid = _metadata(sig_input)
    key = fields.get("bootpull-key")
    if key is None:
        raise SignatureError("no Bootpull-Key header")
    raw = raw_public(key)
    if keyid != key:
        raise SignatureError("keyid is not Bootpull-Key")
    age = fields.get("bootpull-age")
    if age is None:
        raise SignatureError("no Bootpull-Age header")
    if not is_age_recipient(age):
        raise SignatureError("Bootpull-Age is not an age1... recipient")
    _check_digest(fields, body)
    assert sig_input.items is not None
    params = _serialize_inner_list(sig_input.items, sig_input.params)
    base = signature_base(covered, params, method=method, path=path, fields=fields)
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(raw).verify(signature.value, base)
    except InvalidSignature:
        raise SignatureError("the signature does not verify") from None
    if max_skew is not None:
        at = time.time() if now is None else now
        if abs(at - created) > max_skew:
            raise SignatureError(f"created is more than {max_skew:g} s from the home "
                                 "base's clock")
    return Verified(key=key, age=age, created=created, nonce=nonce, keyid=keyid)
