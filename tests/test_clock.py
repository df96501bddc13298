"""The clock stage's decision: when the clock is stepped, what the event says, and that
a clock set backwards never makes expired metadata fresh.

The clock is never set on this machine: every test hands ``clock.sync`` a setter that
records what it was asked. The real NTP server is chronyd (``ntpserver.py``), asked
with a local clock six years behind. ``node run`` itself: ``test_clock_pipeline.py``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bootpull import clock, names, sntp
from bootpull.errors import ExpiredMetadata
from bootpull.trust import Floor, Verifier, load_floor, save_floor
from ntpserver import Chrony
from signed_repo import SignedRepo

YEAR = 365 * 86400.0


class Recorder:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, unix: float) -> None:
        self.calls.append(unix)


def answer(offset: float, server: str = "ntp1") -> object:
    def ask(spec: str, *, timeout: float, clock: object) -> sntp.Sample:
        return sntp.Sample(server=spec, offset=offset, delay=0.001, stratum=2,
                           local=time.time())
    return ask


def test_a_small_offset_is_left_alone() -> None:
    setter = Recorder()
    out = clock.sync(["ntp1"], setter=setter, ask=answer(0.4))  # type: ignore[arg-type]
    assert out.action == clock.IN_SYNC and out.status is None and setter.calls == []
    assert "within 0.400 s of ntp1" in out.message


def test_a_large_offset_is_stepped_and_recorded() -> None:
    setter = Recorder()
    out = clock.sync(["ntp1"], setter=setter, ask=answer(-3 * YEAR))  # type: ignore[arg-type]
    assert out.action == clock.STEPPED and out.status == "ok"
    assert setter.calls and setter.calls[0] == pytest.approx(time.time() - 3 * YEAR, abs=1)
    details = out.details()
    assert details["offset"] == round(-3 * YEAR, 3) and details["server"] == "ntp1"
    assert details["old"][:4] == str(datetime.now(UTC).year)
    assert details["new"] < details["old"]
    assert "the clock was set from" in out.message


def test_the_threshold_is_one_second() -> None:
    assert clock.STEP_THRESHOLD == 1.0
    assert clock.sync(["n"], setter=Recorder(), ask=answer(1.0)).action == clock.IN_SYNC  # type: ignore[arg-type]
    assert clock.sync(["n"], setter=Recorder(), ask=answer(1.01)).action == clock.STEPPED  # type: ignore[arg-type]


def test_without_a_setter_the_node_only_says_how_far_off_it_is() -> None:
    out = clock.sync(["ntp1"], setter=None, not_allowed="not in the boot image",
                     ask=answer(90.0))  # type: ignore[arg-type]
    assert out.action == clock.NOT_SET and out.status == "warn"
    assert "+90.000 s off" in out.message and "not in the boot image" in out.message


def test_a_setter_that_fails_is_a_warning() -> None:
    def refuse(unix: float) -> None:
        raise PermissionError(1, "Operation not permitted")

    out = clock.sync(["ntp1"], setter=refuse, ask=answer(90.0))  # type: ignore[arg-type]
    assert out.action == clock.FAILED and "Operation not permitted" in out.message


def test_no_server_answers() -> None:
    def silent(spec: str, **kw: object) -> sntp.Sample:
        raise sntp.BadReply(f"{spec}: no answer within 2 s")

    out = clock.sync(["a", "b"], setter=Recorder(), ask=silent)
    assert out.action == clock.UNREACHABLE and out.failures == [
        "a: no answer within 2 s", "b: no answer within 2 s"]


def test_a_step_below_the_clock_floor_is_refused() -> None:
    """An NTP answer before the image's build time (or the last good verification) is
    wrong: the clock is not set back to it."""
    setter = Recorder()
    floor = datetime.now(UTC) - timedelta(days=10)
    out = clock.sync(["ntp1"], setter=setter, floor=floor, ask=answer(-6 * YEAR))  # type: ignore[arg-type]
    assert out.action == clock.REFUSED and setter.calls == []
    assert "before the clock floor" in out.message
    # back, but not below the floor: a step like any other
    out = clock.sync(["ntp1"], setter=setter, floor=floor, ask=answer(-86400.0))  # type: ignore[arg-type]
    assert out.action == clock.STEPPED and len(setter.calls) == 1


def test_the_system_clock_is_never_set_outside_the_image(tmp_path: Path) -> None:
    assert clock.may_set(tmp_path / "image.conf") == (
        f"not in the boot image ({tmp_path / 'image.conf'} is absent)")
    (tmp_path / "image.conf").write_text("IMAGE_VERSION=test\n")
    assert clock.may_set(tmp_path / "image.conf") is None  # the tests run as root
    assert not names.IMAGE_MARKER.exists() or clock.may_set() is None


def test_a_real_ntp_server_steps_a_clock_years_behind(chrony: Chrony) -> None:
    setter = Recorder()
    behind = 6 * YEAR  # a dead RTC battery: the box thinks it is 2020

    out = clock.sync([chrony.server], setter=setter, clock=lambda: time.time() - behind)
    assert out.action == clock.STEPPED and out.server == chrony.server
    assert out.offset == pytest.approx(behind, abs=0.5)
    assert setter.calls[0] == pytest.approx(time.time(), abs=0.5)  # now, by the server


# -- a backwards step and expiry ---------------------------------------------------------


def test_a_clock_set_backwards_does_not_make_expired_metadata_fresh(
        signed_repo: SignedRepo, tmp_path: Path) -> None:
    """The metadata expires within 30 days. The image was built, or the node last
    verified, after that; an NTP server (or an RTC) then says it is 2020. Expiry is
    still judged at the floor, so the metadata stays expired."""
    tree = signed_repo.remote().snapshot("main")
    expired_by = datetime.now(UTC) + timedelta(days=45)
    stepped_back = datetime(2020, 1, 1, tzinfo=UTC)
    state = tmp_path / "state"
    # the clock alone would take it
    Verifier(signed_repo.trust, tmp_path / "fresh", now=stepped_back).refresh(tree)
    # the image's build time is the floor
    with pytest.raises(ExpiredMetadata):
        Verifier(signed_repo.trust, state, now=stepped_back,
                 build_time=expired_by).refresh(tree)
    # the last good verification is the floor
    save_floor(state, Floor(last_good=expired_by.isoformat()))
    checked = Verifier(signed_repo.trust, state, now=stepped_back)
    assert checked.reference_time == expired_by
    with pytest.raises(ExpiredMetadata):
        checked.refresh(tree)
    assert load_floor(state).last_good == expired_by.isoformat()  # not moved back
