"""``bootpull repo release ROLE VERSION``: tag the deploy head as ``role/<role>/<version>``.

The tag is an annotated git tag on ``HEAD``; ``bootpull repo publish`` then signs the
role's tree in that commit as ``release/<role>/<version>/...``. A release is never
moved: releasing the same version twice is refused.
"""

from __future__ import annotations

import argparse
from typing import Any

from bootpull import layout
from bootpull.errors import UsageError

from bootpull_repo.context import RepoContext


def release(ctx: RepoContext, role: str, version: str) -> str:
    """Create the tag; return its name."""
    if why := layout.check_role_name(role):
        raise UsageError(why)
    if why := layout.check_version(version):
        raise UsageError(why)
    head = ctx.git.rev("HEAD")
    if head is None:
        raise UsageError("the repository has no commits", hint="commit the role first")
    if ctx.git.run("ls-tree", "HEAD", "--", layout.role_file(role)).strip() == b"":
        raise UsageError(f"the deploy head has no role {role!r}",
                         why=f"{layout.role_file(role)} is not committed",
                         hint="create and commit the role first")
    tag = layout.release_tag(role, version)
    if ctx.git.rev(f"refs/tags/{tag}") is not None:
        raise UsageError(f"{tag} already exists", why="a release is never moved",
                         hint="release a new version instead")
    ctx.git.run("tag", "-a", tag, "-m", f"release {role} {version}", head)
    return tag


def configure(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "release", help="tag the head's role ROLE as version VERSION",
        description="Create the annotated tag role/ROLE/VERSION at HEAD. Publish "
        "afterwards so nodes pinned to it can verify it.")
    parser.add_argument("role", metavar="ROLE")
    parser.add_argument("version", metavar="VERSION")
    parser.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    tag = release(RepoContext.from_args(args), args.role, args.version)
    print(f"tagged {tag}; run 'bootpull repo publish' to sign it")
    return 0
