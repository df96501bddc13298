"""``bootpull repo trust``: print the trust anchors (the root.json nodes start from).

The node image embeds this file (``bootpull image build --trust FILE``) and ``node
run --trust FILE`` takes it. It is the repository's current ``root.json``: a node
that starts from it follows later key rotations through ``N.root.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bootpull.errors import UsageError

from bootpull_repo.context import METADATA_DIR, RepoContext


def trust_anchors(ctx: RepoContext) -> bytes:
    path = ctx.metadata_dir / "root.json"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{ctx.root} has no {METADATA_DIR}/root.json",
                         hint="run 'bootpull repo init' first") from None


def configure(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "trust", help="print the trust anchors (the file --trust and the image take)",
        description="Print the repository's root.json: the public trust anchors that "
        "the node image embeds and 'bootpull node run --trust' reads.")
    parser.add_argument("--out", default=None, metavar="FILE",
                        help="write them to FILE instead of standard output")
    parser.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    data = trust_anchors(RepoContext.from_args(args))
    if args.out:
        Path(args.out).write_bytes(data)
    else:
        sys.stdout.write(data.decode())
    return 0
