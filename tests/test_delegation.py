"""Metadata format 2's placement rule (bootpull.delegation), as pure logic: which bin
and which role own a target path, the node's rule and publish's shortcut alike."""

from __future__ import annotations

import json

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


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=4),
    max_leaves=12)


@given(st.one_of(
    st.binary(max_size=200),
    _JSON.map(lambda v: json.dumps({"signed": v}).encode()),
    st.fixed_dictionaries({"_type": st.sampled_from(["targets", "root"]),
                           "version": _JSON, "expires": st.text(max_size=24),
                           "targets": _JSON}).map(lambda v: json.dumps({"signed": v}).encode())))
def test_a_committed_role_file_is_read_or_left_out_never_raises(data: bytes) -> None:
    """publish reads committed role files as JSON: anything else is left out (signed
    anew), and what it keeps has the shape publish relies on."""
    from bootpull_repo.delegated import Committed

    found = Committed.parse(data)
    if found is not None:
        signed = json.loads(data)["signed"]
        assert signed["_type"] == "targets" and found.version == signed["version"]
        assert isinstance(found.targets, dict) and found.expires.tzinfo is not None


def test_a_committed_role_file_as_python_tuf_writes_it_is_read() -> None:
    from datetime import UTC, datetime

    from bootpull_repo.delegated import Committed
    from bootpull_repo.publish import metadata_bytes, target_file
    from tuf.api.metadata import Metadata, Targets

    md = Metadata(Targets(version=7, expires=datetime(2031, 2, 3, 4, 5, 6, tzinfo=UTC),
                          targets={"head/hosts/a-01.toml": target_file(
                              "head/hosts/a-01.toml", 3, "ab" * 32, 0o100644)}))
    found = Committed.parse(metadata_bytes(md))
    assert found is not None and found.version == 7
    assert Committed.parse(b"[" * 200_000) is None, "too deep for json: left out"
    assert found.expires == datetime(2031, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert found.targets["head/hosts/a-01.toml"] == {
        "length": 3, "hashes": {"sha256": "ab" * 32}, "custom": {"git_mode": 0o100644}}
