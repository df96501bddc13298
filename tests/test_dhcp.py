"""The pure DHCP codec (bootpull.dhcp): known answers, RFC corner cases, hostile bytes."""

from __future__ import annotations

import contextlib
import struct
from ipaddress import IPv4Address

import pytest
from bootpull import dhcp
from hypothesis import given
from hypothesis import strategies as st

MAC = bytes.fromhex("525400123456")
SERVER = IPv4Address("10.0.0.1")


def make_reply(options: list[tuple[int, bytes]] | bytes, *, kind: int = dhcp.ACK,
               xid: int = 0x1234, yiaddr: str = "10.0.0.50", file: bytes = b"",
               sname: bytes = b"", with_basics: bool = True) -> bytes:
    """A BOOTREPLY built by hand (independently of the code under test's encoder)."""
    header = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 2, 1, 6, 0, xid, 0, 0, bytes(4),
                         IPv4Address(yiaddr).packed, SERVER.packed, bytes(4),
                         MAC.ljust(16, b"\0"), sname.ljust(64, b"\0"), file.ljust(128, b"\0"))
    if isinstance(options, bytes):
        body = options
    else:
        if with_basics:
            options = [(53, bytes([kind])), (54, SERVER.packed), (1, b"\xff\xff\xff\0"),
                       *options]
        # values over 255 bytes go out as several instances (RFC 3396)
        body = b"".join(bytes([c, len(v[i:i + 255])]) + v[i:i + 255]
                        for c, v in options for i in range(0, max(len(v), 1), 255)) + b"\xff"
    return header + b"\x63\x82\x53\x63" + body


def lease(options: list[tuple[int, bytes]], **kw: object) -> dhcp.Lease:
    return dhcp.lease_from_reply(dhcp.parse_reply(make_reply(options, **kw)))  # type: ignore[arg-type]


def _sub(code: int, value: bytes) -> bytes:
    return bytes([code, len(value)]) + value


# -- requests ----------------------------------------------------------------------------


def _options_of(packet: bytes) -> dict[int, bytes]:
    found: dict[int, bytearray] = {}
    dhcp._scan_options(packet[240:], "options", found)
    return {k: bytes(v) for k, v in found.items()}


def test_discover_carries_vendor_class_and_parameter_list() -> None:
    packet = dhcp.encode_request(xid=0xDEADBEEF, mac=MAC,
                                 options=dhcp.discover_options(mac=MAC))
    assert len(packet) >= 300
    assert packet[0] == 1 and packet[1:3] == b"\x01\x06"
    assert packet[4:8] == b"\xde\xad\xbe\xef"
    assert packet[28:34] == MAC
    assert packet[236:240] == dhcp.MAGIC_COOKIE
    opts = _options_of(packet)
    assert opts[53] == bytes([dhcp.DISCOVER])
    assert opts[60] == b"bootpull"
    assert opts[61] == b"\x01" + MAC
    for code in (1, 3, 6, 7, 12, 15, 43, 51, 54, 66, 67, 119):
        assert code in opts[55]
    assert 114 not in opts[55]  # RFC 8910: captive portal, not ours


def test_request_names_the_server_and_address() -> None:
    packet = dhcp.encode_request(xid=1, mac=MAC, options=dhcp.request_options(
        mac=MAC, requested_ip=IPv4Address("10.0.0.50"), server_id=SERVER))
    opts = _options_of(packet)
    assert opts[53] == bytes([dhcp.REQUEST])
    assert opts[50] == IPv4Address("10.0.0.50").packed
    assert opts[54] == SERVER.packed


def test_long_option_is_split_and_joined_again_rfc3396() -> None:
    value = bytes(range(256)) * 2
    encoded = dhcp.encode_options([(43, value)])
    assert encoded.count(b"\x2b\xff") == 2  # two full 255-byte pieces, then the rest
    reply = dhcp.parse_reply(make_reply(encoded, with_basics=False))
    assert reply.options[43] == value


# -- replies: what dnsmasq and QEMU send ------------------------------------------------


