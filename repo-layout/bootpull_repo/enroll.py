"""``bootpull repo enroll MAC`` and ``bootpull repo reject MAC``: trust a node's key, or
refuse it, by a commit to ``identities/<mac>.toml`` (:mod:`bootpull_repo.identities`).

The key comes from the home base (``--homebase URL``: the node's pending key, which the
node sent signed with that key, with its hardware facts for the admin to check) or is
given (``--key``, ``--age``: read off the node's console). Approval is a commit, so git
history says who trusted which box and when. The home base reads the deploy head, so
the commit takes effect there at once; ``repo publish`` signs it like any file.
"""

from __future__ import annotations

import argparse
import json
import ssl
import time
import urllib.error
import urllib.request
from typing import Any

from bootpull.errors import UsageError
from bootpull.httpsig import fingerprint
from bootpull.mac import Mac

from bootpull_repo.context import RepoContext
from bootpull_repo.identities import (
    age_problem,
    identity_file,
    key_problem,
    parse_identity,
    render,
)
from bootpull_repo.nodearg import parse_mac


def pending_from(homebase: str, mac: Mac, *, ca: str | None = None,
                 timeout: float = 30.0) -> dict[str, Any]:
    """``GET <homebase>/api/v1/identities/<mac>``: what the home base knows of the node."""
    url = f"{homebase.rstrip('/')}/api/v1/identities/{mac.canonical}"
    context = ssl.create_default_context(cafile=ca) if ca else None
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as answer:  # noqa: S310
            data = json.loads(answer.read(1 << 20))
    except urllib.error.HTTPError as exc:
        raise UsageError(f"the home base answered {exc.code} for {url}",
                         hint="check --homebase (the URL of 'bootpull serve')") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise UsageError(f"cannot ask the home base at {homebase} about node {mac}",
                         why=str(exc), hint="check --homebase, or give the key with --key "
                         "(the node prints it on its console)") from None
    if not isinstance(data, dict):
        raise UsageError(f"{url} did not answer a JSON object")
    return data


def _choose(known: dict[str, Any], mac: Mac, wanted: str | None) -> dict[str, Any]:
    pending = [p for p in known.get("pending") or [] if isinstance(p, dict)]
    if wanted is not None:
        for item in pending:
            if wanted in (item.get("key"), item.get("fingerprint")):
                return item
        raise UsageError(f"node {mac} has no pending key {wanted}",
                         hint="run without --key to see its pending keys")
    if not pending:
        raise UsageError(f"node {mac} has no pending key at the home base",
                         hint="boot the node (it sends its key with its first report), "
                         "or give --key and --age from its console")
    if len(pending) > 1:
        listed = "; ".join(f"{p.get('fingerprint')} (last seen {p.get('last_seen')})"
                           for p in pending)
        raise UsageError(f"node {mac} has {len(pending)} pending keys: {listed}",
                         hint="pick one with --key FINGERPRINT (compare with the console)")
    return pending[0]


def _facts_line(facts: Any) -> str:
    if not isinstance(facts, dict):
        return "no hardware facts"
    found = facts.get("dmi")
    dmi: dict[str, Any] = found if isinstance(found, dict) else {}
    parts = [str(dmi.get(k)) for k in ("sys_vendor", "product_name", "product_serial")
             if dmi.get(k)]
    return ", ".join(parts) or "no DMI facts"


def _existing(ctx: RepoContext, mac: Mac) -> tuple[str, list[str]]:
    """The current file's text (or "") and its rejected keys."""
    path = ctx.root / identity_file(mac)
    if not path.is_file():
        return "", []
    text = path.read_text(encoding="utf-8")
    pin, problems = parse_identity(text.encode(), identity_file(mac))
    if pin is None:
        raise UsageError(f"{identity_file(mac)} is not valid",
                         why="\n" + "\n".join(str(p) for p in problems),
                         hint="fix it by hand or remove it, then run this again")
    return text, list(pin.rejected)


