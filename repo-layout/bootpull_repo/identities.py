"""``identities/<mac>.toml``: the key each node is enrolled with, committed by an admin.

    format = 1
    key = "ed25519:MCowBQYDK2VwAyEA…"      # the node's report-signing key (the pin)
    age = "age1…"                           # its age recipient: secrets are encrypted to it
    fingerprint = "SHA256:…"                # the key's fingerprint, as the node prints it
    enrolled = "2026-12-02T02:30:00Z"       # when, for people; git has the real record
    rejected = ["ed25519:…"]                # keys refused for this MAC (optional)

``bootpull repo enroll MAC`` writes ``key``/``age`` (the pending key from the home base,
or ``--key``/``--age``) and commits; ``bootpull repo reject MAC`` adds a key to
``rejected``. Approval is a commit, so git history is the audit trail of who trusted
which box when. The home base reads these files at the deploy head; the node agent
never does, so images that predate enrollment boot from a repository that has them.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field

from bootpull.bundle import TreeReader
from bootpull.httpsig import SignatureError, fingerprint, is_age_recipient, raw_public
from bootpull.layout import Problem
from bootpull.mac import Mac, MacError

IDENTITIES_DIR = "identities"
_KEYS = ("format", "key", "age", "fingerprint", "enrolled", "rejected", "hostname")


@dataclass(frozen=True)
class Pin:
    """What the repository says about one node's identity."""

    key: str | None  # "ed25519:<base64>", or None: not enrolled (only rejections)
    age: str | None
    rejected: tuple[str, ...] = field(default=())
    source: str = ""


def identity_file(mac: Mac) -> str:
    return f"{IDENTITIES_DIR}/{mac.canonical}.toml"


def key_problem(key: str) -> str | None:
    """Why ``key`` is not ``ed25519:<base64 of 32 bytes>``, or None."""
    try:
        raw_public(key)
    except SignatureError:
        return (f"{key[:60]!r} is not an ed25519 key: ed25519: and the base64 of its 32 "
                "bytes")
    return None


def age_problem(recipient: str) -> str | None:
    """Why ``recipient`` is not an age X25519 recipient (``age1…``), or None."""
    if is_age_recipient(recipient):
        return None
    return f"{recipient[:70]!r} is not an age X25519 recipient (age1…)"


def parse_identity(data: bytes, path: str) -> tuple[Pin | None, list[Problem]]:
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return None, [Problem(path, 0, f"is not valid UTF-8 TOML: {exc}",
                              "fix the syntax, or run 'bootpull repo enroll' again")]
    problems = [Problem(path, 0, f"unknown key {k!r}", f"an identity file has only "
                        f"{', '.join(_KEYS)}") for k in doc if k not in _KEYS]
    if doc.get("format", 1) != 1:
        problems.append(Problem(path, 0, f"format {doc.get('format')!r} is not 1",
                                "write format = 1"))
    key, age = doc.get("key"), doc.get("age")
    for name, value, check in (("key", key, key_problem), ("age", age, age_problem)):
        if value is None:
            continue
        if not isinstance(value, str):
            problems.append(Problem(path, 0, f"'{name}' must be a string",
                                    "run 'bootpull repo enroll' again"))
        elif why := check(value):
            problems.append(Problem(path, 0, why, "run 'bootpull repo enroll' again"))
    if age is not None and key is None:
        problems.append(Problem(path, 0, "'age' without 'key'",
                                "enroll the node's key ('bootpull repo enroll MAC')"))
    rejected = doc.get("rejected", [])
    if not isinstance(rejected, list) or not all(isinstance(r, str) for r in rejected):
        problems.append(Problem(path, 0, "'rejected' must be a list of keys",
                                'write rejected = ["ed25519:…"]'))
        rejected = []
    for item in rejected:
        if why := key_problem(item):
            problems.append(Problem(path, 0, f"in 'rejected': {why}", "remove it"))
    if isinstance(key, str) and key in rejected:
        problems.append(Problem(path, 0, "the enrolled key is also rejected",
                                "remove it from 'rejected', or enroll another key"))
    if problems:
        return None, problems
    return Pin(key, age, tuple(rejected), path), []


def read_pins(tree: TreeReader) -> tuple[dict[str, Pin], list[Problem]]:
    """Every identity file at one commit (canonical MAC → Pin) and every problem."""
    pins: dict[str, Pin] = {}
    problems: list[Problem] = []
    for entry in tree.list(IDENTITIES_DIR):
        name = entry.path.removeprefix(f"{IDENTITIES_DIR}/")
        stem = name.removesuffix(".toml")
        try:
            mac = Mac.parse(stem)
        except MacError:
            mac = None
        if "/" in name or not name.endswith(".toml") or mac is None:
            problems.append(Problem(entry.path, 0, "is not an identity file",
                                    "identity files are identities/<mac>.toml, written by "
                                    "'bootpull repo enroll'"))
            continue
        if stem != mac.canonical:
            problems.append(Problem(entry.path, 0, "is not named by the canonical MAC",
                                    f"rename it to {identity_file(mac)}"))
            continue
        data = tree.read(entry.path)
        if data is None:
            continue
        pin, found = parse_identity(data, entry.path)
        problems += found
        if pin is not None:
            pins[mac.canonical] = pin
    return pins, problems


def render(*, mac: Mac, key: str | None, age: str | None, rejected: list[str],
           enrolled: str, hostname: str = "") -> str:
    """The file ``repo enroll``/``reject`` write (everything quoted with TOML's rules)."""
    def q(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [f"# The identity of node {mac.canonical} ({mac.colons}): written by "
             "'bootpull repo enroll' / 'reject'.", "format = 1"]
    if hostname:
        lines.append(f"hostname = {q(hostname)}")
    if key is not None:
        lines += [f"key = {q(key)}", f"fingerprint = {q(fingerprint(key))}"]
        if age is not None:
            lines.append(f"age = {q(age)}")
        lines.append(f"enrolled = {q(enrolled)}")
    if rejected:
        lines.append("rejected = [" + ", ".join(q(r) for r in rejected) + "]")
    return "\n".join(lines) + "\n"
