"""The locate sources (bootpull.locate) over typed leases, with named DNS fakes."""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field
from ipaddress import IPv4Address

import pytest
from bootpull import dhcp, locate, reporturl
from bootpull.settings import KernelLine
from hypothesis import given
from hypothesis import strategies as st


def make_lease(**kw: object) -> dhcp.Lease:
    base: dict[str, object] = dict(xid=1, ip=IPv4Address("10.0.0.50"),
                                   server_id=IPv4Address("10.0.0.1"), prefix=24)
    base.update(kw)
    return dhcp.Lease(**base)  # type: ignore[arg-type]


DNS_LEASE = dict(domain="lab.test", dns_servers=(IPv4Address("10.0.0.1"),))


@dataclass
class FixedDns:
    """Answers from fixed tables, and records every question."""

    srv_records: dict[str, list[tuple[int, int, int, str]]] = field(default_factory=dict)
    txt_records: dict[str, list[list[bytes]]] = field(default_factory=dict)
    a_records: dict[str, list[str]] = field(default_factory=dict)
    asked: list[tuple[str, str]] = field(default_factory=list)

    def srv(self, name: str) -> list[tuple[int, int, int, str]]:
        self.asked.append(("SRV", name))
        return self.srv_records.get(name, [])

    def txt(self, name: str) -> list[list[bytes]]:
        self.asked.append(("TXT", name))
        return self.txt_records.get(name, [])

    def addresses(self, name: str) -> list[str]:
        self.asked.append(("A", name))
        return self.a_records.get(name, [])


class EmptyDns(FixedDns):
    """Every name is unknown (NXDOMAIN)."""


class BrokenDns:
    """Every question times out."""

    def srv(self, name: str) -> list[tuple[int, int, int, str]]:
        raise locate.DnsFailure(f"SRV {name} via 10.0.0.1: Timeout")

    def txt(self, name: str) -> list[list[bytes]]:
        raise locate.DnsFailure(f"TXT {name} via 10.0.0.1: Timeout")

    def addresses(self, name: str) -> list[str]:
        raise locate.DnsFailure(f"A {name} via 10.0.0.1: Timeout")


# -- cmdline ---------------------------------------------------------------------------


def test_cmdline() -> None:
    assert locate.from_cmdline(None).result == locate.NOT_HERE
    assert locate.from_cmdline(KernelLine.parse("quiet").repo).result == locate.NOT_HERE
    line = KernelLine.parse("quiet bootpull.repo=http://h/r.git bootpull.report=http://h/ev")
    found = locate.from_cmdline(line.repo)
    report = reporturl.resolve(cmdline=line.report, repo_url=found.url)
    assert (found.result, found.url, report and report.url) == ("found", "http://h/r.git",
                                                                 "http://h/ev")
    bad = locate.from_cmdline(KernelLine.parse("bootpull.repo=ftp://h/r.git").repo)
    assert bad.result == locate.FAILED and "not an http:// or https:// URL" in bad.reason
    empty = locate.from_cmdline(KernelLine.parse("bootpull.repo=").repo)
    assert empty.result == locate.FAILED  # an empty bootpull.repo= is not a URL either


# -- DHCP ------------------------------------------------------------------------------


def test_dhcp_43() -> None:
    assert locate.from_dhcp_43(make_lease()).reason == "no option 43 in the lease"
    other = locate.from_dhcp_43(make_lease(vendor={7: b"x"}))
    assert other.result == locate.NOT_HERE and "no sub-option 1" in other.reason
    lease = make_lease(vendor={1: b"https://h/r.git", 2: b"http://h/e"})
    ok = locate.from_dhcp_43(lease)
    assert (ok.result, ok.url, locate.report_url_43(lease)) == ("found", "https://h/r.git",
                                                                "http://h/e")
    lease = make_lease(vendor={1: b"https://h/r.git", 2: b"junk"})
    bad_report = locate.from_dhcp_43(lease)
    assert bad_report.result == locate.FOUND and locate.report_url_43(lease) is None
    assert locate.report_url_43(make_lease(vendor={2: b"http://h/e"})) == "http://h/e"
    assert locate.report_url_43(make_lease()) is None
    not_url = locate.from_dhcp_43(make_lease(vendor={1: b"tftp://h/x"}))
    assert not_url.result == locate.FAILED
    broken = locate.from_dhcp_43(make_lease(problems={43: "option 43: sub-option 1 says..."}))
    assert broken.result == locate.FAILED and broken.reason.startswith("option 43")


