"""The supervise loop's timing rules (bootpull.schedule), without a clock or a sleep."""

from __future__ import annotations

import pytest
from bootpull.schedule import MAX_SLEEP, MIN_POLL_WAIT, MIN_SLEEP, Schedule
from hypothesis import given
from hypothesis import strategies as st

TIME = st.floats(0, 1e6, allow_nan=False)
INTERVAL = st.floats(0.1, 3600, allow_nan=False)


def test_a_failing_poll_backs_off_and_a_good_one_resets() -> None:
    plan = Schedule.start(100.0, poll_interval=60, heartbeat_interval=30)
    assert (plan.poll_at, plan.heartbeat_at) == (160.0, 130.0)
    assert not plan.poll_due(159.9) and plan.poll_due(160.0)
    asked: list[int] = []

    def backoff(n: int) -> float:
        asked.append(n)
        return 2.0 ** n

    plan = plan.polled(160, failed=True, poll_interval=60, backoff=backoff)
    plan = plan.polled(162, failed=True, poll_interval=60, backoff=backoff)
    assert asked == [1, 2] and plan.poll_failures == 2 and plan.poll_at == 166
    plan = plan.polled(166, failed=False, poll_interval=60, backoff=backoff)
    assert asked == [1, 2] and plan.poll_failures == 0 and plan.poll_at == 226
    assert plan.heartbeat_at == 130.0, "polling does not move the heartbeat"
    plan = plan.heartbeat_sent(131, heartbeat_interval=30)
    assert plan.heartbeat_at == 161 and plan.poll_at == 226


@given(TIME, INTERVAL, st.floats(0, 100, allow_nan=False), st.booleans())
def test_polls_never_follow_closer_than_the_floor(now: float, interval: float, delay: float,
                                                   failed: bool) -> None:
    plan = Schedule.start(now, poll_interval=interval, heartbeat_interval=interval)
    after = plan.polled(now, failed=failed, poll_interval=interval, backoff=lambda _n: delay)
    assert after.poll_at >= now + MIN_POLL_WAIT
    assert after.poll_at == now + max(MIN_POLL_WAIT, delay if failed else interval)


@given(TIME, st.floats(-10, 1e4, allow_nan=False), st.floats(-10, 1e4, allow_nan=False),
       st.lists(st.floats(-10, 1e4, allow_nan=False), max_size=3))
def test_the_loop_sleeps_until_the_first_thing_due_and_wakes_often(
        now: float, to_poll: float, to_beat: float, others: list[float]) -> None:
    plan = Schedule(poll_at=now + to_poll, heartbeat_at=now + to_beat)
    sleep = plan.sleep_for(now, *others)
    assert MIN_SLEEP <= sleep <= MAX_SLEEP
    first = min([to_poll, to_beat, *others])
    # (now + x) - now is x to within a rounding of now
    assert sleep == pytest.approx(max(MIN_SLEEP, min(first, MAX_SLEEP)), abs=1e-9)
