"""``bootpull repo site-config``: the snippets, checked by the real servers' own checkers.

dnsmasq (``--test``), ISC Kea (``kea-dhcp4 -t``) and BIND (``named-checkzone``) judge
what we print; the namespace test (tests/test_site_config_netns.py) then discovers a
repository through a real dnsmasq started with the snippet.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from bootpull.errors import UsageError
from bootpull_repo import site_config
from bootpull_repo.site_config import bind_zone, dnsmasq, kea, kea_fragment, make_site
from hypothesis import given, settings
from hypothesis import strategies as st

REPO = "http://10.0.0.1:8000/repo.git"
REPORT = "http://10.0.0.1:8000/api/v1/events"

needs_kea = pytest.mark.skipif(shutil.which("kea-dhcp4") is None,
                               reason="kea-dhcp4 is not installed (apt kea-dhcp4-server)")
needs_bind = pytest.mark.skipif(shutil.which("named-checkzone") is None,
                                reason="named-checkzone is not installed (apt bind9-utils)")
needs_dnsmasq = pytest.mark.skipif(shutil.which("dnsmasq") is None,
                                   reason="dnsmasq is not installed")


# -- what the checkers say ------------------------------------------------------------


def kea_check(tmp: Path, fragment: dict[str, object]) -> subprocess.CompletedProcess[str]:
    """``kea-dhcp4 -t`` on a minimal server configuration with ``fragment`` merged in."""
    config = {"Dhcp4": {
        "interfaces-config": {"interfaces": []},
        "lease-database": {"type": "memfile", "persist": False},
        "subnet4": [{"id": 1, "subnet": "10.0.0.0/24",
                     "pools": [{"pool": "10.0.0.10 - 10.0.0.20"}]}],
        **fragment,
    }}
    path = tmp / "kea-dhcp4.conf"
    path.write_text(json.dumps(config))
    return subprocess.run(["kea-dhcp4", "-t", str(path)], capture_output=True, text=True,
                          timeout=60, check=False)


def zone_check(tmp: Path, domain: str, records: str) -> subprocess.CompletedProcess[str]:
    """``named-checkzone`` on ``records`` pasted under a zone's SOA and NS."""
    zone = (
        f"$TTL 300\n$ORIGIN {domain}.\n"
        f"@ IN SOA ns1.{domain}. hostmaster.{domain}. 1 3600 600 86400 300\n"
        f"@ IN NS ns1.{domain}.\nns1 IN A 192.0.2.53\n" + records
    )
    path = tmp / "zone"
    path.write_text(zone)
    return subprocess.run(["named-checkzone", domain, str(path)], capture_output=True,
                          text=True, timeout=60, check=False)


