"""``bootpull repo secret set|rewrap|list``: secrets for roles, encrypted with age.

A secret is an age file (X25519, :mod:`pyrage`; no cryptography of our own) encrypted
to the age recipient of every enrolled node that may read it, plus the admin's own::

    roles/<role>/secrets/<NAME>.age             every node the repository assigns <role>
    roles/<role>/secrets/<NAME>.age.recipients  who that is (TOML, below)
    secrets/<mac>/<NAME>.age                    that one node
    secrets/<mac>/<NAME>.age.recipients

The nodes of a role are the enrolled ones (``identities/<mac>.toml`` with ``age``,
:mod:`bootpull_repo.identities`) whose ``hosts/<mac>.toml`` names the role, and, when
``hosts/default.toml`` names it, the enrolled ones without a host file. age's X25519
stanzas do not name their recipients, so the sidecar says who they are::

    format = 1
    admin = "age1…"                      # the admin key: what rewrap decrypts with
    [nodes]
    "52-54-00-12-34-56" = "age1…"

The admin key is an age identity in the admin's key directory (``<key dir>/secrets.age``,
mode 0600, made by the first ``secret set``), beside the signing keys and, like them,
never in the repository. ``secret rewrap`` decrypts with it and encrypts again to
whoever may read the secret now (after ``repo enroll``, ``reject``, ``assign``,
``unassign``). ``repo lint`` (:func:`check_secrets`) says when a secret's recipients
are not the current ones. ``repo publish`` signs these files like every other.

The plaintext is read from FILE or stdin, held in memory, and never printed, logged or
written anywhere but into ``pyrage.encrypt``.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
import time
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bootpull import layout
from bootpull.bundle import TreeReader
from bootpull.errors import UsageError
from bootpull.layout import Problem
from bootpull.mac import Mac, MacError
from bootpull.role_secrets import (
    AGE_HEADER,
    MAX_SECRET_BYTES,
    SECRETS_DIR,
    SIDECAR_SUFFIX,
    SUFFIX,
    check_name,
    host_secrets_dir,
    role_secrets_dir,
)

from bootpull_repo.context import RepoContext
from bootpull_repo.identities import Pin, age_problem, read_pins

ADMIN_KEY_FILE = "secrets.age"
_SIDECAR_KEYS = ("format", "admin", "nodes")


# -- who may read what (pure) ---------------------------------------------------------


@dataclass(frozen=True)
class Fleet:
    """What the repository says about nodes: their roles and their age recipients."""

    hosts: Mapping[str, str | None]  # canonical MAC → role (None: a host file with problems)
    default_role: str | None  # hosts/default.toml's role
    pins: Mapping[str, Pin]  # canonical MAC → identity
    roles: frozenset[str] = frozenset()  # roles with a role.toml


def enrolled(pins: Mapping[str, Pin]) -> dict[str, str]:
    """canonical MAC → age recipient, for every node enrolled with one."""
    return {mac: pin.age for mac, pin in pins.items()
            if pin.key is not None and pin.age is not None}


def role_of(mac: str, fleet: Fleet) -> str | None:
    """The role the repository assigns ``mac``: its host file, else the default."""
    if mac in fleet.hosts:
        return fleet.hosts[mac]
    return fleet.default_role


def role_recipients(role: str, fleet: Fleet) -> dict[str, str]:
    """The enrolled nodes assigned ``role``: canonical MAC → age recipient."""
    return {mac: age for mac, age in sorted(enrolled(fleet.pins).items())
            if role_of(mac, fleet) == role}


@dataclass(frozen=True)
class Target:
    """Where a secret goes: a role's secrets, or one node's."""

    kind: str  # "role" or "host"
    name: str  # the role, or the canonical MAC

    @property
    def directory(self) -> str:
        return (role_secrets_dir(self.name) if self.kind == "role"
                else host_secrets_dir(self.name))

    @property
    def rewrap(self) -> str:
        return f"bootpull repo secret rewrap {self.name}"

    def recipients(self, fleet: Fleet) -> dict[str, str]:
        if self.kind == "role":
            return role_recipients(self.name, fleet)
        age = enrolled(fleet.pins).get(self.name)
        return {self.name: age} if age is not None else {}


def read_fleet(tree: TreeReader) -> Fleet:
    """The host files, the default and the identities of one tree (problems are lint's)."""
    hosts: dict[str, str | None] = {}
    default_role = None
    for entry in tree.list(layout.HOSTS_DIR):
        if entry.path.count("/") != 1 or layout.host_path_problem(entry.path) is not None:
            continue
        data = tree.read(entry.path)
        if data is None:
            continue
        assignment, _ = layout.parse_host(data, entry.path)
        role = assignment.role if assignment is not None else None
        if entry.path == layout.DEFAULT_HOST_FILE:
            default_role = role
        elif not entry.path.rsplit("/", 1)[-1].startswith("."):
            hosts[entry.path.removeprefix(layout.HOSTS_DIR + "/").removesuffix(".toml")] = role
    roles = frozenset(e.path.split("/")[1] for e in tree.list(layout.ROLES_DIR)
                      if e.path.count("/") == 2 and e.path.endswith("/role.toml"))
    return Fleet(hosts, default_role, read_pins(tree)[0], roles)


# -- the sidecar ----------------------------------------------------------------------


@dataclass(frozen=True)
class Sidecar:
    """``<NAME>.age.recipients``: who one secret is encrypted to."""

    admin: str | None
    nodes: dict[str, str] = field(default_factory=dict)  # canonical MAC → age recipient


def parse_sidecar(data: bytes, path: str) -> tuple[Sidecar | None, list[Problem]]:
    fix = f"run 'bootpull repo secret rewrap' to write it again ({path})"
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return None, [Problem(path, 0, f"is not valid UTF-8 TOML: {exc}", fix)]
    problems = [Problem(path, 0, f"unknown key {k!r}",
                        f"a recipients file has only {', '.join(_SIDECAR_KEYS)}")
                for k in doc if k not in _SIDECAR_KEYS]
    if doc.get("format", 1) != 1:
        problems.append(Problem(path, 0, f"format {doc.get('format')!r} is not 1",
                                "write format = 1"))
    admin = doc.get("admin")
    if admin is not None and (not isinstance(admin, str) or age_problem(admin)):
        problems.append(Problem(path, 0, "'admin' is not an age recipient (age1…)", fix))
        admin = None
    nodes: dict[str, str] = {}
    table = doc.get("nodes", {})
    if not isinstance(table, dict):
        problems.append(Problem(path, 0, "'nodes' must be a table of MAC = \"age1…\"", fix))
        table = {}
    for mac_text, age in table.items():
        try:
            mac = Mac.parse(mac_text).canonical
        except MacError:
            problems.append(Problem(path, 0, f"{mac_text[:40]!r} in [nodes] is not a MAC",
                                    fix))
            continue
        if not isinstance(age, str) or age_problem(age):
            problems.append(Problem(path, 0, f"nodes.{mac_text} is not an age recipient "
                                    "(age1…)", fix))
            continue
        nodes[mac] = age
    if problems:
        return None, problems
    return Sidecar(admin if isinstance(admin, str) else None, nodes), []


def render_sidecar(secret: str, admin: str, nodes: Mapping[str, str]) -> str:
    lines = [f"# Who {secret} is encrypted to: written by 'bootpull repo secret'.",
             "# age does not name its recipients; 'bootpull repo lint' reads this file.",
             "format = 1", f'admin = "{admin}"', "", "[nodes]"]
    lines += [f'"{mac}" = "{age}"' for mac, age in sorted(nodes.items())]
    return "\n".join(lines) + "\n"


# -- the secrets of a tree ----------------------------------------------------------


@dataclass(frozen=True)
class SecretFile:
    path: str  # <directory>/<NAME>.age
    target: Target
    name: str

    @property
    def sidecar(self) -> str:
        return self.path + ".recipients"


def _directory_target(path: str) -> tuple[Target, str] | tuple[None, Problem | None]:
    """Which secrets directory ``path`` is in, and its name within it; or the problem."""
    parts = path.split("/")
    hint = ("secrets are roles/<role>/secrets/<NAME>.age or secrets/<mac>/<NAME>.age, "
            "written by 'bootpull repo secret set'")
    if parts[0] == layout.ROLES_DIR:
        if len(parts) < 4 or parts[2] != SECRETS_DIR:
            return None, None
        if len(parts) != 4:
            return None, Problem(path, 0, "is in a subdirectory of a secrets directory",
                                 hint)
        return Target("role", parts[1]), parts[3]
    if parts[0] != SECRETS_DIR:
        return None, None
    if len(parts) != 3:
        return None, Problem(path, 0, "is not in a node's secrets directory", hint)
    try:
        mac = Mac.parse(parts[1])
    except MacError:
        return None, Problem(path, 0, f"{parts[1][:40]!r} is not a MAC address", hint)
    if parts[1] != mac.canonical:
        return None, Problem(path, 0, "the directory is not named by the canonical MAC",
                             f"git mv {SECRETS_DIR}/{parts[1]} "
                             f"{host_secrets_dir(mac.canonical)}")
    return Target("host", mac.canonical), parts[2]


def scan(tree: TreeReader) -> tuple[list[SecretFile], set[str], list[Problem]]:
    """Every secret file of ``tree``, the sidecar paths, and misplaced or misnamed files."""
    secrets: list[SecretFile] = []
    sidecars: set[str] = set()
    problems: list[Problem] = []
    entries = [*tree.list(layout.ROLES_DIR), *tree.list(SECRETS_DIR)]
    for entry in entries:
        target, rest = _directory_target(entry.path)
        if target is None:
            if isinstance(rest, Problem):
                problems.append(rest)
            continue
        assert isinstance(rest, str)
        if rest.endswith(SIDECAR_SUFFIX):
            name = rest[:-len(SIDECAR_SUFFIX)]
        elif rest.endswith(SUFFIX):
            name = rest[:-len(SUFFIX)]
        else:
            problems.append(Problem(entry.path, 0, "is not a secret (NAME.age) or its "
                                    "recipients (NAME.age.recipients)",
                                    "remove it; set secrets with 'bootpull repo secret set'"))
            continue
        if why := check_name(name):
            problems.append(Problem(entry.path, 0, why,
                                    "rename it (git mv) and run 'bootpull repo secret "
                                    f"rewrap {target.name}', or set it again"))
            continue
        if rest.endswith(SIDECAR_SUFFIX):
            sidecars.add(entry.path)
        else:
            secrets.append(SecretFile(entry.path, target, name))
    return sorted(secrets, key=lambda s: s.path), sidecars, problems


@dataclass(frozen=True)
class Status:
    """How one secret's recipients compare with who may read it now."""

    secret: SecretFile
    sidecar: Sidecar | None
    wanted: dict[str, str]  # who may read it now: MAC → age recipient
    missing: tuple[str, ...] = ()  # may read it, cannot (not a recipient, or an old key)
    extra: tuple[str, ...] = ()  # can read it, may not (no longer enrolled or assigned)

    @property
    def current(self) -> bool:
        return self.sidecar is not None and not self.missing and not self.extra


def status(secret: SecretFile, sidecar: Sidecar | None, fleet: Fleet) -> Status:
    wanted = secret.target.recipients(fleet)
    have = sidecar.nodes if sidecar is not None else {}
    missing = tuple(sorted(m for m, age in wanted.items() if have.get(m) != age))
    extra = tuple(sorted(m for m, age in have.items() if wanted.get(m) != age))
    return Status(secret, sidecar, wanted, missing, extra)


def check_secrets(tree: TreeReader) -> list[Problem]:
    """``repo lint``: secrets nodes cannot decrypt, stale recipients, files that are not
    age, names that are not names, sidecars that are missing or left over."""
    secrets, sidecars, problems = scan(tree)
    if not secrets and not sidecars:
        return problems
    fleet = read_fleet(tree)
    pins = enrolled(fleet.pins)
    for secret in secrets:
        target = secret.target
        rewrap = f"run '{target.rewrap}' (then publish)"
        data = tree.read(secret.path) or b""
        if not data.startswith(AGE_HEADER):
            problems.append(Problem(
                secret.path, 0, f"is not an age file (it does not start with "
                f"{AGE_HEADER.decode().strip()!r}); nodes would refuse it",
                f"set it again: 'bootpull repo secret set {target.name} {secret.name} FILE'"))
        if target.kind == "role" and target.name not in fleet.roles:
            problems.append(Problem(
                secret.path, 0, f"role {target.name!r} does not exist",
                f"create {layout.role_file(target.name)}, or 'git rm' the secret"))
        sidecar_data = tree.read(secret.sidecar)
        if sidecar_data is None:
            problems.append(Problem(
                secret.path, 0, f"has no {secret.sidecar.rsplit('/', 1)[-1]}, so nobody can "
                "tell which nodes can decrypt it", rewrap))
            continue
        sidecar, bad = parse_sidecar(sidecar_data, secret.sidecar)
        problems += bad
        if sidecar is None:
            continue
        st = status(secret, sidecar, fleet)
        for mac in st.missing:
            old = " (it is encrypted to its previous key)" if mac in sidecar.nodes else ""
            problems.append(Problem(secret.path, 0,
                                    f"node {mac} cannot decrypt {secret.path}{old}", rewrap))
        for mac in st.extra:
            if mac in st.missing:  # a new key for the same node: said above
                continue
            if mac not in pins or pins[mac] != sidecar.nodes[mac]:
                why = "a key that is no longer enrolled"
            elif target.kind == "role":
                why = f"a node the repository no longer assigns {target.name}"
            else:
                why = "a key that is no longer this node's"
            problems.append(Problem(secret.path, 0,
                                    f"is still encrypted to node {mac}, {why}", rewrap))
    for path in sorted(sidecars - {s.sidecar for s in secrets}):
        problems.append(Problem(path, 0, f"is left over: there is no "
                                f"{path.removesuffix('.recipients').rsplit('/', 1)[-1]}",
                                f"git rm {path}"))
    return problems


# -- the admin key --------------------------------------------------------------------


def admin_key_path(ctx: RepoContext) -> Path:
    return ctx.keys().directory / ADMIN_KEY_FILE


def admin_identity(ctx: RepoContext, *, create: bool) -> tuple[Any, str, bool]:
    """The admin's age identity, its recipient, and whether it was made now."""
    from pyrage import x25519

    path = admin_key_path(ctx)
    if not path.exists():
        if not create:
            raise UsageError(
                f"there is no admin secrets key at {path}",
                why="'bootpull repo secret set' makes it, and rewrap decrypts with it",
                hint="point --keys (or $BOOTPULL_KEYS) at the key directory that holds "
                f"{ADMIN_KEY_FILE}; if it is lost, set each secret again")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        identity = x25519.Identity.generate()
        text = (f"# created: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n"
                f"# bootpull admin key for the secrets of {ctx.name}: keep it like the "
                f"signing keys\n# public key: {identity.to_public()}\n{identity}\n")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(text)
        return identity, str(identity.to_public()), True
    try:
        info = path.stat()
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the admin secrets key {path}", why=str(exc),
                         hint="restore it from your backup") from None
    if stat.S_IMODE(info.st_mode) & 0o077:
        path.chmod(0o600)
        print(f"bootpull repo secret: {path} was readable by others; made it 0600",
              file=sys.stderr)
    keys = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    try:
        if len(keys) != 1:
            raise ValueError("not exactly one AGE-SECRET-KEY-1… line")
        identity = x25519.Identity.from_str(keys[0])
    except Exception as exc:  # noqa: BLE001 - pyrage raises its own IdentityError
        raise UsageError(f"{path} is not an age identity", why=str(exc),
                         hint="restore it from your backup") from None
    return identity, str(identity.to_public()), False