def test_dnsmasq_style_lease() -> None:
    domains = dhcp.encode_domain_list(["lab.test", "corp.lab.test"])
    got = lease([
        (3, SERVER.packed), (6, SERVER.packed + IPv4Address("10.0.0.2").packed),
        (7, IPv4Address("10.0.0.9").packed), (12, b"node-1"), (15, b"lab.test"),
        (43, _sub(1, b"http://10.0.0.1/repo.git") + _sub(2, b"http://10.0.0.1/e")),
        (51, struct.pack("!I", 3600)), (66, b"tftp.lab.test"),
        (67, b"http://10.0.0.1/boot.git\0"), (119, domains),
    ])
    assert got.ip == IPv4Address("10.0.0.50") and got.prefix == 24
    assert got.server_id == SERVER
    assert got.gateway == SERVER
    assert [str(a) for a in got.dns_servers] == ["10.0.0.1", "10.0.0.2"]
    assert [str(a) for a in got.log_servers] == ["10.0.0.9"]
    assert got.hostname == "node-1"
    assert got.domain == "lab.test" and got.dns_domain == "lab.test"
    assert got.search == ("lab.test", "corp.lab.test")
    assert got.lease_time == 3600
    assert got.tftp_server == "tftp.lab.test"
    assert got.bootfile == "http://10.0.0.1/boot.git"  # the trailing NUL is gone
    assert got.vendor[1] == b"http://10.0.0.1/repo.git"
    assert got.vendor[2] == b"http://10.0.0.1/e"
    assert got.problems == {}


def test_qemu_style_bootfile_in_file_field_only() -> None:
    got = lease([], file=b"http://10.0.2.2/repo.git", sname=b"qemu")
    assert got.bootfile is None
    assert got.file == "http://10.0.2.2/repo.git"
    assert got.sname == "qemu"


def test_domain_falls_back_to_first_search_entry() -> None:
    got = lease([(119, dhcp.encode_domain_list(["b.test", "c.test"]))])
    assert got.domain is None and got.dns_domain == "b.test"


def test_option_overload_puts_options_in_file_and_sname() -> None:
    in_file = b"\x0f\x08lab.test\xff"
    in_sname = b"\x0c\x04node\xff"
    got = lease([(52, b"\x03")], file=in_file, sname=in_sname)
    assert got.domain == "lab.test"
    assert got.hostname == "node"
    assert got.file is None and got.sname is None


def test_missing_mask_is_classful_and_said() -> None:
    raw = make_reply([(53, b"\x05"), (54, SERVER.packed)], with_basics=False)
    got = dhcp.lease_from_reply(dhcp.parse_reply(raw))
    assert got.prefix == 8
    assert "assumed the classful /8" in got.problems[1]


# -- replies: hostile ------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "words"), [
    (b"\x02" * 100, "too short"),
    (make_reply(b"\x0c\xc8node", with_basics=False), "says 200 bytes but only 4 remain"),
    (make_reply(b"\x35\x01\x05", with_basics=False), "no END"),
    (make_reply(b"\x35", with_basics=False), "has no length byte"),
    (make_reply([(52, b"\x07")]), "option 52"),
    (make_reply([(52, b"\x01")], file=b"\x0c\xffabc"), "in the file field"),
    (b"\x01" + make_reply([])[1:], "not a BOOTREPLY"),
    (make_reply([])[:236] + b"\0\0\0\0" + make_reply([])[240:], "magic cookie"),
    (make_reply([]) + bytes(5000), "over the limit"),
])
def test_unreadable_reply_is_rejected_with_reason(raw: bytes, words: str) -> None:
    with pytest.raises(dhcp.MalformedDhcp, match=words):
        dhcp.parse_reply(raw)


@pytest.mark.parametrize(("options", "words"), [
    ([(53, b"\x05"), (1, b"\xff\xff\xff\0")], "no server identifier"),
    ([(53, b"\x05"), (54, b"\x0a\x00\x00")], "not a non-zero multiple of 4"),
    ([(53, b"\x05"), (54, SERVER.packed * 2)], "exactly one address"),
    ([(53, b"\x05"), (54, SERVER.packed), (1, b"\xff\xff\xff")], "length 3, must be 4"),
    ([(53, b"\x05"), (54, SERVER.packed), (1, b"\xff\x00\xff\x00")], "not a valid netmask"),
    ([(53, b"\x02"), (54, SERVER.packed)], "expected a ACK but got a OFFER"),
])
def test_unusable_lease_is_rejected(options: list[tuple[int, bytes]], words: str) -> None:
    reply = dhcp.parse_reply(make_reply(options, with_basics=False))
    with pytest.raises(dhcp.MalformedDhcp, match=words):
        dhcp.lease_from_reply(reply)


def test_zero_address_offer_is_rejected() -> None:
    with pytest.raises(dhcp.MalformedDhcp, match="cannot be used"):
        lease([], yiaddr="0.0.0.0")