def test_dhcp_67_reads_option_then_file_field() -> None:
    dnsmasq = locate.from_dhcp_67(make_lease(bootfile="http://h/r.git"))
    assert (dnsmasq.result, dnsmasq.url, dnsmasq.reason) == ("found", "http://h/r.git",
                                                             "option 67")
    qemu = locate.from_dhcp_67(make_lease(file="https://h/q.git"))
    assert (qemu.url, qemu.reason) == ("https://h/q.git", "the BOOTP file field")
    pxe = locate.from_dhcp_67(make_lease(bootfile="pxelinux.0", file="http://h/f.git"))
    assert pxe.url == "http://h/f.git"
    nothing = locate.from_dhcp_67(make_lease(bootfile="pxelinux.0"))
    assert nothing.result == locate.NOT_HERE
    assert "'pxelinux.0' is not an http:// or https:// URL" in nothing.reason
    broken = locate.from_dhcp_67(make_lease(problems={67: "option 67 (bootfile) is not UTF-8"}))
    assert broken.result == locate.FAILED


# -- DNS -------------------------------------------------------------------------------


def test_srv_with_txt_path() -> None:
    dns = FixedDns(srv_records={"_bootpull._tcp.lab.test": [(10, 0, 8080, "git.lab.test")]},
                   txt_records={"_bootpull._tcp.lab.test": [[b"txtvers=1", b"path=/r.git"]]})
    got = locate.from_dns_srv(make_lease(**DNS_LEASE), dns)
    assert (got.result, got.url) == ("found", "http://git.lab.test:8080/r.git")
    assert dns.asked == [("SRV", "_bootpull._tcp.lab.test"), ("TXT", "_bootpull._tcp.lab.test")]


def test_srv_without_txt_uses_root_path() -> None:
    dns = FixedDns(srv_records={"_bootpull._tcp.lab.test": [(0, 0, 80, "git.lab.test.")]})
    got = locate.from_dns_srv(make_lease(**DNS_LEASE), dns)
    assert got.url == "http://git.lab.test:80/"


def test_srv_dot_target_means_no_service() -> None:
    dns = FixedDns(srv_records={"_bootpull._tcp.lab.test": [(0, 0, 0, ".")]})
    assert locate.from_dns_srv(make_lease(**DNS_LEASE), dns).result == locate.NOT_HERE


def test_srv_hostile_target_and_path() -> None:
    bad_target = FixedDns(srv_records={"_bootpull._tcp.lab.test": [(0, 0, 80, "a b")]})
    assert locate.from_dns_srv(make_lease(**DNS_LEASE), bad_target).result == locate.FAILED
    bad_path = FixedDns(srv_records={"_bootpull._tcp.lab.test": [(0, 0, 80, "h.test")]},
                        txt_records={"_bootpull._tcp.lab.test": [[b"path=r.git"]]})
    got = locate.from_dns_srv(make_lease(**DNS_LEASE), bad_path)
    assert got.result == locate.FAILED and "must start with /" in got.reason
    bad_utf8 = FixedDns(srv_records={"_bootpull._tcp.lab.test": [(0, 0, 80, "h.test")]},
                        txt_records={"_bootpull._tcp.lab.test": [[b"path=/\xff"]]})
    assert locate.from_dns_srv(make_lease(**DNS_LEASE), bad_utf8).result == locate.FAILED


def test_dns_sources_need_a_domain_and_servers() -> None:
    no_domain = locate.from_dns_srv(make_lease(dns_servers=(IPv4Address("10.0.0.1"),)),
                                    EmptyDns())
    assert no_domain.reason == "the lease has no domain (option 15 or 119)"
    loop = make_lease(dns_servers=(IPv4Address("10.0.0.1"),),
                      problems={119: "option 119: pointer at offset 4 ... compression loop"})
    got = locate.from_well_known(loop, EmptyDns())
    assert got.result == locate.FAILED and "compression loop" in got.reason
    no_servers = locate.from_dns_srv(make_lease(domain="lab.test"), EmptyDns())
    assert no_servers.reason == "the lease has no DNS servers (option 6)"
    from_119 = locate.from_well_known(
        make_lease(search=("x.test",), dns_servers=(IPv4Address("10.0.0.1"),)),
        FixedDns(a_records={"bootpull.x.test": ["10.0.0.7"]}))
    assert from_119.url == "http://bootpull.x.test/"


