"""Metadata format 2's placement rule (bootpull.delegation), as pure logic: which bin
and which role own a target path, the node's rule and publish's shortcut alike."""

from __future__ import annotations

import pytest
from bootpull.delegation import (
    MAX_BINS,
    MIN_BINS,
    Owners,
    bin_count,
    bins,
    host_bin,
    role_patterns,
)
from hypothesis import given
from hypothesis import strategies as st

COUNTS = [2 ** n for n in range(9)]  # 1 … 256
HEX = "0123456789abcdef"


def _owners(count: int) -> Owners:
    return Owners([*bins(count), ("role-web", role_patterns("web", 2, 1))])


@pytest.mark.parametrize("count", COUNTS)
def test_every_octet_has_exactly_its_own_bin(count: int) -> None:
    owners = _owners(count)
    span = 256 // count
    for octet in range(256):
        lo = octet // span * span
        expected = f"hosts-{lo:02x}-{lo + span - 1:02x}"
        for path in (f"head/hosts/02-00-00-00-00-{octet:02x}.toml",
                     f"head/secrets/02-00-00-00-00-{octet:02x}/db.age"):
            assert owners.owner(path) == expected, path
            assert host_bin(path, count) == expected, path


@given(st.sampled_from(COUNTS),
       st.text(alphabet=HEX + "ABF-/._x", max_size=30),
       st.sampled_from(["head/hosts/", "head/secrets/", "head/roles/web/", "head/", ""]))
def test_the_shortcut_never_disagrees_with_the_rule(count: int, tail: str, prefix: str
                                                    ) -> None:
    """publish places host files by :func:`host_bin`; a node checks with Owners."""
    path = prefix + tail
    fast = host_bin(path, count)
    assert fast is None or fast == _owners(count).owner(path), path


@given(st.sampled_from(COUNTS), st.integers(0, 2 ** 48 - 1))
def test_a_canonical_host_file_always_takes_the_shortcut(count: int, mac: int) -> None:
    stem = "-".join(f"{(mac >> s) & 255:02x}" for s in range(40, -1, -8))
    path = f"head/hosts/{stem}.toml"
    assert host_bin(path, count) == _owners(count).owner(path) is not None


def test_bin_counts_grow_with_the_fleet_and_never_shrink() -> None:
    assert bin_count(0) == MIN_BINS
    assert bin_count(10_000) == 64
    assert bin_count(10 ** 6) == MAX_BINS
    assert bin_count(10, current=64) == 64, "fewer hosts never merge bins"
    with pytest.raises(ValueError, match="power of two"):
        bins(3)