@pytest.mark.parametrize(("code", "value", "words"), [
    (12, b"a" * 255, "over the limit of 253"),
    (12, b"no spaces please", "invalid label"),
    (12, b"caf\xc3\xa9\xff", "not valid UTF-8"),
    (15, b"lab\x00test", "NUL byte inside"),
    (15, b"lab.\x1btest", "control character"),
    (3, b"\x0a\x00\x00", "multiple of 4"),
    (6, b"", "multiple of 4"),
    (51, b"\x00\x01", "lease time"),
    (67, b"http://\xff\xfe/", "not valid UTF-8"),
    (43, b"\x01\x40http://x/", "sub-option 1 says 64 bytes but only 9 remain"),
    (43, b"\x01", "no length byte"),
    (119, b"\xc0\x00", "compression loop"),
    (119, b"\x03lab\x04test\x00\x03foo\xc0\x0a", "compression loop"),
    (119, b"\x03lab\xc0\x08\x00\x00\x00\x00", "does not point backwards"),
    (119, b"\x05ab", "runs past the end"),
    (119, b"\x80abc", "label type"),
    (119, b"\x03l\xffb\x00", "not ASCII"),
    (119, b"\x3fxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" * 5 + b"\0",
     "over 255 octets"),
])
def test_bad_optional_option_is_left_out_with_reason(code: int, value: bytes,
                                                     words: str) -> None:
    got = lease([(code, value)])
    assert words in got.problems[code], got.problems
    assert got.ip == IPv4Address("10.0.0.50")  # the address itself is still good


def test_bad_file_field_is_a_problem_not_a_crash() -> None:
    got = lease([], file=b"http://\xff/")
    assert got.file is None
    assert "BOOTP file field is not valid UTF-8" in got.problems[0]


def test_rfc3397_example_compression() -> None:
    # RFC 3397 §3: eng.apple.com. and marketing.apple.com. with a pointer to apple.com.
    raw = (b"\x03eng\x05apple\x03com\x00" + b"\x09marketing\xc0\x04")
    assert dhcp.decode_domain_list(raw) == ("eng.apple.com", "marketing.apple.com")


def _tlv_stream(options: list[tuple[int, bytes]]) -> bytes:
    return b"".join(bytes([c, len(v)]) + v for c, v in options)


@pytest.mark.parametrize("where", ["options", "file", "sname"])
@pytest.mark.parametrize("short", [1, 2, 7])
def test_an_option_that_overruns_its_area_by_any_amount_is_refused(where: str, short: int) -> None:
    """The last option of an area claims ``short`` bytes more than the area still holds."""
    size = {"options": 40, "file": 128, "sname": 64}[where]
    have = 3
    area = bytes(size - 2 - have) + bytes([15, have + short]) + b"abc"  # PADs, then the option
    assert len(area) == size
    if where == "options":
        raw = make_reply(bytes([53, 1, dhcp.ACK]) + area, with_basics=False)
    else:
        raw = make_reply([(52, b"\x01" if where == "file" else b"\x02")],
                         **{where: area})  # type: ignore[arg-type]
    with pytest.raises(dhcp.MalformedDhcp,
                       match=f"option 15 .*says {have + short} bytes but only {have} remain"):
        dhcp.parse_reply(raw)


@pytest.mark.parametrize("short", [1, 2, 30])
def test_a_sub_option_that_overruns_option_43_by_any_amount_is_left_out(short: int) -> None:
    value = _sub(2, b"http://home/") + bytes([1, 10 + short]) + b"http://x/a"
    got = lease([(43, value)])
    assert f"says {10 + short} bytes but only 10 remain" in got.problems[43], got.problems


_OPTION = st.tuples(st.integers(1, 254).filter(lambda c: c not in (52,)), st.binary(max_size=40))


@given(st.lists(_OPTION, max_size=10), st.lists(_OPTION, max_size=3),
       st.lists(_OPTION, max_size=1))
def test_options_read_back_exactly_from_every_area(in_options: list[tuple[int, bytes]],
                                                   in_file: list[tuple[int, bytes]],
                                                   in_sname: list[tuple[int, bytes]]) -> None:
    """What parse_reply returns is what was sent: each code's values, concatenated in
    RFC 2131's order (options, file, sname), and nothing else."""
    file, sname = _tlv_stream(in_file) + b"\xff", _tlv_stream(in_sname) + b"\xff"
    if len(file) > 128 or len(sname) > 64:
        return
    raw = make_reply([*in_options, (52, b"\x03")], with_basics=False, file=file, sname=sname)
    got = dhcp.parse_reply(raw)
    expect: dict[int, bytes] = {}
    for code, value in [*in_options, *in_file, *in_sname]:
        expect[code] = expect.get(code, b"") + value
    assert got.options == expect
    assert got.overloaded == {"file", "sname"}