# -- the commands ---------------------------------------------------------------------


def _work_tree(ctx: RepoContext) -> TreeReader:
    from bootpull_repo.worktree import WorkTree

    return WorkTree(ctx.root)


def resolve_target(text: str, fleet: Fleet) -> Target:
    """A role (``roles/<text>/role.toml`` exists), else a MAC in any notation."""
    if text in fleet.roles:
        return Target("role", text)
    try:
        return Target("host", Mac.parse(text.strip()).canonical)
    except MacError:
        pass
    if layout.check_role_name(text) is None:
        raise UsageError(f"there is no role {text!r}",
                         why=f"{layout.role_file(text)} does not exist, and {text!r} is "
                         "not a MAC", hint=f"create the role first ('bootpull repo role new "
                         f"{text}'), or give a node's MAC for a secret of that node only")
    raise UsageError(f"{text[:80]!r} is neither a role nor a MAC",
                     hint="give a role name (roles/<role>/role.toml) or a node's MAC")


def _encrypt(plaintext: bytes, recipients: Iterable[str]) -> bytes:
    import pyrage
    from pyrage import x25519

    return bytes(pyrage.encrypt(plaintext, [x25519.Recipient.from_str(r)
                                            for r in recipients]))


def _write(ctx: RepoContext, rel: str, data: bytes) -> None:
    path = ctx.root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _read_plaintext(source: str | None) -> bytes:
    try:
        if source is None or source == "-":
            data = sys.stdin.buffer.read(MAX_SECRET_BYTES + 1)
        else:
            with open(source, "rb") as fh:
                data = fh.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read the secret from {source}", why=exc.strerror or "",
                         hint="give a readable FILE, or pipe the secret on stdin") from None
    where = "stdin" if source in (None, "-") else source
    if not data:
        raise UsageError(f"the secret from {where} is empty",
                         hint="give FILE, or pipe the value: printf %s VALUE | bootpull "
                         "repo secret set ROLE NAME")
    if len(data) > MAX_SECRET_BYTES:
        raise UsageError(f"the secret from {where} is larger than "
                         f"{MAX_SECRET_BYTES // 2**20} MiB",
                         hint="keep secrets small (keys, tokens, passwords); ship large "
                         "files in the role and encrypt only their key")
    return data


