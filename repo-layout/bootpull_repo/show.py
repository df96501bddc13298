"""``bootpull repo show MAC``: what the node gets at the deploy head, worked out offline.

Two answers, from the node's own code:

1. **The selection**, with :mod:`bootpull.layout` exactly as the node's pull stage
   uses it: start at ``main``, follow ``branch`` of ``bootpull.toml`` once, take the
   host file or ``hosts/default.toml`` and merge the groups it names (each variable
   is shown with the file it came from), and for a pinned version the tagged commit;
   then the role's ``role.toml`` and every file under ``files/`` with its mode, size
   and SHA-256. This is read from the committed repository, not the work tree.
2. **The verdict**: :func:`bootpull.pull.pull` itself, run against the local
   repository with the repository's trust anchors (or ``--trust FILE``), says whether
   a node would accept exactly that today, or why not (not published, expired, ...).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bootpull import layout
from bootpull.bundle import MODE_SYMLINK, Assignment, RoleSpec, TreeReader
from bootpull.errors import BootpullError, FetchError
from bootpull.mac import Mac

from bootpull_repo.nodearg import parse_mac

DEFAULT_BRANCH = "main"  # where the node starts (bootpull.pull.DEFAULT_BRANCH)


@dataclass(frozen=True)
class ShownFile:
    path: str  # relative to files/ (what lands in the install directory)
    mode: str  # octal git mode, as in 100755
    size: int
    sha256: str


@dataclass(frozen=True)
class Verdict:
    accepted: bool | None  # None: could not be checked (no trust anchors)
    message: str


@dataclass
class NodeView:
    """What one node gets, as ``repo show`` prints it."""

    mac: Mac
    branch: str
    head: str  # the deploy branch's commit
    assignment: Assignment
    role: RoleSpec
    version: str  # "head-<12 hex>" when following the head, else the pinned version
    ref: str  # the branch, or refs/tags/role/<role>/<version>
    commit: str  # the commit the role's files come from
    files: list[ShownFile] = field(default_factory=list)
    role_toml_sha256: str = ""
    verdict: Verdict | None = None

    def as_json(self) -> dict[str, Any]:
        a = self.assignment
        return {
            "node": self.mac.canonical, "branch": self.branch, "head": self.head,
            "source": a.source, "role": a.role, "pinned": a.version is not None,
            "version": self.version, "ref": self.ref, "commit": self.commit,
            "hostname": a.hostname, "log_level": a.log_level, "vars": dict(a.vars),
            "groups": list(a.groups),
            "var_sources": {name: a.var_source(name) for name in a.vars},
            "version_source": (a.version_source or a.source) if a.version else None,
            "description": self.role.description, "command": list(self.role.command),
            "restart": self.role.restart, "hooks": [list(h) for h in self.role.hooks],
            "health": None if self.role.health is None else {
                "command": list(self.role.health.command),
                "interval": self.role.health.interval, "timeout": self.role.health.timeout},
            "role_toml_sha256": self.role_toml_sha256,
            "files": [asdict(f) for f in self.files],
            "accepted": None if self.verdict is None else self.verdict.accepted,
            "verdict": None if self.verdict is None else self.verdict.message,
        }


class ShowError(BootpullError):
    """The node gets nothing usable (the reason is in ``what``, the fix in ``hint``)."""

    stage = "show"


def deploy_head(remote: Any, start: str = DEFAULT_BRANCH) -> tuple[str, TreeReader]:
    """The deploy branch and its commit, found the way the node finds them."""
    branch = start
    for _hop in range(2):
        head: TreeReader = remote.snapshot(branch)
        data = head.read(layout.SETTINGS_FILE)
        if data is None:
            raise ShowError(f"the deploy head {head.commit[:12]} has no {layout.SETTINGS_FILE}",
                            hint="create it with 'bootpull repo init', commit and publish")
        settings = layout.load_settings(data)
        if settings.branch == branch:
            return branch, head
        branch = settings.branch
    raise ShowError("the deploy branch names yet another branch",
                    hint=f"set branch = \"{branch}\" in {layout.SETTINGS_FILE} on both branches")


def select_offline(remote: Any, mac: Mac) -> NodeView:
    """The node's selection for ``mac``, over a local repository (no verification)."""
    branch, head = deploy_head(remote)
    host = head.read(layout.host_file(mac))
    default = head.read(layout.DEFAULT_HOST_FILE) if host is None else None
    assignment = layout.select(mac, host, default)
    if assignment.groups:  # as the node does, from the deploy head (pull._with_groups)
        groups = {}
        for name in assignment.groups:
            path = layout.group_file(name)
            blob = head.read(path)
            if blob is not None:
                groups[name] = layout.load_group(blob, name, path)
        assignment = layout.with_groups(assignment, groups, host if host is not None
                                        else default)
    role = assignment.role
    if assignment.version is None:
        tree, ref, version = head, branch, f"head-{head.commit[:12]}"
    else:
        tag = layout.release_tag(role, assignment.version)
        try:
            tree = remote.snapshot(f"refs/tags/{tag}")
        except FetchError:
            raise ShowError(
                f"{assignment.source} pins {role} {assignment.version}, but there is no tag {tag}",
                hint=f"run 'bootpull repo release {role} {assignment.version}' and publish, "
                "or remove the version") from None
        ref, version = f"refs/tags/{tag}", assignment.version
    root = f"{layout.ROLES_DIR}/{role}/"
    role_toml = tree.read(root + "role.toml")
    if role_toml is None:
        raise ShowError(f"{assignment.source} names role {role!r}, but {ref} has no "
                        f"{root}role.toml",
                        hint=f"create it ('bootpull repo role new {role}'), or assign another role")
    spec = layout.load_role(role_toml, role)
    entries = sorted((e for e in tree.list(root.rstrip("/"))
                      if e.path.startswith(root + "files/")), key=lambda e: e.path)
    data = tree.read_many([e.path for e in entries])
    files = []
    for entry in entries:
        blob = data.get(entry.path, b"")
        files.append(ShownFile(entry.path[len(root + "files/"):], f"{entry.mode:o}",
                               len(blob), hashlib.sha256(blob).hexdigest()))
    return NodeView(mac=mac, branch=branch, head=head.commit, assignment=assignment,
                    role=spec, version=version, ref=ref, commit=tree.commit, files=files,
                    role_toml_sha256=hashlib.sha256(role_toml).hexdigest())


