"""``bootpull repo site-config``: the DHCP and DNS configuration a site needs (docs/contract.md §2).

Nodes find their repository, in order, from the kernel command line, DHCP option 43
sub-option 1 (sub-option 2 is the report URL), DHCP option 67, the DNS SRV record
``_bootpull._tcp.<domain>`` with its ``path=`` TXT record, and the well-known name
``http://bootpull.<domain>/``. This module prints ready-to-paste snippets for the
three servers a site is likely to run:

- dnsmasq: a vendor class ``bootpull`` (option 60) tags the nodes; they get option 43
  (sub-options 1 and 2) and option 67;
- ISC Kea (``kea-dhcp4``): an option definition in the option 43 space and a client
  class that matches option 60;
- BIND: the SRV and TXT records and the well-known ``bootpull`` name (A, AAAA or CNAME).

Every function here is pure: strings in, text out. The URLs and the domain are
checked first, so whatever is printed is valid for its server (the tests run each
snippet through dnsmasq, ``kea-dhcp4 -t`` and ``named-checkzone``).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
import sys
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from bootpull.errors import UsageError

VENDOR_CLASS = "bootpull"
SUBOPT_REPO = 1
SUBOPT_REPORT = 2
SRV_NAME = "_bootpull._tcp"
WELL_KNOWN = "bootpull"
TTL = 300
OPTION_MAX = 255  # bytes in one DHCP option (each sub-option adds a 2-byte header)
SERVERS = ("dnsmasq", "kea", "bind")

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$", re.IGNORECASE)
# Characters a URL may carry here: RFC 3986 unreserved, reserved and '%'. No quotes,
# backslashes, spaces or control characters, which no server syntax below could carry.
_URL_CHARS = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+$")


@dataclass(frozen=True)
class Endpoint:
    """One checked http(s) URL, split into what the snippets need."""

    url: str
    scheme: str
    host: str  # a DNS name (lowercase, no trailing dot) or an IP address
    port: int
    path: str  # at least "/"; query and fragment are kept

    @property
    def address(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None


@dataclass(frozen=True)
class Site:
    """Everything the snippets are made from."""

    repo: Endpoint
    report: Endpoint | None
    domain: str | None  # lowercase, no trailing dot; None when it cannot be known


def is_dns_name(name: str) -> bool:
    """A hostname of letter-digit-hyphen labels, at most 253 characters."""
    labels = name.rstrip(".").split(".")
    return 0 < len(name.rstrip(".")) <= 253 and all(_LABEL.match(label) for label in labels)


def parse_url(text: str, *, what: str = "--repo-url") -> Endpoint:
    """Check one http(s) URL; raise UsageError saying what is wrong and what to pass."""
    example = "as in http://10.0.0.1:8000/repo.git or https://git.example.net/fleet.git"
    if not text or not _URL_CHARS.match(text):
        raise UsageError(
            f"{what} {text!r} is not a URL that DHCP and DNS servers can carry",
            why="it is empty, or has spaces, quotes, backslashes or non-ASCII characters",
            hint=f"pass a plain http or https URL, {example}; percent-encode anything else",
        )
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UsageError(
            f"{what} {text!r} is not an http or https URL",
            why=f"nodes fetch over HTTP(S); the scheme here is {parts.scheme or 'missing'!r}",
            hint=f"pass a URL {example}",
        )
    try:
        host = (parts.hostname or "").lower()
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:
        raise UsageError(f"{what} {text!r} has a bad port", why=str(exc),
                         hint=f"pass a URL {example}") from None
    if parts.username is not None or parts.password is not None:
        raise UsageError(
            f"{what} must not carry a user name or password",
            why="DHCP and DNS answers are readable by anyone on the network",
            hint="serve the repository read-only without credentials (it is signed)",
        )
    if not host:
        raise UsageError(f"{what} {text!r} has no host", hint=f"pass a URL {example}")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not is_dns_name(host):
            raise UsageError(
                f"{what}: {host!r} is neither an IP address nor a valid host name",
                hint="host names are letters, digits and hyphens, in dot-separated labels",
            ) from None
        host = host.rstrip(".")
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    return Endpoint(url=text, scheme=scheme, host=host, port=port, path=path)


def make_site(repo_url: str, domain: str | None = None, report_url: str | None = None) -> Site:
    """Check the inputs. Without ``domain``, it is the repo host's parent domain, if any."""
    repo = parse_url(repo_url)
    report = parse_url(report_url, what="--report-url") if report_url else None
    if domain is not None:
        if not is_dns_name(domain) or "." not in domain.strip("."):
            raise UsageError(
                f"--domain {domain!r} is not a DNS domain",
                hint="pass the domain your nodes are in, as in --domain lab.example.net",
            )
        domain = domain.lower().rstrip(".")
    elif repo.address is None and repo.host.count(".") >= 2:
        domain = repo.host.split(".", 1)[1]
    room = len(repo.url) + 2 + (len(report.url) + 2 if report else 0)
    if room > OPTION_MAX:
        raise UsageError(
            "the URLs do not fit in DHCP option 43",
            why=f"its sub-options take {room} bytes and an option holds at most {OPTION_MAX}",
            hint="use a shorter repository URL (a short host name, a short path)",
        )
    return Site(repo=repo, report=report, domain=domain)