def set_secret(ctx: RepoContext, where: str, name: str, plaintext: bytes) -> str:
    """Encrypt ``plaintext`` for ``where`` (a role or a MAC) as NAME, commit; the summary."""
    if why := check_name(name):
        raise UsageError(why, hint="as in DB_PASSWORD, tls.key or api-token")
    fleet = read_fleet(_work_tree(ctx))
    target = resolve_target(where, fleet)
    recipients = target.recipients(fleet)
    if not recipients:
        if target.kind == "role":
            assigned = sorted(m for m in {*fleet.hosts, *fleet.pins}
                              if role_of(m, fleet) == target.name)
            why = (f"{len(assigned)} node(s) are assigned {target.name}, none of them "
                   "enrolled with an age key" if assigned else
                   f"no host file (nor hosts/default.toml) assigns {target.name}")
        else:
            why = f"identities/{target.name}.toml has no enrolled key with an age recipient"
        raise UsageError(
            f"no enrolled node could decrypt a secret for {where}", why=why,
            hint="assign the role ('bootpull repo assign MAC ROLE') and enroll the node "
            "('bootpull repo enroll MAC'), then set the secret again")
    identity, admin, made = admin_identity(ctx, create=True)
    del identity
    rel = f"{target.directory}/{name}{SUFFIX}"
    _write(ctx, rel, _encrypt(plaintext, [*recipients.values(), admin]))
    _write(ctx, rel + ".recipients", render_sidecar(rel, admin, recipients).encode())
    label = target.name if target.kind == "role" else f"node {target.name}"
    ctx.git.commit(f"secret set {target.name} {name} for {len(recipients)} node"
                   f"{'s' if len(recipients) != 1 else ''}", [rel, rel + ".recipients"])
    note = f" (made the admin key {admin_key_path(ctx)}: back it up)" if made else ""
    return (f"encrypted {rel} for {label}: {', '.join(recipients)} and the admin key"
            f"{note}; committed it; run 'bootpull repo publish' so nodes get it")


