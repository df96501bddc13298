"""``bootpull node status``: what this node runs, what it would fall back to, its counters.

It reads the state directory only (no network, no lock): the ``current`` and ``lkg``
links, ``status.json`` and ``counters.json``. ``--json`` prints one object::

    {"format": 1, "state_dir": ..., "node": "52-54-00-12-34-56", "hostname": ...,
     "role": "web", "version": "1.2", "commit": "<40 hex>", "installed_at": ...,
     "path": ".../roles/web/<id>", "lkg": {"version": ..., "commit": ..., "path": ...} | null,
     "lkg_version": "1.1", "lkg_commit": "<40 hex>",
     "health": "healthy", "stale": false, "drift": [],
     "last": {"stage": ..., "status": ..., "message": ..., "time": ...},
     "counters": {"retries": 0, "restarts": 0, "fallbacks": 0},
     "counters_by_reason": {"retries:report": 2}, "spooled_events": 0,
     "bad_versions": {"<id>": "why"}}

``role``, ``version`` and ``commit`` come from the install ``current`` names (empty when
nothing is installed), so they are right even if the last run was killed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bootpull.report import Spool
from bootpull.state import Installed, StateDir


def _install(installed: Installed | None) -> dict[str, Any] | None:
    if installed is None:
        return None
    return {"role": installed.role, "version": installed.version,
            "commit": installed.commit, "id": installed.id, "path": str(installed.path),
            "installed_at": installed.record.installed_at}


def collect(state: StateDir) -> dict[str, Any]:
    """The status object (pure reading of the state directory)."""
    status = state.load_status()
    counters = state.load_counters()
    current = state.current()
    lkg = state.lkg()
    return {
        "format": 1,
        "state_dir": str(state.root),
        "node": status.node,
        "hostname": status.hostname,
        "role": current.role if current else "",
        "version": current.version if current else "",
        "commit": current.commit if current else "",
        "installed_at": current.record.installed_at if current else "",
        "path": str(current.path) if current else "",
        "lkg": _install(lkg),
        "lkg_version": lkg.version if lkg else "",
        "lkg_commit": lkg.commit if lkg else "",
        "health": status.health,
        "stale": status.stale,
        "drift": status.drift,
        "last": {"stage": status.last_stage, "status": status.last_status,
                 "message": status.last_message, "time": status.updated},
        "counters": counters.as_event(),
        "counters_by_reason": dict(sorted(counters.by_reason.items())),
        "spooled_events": len(Spool(state.spool)),
        "bad_versions": state.bad_ids(),
    }


def render(info: dict[str, Any]) -> str:
    """The same, for a person."""
    lkg = info["lkg"]
    c = info["counters"]
    lines = [
        f"node:      {info['node'] or '-'} ({info['hostname'] or 'no hostname yet'})",
        f"role:      {info['role'] or '(nothing installed)'} {info['version']}".rstrip(),
        f"commit:    {info['commit'] or '-'}",
        f"lkg:       {lkg['version'] + ' ' + lkg['commit'][:12] if lkg else '-'}",
        f"health:    {info['health']}" + (" (metadata expired: not fresh)"
                                           if info["stale"] else ""),
        f"last:      {info['last']['stage'] or '-'} {info['last']['status']} "
        f"{info['last']['message']}".rstrip(),
        f"counters:  retries {c['retries']}, restarts {c['restarts']}, "
        f"fallbacks {c['fallbacks']}",
        f"spooled:   {info['spooled_events']} event(s) not delivered yet",
    ]
    if info["drift"]:
        lines.append(f"drift:     {', '.join(info['drift'])}")
    for ident, why in info["bad_versions"].items():
        lines.append(f"bad:       {ident}: {why}")
    return "\n".join(lines)


def command(args: argparse.Namespace) -> int:
    info = collect(StateDir(Path(args.state_dir)))
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
    else:
        print(render(info))
    sys.stdout.flush()
    return 0