class _Discard:
    def write(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def verify_offline(remote: Any, view: NodeView, trust_root: bytes | None) -> Verdict:
    """Run the node's pull (fetch → verify → select) against the local repository."""
    if trust_root is None:
        return Verdict(None, "not checked: the repository has no trust anchors "
                       "(.bootpull/metadata/root.json); run 'bootpull repo init'")
    from bootpull.backoff import Counters
    from bootpull.console import Console, Level
    from bootpull.pull import pull

    console = Console(_Discard(), level=Level.ERROR)
    with tempfile.TemporaryDirectory(prefix="bootpull-show-") as state:
        try:
            result = pull(remote, view.mac, trust_root=trust_root, state_dir=Path(state),
                          console=console, counters=Counters())
        except BootpullError as exc:
            why = f" ({exc.why})" if exc.why else ""
            hint = f"; {exc.hint}" if exc.hint else ""
            return Verdict(False, f"a node would refuse it: {exc.what}{why}{hint}")
    bundle = result.bundle
    shown = {(f.path, f.sha256) for f in view.files}
    pulled = {(f.path, hashlib.sha256(f.data).hexdigest()) for f in bundle.files}
    if bundle.commit != view.commit or shown != pulled:
        return Verdict(False, f"a node would get something else: commit {bundle.commit[:12]} "
                       f"with {len(pulled)} files; publish again")
    return Verdict(True, "a node would accept exactly this: it is published and signed by "
                   "keys the trust anchors name")


def show(root: Path, mac: Mac, *, trust: Path | None = None, verify: bool = True) -> NodeView:
    from bootpull.localgit import LocalRemote

    remote = LocalRemote(root)
    try:
        view = select_offline(remote, mac)
        if verify:
            anchors = trust or root / ".bootpull" / "metadata" / "root.json"
            trust_root = anchors.read_bytes() if anchors.is_file() else None
            if trust is not None and trust_root is None:
                raise ShowError(f"--trust {trust} is not a file")
            view.verdict = verify_offline(remote, view, trust_root)
        return view
    finally:
        remote.close()


def render(view: NodeView) -> str:
    a = view.assignment
    lines = [f"node {view.mac.canonical} ({view.mac.colons})"]
    follows = ("follows the deploy head" if a.version is None
               else f"pinned: tag {view.ref[len('refs/tags/'):]}")
    if a.version is not None and a.version_source not in (None, a.source):
        follows += f", from {a.version_source}"
    rows = [
        ("assignment", a.source),
        ("role", f"{a.role}: {view.role.description}"),
        ("version", f"{view.version} ({follows})"),
        ("commit", view.commit),
        ("deploy head", f"{view.branch} at {view.head}"),
        ("hostname", a.hostname or f"from DHCP option 12, else node-{view.mac.canonical}"),
    ]
    if a.log_level:
        rows.append(("log level", a.log_level))
    if a.groups:
        rows.append(("groups", ", ".join(a.groups)))
    for number, (k, v) in enumerate(sorted(a.vars.items())):
        rows.append(("vars" if number == 0 else "",
                     f"BOOTPULL_VAR_{k.upper()}={v} (from {a.var_source(k)})"))
    rows.append(("run", " ".join(view.role.command) + f" (restart {view.role.restart})"))
    for hook in view.role.hooks:
        rows.append(("install hook", " ".join(hook)))
    if view.role.health is not None:
        h = view.role.health
        rows.append(("health", f"{' '.join(h.command)} every {h.interval:g}s, "
                     f"timeout {h.timeout:g}s"))
    rows.append(("role.toml", f"sha256 {view.role_toml_sha256}"))
    lines += [f"  {name:<13} {value}" for name, value in rows]
    lines.append(f"  files ({len(view.files)}, {sum(f.size for f in view.files)} bytes):")
    for f in view.files:
        kind = " -> symlink" if int(f.mode, 8) == MODE_SYMLINK else ""
        lines.append(f"    {f.mode} {f.size:>9} {f.sha256} {f.path}{kind}")
    if view.verdict is not None:
        mark = {True: "yes", False: "NO", None: "unknown"}[view.verdict.accepted]
        lines.append(f"  {'published':<13} {mark}: {view.verdict.message}")
    return "\n".join(lines) + "\n"


def configure(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "show", help="what node MAC gets at the deploy head (role, version, commit, files)",
        description="Run the node's selection offline against the committed repository: "
        "the role, version and commit node MAC gets and every file with its SHA-256; then "
        "run the node's verification to say whether a node would accept it.")
    parser.add_argument("mac", metavar="MAC", help="in any notation, as in 52:54:00:12:34:56")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--trust", default=None, metavar="FILE",
                        help="trust anchors to verify with (default: the repository's "
                        ".bootpull/metadata/root.json)")
    parser.add_argument("--no-verify", action="store_true",
                        help="only the selection; skip the node's verification")
    parser.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    from bootpull_repo.context import RepoContext

    ctx = RepoContext.from_args(args)
    mac = parse_mac(args.mac)
    view = show(ctx.root, mac, trust=Path(args.trust) if args.trust else None,
                verify=not args.no_verify)
    if args.json:
        sys.stdout.write(json.dumps(view.as_json(), indent=2) + "\n")
    else:
        sys.stdout.write(render(view))
    return 0 if view.verdict is None or view.verdict.accepted is not False else 1