@given(st.lists(st.tuples(st.integers(1, 254), st.binary(max_size=30)), max_size=8))
def test_sub_options_read_back_exactly(subs: list[tuple[int, bytes]]) -> None:
    expect: dict[int, bytes] = {}
    for code, value in subs:
        expect[code] = expect.get(code, b"") + value
    assert dhcp.decode_suboptions(_tlv_stream(subs)) == expect


@given(st.binary(max_size=600))
def test_any_bytes_parse_or_fail_with_reason(data: bytes) -> None:
    try:
        reply = dhcp.parse_reply(data)
    except dhcp.MalformedDhcp as exc:
        assert str(exc)
        return
    for expect in (dhcp.OFFER, dhcp.ACK):
        try:
            dhcp.lease_from_reply(reply, expect=expect)
        except dhcp.MalformedDhcp as exc:
            assert str(exc)


@given(st.lists(st.tuples(st.integers(1, 254), st.binary(max_size=40)), max_size=12),
       st.binary(max_size=128), st.binary(max_size=64))
def test_any_options_decode_or_fail_with_reason(options: list[tuple[int, bytes]],
                                                file: bytes, sname: bytes) -> None:
    raw = make_reply(options, kind=dhcp.ACK, file=file, sname=sname)
    try:
        got = dhcp.lease_from_reply(dhcp.parse_reply(raw))
    except dhcp.MalformedDhcp as exc:
        assert str(exc)
        return
    for text in (got.hostname, got.domain, got.bootfile, got.file, got.sname, *got.search):
        assert text is None or not any(ord(c) < 0x20 for c in text)
    assert all(isinstance(v, str) and v for v in got.problems.values())


@given(st.binary(max_size=300), st.integers(0, 299), st.integers(0, 255))
def test_mutated_valid_reply_never_crashes(noise: bytes, where: int, byte: int) -> None:
    good = bytearray(make_reply([(43, b"\x01\x05http:"), (119, b"\x03lab\x00\x03foo\xc0\x00"),
                                 (67, b"http://x/\0")]))
    good[240 + where % (len(good) - 240)] = byte
    for raw in (bytes(good), bytes(good[:240 + where]), bytes(good) + noise):
        with contextlib.suppress(dhcp.MalformedDhcp):
            dhcp.lease_from_reply(dhcp.parse_reply(raw))


@given(st.binary(max_size=300))
def test_domain_list_terminates_on_any_bytes(raw: bytes) -> None:
    try:
        names = dhcp.decode_domain_list(raw)
    except dhcp.MalformedDhcp as exc:
        assert str(exc)
        return
    assert all(len(n) <= 253 for n in names)


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_domain = st.lists(_label, min_size=1, max_size=4).map(".".join)


@given(st.lists(_domain, min_size=1, max_size=6), st.booleans())
def test_domain_list_round_trip(names: list[str], compress: bool) -> None:
    raw = dhcp.encode_domain_list(names, compress=compress)
    assert dhcp.decode_domain_list(raw) == tuple(names)


@given(st.binary(max_size=300))
def test_suboptions_parse_or_fail(raw: bytes) -> None:
    try:
        subs = dhcp.decode_suboptions(raw)
    except dhcp.MalformedDhcp as exc:
        assert "option 43" in str(exc)
        return
    assert all(0 < code < 255 for code in subs)


@given(st.integers(1, 32))
def test_prefix_round_trip(prefix: int) -> None:
    mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    assert dhcp.decode_prefix(struct.pack("!I", mask)) == prefix


@given(st.binary(max_size=300))
def test_text_is_clean_or_rejected(raw: bytes) -> None:
    try:
        text = dhcp.decode_text(raw, "x", limit=255)
    except dhcp.MalformedDhcp:
        return
    assert "\0" not in text and len(text.encode()) <= 255


_pieces = st.one_of(
    st.builds(lambda t: bytes([0xC0 | (t >> 8), t & 0xFF]), st.integers(0, 80)),  # pointers
    st.sampled_from([b"\x00", b"\x01a", b"\x03lab", b"\x04test", b"\x3f"]),
    st.binary(min_size=1, max_size=2),
)


@given(st.lists(_pieces, max_size=40).map(b"".join))
def test_pointer_heavy_domain_lists_terminate(raw: bytes) -> None:
    try:
        dhcp.decode_domain_list(raw)
    except dhcp.MalformedDhcp as exc:
        assert str(exc).startswith("option 119")
