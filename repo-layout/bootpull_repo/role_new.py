"""``bootpull repo role new NAME``: a new role from a template that lint accepts, committed.

The template is the smallest role that installs and runs anywhere the boot image runs:
a ``role.toml`` (format 1, ``[run]``, an empty ``[install]`` and a commented-out
``[health]`` to fill in) and ``files/start.sh``, a busybox ``sh`` script that says it
started and then waits. The admin replaces the script with the real payload.
"""

from __future__ import annotations

import argparse
import stat
from typing import Any

from bootpull import layout
from bootpull.errors import UsageError

from bootpull_repo.context import RepoContext

ROLE_TOML = """\
format = 1
description = "{name}: say here what this role does"

[run]
# argv, relative to the install directory (which is also the working directory and
# holds the content of files/). Absolute paths name programs of the image (/bin/sh).
command = ["./start.sh"]
# always, on-failure (the default) or never
restart = "on-failure"

[install]
# Each hook is an argv run in the staged directory before the switch; a failing hook
# keeps the version the node has. As in: hooks = [["./setup.sh"]]
hooks = []

# A health check: the node runs it after start, then every interval seconds.
# [health]
# command = ["./health.sh"]
# interval = 30
# timeout = 10
"""

START_SH = """\
#!/bin/sh
# The {name} role's main program. It runs in its install directory with BOOTPULL_MAC,
# BOOTPULL_ROLE, BOOTPULL_VERSION, BOOTPULL_COMMIT, BOOTPULL_HOSTNAME, BOOTPULL_IP and
# BOOTPULL_VAR_* (from [vars] of the host file) in its environment.
echo "{name}: started on ${{BOOTPULL_HOSTNAME:-?}}," \
     "version ${{BOOTPULL_VERSION:-?}}, commit ${{BOOTPULL_COMMIT:-?}}"
trap 'exit 0' TERM INT
while :; do
    sleep 3600 &
    wait $!
done
"""


def check_name(name: str) -> None:
    """Refuse a name the format or the node's installer would refuse."""
    if why := layout.check_role_name(name):
        raise UsageError(why, hint="pick another name, as in 'web' or 'edge-proxy'")


def new_role(ctx: RepoContext, name: str) -> list[str]:
    """Write the template for role ``name`` and commit it; return the paths written."""
    check_name(name)
    role_dir = ctx.root / layout.ROLES_DIR / name
    if role_dir.exists():
        raise UsageError(f"role {name!r} already exists",
                         why=f"{role_dir.relative_to(ctx.root)}/ is there",
                         hint="edit it, or pick another name")
    (role_dir / "files").mkdir(parents=True)
    toml_path = role_dir / "role.toml"
    toml_path.write_text(ROLE_TOML.format(name=name), encoding="utf-8")
    start = role_dir / "files" / "start.sh"
    start.write_text(START_SH.format(name=name), encoding="utf-8")
    start.chmod(start.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    paths = [layout.role_file(name), f"{layout.ROLES_DIR}/{name}/files/start.sh"]
    ctx.git.commit(f"role {name}: new role from the template", paths)
    return paths


def configure(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "role", help="manage roles: 'role new NAME', 'role from-debs ROLE PKG...'",
        description="Manage the roles under roles/.")
    sub = parser.add_subparsers(dest="role_command", metavar="ACTION")
    new = sub.add_parser(
        "new", help="create roles/NAME/ from a template and commit it",
        description="Create roles/NAME/role.toml and roles/NAME/files/start.sh from a "
        "template (a role that starts and waits), and commit them. Edit them, then "
        "assign the role and publish.")
    new.add_argument("name", metavar="NAME")
    # The global -C may also come last, as with the other subcommands.
    new.add_argument("-C", dest="repo_dir", metavar="DIR", default=argparse.SUPPRESS,
                     help="the repository (default: the current directory)")
    new.set_defaults(func=command)
    from bootpull_repo import role_debs

    role_debs.configure(sub)


def command(args: argparse.Namespace) -> int:
    paths = new_role(RepoContext.from_args(args), args.name)
    print(f"created and committed {', '.join(paths)}")
    print(f"next: edit them, 'bootpull repo lint', 'bootpull repo assign MAC {args.name}', "
          "'bootpull repo publish'")
    return 0
