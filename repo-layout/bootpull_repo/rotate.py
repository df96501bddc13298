"""``bootpull repo rotate-key ROLE`` and ``renew-root``: new root versions.

``rotate-key`` replaces one signing key; ``renew-root`` only extends root's expiry.

The new ``root.json`` (version N+1) names the new key and drops the old one. It is
signed by the current root key — and, when the root key itself is rotated, by the new
one too — so a node that trusts version N verifies N+1 (ngclient reads
``.bootpull/metadata/<N+1>.root.json``) and moves on. Then the repository is published
again, signed with the new key. The old private key is kept beside the new one as
``<role>.retired-v<N>.pem``; delete it once every node has booted past the rotation.

Needs the root key (``--keys`` pointing at where it is kept offline) and, to publish,
the targets, snapshot and timestamp keys.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bootpull.errors import UsageError

from bootpull_repo.context import METADATA_DIR, RepoContext
from bootpull_repo.keys import ROLES
from bootpull_repo.publish import (
    Expiry,
    Published,
    checked_signer,
    expires_in,
    load_root,
    publish,
    validate,
    write_root,
)


@dataclass(frozen=True)
class Rotated:
    role: str
    root_version: int
    keyid: str
    published: Published


def rotate(ctx: RepoContext, role: str, *, now: datetime | None = None,
           expiry: Expiry | None = None) -> Rotated:
    from tuf.api.metadata import Metadata

    if role not in ROLES:
        raise UsageError(f"{role!r} is not a key role", hint=f"use one of {', '.join(ROLES)}")
    now = now or datetime.now(UTC)
    expiry = expiry or Expiry()
    head = ctx.git.rev("HEAD")
    if head is None:
        raise UsageError("the repository has no commits")
    validate(ctx, head)  # publish must succeed afterwards: check before changing keys
    keys = ctx.keys()
    root_md = load_root(ctx.metadata_dir)
    root = root_md.signed
    old_root_signer = checked_signer(keys, "root", root)
    for needed in ("targets", "snapshot", "timestamp"):
        if needed != role:
            checked_signer(keys, needed, root)  # fail now, not after root changed
    retired = keys.directory / f"{role}.retired-v{root.version}.pem"
    keys.path(role).rename(retired)
    try:
        new = keys.generate(role)
    except BaseException:
        retired.rename(keys.path(role))
        raise
    for keyid in list(root.roles[role].keyids):
        root.revoke_key(keyid, role)
    root.add_key(new.public_key, role)
    root.version += 1
    root.expires = expires_in(expiry.root, now)
    md = Metadata(root)
    md.sign(old_root_signer)
    if role == "root":
        md.sign(new, append=True)
    write_root(ctx.metadata_dir, md)
    ctx.git.commit(f"rotate the {role} key: root v{root.version}", [METADATA_DIR])
    done = publish(ctx, expiry=expiry, now=now)
    return Rotated(role, root.version, new.public_key.keyid, done)


def renew_root(ctx: RepoContext, *, now: datetime | None = None,
               expiry: Expiry | None = None) -> int:
    """A new root version with the same keys and a fresh expiry; returns its version."""
    from tuf.api.metadata import Metadata

    now = now or datetime.now(UTC)
    expiry = expiry or Expiry()
    keys = ctx.keys()
    root = load_root(ctx.metadata_dir).signed
    signer = checked_signer(keys, "root", root)
    root.version += 1
    root.expires = expires_in(expiry.root, now)
    md = Metadata(root)
    md.sign(signer)
    write_root(ctx.metadata_dir, md)
    ctx.git.commit(f"renew root: v{root.version}, expires {root.expires.date().isoformat()}",
                   [METADATA_DIR])
    return root.version


def configure(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "rotate-key", help="replace one signing key (needs the root key), then publish",
        description="Generate a new key for ROLE, write root.json version N+1 naming it "
        "(signed by the current root key, and by the new one for ROLE=root), commit, and "
        "publish with the new key. Nodes that trust version N follow to N+1 by themselves.")
    parser.add_argument("role", metavar="ROLE", choices=ROLES,
                        help="root, targets, snapshot or timestamp")
    parser.set_defaults(func=command)
    renew = subparsers.add_parser(
        "renew-root", help="re-sign root.json with a fresh expiry (needs the root key)",
        description="Write root.json version N+1 with the same keys and a new expiry, "
        "signed by the root key, and commit it. Do this before root.json expires "
        "(publish warns 60 days ahead); nodes follow by themselves.")
    renew.add_argument("--days", type=int, default=Expiry.root, metavar="N",
                       help=f"root.json expires after N days (default {Expiry.root})")
    renew.set_defaults(func=renew_command)


def renew_command(args: argparse.Namespace) -> int:
    if args.days < 1:
        raise UsageError("--days must be at least 1")
    version = renew_root(RepoContext.from_args(args), expiry=Expiry(root=args.days))
    print(f"renewed root.json: v{version}, valid {args.days} days")
    return 0


def command(args: argparse.Namespace) -> int:
    done = rotate(RepoContext.from_args(args), args.role)
    published = (f"published {done.published.commit[:12]}" if done.published.committed
                 else "the signed metadata still verifies: nothing to re-sign")
    print(f"rotated the {done.role} key (new key {done.keyid[:16]}…): root "
          f"v{done.root_version}, {published}")
    if done.role == "root":
        print("  images built from now on may embed the new anchors ('bootpull repo trust');"
              " old images follow the rotation by themselves")
    return 0
