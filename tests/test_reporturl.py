"""bootpull.reporturl: the one rule for the report URL (docs/contract.md §2.5), by property."""

from __future__ import annotations

from urllib.parse import urlsplit

from bootpull import reporturl
from hypothesis import given
from hypothesis import strategies as st

#: the keyword of each candidate, in precedence order (the last is the repository URL)
CANDIDATES = ("repo_toml", "remembered", "cmdline", "dhcp_43")

hosts = st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z][a-z0-9-]{0,10}){0,2}", fullmatch=True)
urls = st.builds(lambda scheme, host, path: f"{scheme}://{host}{path}",
                 st.sampled_from(["http", "https"]), hosts,
                 st.from_regex(r"(/[a-z0-9._-]{0,8}){0,3}", fullmatch=True))
#: a candidate as the node may hold it: not offered, offered empty, or a URL
maybe_urls = st.one_of(st.none(), st.just(""), urls)
candidates = st.fixed_dictionaries({name: maybe_urls for name in CANDIDATES})


def _winner(offered: dict[str, str | None], repo_url: str | None) -> str | None:
    found = reporturl.resolve(**offered, repo_url=repo_url)
    return found.url if found is not None else None


@given(candidates, maybe_urls)
def test_the_result_is_a_candidate_or_the_origin(offered: dict[str, str | None],
                                                 repo_url: str | None) -> None:
    found = reporturl.resolve(**offered, repo_url=repo_url)
    values = [value for value in offered.values() if value]
    if found is None:
        assert not values and not repo_url
        return
    assert found.source in reporturl.ORDER
    if found.source == "origin":
        assert not values and repo_url
        assert found.url == reporturl.origin_events_url(repo_url)
    else:
        assert found.url == offered[CANDIDATES[reporturl.ORDER.index(found.source)]]


@given(candidates, maybe_urls)
def test_the_first_candidate_that_is_set_wins(offered: dict[str, str | None],
                                              repo_url: str | None) -> None:
    first = next((name for name in CANDIDATES if offered[name]), None)
    found = reporturl.resolve(**offered, repo_url=repo_url)
    if first is not None:
        assert found is not None and found.url == offered[first]
        assert found.source == reporturl.ORDER[CANDIDATES.index(first)]


@given(candidates, maybe_urls, st.data())
def test_removing_a_lower_candidate_changes_nothing(offered: dict[str, str | None],
                                                    repo_url: str | None,
                                                    data: st.DataObject) -> None:
    present = [name for name in CANDIDATES if offered[name]]
    if not present:
        return
    lower = data.draw(st.sampled_from([*CANDIDATES[CANDIDATES.index(present[0]) + 1:],
                                       "repo_url"]))
    before = _winner(offered, repo_url)
    if lower == "repo_url":
        assert _winner(offered, None) == before
    else:
        assert _winner({**offered, lower: None}, repo_url) == before


@given(candidates, urls)
def test_discover_then_node_run_agree(offered: dict[str, str | None], repo_url: str) -> None:
    """node run hands on option 43.2 when discover's report URL came from it
    (``report_url_source``): before the repository is read, both decide the same."""
    at_discover = reporturl.resolve(cmdline=offered["cmdline"], dhcp_43=offered["dhcp_43"],
                                    repo_url=repo_url)
    assert at_discover is not None
    relayed = reporturl.resolve(
        cmdline=offered["cmdline"], repo_url=repo_url,
        dhcp_43=at_discover.url if at_discover.source == "dhcp-43" else None)
    assert relayed == at_discover


@given(st.sampled_from(["http", "https", "HTTP", "Https"]),
       st.one_of(st.just(""), st.from_regex(r"[a-z0-9]{1,6}(:[a-z0-9]{0,6})?@", fullmatch=True)),
       hosts, st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}")),
       st.from_regex(r"(/[a-z0-9._-]{0,8}){0,3}", fullmatch=True),
       st.one_of(st.just(""), st.from_regex(r"\?[a-z0-9=&]{0,8}", fullmatch=True)),
       st.one_of(st.just(""), st.from_regex(r"#[a-z0-9]{0,8}", fullmatch=True)))
def test_the_origin_keeps_scheme_userinfo_host_and_port(
        scheme: str, userinfo: str, host: str, port: str, path: str, query: str,
        fragment: str) -> None:
    repo_url = f"{scheme}://{userinfo}{host}{port}{path}{query}{fragment}"
    events = reporturl.origin_events_url(repo_url)
    assert events == f"{scheme.lower()}://{userinfo}{host}{port}/api/v1/events"
    parts = urlsplit(events)
    assert (parts.path, parts.query, parts.fragment) == ("/api/v1/events", "", "")


def test_the_examples_of_the_contract() -> None:
    assert reporturl.origin_events_url("http://10.0.0.1:8080/repo.git") == \
        "http://10.0.0.1:8080/api/v1/events"
    assert reporturl.resolve() is None
    assert reporturl.resolve(repo_url="") is None
    assert reporturl.resolve(remembered="", repo_url="https://boot.example/x/y/") == \
        reporturl.ReportUrl("https://boot.example/api/v1/events", "origin")
    assert reporturl.resolve(repo_toml="http://a/ev", remembered="http://b/ev",
                             cmdline="http://c/ev") == \
        reporturl.ReportUrl("http://a/ev", "bootpull.toml")
    assert reporturl.resolve(cmdline="http://c/ev", dhcp_43="http://d/ev") == \
        reporturl.ReportUrl("http://c/ev", "cmdline")


# -- the rules as the code had them before there was one (pipeline and discover) -----------


def _node_before(toml: str | None, status: str, kernel: str | None, discovered: str | None,
                 repo_url: str) -> str | None:
    """``pipeline.Node._report_url`` as it was written out before bootpull.reporturl."""
    if toml:
        return toml
    if status:
        return status
    if kernel:
        return kernel
    if discovered:
        return discovered
    return reporturl.origin_events_url(repo_url) if repo_url else None


def _discover_before(kernel: str | None, from_source: str | None, from_lease: str | None,
                     repo_url: str) -> str:
    """``discover.discover`` before: bootpull.report=, the winning source's report URL (the
    same option 43.2), option 43.2 of the lease, the origin."""
    return kernel or from_source or from_lease or reporturl.origin_events_url(repo_url)


@given(maybe_urls, st.one_of(st.just(""), urls), maybe_urls, maybe_urls, urls,
       st.one_of(st.just(""), urls), st.booleans())
def test_the_same_as_before_but_the_origin_follows_a_redirect(
        toml: str | None, status: str, kernel: str | None, dhcp_43: str | None,
        found_url: str, redirected: str, discover_ran: bool) -> None:
    """discover's report_url, and then node run's, with and without discovery (``--repo``
    and ``--mac``): as before, except that after a redirect the origin fallback is the
    origin of the URL in effect (before, with discovery, it stayed the one found)."""
    at_discover = reporturl.resolve(cmdline=kernel, dhcp_43=dhcp_43, repo_url=found_url)
    assert at_discover is not None
    assert at_discover.url == _discover_before(kernel, dhcp_43, dhcp_43, found_url)
    relayed = at_discover.url if discover_ran and at_discover.source == "dhcp-43" else None
    repo_url = redirected or found_url
    now = reporturl.resolve(repo_toml=toml, remembered=status, cmdline=kernel,
                            dhcp_43=relayed, repo_url=repo_url)
    assert now is not None
    discovered = at_discover.url if discover_ran and not redirected else (
        relayed if discover_ran else None)
    assert now.url == _node_before(toml, status, kernel, discovered, repo_url)
