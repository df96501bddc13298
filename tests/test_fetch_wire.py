"""Pure-logic tests: git v2 wire parsing, Retry-After, the pull's budget, and the pack
scanner."""

from __future__ import annotations

import contextlib
import hashlib
import io
import struct
import subprocess
import tempfile
import zlib
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from bootpull import gitwire
from bootpull.errors import FetchError
from bootpull.fetch import parse_retry_after
from bootpull.fetch_http import Budget
from bootpull.packscan import PackProblem, scan_pack
from gitserver import make_bare_repo
from hypothesis import given
from hypothesis import strategies as st

OID = "a" * 40
OID2 = "b" * 40

# -- pkt-lines ------------------------------------------------------------------------


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in [*points, len(data)]:
        out.append(data[last:p])
        last = p
    return out


@given(st.lists(st.binary(max_size=300), max_size=20), st.lists(st.integers(0, 10**6)))
def test_pkt_lines_round_trip_in_any_chunking(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(gitwire.pkt(p) for p in payloads) + gitwire.DELIM + gitwire.FLUSH
    parser = gitwire.PktParser()
    got: list[gitwire.Packet] = []
    for chunk in split(stream, cuts):
        got += parser.feed(chunk)
    assert got == [*payloads, gitwire.Special.DELIM, gitwire.Special.FLUSH]
    assert parser.pending == 0


@given(st.binary(max_size=2000))
def test_pkt_parser_only_ever_raises_wire_error(data: bytes) -> None:
    with contextlib.suppress(gitwire.WireError):
        gitwire.parse_packets(data)


def encode(packet: gitwire.Packet) -> bytes:
    if isinstance(packet, gitwire.Special):
        return b"%04x" % packet.value
    return gitwire.pkt(packet)


@given(st.one_of(st.binary(max_size=400),
                 st.lists(st.one_of(st.binary(max_size=60).map(gitwire.pkt),
                                    st.sampled_from([b"0000", b"0001", b"0002"])),
                          max_size=12).map(b"".join)))
def test_what_the_pkt_parser_accepts_is_exactly_its_input(data: bytes) -> None:
    """Paired with the robustness test: an accepted stream loses and invents nothing."""
    try:
        packets = gitwire.parse_packets(data)
    except gitwire.WireError:
        return
    assert b"".join(encode(p) for p in packets) == data


def test_pkt_parser_refuses_bad_lengths() -> None:
    for bad in (b"zzzz", b"0003", b"-001", b"fff1" + b"x" * 70000):
        with pytest.raises(gitwire.WireError):
            gitwire.parse_packets(bad)


def test_pkt_refuses_oversized_payloads() -> None:
    with pytest.raises(ValueError, match="over"):
        gitwire.pkt(b"x" * 65517)


# -- capabilities, ls-refs -------------------------------------------------------------


def lines(*items: bytes | None) -> bytes:
    return b"".join(gitwire.FLUSH if i is None else gitwire.pkt(i) for i in items)


def test_capabilities_v2() -> None:
    caps = gitwire.parse_capabilities(lines(
        b"version 2\n", b"agent=git/2.39.5\n", b"ls-refs=unborn\n",
        b"fetch=shallow wait-for-done filter\n", b"server-option\n",
        b"object-format=sha1\n", b"object-info\n", None))
    assert caps.supports("fetch", "filter") and caps.supports("fetch", "shallow")
    assert caps.supports("ls-refs") and not caps.supports("fetch", "packfile-uris")
    assert caps.object_format == "sha1"
    assert caps.values["agent"] == "git/2.39.5"


def test_capabilities_after_a_service_line() -> None:
    caps = gitwire.parse_capabilities(lines(b"# service=git-upload-pack\n", None,
                                            b"version 2\n", b"fetch=shallow\n", None))
    assert caps.supports("fetch", "shallow")


def test_v0_advertisement_is_refused() -> None:
    with pytest.raises(gitwire.WireError, match="v0/v1"):
        gitwire.parse_capabilities(lines(b"# service=git-upload-pack\n", None,
                                         OID.encode() + b" HEAD\0multi_ack\n", None))


def test_ls_refs_request_asks_only_for_the_candidates() -> None:
    request = gitwire.ls_refs_request(["refs/heads/main", "refs/tags/main"])
    packets = gitwire.parse_packets(request)
    assert packets[0] == b"command=ls-refs\n"
    assert b"ref-prefix refs/heads/main\n" in packets and b"peel\n" in packets
    assert packets[-1] is gitwire.Special.FLUSH
    with pytest.raises(ValueError):
        gitwire.ls_refs_request(["refs/heads/a b"])


def test_ls_refs_response_with_peeled_tags() -> None:
    refs = gitwire.parse_ls_refs(lines(
        f"{OID} refs/heads/main\n".encode(),
        f"{OID2} refs/tags/role/web/1.0 peeled:{OID}\n".encode(),
        f"{OID} HEAD symref-target:refs/heads/main\n".encode(), None))
    assert refs["refs/heads/main"].target == OID
    assert refs["refs/tags/role/web/1.0"].oid == OID2
    assert refs["refs/tags/role/web/1.0"].target == OID
    assert refs["HEAD"].target == OID


@pytest.mark.parametrize("body", [
    lines(f"{OID} refs/heads/main\n".encode()),  # no flush: cut short
    lines(b"nothex refs/heads/main\n", None),
    lines(f"{OID} refs/tags/x peeled:zz\n".encode(), None),
    lines(b"onlyoneword\n", None),
])
def test_malformed_ls_refs_is_a_wire_error(body: bytes) -> None:
    with pytest.raises(gitwire.WireError):
        gitwire.parse_ls_refs(body)


def test_err_packet_is_the_servers_message() -> None:
    with pytest.raises(gitwire.ServerRefused, match="access denied"):
        gitwire.parse_ls_refs(lines(b"ERR access denied\n", None))


@pytest.mark.parametrize(("ref", "expected"), [
    ("main", ["refs/heads/main", "refs/tags/main"]),
    ("refs/tags/role/web/1.0", ["refs/tags/role/web/1.0"]),
    ("HEAD", ["HEAD"]),
])
def test_candidate_refs(ref: str, expected: list[str]) -> None:
    assert gitwire.candidate_refs(ref) == expected


@pytest.mark.parametrize("ref", ["", "a b", "a/../b", "main/", "x\n"])
def test_bad_ref_names_are_refused(ref: str) -> None:
    with pytest.raises(ValueError):
        gitwire.candidate_refs(ref)


# -- fetch ---------------------------------------------------------------------------


def test_fetch_request_is_shallow_filtered_and_done() -> None:
    packets = gitwire.parse_packets(
        gitwire.fetch_request([OID], depth=1, filter_spec="blob:none"))
    assert packets[0] == b"command=fetch\n"
    assert gitwire.Special.DELIM in packets
    for line in (b"deepen 1\n", b"filter blob:none\n", f"want {OID}\n".encode(), b"done\n"):
        assert line in packets
    assert b"thin-pack\n" not in packets
    with pytest.raises(ValueError):
        gitwire.fetch_request([])
    with pytest.raises(gitwire.WireError):
        gitwire.fetch_request(["not-an-id"])
    with pytest.raises(ValueError):
        gitwire.fetch_request([OID], filter_spec="blob:none\nwant x")


def fetch_response(pack: bytes, *, progress: bool = True) -> bytes:
    parts = [gitwire.pkt(b"shallow-info\n"), gitwire.pkt(f"shallow {OID}\n".encode()),
             gitwire.DELIM, gitwire.pkt(b"packfile\n")]
    if progress:
        parts.append(gitwire.pkt(b"\x02Counting objects\n"))
    for at in range(0, len(pack), 1000):
        parts.append(gitwire.pkt(b"\x01" + pack[at:at + 1000]))
    parts.append(gitwire.FLUSH)
    return b"".join(parts)


@given(st.binary(max_size=5000), st.lists(st.integers(0, 10**6), max_size=30))
def test_fetch_response_demultiplexes_in_any_chunking(pack: bytes, cuts: list[int]) -> None:
    response = gitwire.FetchResponse()
    got = b"".join(response.feed(chunk) for chunk in split(fetch_response(pack), cuts))
    response.finish()
    assert got == pack
    assert response.shallow == [OID]
    assert response.progress == ["Counting objects"]


def test_fetch_response_cut_short_is_detected() -> None:
    data = fetch_response(b"x" * 3000)
    response = gitwire.FetchResponse()
    response.feed(data[:-10])
    with pytest.raises(gitwire.WireError, match="cut short"):
        response.finish()


def test_fetch_response_error_band_is_the_servers_message() -> None:
    data = gitwire.pkt(b"packfile\n") + gitwire.pkt(b"\x03upload-pack: not our ref " + OID.encode())
    with pytest.raises(gitwire.ServerRefused, match="not our ref"):
        gitwire.FetchResponse().feed(data)


@given(st.binary(max_size=3000))
def test_fetch_response_only_ever_raises_wire_error(data: bytes) -> None:
    response = gitwire.FetchResponse()
    try:
        response.feed(data)
        response.finish()
    except gitwire.WireError:
        pass


_BANDS = st.lists(st.one_of(st.tuples(st.just(1), st.binary(min_size=1, max_size=300)),
                            st.tuples(st.just(2), st.text("abc \n", min_size=1, max_size=20)
                                      .map(str.encode))), max_size=10)


@given(st.lists(st.sampled_from([OID, OID2]), max_size=3), _BANDS,
       st.lists(st.integers(0, 10**5)))
def test_a_fetch_response_yields_exactly_its_pack_bytes(
        shallow: list[str], bands: list[tuple[int, bytes]], cuts: list[int]) -> None:
    """Paired with the robustness test: in any chunking, the pack is band 1 and nothing
    else, the shallow lines and progress come out as sent, and only the final flush
    completes it."""
    head = b""
    if shallow:
        head = (gitwire.pkt(b"shallow-info\n")
                + b"".join(gitwire.pkt(f"shallow {o}\n".encode()) for o in shallow)
                + gitwire.DELIM)
    body = b"".join(gitwire.pkt(bytes([band]) + data) for band, data in bands)
    stream = head + gitwire.pkt(b"packfile\n") + body + gitwire.FLUSH
    response = gitwire.FetchResponse()
    pack, fed = b"", 0
    for chunk in split(stream, cuts):
        assert not response.done, "done before the final flush-pkt"
        pack += response.feed(chunk)
        fed += len(chunk)
        if fed == len(stream):
            break
    response.finish()
    assert response.done
    assert pack == b"".join(data for band, data in bands if band == 1)
    assert response.shallow == shallow
    assert response.progress == [data.decode().strip() for band, data in bands if band == 2]


# -- Retry-After --------------------------------------------------------------------------


def test_retry_after_seconds_and_dates() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") is None
    when = datetime.now(UTC) + timedelta(seconds=120)
    got = parse_retry_after(format_datetime(when, usegmt=True))
    assert got is not None and 110 < got <= 121
    past = datetime.now(UTC) - timedelta(days=1)
    assert parse_retry_after(format_datetime(past, usegmt=True)) == 0.0


@given(st.text(max_size=60))
def test_retry_after_never_raises(text: str) -> None:
    value = parse_retry_after(text)
    assert value is None or value >= 0


# -- the pull's budget -------------------------------------------------------------------


def test_the_budget_keeps_the_deadline_and_the_byte_cap() -> None:
    now = [100.0]
    budget = Budget(30.0, 1000, "http://10.0.0.1/repo.git", clock=lambda: now[0])
    assert budget.remaining() == 30.0
    now[0] += 31
    assert budget.remaining() == -1.0
    budget.add_bytes(600)
    budget.add_bytes(400)  # at the cap is still within it
    assert budget.bytes_received == 1000
    budget.url = "http://10.0.0.2/repo.git"  # a redirect moved the remote
    with pytest.raises(FetchError) as info:
        budget.add_bytes(1)
    assert info.value.what == ("the fetch from http://10.0.0.2/repo.git passed its cap of "
                               "1000 bytes")
    assert info.value.why == "1001 bytes were received"
    assert "FetchLimits.max_bytes" in info.value.hint


# -- the pack scanner -------------------------------------------------------------------


def entry(kind: int, size: int) -> bytes:
    byte, size = (kind << 4) | (size & 0x0F), size >> 4
    out = bytearray()
    while size:
        out.append(byte | 0x80)
        byte, size = size & 0x7F, size >> 7
    out.append(byte)
    return bytes(out)


def make_pack(*entries: bytes) -> bytes:
    body = b"PACK" + struct.pack(">LL", 2, len(entries)) + b"".join(entries)
    return body + hashlib.sha1(body).digest()


def scan(data: bytes, max_inflated: int = 2**20) -> int:
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.flush()
        return scan_pack(f, max_inflated=max_inflated)


@pytest.fixture(scope="module")
def real_pack(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    files = {f"f{i}.txt": (b"line %d\n" % i) * 200 for i in range(20)}
    bare = make_bare_repo(tmp_path_factory.mktemp("pack") / "p.git", files)
    work = bare.with_name(bare.name + ".work")
    (work / "f0.txt").write_bytes(files["f0.txt"] + b"more\n")  # a delta in the pack
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "2"],
                   cwd=work, check=True)
    objects = subprocess.run(["git", "rev-list", "--objects", "HEAD"], cwd=work, check=True,
                             capture_output=True).stdout
    return subprocess.run(["git", "pack-objects", "--stdout"], cwd=work, input=objects,
                          check=True, capture_output=True).stdout


