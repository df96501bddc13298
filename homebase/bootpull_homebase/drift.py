"""Drift: nodes whose reported state differs from what the repository says they run.

A node drifts when, in its last report:

- its ``role`` is not the role the repository assigns it;
- it is pinned (``version`` in its host file) and reports another ``version``;
- it reports a ``commit`` other than the one it should run (the release tag's commit
  when pinned, the deploy head otherwise);
- its latest report that re-verified the installed files (an event whose ``details``
  has ``files_changed`` or ``verify``) says ``files_changed`` is a non-empty list
  (installed files that no longer match the signed hashes), or ``verify`` is
  ``fail``/``failed``/``mismatch``/``changed``. A later heartbeat without these keys
  does not clear it; a later re-verification with ``files_changed: []`` does.

What the repository says comes from an :class:`IntentSource` (the served repository's
deploy head in the server, :class:`FixedIntents` in unit tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from bootpull.mac import Mac

from bootpull_homebase.store import NodeState

BAD_VERIFY = ("fail", "failed", "mismatch", "changed")


@dataclass(frozen=True)
class Intent:
    """What one node should run. ``None`` means "not pinned down" (not compared)."""

    role: str  # "" when the repository assigns the node nothing
    version: str | None
    commit: str | None
    source: str = ""  # the host file it came from
    hostname: str = ""  # the host file's hostname, if it names one


class IntentSource(Protocol):
    def intent_for(self, mac: Mac) -> Intent | None:
        """What ``mac`` should run, or None when the repository cannot be read."""
        ...


@dataclass(frozen=True)
class FixedIntents:
    """A fixed table of intents (unit tests); unknown nodes are unassigned."""

    table: dict[str, Intent] = field(default_factory=dict)

    def intent_for(self, mac: Mac) -> Intent | None:
        return self.table.get(mac.canonical, Intent("", None, None, "(not assigned)"))


@dataclass(frozen=True)
class Drift:
    node: NodeState
    intent: Intent | None
    reasons: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "node": self.node.mac, "hostname": self.node.hostname, "status": self.node.status,
            "reported": {"role": self.node.role, "version": self.node.version,
                         "commit": self.node.commit},
            "intended": None if self.intent is None else {
                "role": self.intent.role, "version": self.intent.version,
                "commit": self.intent.commit, "source": self.intent.source},
            "reasons": list(self.reasons),
        }


def reasons_for(node: NodeState, intent: Intent | None) -> list[str]:
    out: list[str] = []
    if intent is not None:
        if not intent.role:
            out.append(f"reports role {node.role!r} but the repository assigns it none")
        elif node.role != intent.role:
            out.append(f"runs role {node.role or '(none)'!r}, the repository says "
                       f"{intent.role!r} ({intent.source})")
        else:
            if intent.version is not None and node.version != intent.version:
                out.append(f"runs version {node.version or '(none)'!r}, pinned to "
                           f"{intent.version!r} ({intent.source})")
            if intent.commit and node.commit and node.commit != intent.commit:
                out.append(f"runs commit {node.commit[:12]}, should run {intent.commit[:12]}")
    details = (node.verify or {}).get("details") or {}
    changed = details.get("files_changed")
    if isinstance(changed, list) and changed:
        names = ", ".join(str(x) for x in changed[:5]) + (" …" if len(changed) > 5 else "")
        out.append(f"{len(changed)} installed file(s) changed: {names}")
    verify = details.get("verify")
    if isinstance(verify, str) and verify.lower() in BAD_VERIFY:
        out.append(f"re-verification of the installed files: {verify}")
    return out


def find_drift(nodes: list[NodeState], intents: IntentSource | None) -> list[Drift]:
    """Every node that drifts, in the order given."""
    drifted: list[Drift] = []
    for node in nodes:
        intent = intents.intent_for(Mac.parse(node.mac)) if intents is not None else None
        reasons = reasons_for(node, intent)
        if reasons:
            drifted.append(Drift(node, intent, tuple(reasons)))
    return drifted