def test_dns_failure_is_failed_not_not_here() -> None:
    got = locate.from_dns_srv(make_lease(**DNS_LEASE), BrokenDns())
    assert got.result == locate.FAILED and "Timeout" in got.reason
    got = locate.from_well_known(make_lease(**DNS_LEASE), BrokenDns())
    assert got.result == locate.FAILED


def test_well_known_needs_the_name_to_resolve() -> None:
    got = locate.from_well_known(make_lease(**DNS_LEASE), EmptyDns())
    assert got.reason == "bootpull.lab.test does not resolve"


@pytest.mark.parametrize(("records", "want"), [
    ([(20, 0, 1, "b"), (10, 0, 2, "a")], "a"),
    ([(10, 0, 1, "."), (20, 0, 2, "b")], "b"),
    ([(10, 0, 1, "a"), (10, 100, 2, "b")], "b"),
])
def test_pick_srv_rfc2782(records: list[tuple[int, int, int, str]], want: str) -> None:
    picked = locate.pick_srv(records, random.Random(1))
    assert picked is not None and picked[3] == want


def test_sources_in_order_stop_at_first_found() -> None:
    dns = FixedDns(a_records={"bootpull.lab.test": ["10.0.0.9"]})
    made: list[dhcp.Lease] = []

    def factory(lease: dhcp.Lease) -> locate.Dns:
        made.append(lease)
        return dns

    lease = make_lease(bootfile="http://h/67.git", **DNS_LEASE)
    tried = locate.try_sources(locate.Clues(lease=lease, dns_factory=factory))
    assert [(a.source, a.result) for a in tried] == [("dhcp-43", "not-here"),
                                                     ("dhcp-67", "found")]
    assert dns.asked == []  # no DNS question when DHCP already answered
    assert made == []  # nor a resolver made
    lease = make_lease(**DNS_LEASE)
    tried = locate.try_sources(locate.Clues(lease=lease, dns_factory=factory))
    assert [a.source for a in tried] == ["dhcp-43", "dhcp-67", "dns-srv", "well-known"]
    assert tried[-1].url == "http://bootpull.lab.test/"
    assert made == [lease]  # one resolver for both DNS sources
    assert locate.ORDER == ("cmdline", "dhcp-43", "dhcp-67", "dns-srv", "well-known")
    assert [s.name for s in locate.SOURCES if not s.on_lease] == ["cmdline"]


def test_without_a_lease_only_the_command_line_is_tried() -> None:
    [found] = locate.try_sources(locate.Clues(repo_url="http://h/r.git"))
    assert (found.source, found.result, found.url) == ("cmdline", "found", "http://h/r.git")
    [absent] = locate.try_sources(locate.Clues())
    assert (absent.source, absent.result) == ("cmdline", "not-here")


def test_default_report_url() -> None:
    assert reporturl.origin_events_url("https://h:8443/x/repo.git") == \
        "https://h:8443/api/v1/events"


@pytest.mark.parametrize("entry", [
    locate.Tried("cmdline", "not-here", "no bootpull.repo= on the kernel command line"),
    locate.Tried("cmdline", "failed", "bootpull.repo= 'a: b' is not an http:// or https:// URL"),
    locate.Tried("dhcp", "found", "lease 10.0.0.5/24 from 10.0.0.1", "eth0"),
    locate.Tried("dhcp-43", "failed", "option 43: sub-option 1 says 64 bytes", "enp0s3"),
    locate.Tried("dhcp", "failed", "eth1 has no carrier (no link after 3s: is the cable in?)"),
    locate.Tried("dhcp", "failed", "there is no interface 'no-such-if0'"),
])
def test_tried_json_round_trip(entry: locate.Tried) -> None:
    out = entry.to_json()
    assert list(out) == ["source", "result", "reason"]
    assert out["reason"] == (f"{entry.interface}: {entry.reason}" if entry.interface
                             else entry.reason)
    assert locate.Tried.from_json(out) == entry


@given(st.dictionaries(st.integers(1, 254), st.binary(max_size=300), max_size=4),
       st.one_of(st.none(), st.text(max_size=200)), st.one_of(st.none(), st.text(max_size=128)))
def test_dhcp_sources_never_raise(vendor: dict[int, bytes], bootfile: str | None,
                                  file: str | None) -> None:
    lease = make_lease(vendor=vendor, bootfile=bootfile, file=file)
    for attempt in (locate.from_dhcp_43(lease), locate.from_dhcp_67(lease)):
        assert attempt.result in (locate.FOUND, locate.NOT_HERE, locate.FAILED)
        assert attempt.reason
        if attempt.result == locate.FOUND:
            assert attempt.url and attempt.url.lower().startswith(("http://", "https://"))
            assert not any(c.isspace() for c in attempt.url)