def test_a_pack_made_by_git_passes(real_pack: bytes) -> None:
    count = struct.unpack(">L", real_pack[8:12])[0]
    assert scan(real_pack) == count


def test_a_truncated_pack_is_refused(real_pack: bytes) -> None:
    with pytest.raises(PackProblem):
        scan(real_pack[: len(real_pack) // 2])


def test_a_declared_size_bomb_is_refused_without_inflating() -> None:
    with pytest.raises(PackProblem, match="declares"):
        scan(make_pack(entry(3, 2**40) + zlib.compress(b"x")))


def test_an_inflation_bomb_is_refused() -> None:
    bomb = zlib.compress(b"\0" * (4 * 2**20))
    with pytest.raises(PackProblem, match="cap"):
        scan(make_pack(entry(3, 4 * 2**20) + bomb), max_inflated=2**20)


def test_an_entry_that_inflates_past_its_header_is_refused() -> None:
    with pytest.raises(PackProblem, match="inflates"):
        scan(make_pack(entry(3, 10) + zlib.compress(b"y" * 1000)))


def test_a_self_referencing_delta_is_refused() -> None:
    delta = entry(6, 4) + b"\x00" + zlib.compress(b"\x01\x01\x00\x00")
    with pytest.raises(PackProblem, match="offset"):
        scan(make_pack(entry(3, 1) + zlib.compress(b"a"), delta))


def test_a_delta_to_a_huge_object_is_refused() -> None:
    huge = b"\x01" + b"\xff" * 6 + b"\x7f"  # source 1 byte, result ~2**49 bytes
    delta = entry(7, len(huge)) + b"\x11" * 20 + zlib.compress(huge)
    with pytest.raises(PackProblem, match="delta to a"):
        scan(make_pack(delta))


def test_an_unknown_type_and_trailing_junk_are_refused() -> None:
    with pytest.raises(PackProblem, match="type 5"):
        scan(make_pack(entry(5, 1) + zlib.compress(b"a")))
    with pytest.raises(PackProblem, match="checksum"):
        scan(make_pack(entry(3, 1) + zlib.compress(b"a")) + b"junk")
    with pytest.raises(PackProblem, match="pack header"):
        scan(b"NOPE" + b"\0" * 40)


@given(st.data())
def test_mutated_packs_only_ever_raise_pack_problem(real_pack: bytes, data: st.DataObject) -> None:
    mutated = bytearray(real_pack)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(mutated) - 1))
        mutated[at] = data.draw(st.integers(0, 255))
    try:
        entries = scan(bytes(mutated))
    except PackProblem as exc:
        assert str(exc)
        return
    # Paired: what the scanner accepts, it has walked whole (the checksum is git's to
    # check, the objects' ids and the signed hashes are checked later).
    assert entries == struct.unpack(">L", bytes(mutated[8:12]))[0]