def _selected(secrets: list[SecretFile], wanted: list[str], fleet: Fleet) -> list[SecretFile]:
    if not wanted:
        return secrets
    targets = {resolve_target(w, fleet) for w in wanted}
    return [s for s in secrets if s.target in targets]


def rewrap(ctx: RepoContext, wanted: list[str]) -> list[str]:
    """Encrypt the selected secrets again to who may read them now; commit once.
    Returns the lines to print."""
    tree = _work_tree(ctx)
    fleet = read_fleet(tree)
    secrets = _selected(scan(tree)[0], wanted, fleet)
    if not secrets:
        raise UsageError("there are no secrets to rewrap" + (
            f" for {', '.join(wanted)}" if wanted else ""),
            hint="set one with 'bootpull repo secret set ROLE NAME [FILE]'")
    identity = None
    admin = ""
    lines: list[str] = []
    changed: list[str] = []
    added = removed = 0
    for secret in secrets:
        data = tree.read(secret.sidecar)
        sidecar = parse_sidecar(data, secret.sidecar)[0] if data is not None else None
        st = status(secret, sidecar, fleet)
        if identity is None:
            identity, admin, _ = admin_identity(ctx, create=False)
        if st.current and sidecar is not None and sidecar.admin == admin:
            lines.append(f"{secret.path}: unchanged ({len(st.wanted)} nodes)")
            continue
        import pyrage

        try:
            plaintext = pyrage.decrypt(tree.read(secret.path) or b"", [identity])
        except Exception as exc:  # noqa: BLE001 - pyrage.DecryptError and its kin
            was = f" (it names the admin key {sidecar.admin})" if sidecar and sidecar.admin \
                else ""
            raise UsageError(
                f"cannot decrypt {secret.path} with the admin key {admin_key_path(ctx)}",
                why=f"{exc or type(exc).__name__}{was}; nothing was changed",
                hint="point --keys at the key directory it was set with, or set it again: "
                f"'bootpull repo secret set {secret.target.name} {secret.name} FILE'"
                ) from None
        _write(ctx, secret.path, _encrypt(bytes(plaintext), [*st.wanted.values(), admin]))
        del plaintext
        _write(ctx, secret.sidecar, render_sidecar(secret.path, admin, st.wanted).encode())
        changed += [secret.path, secret.sidecar]
        have = sidecar.nodes if sidecar is not None else {}
        plus = sorted(m for m, age in st.wanted.items() if have.get(m) != age)
        minus = sorted(m for m, age in have.items() if st.wanted.get(m) != age)
        added, removed = added + len(plus), removed + len(minus)
        what = ", ".join([*(f"+{m}" if m not in minus else f"~{m} (its new key)"
                            for m in plus),
                          *(f"-{m}" for m in minus if m not in plus)]) or (
            "the admin key changed" if sidecar is not None else "recipients written")
        lines.append(f"{secret.path}: {what} ({len(st.wanted)} nodes)")
        if not st.wanted:
            lines.append(f"  warning: no enrolled node may read {secret.path} now; only "
                         "the admin key can")
    if not changed:
        lines.append("bootpull repo secret rewrap: every secret is encrypted to its current "
                     "recipients; nothing to commit")
        return lines
    count = len(changed) // 2
    ctx.git.commit(f"secret rewrap: {count} secret{'s' if count != 1 else ''} "
                   f"(+{added} -{removed} nodes)", changed)
    lines.append(f"rewrapped {count} secret{'s' if count != 1 else ''} and committed; "
                 "run 'bootpull repo publish' so nodes get them")
    return lines


