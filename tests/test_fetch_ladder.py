"""The fetch ladder against the git servers sites run (tests/gitserver_kinds.py).

Each server kind is started on 127.0.0.1 for the test; :class:`bootpull.fetch.GitRemote`
reads the same files from every one, on the rung its advertisement allows, and the
node deploys its role from each (``node run --oneshot``, in-process). The codec of
protocol v0 and the choice of rung are tested as pure functions.
"""

from __future__ import annotations

import itertools
import os
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from bootpull import fetch, gitwire, gitwire_v0
from bootpull.backoff import Counters
from bootpull.console import Console
from bootpull.errors import FetchError, VerifyError
from bootpull.fetch import FetchLimits, GitRemote
from bootpull.fetch_dumb import parse_info_refs
from bootpull.fetch_ladder import choose_v0, choose_v2
from eventsink import EventSink
from fakes import CapturingWriter
from gitserver import git, make_bare_repo
from gitserver_kinds import KINDS
from hypothesis import given
from hypothesis import strategies as st
from marker_role import add_marker_role
from signed_repo import SignedRepo
from test_pipeline import Node

OTHER = os.urandom(300_000)  # another role's file: what a lazy rung never fetches
FILES = {
    "bootpull.toml": b"format = 1\n",
    "roles/web/files/index.html": b"<h1>web</h1>\n",
    "roles/web/files/deep/er/still.txt": b"deep\n",
    "roles/db/files/data.bin": OTHER,
}
WANTED = ["bootpull.toml", "roles/web/files/index.html", "roles/web/files/deep/er/still.txt"]


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    return make_bare_repo(tmp_path / "repo.git", FILES)


def remote(url: str, cache: Path) -> GitRemote:
    return GitRemote(url, cache, limits=FetchLimits(deadline=30, max_attempts=2),
                     console=Console(CapturingWriter()), counters=Counters())


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_server_kind_serves_the_same_files_on_its_rung(
        kind: str, bare: Path, tmp_path: Path,
        git_server_kind: Callable[[str, Path], str]) -> None:
    url = git_server_kind(kind, bare)
    with remote(url, tmp_path / "cache") as first:
        snap = first.snapshot("main")
        assert first.rung is not None and first.rung.name == KINDS[kind]
        assert snap.read_many(WANTED) == {p: FILES[p] for p in WANTED}
        assert [e.path for e in snap.list("roles/web")] == [
            "roles/web/files/deep/er/still.txt", "roles/web/files/index.html"]
        assert snap.commit == git("rev-parse", "main", cwd=bare).strip()
        moved = first.bytes_received
        if first.rung.lazy and kind != "dumb":  # the other role is never fetched
            assert moved < len(OTHER) / 2, moved
        elif not first.rung.lazy:  # the whole tip came, the other role with it
            assert moved > len(OTHER), moved
    # a second boot with nothing changed: the cache answers, only the refs move
    with remote(url, tmp_path / "cache") as again:
        snap = again.snapshot("main")
        assert snap.read_many(WANTED) == {p: FILES[p] for p in WANTED}
        assert again.requests <= 2, again.requests
        assert again.bytes_received < 8_000, again.bytes_received


def test_the_rung_says_what_it_costs_and_what_to_enable() -> None:
    assert choose_v2(filter_ok=True).enable == ""
    stock = choose_v2(filter_ok=False)
    assert not stock.lazy and "uploadpack.allowFilter=true" in stock.line()
    assert "whole tip" in stock.line()
    header = choose_v0(filter_ok=True, by_id=True, shallow_ok=True)
    assert header.lazy and "Git-Protocol" in header.enable
    bare_v0 = choose_v0(filter_ok=False, by_id=False, shallow_ok=False)
    assert not bare_v0.lazy and "history" in bare_v0.cost
    assert "allowFilter" in bare_v0.enable and "Git-Protocol" in bare_v0.enable
    by_id = choose_v0(filter_ok=True, by_id=False, shallow_ok=True)
    assert "allowAnySHA1InWant" in by_id.enable