def test_a_tiny_file_is_not_a_pack() -> None:
    with pytest.raises(PackProblem, match="too short"):
        scan_pack(io.BytesIO(b"PACK"), max_inflated=1)  # type: ignore[arg-type]


# -- caps on what is not pack data (issue 10, item 5: memory) ---------------------------

_PAYLOADS = st.lists(st.binary(max_size=300).filter(lambda p: not p.startswith(b"ERR ")),
                     max_size=20)


def answer_of(payloads: list[bytes]) -> bytes:
    return b"".join(gitwire.pkt(p) for p in payloads) + gitwire.FLUSH


@given(_PAYLOADS, st.lists(st.integers(0, 10**6)))
def test_a_small_answer_parses_the_same_in_any_chunking(payloads: list[bytes],
                                                        cuts: list[int]) -> None:
    stream = answer_of(payloads)
    answer = gitwire.SmallAnswer("ls-refs")
    for chunk in split(stream, cuts):
        answer.feed(chunk)
    assert answer.packets == gitwire.parse_packets(stream) == [*payloads, gitwire.Special.FLUSH]
    assert answer.data == stream and answer.not_git is None and not answer.cut_short


@given(_PAYLOADS, st.integers(0, 10**6))
def test_an_answer_that_stops_anywhere_before_its_flush_is_cut_short(
        payloads: list[bytes], at: int) -> None:
    stream = answer_of(payloads)
    answer = gitwire.SmallAnswer("ls-refs")
    answer.feed(stream[: at % len(stream)])
    assert answer.cut_short


