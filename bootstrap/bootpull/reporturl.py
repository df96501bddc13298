"""Where the node sends its events: the one rule of docs/contract.md §2.5.

:func:`resolve` is pure: every candidate is an argument, and the first one that is set
wins. ``node discover`` calls it before the repository was read, with the two
repository-side candidates absent (its ``report_url``, §3.2); ``node run`` calls it
again whenever one of them changes, with what discover resolved in ``discovered``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

EVENTS_PATH = "/api/v1/events"

#: the sources in precedence order, as :attr:`ReportUrl.source` names them
ORDER = ("bootpull.toml", "status.json", "cmdline", "dhcp-43", "discover", "origin")


@dataclass(frozen=True)
class ReportUrl:
    """The report URL, and which of :data:`ORDER` gave it."""

    url: str
    source: str


def origin_events_url(repo_url: str) -> str:
    """The repository URL's origin plus ``/api/v1/events`` (docs/contract.md §2.5, the last choice).

    Scheme, user info, host and port are kept; path, query and fragment are not.
    """
    parts = urlsplit(repo_url)
    return f"{parts.scheme}://{parts.netloc}{EVENTS_PATH}"


def resolve(*, repo_toml: str | None = None, remembered: str | None = None,
            cmdline: str | None = None, dhcp_43: str | None = None,
            discovered: str | None = None, repo_url: str | None = None) -> ReportUrl | None:
    """The report URL: the first of these that is set (``None`` and ``""`` are not set).

    1. ``repo_toml``: the verified ``bootpull.toml`` ``[report] url``;
    2. ``remembered``: the ``[report] url`` the repository gave last time
       (``status.json``), so that a node that cannot reach its repository still
       reports where it said;
    3. ``cmdline``: ``bootpull.report=URL`` on the kernel command line;
    4. ``dhcp_43``: DHCP option 43 sub-option 2;
    5. ``repo_url``: its origin plus ``/api/v1/events`` (:func:`origin_events_url`).

    ``discovered`` is for ``node run``, which does not keep option 43.2 apart: the
    ``report_url`` discover resolved, that is 3 to 5 with the repository URL discover
    found. It ranks after 3 and 4 and before 5; with the same ``cmdline`` and
    ``repo_url`` it gives what 3 to 5 give (so the repository URL that counts for 5 is
    the one discover found, also after a redirect). ``None`` when nothing is set, not
    even the repository URL.
    """
    for source, url in zip(ORDER[:-1], (repo_toml, remembered, cmdline, dhcp_43, discovered),
                           strict=True):
        if url:
            return ReportUrl(url, source)
    return ReportUrl(origin_events_url(repo_url), "origin") if repo_url else None