def dnsmasq_check(tmp: Path, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp / "bootpull.conf"
    path.write_text(text)
    return subprocess.run(["dnsmasq", "--test", f"--conf-file={path}"], capture_output=True,
                          text=True, timeout=60, check=False)


# -- dnsmasq --------------------------------------------------------------------------


def test_dnsmasq_tags_the_vendor_class_and_sends_43_1_43_2_and_67() -> None:
    text = dnsmasq(make_site(REPO, "lab.example.net", REPORT))
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines == [
        "dhcp-vendorclass=set:bootpull,bootpull",
        f'dhcp-option-force=vendor:bootpull,1,"{REPO}"',
        f'dhcp-option-force=vendor:bootpull,2,"{REPORT}"',
        f'dhcp-option-force=tag:bootpull,option:bootfile-name,"{REPO}"',
        "dhcp-option=tag:bootpull,option:domain-name,lab.example.net",
    ]


def test_dnsmasq_without_report_or_domain_leaves_those_lines_out() -> None:
    text = dnsmasq(make_site(REPO))
    assert "vendor:bootpull,1," in text
    assert "vendor:bootpull,2," not in text
    assert "domain-name" not in text


@needs_dnsmasq
def test_dnsmasq_accepts_the_snippet(tmp_path: Path) -> None:
    result = dnsmasq_check(tmp_path, dnsmasq(make_site(REPO, "lab.example.net", REPORT)))
    assert result.returncode == 0, result.stderr


@needs_dnsmasq
def test_dnsmasq_check_can_fail(tmp_path: Path) -> None:
    broken = dnsmasq(make_site(REPO)).replace("dhcp-vendorclass=", "dhcp-vendorclas=")
    assert dnsmasq_check(tmp_path, broken).returncode != 0


# -- Kea ------------------------------------------------------------------------------


@needs_kea
@pytest.mark.parametrize("report", [None, REPORT])
def test_kea_accepts_the_fragment(tmp_path: Path, report: str | None) -> None:
    result = kea_check(tmp_path, kea_fragment(make_site(REPO, "lab.example.net", report)))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_kea
def test_kea_check_can_fail(tmp_path: Path) -> None:
    fragment = kea_fragment(make_site(REPO))
    fragment["client-classes"][0]["test"] = "option[60].text ==="  # type: ignore[index]
    assert kea_check(tmp_path, fragment).returncode != 0


def test_kea_printed_text_is_the_fragment_behind_comments() -> None:
    site = make_site(REPO, "lab.example.net", REPORT)
    text = kea(site)
    body = "\n".join(line for line in text.splitlines() if not line.startswith("//"))
    assert json.loads(body) == {"Dhcp4": kea_fragment(site)}
    classes = kea_fragment(site)["client-classes"]
    assert classes[0]["test"] == "substring(option[60].hex,0,8) == 'bootpull'"
    data = {d["name"]: d.get("data") for d in classes[0]["option-data"]}
    assert data["bootpull-repo-url"] == REPO
    assert data["bootpull-report-url"] == REPORT
    assert data["boot-file-name"] == REPO


@needs_kea
def test_kea_accepts_the_printed_text_with_its_comments(tmp_path: Path) -> None:
    # Kea reads // comments: the whole printed block is a valid configuration file
    # once the server's own parts are added; here we check the block as printed.
    printed = kea(make_site(REPO, "lab.example.net"))
    body = "\n".join(line for line in printed.splitlines() if not line.startswith("//"))
    fragment = json.loads(body)["Dhcp4"]
    result = kea_check(tmp_path, fragment)
    assert result.returncode == 0, result.stdout + result.stderr


# -- BIND -----------------------------------------------------------------------------


@needs_bind
@pytest.mark.parametrize(
    ("url", "domain", "expected"),
    [
        ("http://10.0.0.1:8000/repo.git", "lab.example.net",
         ["_bootpull._tcp   300 IN SRV   0 0 8000 bootpull.lab.example.net.",
          '_bootpull._tcp   300 IN TXT   "path=/repo.git"',
          "bootpull         300 IN A     10.0.0.1"]),
        ("http://[2001:db8::5]/", "lab.example.net",
         ["_bootpull._tcp   300 IN SRV   0 0 80 bootpull.lab.example.net.",
          '_bootpull._tcp   300 IN TXT   "path=/"',
          "bootpull         300 IN AAAA  2001:db8::5"]),
        ("https://git.example.net/fleet.git", None,
         ["_bootpull._tcp   300 IN SRV   0 0 443 git.example.net.",
          '_bootpull._tcp   300 IN TXT   "path=/fleet.git"',
          "bootpull         300 IN CNAME git.example.net."]),
    ],
)
def test_bind_records_pass_named_checkzone(tmp_path: Path, url: str, domain: str | None,
                                           expected: list[str]) -> None:
    site = make_site(url, domain)
    records = bind_zone(site)
    lines = [line for line in records.splitlines() if line and not line.startswith((";", "$"))]
    assert lines == expected
    assert site.domain is not None
    result = zone_check(tmp_path, site.domain, records)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_bind
def test_zone_check_can_fail(tmp_path: Path) -> None:
    records = bind_zone(make_site(REPO, "lab.example.net")).replace("IN SRV   0 0 8000",
                                                                    "IN SRV   0 0 port")
    assert zone_check(tmp_path, "lab.example.net", records).returncode != 0


def test_bind_notes_when_the_well_known_name_cannot_reach_the_repo() -> None:
    assert "well-known name alone" in bind_zone(make_site(REPO, "lab.example.net"))
    assert "well-known name alone" not in bind_zone(
        make_site("http://10.0.0.1/", "lab.example.net"))
    assert "build http:// URLs" in bind_zone(make_site("https://git.example.net/x"))


def test_bind_without_a_domain_says_how_to_get_one() -> None:
    text = bind_zone(make_site(REPO))
    assert "--domain" in text
    assert "SRV" not in "\n".join(x for x in text.splitlines() if not x.startswith(";"))


def test_repo_host_named_bootpull_gets_no_self_cname() -> None:
    text = bind_zone(make_site("http://bootpull.lab.example.net/", "lab.example.net"))
    assert "CNAME" not in text
    assert "SRV   0 0 80 bootpull.lab.example.net." in text


# -- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("", "not a URL"),
        ("ftp://10.0.0.1/repo", "not an http or https URL"),
        ("10.0.0.1/repo", "not an http or https URL"),
        ('http://10.0.0.1/"; rm -rf /', "not a URL"),
        ("http://10.0.0.1/a b", "not a URL"),
        ("http://user:pw@10.0.0.1/", "user name or password"),
        ("http://10.0.0.1:99999/", "bad port"),
        ("http://-bad-.example/", "neither an IP address nor a valid host name"),
        ("http:///path", "has no host"),
        ("http://10.0.0.1/" + "x" * 300, "do not fit in DHCP option 43"),
    ],
)
def test_bad_urls_are_refused_with_a_remedy(url: str, fragment: str) -> None:
    with pytest.raises(UsageError) as info:
        make_site(url)
    assert fragment in info.value.what
    assert info.value.hint


