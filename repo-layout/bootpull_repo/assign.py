"""``bootpull repo assign MAC ROLE [--version V]``: write ``hosts/<mac>.toml`` and commit.

An existing host file keeps everything but its ``role`` and ``version`` lines (its
hostname, vars and comments stay). Without ``--version`` the node follows the deploy
head. The change is an ordinary commit; nodes see it after ``bootpull repo publish``.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from bootpull import layout
from bootpull.errors import UsageError
from bootpull.mac import Mac

from bootpull_repo.context import RepoContext
from bootpull_repo.nodearg import parse_mac

_TOP_KEY = re.compile(r"^\s*(role|version)\s*=")
_HEADER = re.compile(r"^\s*\[")


def render(existing: str | None, mac: Mac, role: str, version: str | None) -> str:
    """The host file with ``role`` (and ``version``) set; everything else kept."""
    wanted = [f'role = "{role}"'] + ([f'version = "{version}"'] if version else [])
    if existing is None:
        return (f"# Node {mac.canonical} ({mac.colons}).\n" + "\n".join(wanted) + "\n")
    lines = existing.splitlines()
    out: list[str] = []
    insert_at: int | None = None
    in_top = True
    for line in lines:
        if _HEADER.match(line):
            in_top = False
        if in_top and _TOP_KEY.match(line):
            if insert_at is None:
                insert_at = len(out)
            continue
        out.append(line)
    if insert_at is None:
        insert_at = 0
        while insert_at < len(out) and (out[insert_at].lstrip().startswith("#")
                                        or out[insert_at].lstrip().startswith("format")):
            insert_at += 1
    out[insert_at:insert_at] = wanted
    return "\n".join(out) + "\n"


def assign(ctx: RepoContext, mac_text: str, role: str, version: str | None) -> str:
    """Write and commit the host file; return its path relative to the repository."""
    mac = parse_mac(mac_text)  # also pasted from the console, as show/history take it
    if why := layout.check_role_name(role):
        raise UsageError(why)
    if not (ctx.root / layout.role_file(role)).is_file():
        raise UsageError(f"there is no role {role!r}",
                         why=f"{layout.role_file(role)} does not exist",
                         hint=f"create it first ('bootpull repo role new {role}'), or "
                         "assign an existing role")
    if version is not None:
        if why := layout.check_version(version):
            raise UsageError(why)
        tag = layout.release_tag(role, version)
        if ctx.git.rev(f"refs/tags/{tag}") is None:
            raise UsageError(f"there is no release {tag}",
                             hint=f"release it first: 'bootpull repo release {role} {version}'")
    rel = layout.host_file(mac)
    path = ctx.root / rel
    existing = path.read_text(encoding="utf-8") if path.is_file() else None
    text = render(existing, mac, role, version)
    _, problems = layout.parse_host(text.encode(), rel)
    if problems:
        raise UsageError(f"{rel} would not be valid after the change",
                         why="\n" + "\n".join(str(p) for p in problems),
                         hint=f"fix {rel} by hand, then assign again")
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    what = f"{role}@{version}" if version else f"{role} (head)"
    ctx.git.commit(f"assign {mac.canonical} to {what}", [rel])
    return rel


def configure(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "assign", help="give node MAC the role ROLE (optionally a released version)",
        description="Write hosts/<mac>.toml (role, and version if given) and commit it. "
        "The MAC may be in any notation. Nodes see it after 'bootpull repo publish'.")
    parser.add_argument("mac", metavar="MAC")
    parser.add_argument("role", metavar="ROLE")
    parser.add_argument("--version", default=None, metavar="V",
                        help="pin the release role/ROLE/V (default: follow the deploy head)")
    parser.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    rel = assign(RepoContext.from_args(args), args.mac, args.role, args.version)
    print(f"wrote {rel} and committed it; run 'bootpull repo publish' so nodes see it")
    return 0