@given(st.lists(st.tuples(st.integers(0, 65535), st.integers(0, 65535),
                          st.integers(0, 65535), st.text(max_size=80)), max_size=5),
       st.lists(st.lists(st.binary(max_size=60), max_size=3), max_size=3))
def test_srv_source_never_raises(records: list[tuple[int, int, int, str]],
                                 txt: list[list[bytes]]) -> None:
    dns = FixedDns(srv_records={"_bootpull._tcp.lab.test": records},
                   txt_records={"_bootpull._tcp.lab.test": txt})
    attempt = locate.from_dns_srv(make_lease(**DNS_LEASE), dns)
    assert attempt.result in (locate.FOUND, locate.NOT_HERE, locate.FAILED)
    if attempt.url:
        assert attempt.url.startswith("http://") and " " not in attempt.url



# -- malformed URLs: one failed attempt with its reason, never an exception ---------------

MALFORMED = {
    "http://[::1/bad.git": "Invalid IPv6 URL",
    "http://127.0.0.1:99999/x.git": "Port out of range",
    "http://h:abc/x.git": "Port could not be cast",
    "http://:8080/x.git": "has no host name",
    "http://h/x\x7f.git": "control character",
}


def _usable(url: str) -> None:
    """What the fetch does first with a found URL: take it, or refuse it with a
    FetchError (exit 11, with a hint: credentials, say); anything else is a bug."""
    from bootpull.errors import FetchError
    from bootpull.fetch_http import Budget, HttpTransport

    with contextlib.suppress(FetchError):
        HttpTransport(url, Budget(deadline=1, max_bytes=1, url=url), stall_timeout=1)


def _every_source(text: str) -> list[locate.Attempt]:
    raw = text.encode("utf-8", "surrogatepass")
    srv = {"_bootpull._tcp.lab.test": [(0, 0, 8080, "repo.lab.test")]}
    txt = {"_bootpull._tcp.lab.test": [[b"path=" + raw]]}
    return [
        locate.from_cmdline(text),
        locate.from_dhcp_43(make_lease(vendor={dhcp.SUBOPT_REPO_URL: raw})),
        locate.from_dhcp_67(make_lease(bootfile=text)),
        locate.from_dhcp_67(make_lease(file=text)),
        locate.from_dns_srv(make_lease(**DNS_LEASE), FixedDns(srv_records=srv,
                                                               txt_records=txt)),
    ]


@pytest.mark.parametrize("text", sorted(MALFORMED))
def test_a_malformed_url_fails_its_source_with_the_reason(text: str) -> None:
    for attempt in _every_source(text)[:4]:
        assert attempt.result == locate.FAILED, attempt
        assert MALFORMED[text] in attempt.reason, attempt.reason
        assert attempt.url is None


def test_a_malformed_srv_path_fails_dns_srv() -> None:
    srv = locate.from_dns_srv(make_lease(**DNS_LEASE), FixedDns(
        srv_records={"_bootpull._tcp.lab.test": [(0, 0, 8080, "repo.lab.test")]},
        txt_records={"_bootpull._tcp.lab.test": [[b"path=/a\x7fb"]]}))
    assert srv.result == locate.FAILED and "must start with / and have no spaces" in srv.reason


@given(st.one_of(
    st.text(max_size=60),
    st.builds(lambda scheme, rest: scheme + rest,
              st.sampled_from(["http://", "https://", "HTTP://", "http:/", "ftp://"]),
              st.text(st.characters(codec="utf-8"), max_size=40)),
    st.builds(lambda host, port, path: f"http://{host}:{port}{path}",
              st.sampled_from(["h", "[::1", "[::1]", "10.0.0.1", "", "a b", "x@y"]),
              st.one_of(st.integers(-5, 70000).map(str), st.text(max_size=4)),
              st.text(max_size=10))))
def test_any_url_text_through_any_source_is_found_usable_or_failed(text: str) -> None:
    """Hypothesis drives URL strings through every source: each returns an attempt, and
    a found URL is one the fetch can open (no ValueError later, no traceback)."""
    for attempt in _every_source(text):
        assert attempt.result in (locate.FOUND, locate.FAILED, locate.NOT_HERE)
        assert attempt.reason
        if attempt.result == locate.FOUND:
            assert attempt.url is not None
            _usable(attempt.url)