# -- dnsmasq ------------------------------------------------------------------------


def dnsmasq(site: Site) -> str:
    """Lines for a dnsmasq configuration file (``conf-file=`` or ``/etc/dnsmasq.d/``)."""
    lines = [
        "# bootpull: dnsmasq configuration (paste into /etc/dnsmasq.d/bootpull.conf)",
        f'# Nodes send DHCP option 60 "{VENDOR_CLASS}": tag them, and only them.',
        f"dhcp-vendorclass=set:{VENDOR_CLASS},{VENDOR_CLASS}",
        "# Option 43 sub-option 1: the repository URL (what nodes try first after the",
        "# kernel command line). Forced, so it is sent even if the request list omits 43.",
        f'dhcp-option-force=vendor:{VENDOR_CLASS},{SUBOPT_REPO},"{site.repo.url}"',
    ]
    if site.report is not None:
        lines += [
            "# Option 43 sub-option 2: where nodes send their reports.",
            f'dhcp-option-force=vendor:{VENDOR_CLASS},{SUBOPT_REPORT},"{site.report.url}"',
        ]
    lines += [
        "# Option 67 (boot file name): the repository URL again, the second choice.",
        f'dhcp-option-force=tag:{VENDOR_CLASS},option:bootfile-name,"{site.repo.url}"',
    ]
    if site.domain:
        lines += [
            "# Option 15: the domain, for the DNS SRV and well-known-name fallbacks.",
            f"dhcp-option=tag:{VENDOR_CLASS},option:domain-name,{site.domain}",
        ]
    return "\n".join(lines) + "\n"


# -- ISC Kea ------------------------------------------------------------------------


def kea_fragment(site: Site) -> dict[str, Any]:
    """The ``option-def`` and ``client-classes`` to merge into the ``Dhcp4`` object."""
    space = "vendor-encapsulated-options-space"  # what Kea's option 43 encapsulates
    option_defs: list[dict[str, Any]] = [
        {"name": "bootpull-repo-url", "code": SUBOPT_REPO, "space": space, "type": "string"},
    ]
    data: list[dict[str, Any]] = [
        {"name": "vendor-encapsulated-options", "always-send": True},
        {"name": "bootpull-repo-url", "space": space, "data": site.repo.url,
         "always-send": True},
    ]
    if site.report is not None:
        option_defs.append(
            {"name": "bootpull-report-url", "code": SUBOPT_REPORT, "space": space,
             "type": "string"}
        )
        data.append({"name": "bootpull-report-url", "space": space, "data": site.report.url,
                     "always-send": True})
    data.append({"name": "boot-file-name", "data": site.repo.url, "always-send": True})
    if site.domain:
        data.append({"name": "domain-name", "data": site.domain})
    test = f"substring(option[60].hex,0,{len(VENDOR_CLASS)}) == '{VENDOR_CLASS}'"
    return {
        "option-def": option_defs,
        "client-classes": [{"name": VENDOR_CLASS, "test": test, "option-data": data}],
    }