@given(st.integers(1, 5000), st.binary(min_size=1, max_size=9000),
       st.lists(st.integers(0, 10**6)))
def test_a_small_answer_never_holds_more_than_its_cap(limit: int, data: bytes,
                                                      cuts: list[int]) -> None:
    """Pkt-lines or not: past ``limit`` bytes it raises TooLarge, never holding more."""
    answer = gitwire.SmallAnswer("ls-refs", limit=limit)
    try:
        for chunk in split(data, cuts):
            answer.feed(chunk)
    except gitwire.TooLarge as exc:
        assert len(data) > limit and len(answer.data) <= limit
        assert str(exc) == f"ls-refs was larger than {limit} bytes"
    else:
        assert len(data) <= limit and answer.data == data


def test_a_giant_declared_length_is_not_git_at_once() -> None:
    answer = gitwire.SmallAnswer("ls-refs")
    answer.feed(b"ffff" + b"x" * 100)
    assert answer.not_git is not None and "over git's limit of 65520" in str(answer.not_git)
    assert not answer.cut_short and answer.packets == []  # the caller reports what it is
    with pytest.raises(gitwire.TooLarge):
        for _ in range(20):
            answer.feed(b"x" * 65536)


@given(st.integers(5, gitwire.MAX_PKT), st.integers(0, 3 * gitwire.MAX_PKT))
def test_a_length_that_never_arrives_waits_for_one_line_at_most(size: int, extra: int) -> None:
    parser = gitwire.PktParser()
    fed = b"%04x" % size + b"y" * min(extra, size - 5)
    assert parser.feed(fed) == [] and parser.pending == len(fed) < gitwire.MAX_PKT