def list_secrets(ctx: RepoContext) -> list[str]:
    tree = _work_tree(ctx)
    fleet = read_fleet(tree)
    secrets = scan(tree)[0]
    if not secrets:
        return ["no secrets (set one with 'bootpull repo secret set ROLE NAME [FILE]')"]
    lines = []
    for secret in secrets:
        data = tree.read(secret.sidecar)
        sidecar = parse_sidecar(data, secret.sidecar)[0] if data is not None else None
        st = status(secret, sidecar, fleet)
        scope = (f"role {secret.target.name}" if secret.target.kind == "role"
                 else f"node {secret.target.name}")
        who = (", ".join(sorted(sidecar.nodes)) or "no node") + " + admin" \
            if sidecar is not None else "unknown (no recipients file)"
        lines.append(f"{secret.path}  {scope}  {secret.name}: {who}")
        if not st.current:
            parts = [f"cannot decrypt: {', '.join(st.missing)}"] if st.missing else []
            parts += [f"no longer allowed: {', '.join(st.extra)}"] if st.extra else []
            lines.append(f"  needs '{secret.target.rewrap}': "
                         + ("; ".join(parts) or "no recipients file"))
    return lines


def configure(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "secret", help="secrets for roles and nodes, encrypted with age: set, rewrap, list",
        description="Secrets are age files in the repository, encrypted to the enrolled "
        "nodes that may read them and to the admin key in the key directory "
        f"({ADMIN_KEY_FILE}). Nodes decrypt them into $BOOTPULL_SECRETS_DIR.")
    sub = parser.add_subparsers(dest="secret_command", metavar="ACTION")
    sub.required = True
    setp = sub.add_parser(
        "set", help="encrypt FILE (or stdin) as secret NAME of ROLE or of one node MAC",
        description="Encrypt FILE (stdin when omitted) to every enrolled node the "
        "repository assigns ROLE (or to node MAC only), plus the admin key; write "
        "roles/ROLE/secrets/NAME.age (or secrets/<mac>/NAME.age) and who it is "
        "encrypted to, and commit.")
    setp.add_argument("where", metavar="ROLE|MAC")
    setp.add_argument("name", metavar="NAME")
    setp.add_argument("file", metavar="FILE", nargs="?", default=None)
    setp.set_defaults(func=command, which="set")
    rew = sub.add_parser(
        "rewrap", help="encrypt secrets again to the nodes that may read them now",
        description="Decrypt each secret of ROLE or MAC (all, when none is given) with the "
        "admin key and encrypt it again to the enrolled nodes that may read it now (after "
        "enroll, reject, assign or unassign); commit once.")
    rew.add_argument("where", metavar="ROLE|MAC", nargs="*")
    rew.set_defaults(func=command, which="rewrap")
    lst = sub.add_parser("list", help="every secret and who can decrypt it",
                         description="Every secret, and the nodes it is encrypted to.")
    lst.set_defaults(func=command, which="list")
    from bootpull_repo.cli import global_options

    for nested in (setp, rew, lst):  # -C and --keys after the action, too
        global_options(nested)


def command(args: argparse.Namespace) -> int:
    ctx = RepoContext.from_args(args)
    if args.which == "set":
        print(set_secret(ctx, args.where, args.name, _read_plaintext(args.file)))
    elif args.which == "rewrap":
        for line in rewrap(ctx, list(args.where)):
            print(line)
    else:
        for line in list_secrets(ctx):
            print(line)
    return 0