def test_a_dumb_server_sending_another_object_is_refused(
        bare: Path, tmp_path: Path, git_server_kind: Callable[[str, Path], str]) -> None:
    url = git_server_kind("dumb-loose", bare)
    blob = git("rev-parse", "main:roles/web/files/index.html", cwd=bare).strip()
    other = git("rev-parse", "main:bootpull.toml", cwd=bare).strip()
    path = bare / "objects" / blob[:2] / blob[2:]
    path.chmod(0o644)
    path.write_bytes((bare / "objects" / other[:2] / other[2:]).read_bytes())
    with remote(url, tmp_path / "cache") as r, pytest.raises(VerifyError) as info:
        r.snapshot("main").read("roles/web/files/index.html")
    assert "another object" in info.value.what and info.value.expected == blob


def test_a_dumb_server_with_a_corrupt_loose_object_is_refused(
        bare: Path, tmp_path: Path, git_server_kind: Callable[[str, Path], str]) -> None:
    url = git_server_kind("dumb-loose", bare)
    blob = git("rev-parse", "main:roles/web/files/index.html", cwd=bare).strip()
    path = bare / "objects" / blob[:2] / blob[2:]
    path.chmod(0o644)
    path.write_bytes(zlib.compress(b"blob 999\0short"))
    with remote(url, tmp_path / "cache") as r, pytest.raises(VerifyError):
        r.snapshot("main").read("roles/web/files/index.html")


