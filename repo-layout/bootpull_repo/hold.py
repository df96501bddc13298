"""``bootpull repo hold [ROLE]`` and ``unhold [ROLE]``: the big red switch.

A hold is the ``[hold]`` table of ``bootpull.toml`` (``all = true``, or ``roles = [...]``,
and a ``reason``), committed and published at once, so it reaches every node at its
next poll. A held node keeps running what it has and installs no new version of a held
role; it says "held" on its console, in its events (``hold``/``warn``; its heartbeats
stay ``warn``) and so on the home base's page and in the feeds. ``unhold`` removes the
hold, and held nodes move on at their next poll. A node with nothing installed yet
installs what the repository says: it has nothing to keep.
"""

from __future__ import annotations

import argparse
import re
import time
from typing import Any

from bootpull import layout
from bootpull.errors import UsageError

from bootpull_repo.context import RepoContext

_HEADER = re.compile(r"^\s*\[")
_HOLD = re.compile(r"^\s*\[\s*hold\s*\]\s*(#.*)?$")
_COMMENT = "# The rollout is held"


def _without_hold(text: str) -> str:
    """``bootpull.toml`` with its ``[hold]`` table (header to the next table) removed."""
    out: list[str] = []
    inside = False
    for line in text.splitlines():
        if _HOLD.match(line):
            inside = True
            while out and (not out[-1].strip() or out[-1].startswith(_COMMENT)):
                out.pop()  # the comment 'hold' wrote above it
            continue
        if inside and _HEADER.match(line):
            inside = False
        if not inside:
            out.append(line)
    while out and not out[-1].strip():
        out.pop()
    return "\n".join(out) + "\n"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(text: str, *, hold_all: bool, roles: list[str], reason: str) -> str:
    base = _without_hold(text)
    if not hold_all and not roles:
        return base
    lines = ["", _COMMENT + " ('bootpull repo unhold' to go on): held nodes keep what "
             "they run.", "[hold]"]
    lines.append("all = true" if hold_all else
                 "roles = [" + ", ".join(_quote(r) for r in roles) + "]")
    if reason:
        lines.append(f"reason = {_quote(reason)}")
    lines.append(f"since = {_quote(time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()))}")
    return base + "\n".join(lines) + "\n"


def change(ctx: RepoContext, role: str | None, *, hold: bool, reason: str) -> str:
    """Write, commit and publish the new ``[hold]``; a line saying what it is now."""
    path = ctx.root / layout.SETTINGS_FILE
    text = path.read_text(encoding="utf-8")
    settings, problems = layout.parse_settings(text.encode())
    if settings is None:
        raise UsageError(f"{layout.SETTINGS_FILE} is not valid",
                         why="\n" + "\n".join(str(p) for p in problems),
                         hint="fix it ('bootpull repo lint'), then hold again")
    hold_all, roles = settings.hold_all, list(settings.hold_roles)
    if role is not None:
        if why := layout.check_role_name(role):
            raise UsageError(why)
        if hold and not (ctx.root / layout.role_file(role)).is_file():
            raise UsageError(f"there is no role {role!r}",
                             hint="hold an existing role, or everything (no ROLE)")
        if hold:
            roles = sorted({*roles, role})
        elif role in roles:
            roles.remove(role)
        elif hold_all:
            raise UsageError(f"everything is held, not only {role}",
                             hint="'bootpull repo unhold' (no ROLE) releases everything")
        else:
            raise UsageError(f"role {role} is not held", hint="nothing to do")
    else:
        hold_all, roles = (True, []) if hold else (False, [])
    new = render(text, hold_all=hold_all, roles=roles,
                 reason=reason or (settings.hold_reason if hold else ""))
    checked, problems = layout.parse_settings(new.encode())
    if checked is None:  # pragma: no cover - render writes only what parses
        raise UsageError("the new [hold] does not parse",
                         why="\n".join(str(p) for p in problems))
    if new == text:
        return "nothing changed"
    path.write_text(new, encoding="utf-8")
    what = ("everything" if hold_all else ", ".join(roles)) if (hold_all or roles) else ""
    subject = (f"hold {role or 'everything'}" if hold else f"unhold {role or 'everything'}")
    ctx.git.commit(subject + (f": {reason}" if hold and reason else ""),
                   [layout.SETTINGS_FILE])
    from bootpull_repo.publish import publish

    publish(ctx)
    return f"held: {what}" if what else "nothing is held"


def configure(subparsers: Any) -> None:
    for name, words in (("hold", "stop the rollout: held nodes keep what they run"),
                        ("unhold", "let held nodes move on to what the repository says")):
        parser = subparsers.add_parser(
            name, help=f"{words} (all roles, or ROLE)",
            description=f"{words[0].upper()}{words[1:]}. Edits [hold] in bootpull.toml, "
            "commits it and publishes, so every node sees it at its next poll "
            "(docs/admin.md, 'Stop a rollout').")
        parser.add_argument("role", metavar="ROLE", nargs="?", default=None,
                            help="only this role (default: every role)")
        if name == "hold":
            parser.add_argument("--reason", default="", metavar="TEXT",
                                help="why, for the nodes' consoles, the page and the log")
        parser.set_defaults(func=command, hold=name == "hold")


def command(args: argparse.Namespace) -> int:
    ctx = RepoContext.from_args(args)
    said = change(ctx, args.role, hold=args.hold, reason=getattr(args, "reason", ""))
    print(f"bootpull repo {'hold' if args.hold else 'unhold'}: {said}; committed and "
          "published")
    return 0