@given(st.lists(st.binary(max_size=gitwire.MAX_PKT - 4), max_size=4),
       st.lists(st.integers(0, 10**6), max_size=10))
def test_the_pkt_parser_holds_less_than_one_line_between_feeds(payloads: list[bytes],
                                                               cuts: list[int]) -> None:
    parser = gitwire.PktParser()
    for chunk in split(b"".join(gitwire.pkt(p) for p in payloads), cuts):
        parser.feed(chunk)
        assert parser.pending < gitwire.MAX_PKT


def test_the_pkt_parser_keeps_failing_after_a_bad_length() -> None:
    parser = gitwire.PktParser()
    with pytest.raises(gitwire.WireError, match="length prefix"):
        parser.feed(gitwire.pkt(b"ok") + b"zzzz")
    with pytest.raises(gitwire.WireError, match="length prefix"):
        parser.feed(gitwire.pkt(b"more"))  # not "ok" again, not a fresh start


def test_parsers_take_the_packets_a_small_answer_kept() -> None:
    answer = gitwire.SmallAnswer("ls-refs")
    answer.feed(lines(f"{OID} refs/heads/main\n".encode(), None))
    assert gitwire.parse_ls_refs(answer.packets) == gitwire.parse_ls_refs(answer.data)


@given(_BANDS, st.lists(st.integers(0, 10**5)))
def test_what_a_fetch_response_carries_besides_its_pack_is_capped(
        bands: list[tuple[int, bytes]], cuts: list[int]) -> None:
    """Exactly the bytes that are not pack data count, in any chunking: at the cap the
    response parses, one byte under it raises TooLarge."""
    stream = (gitwire.pkt(b"packfile\n")
              + b"".join(gitwire.pkt(bytes([band]) + data) for band, data in bands)
              + gitwire.FLUSH)
    non_pack = 13 + 4 + sum(5 + len(data) for band, data in bands if band == 2)
    for limit, fits in ((non_pack, True), (non_pack - 1, False)):
        response = gitwire.FetchResponse(limit=limit)
        try:
            for chunk in split(stream, cuts):
                response.feed(chunk)
            response.finish()
        except gitwire.TooLarge:
            assert not fits
        else:
            assert fits and response.non_pack_bytes == non_pack


