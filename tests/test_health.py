"""The node's view of its repository (bootpull.health) and the heartbeat's verdict
(bootpull.narrator.heartbeat_status): pure values, no node needed."""

from __future__ import annotations

from bootpull.errors import ExpiredMetadata, FetchError
from bootpull.health import RepoHealth, RepoState
from bootpull.narrator import heartbeat_status
from hypothesis import given
from hypothesis import strategies as st

DOWN = FetchError("the connection dropped")
OLD = ExpiredMetadata("the signed metadata has expired")


def test_an_outage_is_new_once_and_ends_with_a_good_poll() -> None:
    fresh = RepoHealth()
    assert fresh.state is RepoState.FRESH and not fresh.stale and fresh.fallback_stage is None
    down = fresh.fetch_failed(DOWN)
    assert down.fallback_stage == "fetch" and down.error is DOWN and down.is_new_outage(fresh)
    still = down.fetch_failed(DOWN)
    assert not still.is_new_outage(down), "the same outage again is not a new one"
    back = still.verified()
    assert back == RepoHealth() and back.recovered_from(still) == "fetch"
    assert back.recovered_from(fresh) is None


def test_expiry_is_stale_until_a_good_poll_even_through_a_fetch_failure() -> None:
    old = RepoHealth().expired(OLD)
    assert old.stale and old.fallback_stage == "verify" and old.error is OLD
    down = old.fetch_failed(DOWN)
    assert down.stale, "a fetch failure does not make expired metadata fresh"
    assert down.is_new_outage(old) and down.fallback_stage == "fetch"
    assert not down.verified().stale


EVENTS = st.lists(st.sampled_from(["fetch", "expired", "ok"]), max_size=30)


@given(EVENTS)
def test_each_outage_is_reported_once_and_each_end_once(events: list[str]) -> None:
    health = RepoHealth()
    outages = ends = 0
    previous = None
    for event in events:
        before = health
        health = (before.fetch_failed(DOWN) if event == "fetch" else
                  before.expired(OLD) if event == "expired" else before.verified())
        outages += health.is_new_outage(before)
        ends += health.recovered_from(before) is not None
        if event != "ok" and event != previous:
            assert health.is_new_outage(before)
        previous = event
    runs = [e for i, e in enumerate(events) if e != "ok" and (i == 0 or events[i - 1] != e)]
    assert outages == len(runs)
    assert ends == sum(1 for i, e in enumerate(events) if e == "ok" and i and events[i - 1] != "ok")
    assert health.stale == ("expired" in events and "ok" not in events[
        max(i for i, e in enumerate(events) if e == "expired"):])


def test_the_heartbeat_verdict_in_its_order() -> None:
    base = dict(role="web", version="1.2", stale=False, running=True, files_changed=[],
                repository_failing=False)
    assert heartbeat_status(**base) == ("ok", "web 1.2 is running")  # type: ignore[arg-type]
    cases = [
        ({"repository_failing": True}, ("warn", "running 1.2; the repository fails")),
        ({"files_changed": ["a", "b"], "repository_failing": True},
         ("warn", "2 installed file(s) differ from the signed ones")),
        ({"running": False, "files_changed": ["a"]}, ("fail", "web 1.2 is not running")),
        ({"stale": True, "running": False}, ("fail", "running on expired metadata: not fresh")),
    ]
    for change, expect in cases:
        assert heartbeat_status(**{**base, **change}) == expect  # type: ignore[arg-type]
