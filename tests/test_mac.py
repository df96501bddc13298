"""The canonical MAC type: every notation, round trips, and rejection of garbage."""

from __future__ import annotations

import pytest
from bootpull.mac import Mac, MacError
from hypothesis import given
from hypothesis import strategies as st

octets = st.binary(min_size=6, max_size=6)


def notations(raw: bytes) -> list[str]:
    h = raw.hex()
    pairs = [h[i : i + 2] for i in range(0, 12, 2)]
    return [":".join(pairs), "-".join(pairs), f"{h[0:4]}.{h[4:8]}.{h[8:12]}", h]


@given(octets, st.sampled_from([str.lower, str.upper, str.swapcase]))
def test_every_notation_parses_to_the_same_mac(raw: bytes, case: object) -> None:
    for text in notations(raw):
        mac = Mac.parse(case(text))  # type: ignore[operator]
        assert mac.octets == raw
        assert Mac.parse(str(mac)) == mac
        assert Mac.parse(mac.colons) == mac


@given(octets)
def test_canonical_form_is_lowercase_dashed(raw: bytes) -> None:
    text = Mac(raw).canonical
    assert len(text) == 17
    assert text == text.lower()
    assert text.split("-") == [f"{b:02x}" for b in raw]


def test_known_example() -> None:
    for text in ("52:54:00:AB:CD:EF", "52-54-00-ab-cd-ef", "5254.00ab.cdef", "525400ABCDEF",
                 "  52:54:00:ab:cd:ef\n"):
        assert Mac.parse(text).canonical == "52-54-00-ab-cd-ef"


@pytest.mark.parametrize("text", [
    "", "52:54:00:ab:cd", "52:54:00:ab:cd:ef:01", "52:54-00:ab:cd:ef", "5254.00ab.cdeg",
    "52:54:00:ab:cd:e", "g2:54:00:ab:cd:ef", "52 54 00 ab cd ef", "5254:00ab:cdef",
    "0x525400abcdef", "52::54:00:ab:cd:ef",
])
def test_garbage_is_rejected_with_the_accepted_notations(text: str) -> None:
    with pytest.raises(MacError, match="52:54:00:12:34:56"):
        Mac.parse(text)


@given(st.text(max_size=40))
def test_arbitrary_text_either_parses_or_raises_macerror(text: str) -> None:
    try:
        mac = Mac.parse(text)
    except MacError:
        return
    assert len(mac.octets) == 6


def test_wrong_octet_count_is_refused() -> None:
    with pytest.raises(MacError):
        Mac(b"\x00" * 5)


def test_ordering_and_hashing_follow_the_value() -> None:
    a, b = Mac.parse("00:00:00:00:00:01"), Mac.parse("00-00-00-00-00-02")
    assert a < b
    assert len({a, Mac.parse("000000000001")}) == 1
