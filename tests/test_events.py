"""The event format 1 validator shared by the node and the home base."""

from __future__ import annotations

from typing import Any

import pytest
from bootpull.events import EventError, make_event, validate_event
from bootpull.mac import Mac
from hypothesis import given
from hypothesis import strategies as st

NODE = Mac.parse("52:54:00:12:34:56")


def good() -> dict[str, Any]:
    return make_event(node=NODE, stage="run", status="ok", message="role web started",
                      role="web", version="1.0", counters={"retries": 2})


def test_make_event_is_valid_and_canonical() -> None:
    event = good()
    assert event["node"] == "52-54-00-12-34-56"
    assert event["counters"] == {"retries": 2, "restarts": 0, "fallbacks": 0}
    assert validate_event(event) == event


def test_any_mac_notation_is_normalized() -> None:
    event = good() | {"node": "5254.0012.3456"}
    assert validate_event(event)["node"] == "52-54-00-12-34-56"


@pytest.mark.parametrize(("change", "word"), [
    ({"format": 2}, "format"), ({"format": "1"}, "format"), ({"node": "nope"}, "node"),
    ({"status": "great"}, "status"), ({"time": "yesterday"}, "time"),
    ({"time": "2026-01-01T00:00:00"}, "zone"), ({"counters": {"retries": -1}}, "retries"),
    ({"counters": {"oops": 1}}, "oops"), ({"role": 5}, "role"), ({"details": []}, "details"),
    ({"message": "x" * 5000}, "message"),
    ({"version": "\ud800"}, "surrogate"), ({"details": {"k": "\udfff"}}, "details"),
    ({"commit": "xyz"}, "commit"), ({"color": 1}, "color"),
])
def test_bad_fields_are_named(change: dict[str, Any], word: str) -> None:
    with pytest.raises(EventError, match=word):
        validate_event(good() | change)


def test_non_object_is_refused() -> None:
    with pytest.raises(EventError, match="JSON object"):
        validate_event([good()])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@given(st.dictionaries(st.sampled_from(["format", "node", "status", "time", "counters",
                                        "details", "role", "junk"]), json_values))
def test_arbitrary_json_is_either_valid_or_eventerror(obj: dict[str, Any]) -> None:
    try:
        out = validate_event(obj)
    except EventError as exc:
        assert str(exc)
        return
    assert validate_event(out) == out