def test_endless_progress_stops_at_1_mib_and_pack_data_does_not_count() -> None:
    response = gitwire.FetchResponse()
    response.feed(gitwire.pkt(b"packfile\n"))
    for _ in range(100):  # 6.4 MB of pack data
        response.feed(gitwire.pkt(b"\x01" + b"p" * 65000))
    progress = gitwire.pkt(b"\x02" + b"Counting objects\r" * 3000)
    with pytest.raises(gitwire.TooLarge, match="larger than 1 MiB"):
        for _ in range(100):
            response.feed(progress)
    kept = gitwire.FetchResponse()
    kept.feed(gitwire.pkt(b"packfile\n") + gitwire.pkt(b"\x02done\n") * 1000)
    assert len(kept.progress) == gitwire.FetchResponse.MAX_PROGRESS  # the rest are dropped


def test_endless_acknowledgments_stop_at_1_mib() -> None:
    response = gitwire.FetchResponse()
    response.feed(gitwire.pkt(b"acknowledgments\n"))
    with pytest.raises(gitwire.TooLarge):
        for _ in range(2**20 // 10):
            response.feed(gitwire.pkt(b"NAK\n") * 10)


def test_the_sinks_turn_caps_into_fetch_errors_that_are_not_retried() -> None:
    from bootpull.fetch import _BytesSink, _PackSink
    from bootpull.fetch_http import Transient

    sink = _BytesSink()
    with pytest.raises(FetchError) as refs:
        for _ in range(20):
            sink.write(gitwire.pkt(f"{OID} refs/heads/main\n".encode()) * 1000)
    assert refs.value.exit_code == 11
    assert str(refs.value).startswith("the server's answer to ls-refs was larger than 1 MiB")
    assert "broken or hostile" in refs.value.why
    pack_sink = _PackSink(None, 2**30)  # no pack data ever comes: no object store needed
    pack_sink.write(gitwire.pkt(b"packfile\n"))
    with pytest.raises(FetchError, match="besides the pack") as progress:
        for _ in range(100):
            pack_sink.write(gitwire.pkt(b"\x02" + b"x" * 60000))
    assert "broken or hostile" in progress.value.why
    cut = _BytesSink()
    cut.write(b"fff0" + b"x" * 1000)
    with pytest.raises(Transient, match="cut short"):
        cut.finish()


@pytest.mark.parametrize("body", [b"<html>not git</html>", gitwire.pkt(b"ERR no such ref\n")])
def test_an_answer_that_is_not_git_or_an_error_is_the_callers_to_report(body: bytes) -> None:
    from bootpull.fetch import _BytesSink

    sink = _BytesSink()
    sink.write(body)
    sink.finish()  # not "cut short": retrying would not change it
    with pytest.raises(gitwire.WireError):
        gitwire.parse_ls_refs(sink.data)


def test_objects_and_deltas_over_their_caps_are_refused_before_they_are_inflated() -> None:
    from bootpull.packscan import ObjectTooLarge

    blob = make_pack(entry(3, 2 * 2**20) + zlib.compress(bytes(2 * 2**20)))
    assert scan(blob, max_inflated=2**30) == 1
    with tempfile.TemporaryFile() as f:
        f.write(blob)
        with pytest.raises(ObjectTooLarge, match="blob of 2097152 bytes, over the cap of"):
            scan_pack(f, max_inflated=2**30, max_object=2**20)
    for head, words in ((b"\x01\x80\x80\x80\x01", "from a 1-byte object to a 2097152-byte"),
                        (b"\x80\x80\x80\x01\x01", "from a 2097152-byte object to a 1-byte"),
                        (b"\x01\x01" + b"\x90\x01" * 2**20, "delta of 2097154 bytes")):
        delta = make_pack(entry(7, len(head)) + b"\x11" * 20 + zlib.compress(head))
        with tempfile.TemporaryFile() as f:
            f.write(delta)
            assert scan_pack(f, max_inflated=2**30, max_object=2**20) == 1  # a delta
            with pytest.raises(ObjectTooLarge, match=words):
                scan_pack(f, max_inflated=2**30, max_delta=2**20)
