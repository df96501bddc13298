"""Where the node sends its events: the one rule of docs/contract.md §2.5.

:func:`resolve` is pure: every candidate is an argument, and the first one that is set
wins. ``node discover`` calls it before the repository was read, with the two
repository-side candidates absent (its ``report_url`` and ``report_url_source``, §3.2);
``node run`` calls it again whenever a candidate changes: the repository's settings
were read, or a redirect moved the repository URL whose origin is the last choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

EVENTS_PATH = "/api/v1/events"

#: the sources in precedence order, as :attr:`ReportUrl.source` names them
ORDER = ("bootpull.toml", "status.json", "cmdline", "dhcp-43", "origin")


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
            repo_url: str | None = None) -> ReportUrl | None:
    """The report URL: the first of these that is set (``None`` and ``""`` are not set).

    1. ``repo_toml``: the verified ``bootpull.toml`` ``[report] url``;
    2. ``remembered``: the ``[report] url`` the repository gave last time
       (``status.json``), so that a node that cannot reach its repository still
       reports where it said;
    3. ``cmdline``: ``bootpull.report=URL`` on the kernel command line;
    4. ``dhcp_43``: DHCP option 43 sub-option 2;
    5. ``repo_url``: its origin plus ``/api/v1/events`` (:func:`origin_events_url`): the
       URL in effect, so after a redirect the origin the repository was found at.

    ``None`` when nothing is set, not even the repository URL.
    """
    for source, url in zip(ORDER[:-1], (repo_toml, remembered, cmdline, dhcp_43),
                           strict=True):
        if url:
            return ReportUrl(url, source)
    return ReportUrl(origin_events_url(repo_url), "origin") if repo_url else None
