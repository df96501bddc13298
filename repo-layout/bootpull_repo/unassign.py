"""``bootpull repo unassign MAC``: remove the node's host file, and commit.

Every host file that names the node is removed, in whatever MAC notation its name is
written (a duplicate left behind would be a second, stale assignment). Afterwards the
node gets ``hosts/default.toml`` if there is one, or stops at boot with
"not assigned"; the command says which.
"""

from __future__ import annotations

import argparse
from typing import Any

from bootpull import layout
from bootpull.errors import UsageError
from bootpull.mac import Mac, MacError

from bootpull_repo.context import RepoContext
from bootpull_repo.nodearg import parse_mac


def host_files_for(ctx: RepoContext, mac: Mac) -> list[str]:
    """Every ``hosts/*.toml`` (relative path) whose name is ``mac`` in some notation."""
    hosts = ctx.root / layout.HOSTS_DIR
    found = []
    if hosts.is_dir():
        for path in sorted(hosts.iterdir()):
            if path.suffix != ".toml" or not path.is_file():
                continue
            try:
                if Mac.parse(path.stem) == mac:
                    found.append(f"{layout.HOSTS_DIR}/{path.name}")
            except MacError:
                continue
    return found


def unassign(ctx: RepoContext, mac: Mac) -> tuple[list[str], str]:
    """Remove and commit the node's host files; return them and the role they gave."""
    paths = host_files_for(ctx, mac)
    if not paths:
        raise UsageError(
            f"node {mac.canonical} has no host file",
            why=f"there is no {layout.host_file(mac)} (in any MAC notation)",
            hint="check the MAC with 'bootpull repo show MAC'; nothing was changed")
    was = "?"
    canonical = layout.host_file(mac)
    main = canonical if canonical in paths else paths[0]
    assignment, _ = layout.parse_host((ctx.root / main).read_bytes(), main)
    if assignment is not None:
        was = assignment.role + (f"@{assignment.version}" if assignment.version else "")
    for rel in paths:
        (ctx.root / rel).unlink()
    ctx.git.commit(f"unassign {mac.canonical} (was {was})", paths)
    return paths, was


def fallback(ctx: RepoContext) -> str:
    """What an unassigned node gets now, in words."""
    default = ctx.root / layout.DEFAULT_HOST_FILE
    if default.is_file():
        assignment, _ = layout.parse_host(default.read_bytes(), layout.DEFAULT_HOST_FILE)
        if assignment is not None:
            return f"it now gets {layout.DEFAULT_HOST_FILE} (role {assignment.role})"
        return f"it now gets {layout.DEFAULT_HOST_FILE}, which is invalid: run 'bootpull repo lint'"
    return "it will stop at boot with 'not assigned' (there is no hosts/default.toml)"


def configure(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "unassign", help="remove node MAC's host file and commit",
        description="Remove hosts/<mac>.toml (in any MAC notation) and commit. The node "
        "then gets hosts/default.toml, or stops with 'not assigned'. Nodes see the change "
        "after 'bootpull repo publish'.")
    parser.add_argument("mac", metavar="MAC")
    parser.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    ctx = RepoContext.from_args(args)
    mac = parse_mac(args.mac)
    paths, was = unassign(ctx, mac)
    print(f"removed {', '.join(paths)} (was {was}) and committed it; {fallback(ctx)}")
    print("run 'bootpull repo publish' so nodes see it")
    return 0
