"""How the repository looks from a node that has something installed: one value.

A node that runs an install keeps polling its repository. What it last learned is a
:class:`RepoHealth`: the repository answers and verifies (``FRESH``), the fetch fails
(``FETCH_FAILING``: the install runs as a fallback), or the signed metadata has
expired (``EXPIRED``: the install runs, and is reported ``fail`` until fresh metadata
is published). ``stale`` says the running install rests on expired metadata: a fetch
failure after expiry does not make it fresh again, only a good poll does.

Each transition is a pure function returning a new value, and tells whether it began
a new outage (counted and reported once) or continued one (said on the console only).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from bootpull.errors import BootpullError


class RepoState(Enum):
    FRESH = "fresh"
    FETCH_FAILING = "fetch-failing"
    EXPIRED = "expired"


#: The stage a fallback is reported under, per state (docs/contract.md §5.2).
_FALLBACK_STAGE = {RepoState.FETCH_FAILING: "fetch", RepoState.EXPIRED: "verify"}


@dataclass(frozen=True)
class RepoHealth:
    state: RepoState = RepoState.FRESH
    stale: bool = False  # the running install's metadata has expired
    error: BootpullError | None = None  # what the last failed poll raised

    @property
    def fallback_stage(self) -> str | None:
        """``fetch`` or ``verify`` while an install runs as a fallback, else None."""
        return _FALLBACK_STAGE.get(self.state)

    def fetch_failed(self, err: BootpullError) -> RepoHealth:
        return RepoHealth(RepoState.FETCH_FAILING, stale=self.stale, error=err)

    def expired(self, err: BootpullError) -> RepoHealth:
        return RepoHealth(RepoState.EXPIRED, stale=True, error=err)

    def verified(self) -> RepoHealth:
        return RepoHealth()

    def is_new_outage(self, before: RepoHealth) -> bool:
        """Whether going from ``before`` to this value starts a fallback to report."""
        return self.fallback_stage is not None and self.fallback_stage != before.fallback_stage

    def recovered_from(self, before: RepoHealth) -> str | None:
        """The stage of the outage this value ends (``before`` was one), else None."""
        return before.fallback_stage if self.fallback_stage is None else None
