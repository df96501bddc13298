"""Which way to fetch, from what the server advertises: the fetch ladder.

A site's git server may be anything from ``bootpull serve`` to a static copy of a bare
repository. The node takes the cheapest rung the server offers (docs/node.md, "What
the server needs"); verification is the same on every rung: nothing unverified is
used, and nothing is ever checked out.

| rung | when | bytes |
|---|---|---|
| ``v2+filter`` | protocol v2 with ``filter`` | ∝ this node's role |
| ``v2`` | protocol v2 without ``filter`` | ∝ the tip of the branch (depth 1) |
| ``v0+filter`` | protocol v0/v1, ``filter`` and wants by id | ∝ the role |
| ``v0`` | protocol v0/v1 otherwise | ∝ the tip (depth 1 if the server can) |
| ``dumb`` | dumb HTTP (static files) | whole packs, or a request per loose object |

:func:`choose_v2`, :func:`choose_v0` and :data:`DUMB` are pure; :class:`Rung` says on
the console and in the ``fetch`` event what it costs and what the admin could enable
to reach a cheaper rung.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_FILTER = ("set uploadpack.allowFilter=true in the served repository "
           "(git config uploadpack.allowFilter true)")
_V2 = ("pass the Git-Protocol request header to git http-backend (as GIT_PROTOCOL) so "
       "it speaks protocol v2")


def describe(rung: str, cost: str, enable: str) -> str:
    """What the console says once: the rung, its cost, what would be cheaper."""
    return f"fetching over {rung}: {cost}" + (f"; to fetch less, {enable}" if enable else "")


@dataclass(frozen=True)
class Rung:
    name: str  # v2+filter, v2, v0+filter, v0, dumb
    protocol: str  # v2, v0, dumb
    lazy: bool  # objects come by id as they are read; else the whole tip at once
    cost: str
    enable: str  # how to reach a cheaper rung; "" on the cheapest

    def line(self) -> str:
        return describe(self.name, self.cost, self.enable)

    def details(self) -> dict[str, Any]:
        return {"rung": self.name, "cost": self.cost, "enable": self.enable or None}


V2_FILTER = Rung("v2+filter", "v2", lazy=True,
                 cost="git protocol v2 with partial fetch: bytes grow with this node's "
                      "role only", enable="")
DUMB = Rung("dumb", "dumb", lazy=True,
            cost="dumb HTTP (static files): every pack that holds an object read comes "
                 "whole, with the history in it, and each loose object is one request",
            enable="serve the repository with git http-backend (smart HTTP), with "
                   "uploadpack.allowFilter=true")


def choose_v2(*, filter_ok: bool) -> Rung:
    if filter_ok:
        return V2_FILTER
    return Rung("v2", "v2", lazy=False,
                cost="git protocol v2 without partial fetch: the whole tip of the branch "
                     "(every file of every role, no history)", enable=_FILTER)


def choose_v0(*, filter_ok: bool, by_id: bool, shallow_ok: bool) -> Rung:
    if filter_ok and by_id:
        return Rung("v0+filter", "v0", lazy=True,
                    cost="git protocol v0 with partial fetch: bytes grow with this node's "
                         "role, with one more request than v2", enable=_V2)
    cost = ("git protocol v0 without partial fetch: the whole tip of the branch (every "
            "file of every role, " + ("no history)" if shallow_ok else "and its history)"))
    enable = _V2 if filter_ok else f"{_FILTER}, and {_V2}"
    if filter_ok and not by_id:
        enable = ("set uploadpack.allowAnySHA1InWant=true (or allowReachableSHA1InWant) "
                  f"in the served repository, or {_V2}")
    return Rung("v0", "v0", lazy=False, cost=cost, enable=enable)