@pytest.mark.parametrize("domain", ["", "localhost", "bad_domain.example", "-x.example"])
def test_bad_domains_are_refused(domain: str) -> None:
    with pytest.raises(UsageError, match="is not a DNS domain"):
        make_site(REPO, domain)


def test_domain_defaults_to_the_repo_hosts_parent() -> None:
    assert make_site("http://git.lab.example.net/r").domain == "lab.example.net"
    assert make_site("http://git.example/r").domain is None  # no parent below the TLD
    assert make_site(REPO).domain is None
    assert make_site(REPO, "Lab.Example.NET.").domain == "lab.example.net"


# -- property: whatever is accepted, every server accepts -----------------------------

_label = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)
_domains = st.lists(_label, min_size=2, max_size=3).map(".".join)
_path = st.lists(st.from_regex(r"[A-Za-z0-9._~%+-]{1,10}", fullmatch=True),
                 max_size=3).map(lambda parts: "/" + "/".join(parts))
_hosts = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
    _domains,
)


@st.composite
def sites(draw: st.DrawFn) -> tuple[str, str]:
    scheme = draw(st.sampled_from(["http", "https"]))
    host = draw(_hosts)
    port = draw(st.one_of(st.none(), st.integers(1, 65535)))
    url = f"{scheme}://{host}{'' if port is None else f':{port}'}{draw(_path)}"
    return url, draw(_domains)


@needs_dnsmasq
@needs_bind
@needs_kea
@settings(max_examples=25)
@given(sites())
def test_every_accepted_site_passes_every_checker(tmp_path_factory: pytest.TempPathFactory,
                                                  case: tuple[str, str]) -> None:
    url, domain = case
    site = make_site(url, domain, url)
    tmp = tmp_path_factory.mktemp("site")
    assert dnsmasq_check(tmp, dnsmasq(site)).returncode == 0
    result = zone_check(tmp, domain, bind_zone(site))
    assert result.returncode == 0, result.stdout
    result = kea_check(tmp, kea_fragment(site))
    assert result.returncode == 0, result.stdout + result.stderr


@given(st.text(max_size=80))
def test_hostile_urls_never_escape_their_quotes(url: str) -> None:
    try:
        site = make_site(url)
    except UsageError:
        return
    for text in (dnsmasq(site), bind_zone(site)):
        for line in text.splitlines():
            if line.startswith((";", "#")):
                continue
            assert '"' not in url and "\n" not in url and "\\" not in url
            assert line.count('"') in (0, 2)


def test_render_only_one_server() -> None:
    site = make_site(REPO, "lab.example.net")
    assert site_config.render(site, ("bind",)) == bind_zone(site)


def test_the_command_prints_every_part_or_one(capsys: pytest.CaptureFixture[str]) -> None:
    from bootpull.cli import main

    assert main(["repo", "site-config", "--repo-url", REPO, "--domain", "lab.example.net"]) == 0
    out = capsys.readouterr().out
    site = make_site(REPO, "lab.example.net")
    assert out == "\n".join([dnsmasq(site), kea(site), bind_zone(site)])
    assert main(["repo", "site-config", "--repo-url", REPO, "--only", "dnsmasq"]) == 0
    assert capsys.readouterr().out == dnsmasq(make_site(REPO))


def test_the_command_refuses_a_bad_url_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from bootpull.cli import main

    assert main(["repo", "site-config", "--repo-url", "ftp://x/"]) == 2
    err = capsys.readouterr().err
    assert "is not an http or https URL" in err and "do:" in err