def enroll(ctx: RepoContext, mac_text: str, *, key: str | None, age: str | None,
           homebase: str | None, ca: str | None = None) -> tuple[str, str]:
    """Commit the pin; returns (path, what was enrolled, for the summary line)."""
    mac = parse_mac(mac_text)
    facts = None
    if homebase is not None and (key is None or not key.startswith("ed25519:")):
        chosen = _choose(pending_from(homebase, mac, ca=ca), mac, key)
        key, age, facts = chosen.get("key"), age or chosen.get("age"), chosen.get("facts")
    if key is None:
        raise UsageError("enroll needs the node's key",
                         hint="give --homebase URL (its pending key) or --key ed25519:… "
                         "and --age age1… from the node's console")
    for value, check in ((key, key_problem), (age, age_problem)):
        if value is not None and (why := check(value)):
            raise UsageError(why, hint="copy it from the node's console or the home base")
    _, rejected = _existing(ctx, mac)
    if key in rejected:
        raise UsageError(f"key {fingerprint(key)} was rejected for node {mac}",
                         hint=f"remove it from 'rejected' in {identity_file(mac)} first")
    rel = identity_file(mac)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (ctx.root / rel).parent.mkdir(exist_ok=True)
    (ctx.root / rel).write_text(render(mac=mac, key=key, age=age, rejected=rejected,
                                       enrolled=now), encoding="utf-8")
    summary = f"{fingerprint(key)}" + (f" ({_facts_line(facts)})" if facts else "")
    ctx.git.commit(f"enroll {mac.canonical}: key {summary}", [rel])
    return rel, summary


def reject(ctx: RepoContext, mac_text: str, *, key: str | None, homebase: str | None,
           ca: str | None = None) -> tuple[str, str]:
    mac = parse_mac(mac_text)
    if homebase is not None and (key is None or not key.startswith("ed25519:")):
        key = _choose(pending_from(homebase, mac, ca=ca), mac, key).get("key")
    if key is None:
        raise UsageError("reject needs the key to refuse",
                         hint="give --homebase URL (the pending key) or --key ed25519:…")
    if why := key_problem(key):
        raise UsageError(why, hint="copy the key from the home base or the node's console")
    text, rejected = _existing(ctx, mac)
    pin, _ = parse_identity(text.encode(), identity_file(mac)) if text else (None, [])
    if key not in rejected:
        rejected.append(key)
    enrolled_key = pin.key if pin is not None and pin.key != key else None
    rel = identity_file(mac)
    (ctx.root / rel).parent.mkdir(exist_ok=True)
    (ctx.root / rel).write_text(render(
        mac=mac, key=enrolled_key, age=pin.age if enrolled_key and pin else None,
        rejected=rejected, enrolled=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())),
        encoding="utf-8")
    ctx.git.commit(f"reject {mac.canonical}: key {fingerprint(key)}", [rel])
    return rel, fingerprint(key)


def configure(subparsers: Any) -> None:
    for name, helptext in (
            ("enroll", "trust node MAC's key: commit it to identities/<mac>.toml"),
            ("reject", "refuse a key for node MAC: commit it to identities/<mac>.toml")):
        parser = subparsers.add_parser(
            name, help=helptext,
            description=f"{helptext[0].upper()}{helptext[1:]}. The key is the one the "
            "node reported to the home base (--homebase URL; with several, pick one with "
            "--key FINGERPRINT) or --key ed25519:… from the node's console. The MAC may be "
            "in any notation, or pasted from the console.")
        parser.add_argument("mac", metavar="MAC")
        parser.add_argument("--homebase", metavar="URL", default=None,
                            help="the home base's URL, as in http://base:8080")
        parser.add_argument("--key", metavar="KEY", default=None,
                            help="ed25519:… (or, with --homebase, a pending key's "
                            "fingerprint SHA256:…)")
        if name == "enroll":
            parser.add_argument("--age", metavar="RECIPIENT", default=None,
                                help="the node's age recipient age1… (secrets)")
        parser.add_argument("--ca", metavar="FILE", default=None,
                            help="CA certificate(s) for an https home base")
        parser.set_defaults(func=command, which=name)


def command(args: argparse.Namespace) -> int:
    ctx = RepoContext.from_args(args)
    if args.which == "enroll":
        rel, what = enroll(ctx, args.mac, key=args.key, age=args.age,
                           homebase=args.homebase, ca=args.ca)
        print(f"enrolled {what}: wrote {rel} and committed it; the home base trusts it "
              "now (run 'bootpull repo publish' to sign it)")
    else:
        rel, what = reject(ctx, args.mac, key=args.key, homebase=args.homebase, ca=args.ca)
        print(f"rejected {what}: wrote {rel} and committed it")
    return 0