def test_a_dumb_file_past_the_cap_says_to_serve_smart_http(
        bare: Path, tmp_path: Path, git_server_kind: Callable[[str, Path], str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """dulwich's dumb client holds a file whole: one larger than the cap (a pack of the
    whole history) is a clear FetchError, not a node out of memory."""
    url = git_server_kind("dumb", bare)  # one pack, with OTHER in it
    monkeypatch.setattr(fetch._RawSink, "MAX", 100_000)
    with remote(url, tmp_path / "cache") as r, pytest.raises(FetchError) as info:
        r.snapshot("main").read("bootpull.toml")
    assert "larger than" in info.value.what and "git http-backend" in info.value.hint


# -- the node deploys its role from every kind ---------------------------------------


@pytest.mark.parametrize("kind", ["stock", "no-protocol-header", "dumb", "dulwich"])
def test_the_node_deploys_its_role_from_the_server_and_says_the_rung(
        kind: str, signed_repo: SignedRepo, sink: EventSink, tmp_path: Path,
        git_server_kind: Callable[[str, Path], str]) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    add_marker_role(signed_repo, markers, sink.url)
    url = git_server_kind(kind, signed_repo.root)
    node = Node(tmp_path, signed_repo, url)
    code, text = node.run(fetch_deadline=30.0)
    assert code == 0, text
    assert node.status["role"] == "marker"
    flat = " ".join(text.split())
    assert f"fetching over {KINDS[kind]}: " in flat
    fetch = [e for e in sink.received if e["stage"] == "fetch"]
    assert len(fetch) == 1, fetch
    details = fetch[0]["details"]["fetch"]
    assert details["rung"] == KINDS[kind] and details["cost"]
    assert details["bytes"] > 0 and details["requests"] >= 1
    if kind == "stock":
        assert "uploadpack.allowFilter=true" in details["enable"]
        assert "to fetch less, set uploadpack.allowFilter=true" in flat


# -- protocol v0, the bytes ------------------------------------------------------------

OID = "1" * 40
TAG = "2" * 40
PEELED = "3" * 40


def _advert(caps: str) -> bytes:
    return (gitwire.pkt(b"# service=git-upload-pack\n") + gitwire.FLUSH
            + gitwire.pkt(f"{OID} HEAD\0{caps}\n".encode())
            + gitwire.pkt(f"{OID} refs/heads/main\n".encode())
            + gitwire.pkt(f"{TAG} refs/tags/v1\n".encode())
            + gitwire.pkt(f"{PEELED} refs/tags/v1^{{}}\n".encode()) + gitwire.FLUSH)


def test_v0_advertisement_lists_refs_peels_tags_and_reads_capabilities() -> None:
    adv = gitwire_v0.parse_advertisement(gitwire.parse_packets(
        _advert("multi_ack side-band-64k shallow filter allow-reachable-sha1-in-want "
                "agent=git/2.39")))
    assert adv.refs["refs/heads/main"].target == OID
    assert adv.refs["refs/tags/v1"].oid == TAG and adv.refs["refs/tags/v1"].target == PEELED
    assert adv.supports("filter") and adv.by_id and adv.values["agent"] == "git/2.39"
    assert adv.object_format == "sha1"
    with pytest.raises(gitwire.WireError, match="cut short"):
        gitwire_v0.parse_advertisement(gitwire.parse_packets(_advert("x")[:-4]))
    with pytest.raises(gitwire.WireError, match="object id"):
        gitwire_v0.parse_advertisement(gitwire.parse_packets(
            gitwire.pkt(b"nothex HEAD\0caps\n") + gitwire.FLUSH))


def test_v0_request_asks_for_shallow_and_filter_only_when_it_uses_them() -> None:
    plain = gitwire.parse_packets(gitwire_v0.fetch_request([OID], caps=["side-band-64k"]))
    assert plain[0] == f"want {OID} side-band-64k agent=bootpull\n".encode()
    assert plain[-2] is gitwire.Special.FLUSH and plain[-1] == b"done\n"
    both = gitwire.parse_packets(gitwire_v0.fetch_request(
        [OID, TAG], caps=["side-band-64k"], depth=1, filter_spec="tree:1"))
    assert both[0] == (f"want {OID} side-band-64k shallow filter agent=bootpull\n").encode()
    assert both[1] == f"want {TAG}\n".encode()
    assert b"deepen 1\n" in both and b"filter tree:1\n" in both
    with pytest.raises(ValueError):
        gitwire_v0.fetch_request([], caps=[])


def _answer(pack: bytes, *, shallow: bool) -> bytes:
    out = b""
    if shallow:
        out += gitwire.pkt(f"shallow {OID}\n".encode()) + gitwire.FLUSH
    out += gitwire.pkt(b"NAK\n")
    for start in range(0, len(pack), 1000):
        out += gitwire.pkt(b"\x01" + pack[start:start + 1000])
    out += gitwire.pkt(b"\x02counting objects\n")
    return out + gitwire.FLUSH


@given(pack=st.binary(min_size=1, max_size=5000), shallow=st.booleans(),
       cuts=st.lists(st.integers(min_value=0, max_value=8000), max_size=6))
def test_v0_response_gives_the_pack_back_however_it_is_split(
        pack: bytes, shallow: bool, cuts: list[int]) -> None:
    data = _answer(pack, shallow=shallow)
    parser = gitwire_v0.FetchResponse(deepen=shallow)
    got = b""
    edges = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    for a, b in itertools.pairwise(edges):
        got += parser.feed(data[a:b])
    parser.finish()
    assert got == pack and parser.done
    assert parser.shallow == ([OID] if shallow else [])


def test_v0_response_caps_what_is_not_the_pack() -> None:
    parser = gitwire_v0.FetchResponse(deepen=False, limit=1000)
    parser.feed(gitwire.pkt(b"NAK\n") + gitwire.pkt(b"\x01" + bytes(5000)))  # pack: free
    with pytest.raises(gitwire.TooLarge):
        for _ in range(100):
            parser.feed(gitwire.pkt(b"\x02" + b"counting objects 50%\r" * 3))


def test_v0_response_errors() -> None:
    cut = gitwire_v0.FetchResponse(deepen=False)
    cut.feed(_answer(b"PACK", shallow=False)[:-4])
    with pytest.raises(gitwire.WireError, match="cut short"):
        cut.finish()
    with pytest.raises(gitwire.ServerRefused, match="not our ref"):
        gitwire_v0.FetchResponse(deepen=False).feed(gitwire.pkt(b"ERR not our ref 1234\n"))
    with pytest.raises(gitwire.ServerRefused, match="disk"):
        gitwire_v0.FetchResponse(deepen=False).feed(
            gitwire.pkt(b"NAK\n") + gitwire.pkt(b"\x03disk full\n"))
    with pytest.raises(gitwire.WireError, match="NAK"):
        gitwire_v0.FetchResponse(deepen=False).feed(gitwire.pkt(b"PACK\n"))


def test_dumb_info_refs() -> None:
    text = f"{OID}\trefs/heads/main\n{TAG}\trefs/tags/v1\n{PEELED}\trefs/tags/v1^{{}}\n"
    refs = parse_info_refs(text.encode())
    assert refs is not None and refs["refs/tags/v1"].target == PEELED
    assert refs["refs/heads/main"].target == OID
    assert parse_info_refs(b"") is None
    assert parse_info_refs(b"<html>not found</html>\n") is None
    # what a smart server would send is not a dumb ref list
    assert parse_info_refs(_advert("side-band-64k")) is None