def kea(site: Site) -> str:
    fragment = json.dumps({"Dhcp4": kea_fragment(site)}, indent=4)
    return (
        "// bootpull: ISC Kea (kea-dhcp4) configuration. Merge the \"option-def\" and\n"
        "// \"client-classes\" lists below into the \"Dhcp4\" object of kea-dhcp4.conf:\n"
        f"// nodes whose option 60 starts with \"{VENDOR_CLASS}\" get option 43 sub-option 1\n"
        "// (and 2), option 67 and the domain. Check with: kea-dhcp4 -t kea-dhcp4.conf\n"
        f"{fragment}\n"
    )


# -- BIND ---------------------------------------------------------------------------


def _txt(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def bind_zone(site: Site) -> str:
    """Records for the zone file of ``site.domain`` (relative names, ``$ORIGIN`` set)."""
    if not site.domain:
        return (
            "; bootpull: no BIND records, because the domain is not known (the repository\n"
            "; URL names an IP address). Pass --domain D to get the SRV, TXT and\n"
            "; well-known records for zone D.\n"
        )
    repo = site.repo
    origin = f"{site.domain}."
    lines = [
        f"; bootpull: BIND records for the zone {site.domain} (paste into its zone file).",
        f"$ORIGIN {origin}",
    ]
    address = repo.address
    well_known_fqdn = f"{WELL_KNOWN}.{origin}"
    if address is not None:
        rtype = "A" if address.version == 4 else "AAAA"
        target = well_known_fqdn
        well_known = [
            "; The well-known name, and the SRV target: the repository server's address.",
            f"{WELL_KNOWN:<16} {TTL} IN {rtype:<5} {address}",
        ]
    elif f"{repo.host}." == well_known_fqdn:
        target = well_known_fqdn
        well_known = [
            f"; The repository host is {WELL_KNOWN}.{site.domain} itself: keep its A/AAAA record.",
        ]
    else:
        target = f"{repo.host}."
        well_known = [
            "; The well-known name points at the repository host.",
            f"{WELL_KNOWN:<16} {TTL} IN {'CNAME':<5} {target}",
        ]
    lines += [
        "; DNS-SD style: the node builds http://<target>:<port><path> from these two.",
        f"{SRV_NAME:<16} {TTL} IN {'SRV':<5} 0 0 {repo.port} {target}",
        f"{SRV_NAME:<16} {TTL} IN {'TXT':<5} {_txt('path=' + repo.path)}",
        *well_known,
    ]
    notes = []
    if repo.scheme != "http":
        notes.append(
            "; Note: the SRV and well-known fallbacks build http:// URLs; for this https\n"
            "; repository, nodes that get no DHCP options must serve it over http as well."
        )
    if (repo.scheme, repo.port, repo.path) != ("http", 80, "/"):
        notes.append(
            f"; Note: the well-known name alone means http://{WELL_KNOWN}.{site.domain}/; it\n"
            f"; reaches this repository only if that server serves it at / on port 80.\n"
            "; The SRV record above covers the exact port and path."
        )
    return "\n".join(lines + notes) + "\n"


# -- the command --------------------------------------------------------------------


def render(site: Site, servers: tuple[str, ...] = SERVERS) -> str:
    parts = {"dnsmasq": dnsmasq, "kea": kea, "bind": bind_zone}
    return "\n".join(parts[name](site) for name in servers)


def command(args: argparse.Namespace) -> int:
    site = make_site(args.repo_url, args.domain, args.report_url)
    servers = tuple(args.only) if args.only else SERVERS
    sys.stdout.write(render(site, servers))
    return 0


def configure(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "site-config",
        help="print dnsmasq, Kea and BIND configuration that points nodes at the repository",
        description="Print ready-to-paste DHCP and DNS configuration: dnsmasq and ISC Kea "
        "(vendor class 'bootpull', option 43 sub-option 1 = repository URL, option 67) "
        "and BIND records (SRV _bootpull._tcp, TXT path=, the well-known bootpull name).",
    )
    parser.add_argument("--repo-url", required=True, metavar="URL",
                        help="where nodes fetch the repository, as in http://10.0.0.1/repo.git")
    parser.add_argument("--domain", default=None, metavar="D",
                        help="the nodes' DNS domain (default: the repo host's parent domain)")
    parser.add_argument("--report-url", default=None, metavar="URL",
                        help="where nodes report (DHCP option 43 sub-option 2); optional")
    parser.add_argument("--only", action="append", choices=SERVERS, default=[],
                        help="print only this server's part (repeatable)")
    parser.set_defaults(func=command)
