"""``bootpull serve``: run the home base (docs/contract.md §3.4, §4)."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from bootpull.console import Console
from bootpull.errors import UsageError

from bootpull_homebase.fleet import GRACE_DAYS


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
    return value


def _days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 (keep forever) or more")
    return value


def _role_seconds(text: str) -> tuple[str, float]:
    role, sep, seconds = text.partition("=")
    if not sep or not role.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not ROLE=SECONDS, as in web=120")
    return role.strip(), _positive(seconds)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Serve the deploy repository (read-only git smart HTTP at "
                          "/repo.git), take node events (POST /api/v1/events), and publish "
                          "status feeds, the status page and /healthz.")
    parser.add_argument("--repo", type=Path, metavar="DIR",
                        help="the deploy repository (a work tree or a bare repository)")
    parser.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                        help="address to listen on (default 127.0.0.1:8080; port 0 picks one)")
    parser.add_argument("--db", type=Path, default=Path("bootpull-events.db"), metavar="PATH",
                        help="the SQLite event database (default ./bootpull-events.db)")
    parser.add_argument("--silent-after", type=_positive, default=300.0, metavar="SECONDS",
                        help="a node with no report for this long turns SILENT, unless the "
                        "repository says otherwise ([report] silent_after; default 300)")
    parser.add_argument("--silent-after-role", type=_role_seconds, action="append",
                        default=[], metavar="ROLE=SECONDS",
                        help="the deadline for one role, unless its role.toml says "
                        "(repeatable)")
    parser.add_argument("--keep-days", type=_days, default=30.0, metavar="DAYS",
                        help="raw events expire after this many days; status changes and "
                        "each node's latest events are kept (0: keep forever; default 30)")
    parser.add_argument("--rate", type=_positive, default=500.0, metavar="EVENTS_PER_S",
                        help="events admitted per second before 429 (default 500)")
    parser.add_argument("--burst", type=_positive, default=2000.0, metavar="EVENTS",
                        help="events admitted at once after a quiet spell (default 2000)")
    parser.add_argument("--max-body", type=int, default=1024 * 1024, metavar="BYTES",
                        help="largest events POST body; larger gets 413 (default 1 MiB)")
    parser.add_argument("--public-url", default="", metavar="URL",
                        help="the base URL feeds link to (default: from each request's Host)")
    parser.add_argument("--refresh", type=int, default=30, metavar="SECONDS",
                        help="status page auto-refresh interval (default 30)")
    parser.add_argument("--syslog", action="append", default=[], metavar="HOST[:PORT]",
                        help="send every status change (SILENT too) to this syslog server, "
                        "RFC 5424 over UDP (repeatable)")
    parser.add_argument("--webhook", default="", metavar="URL",
                        help="a JSON POST per status change (SILENT too) to this http(s) "
                        "URL, retried with backoff; never blocks ingest")
    parser.add_argument("--access-log", action="store_true", help="log every request to stderr")
    hardening = parser.add_argument_group(
        "hardening", "caps against a hostile or broken LAN (docs/homebase.md, 'Hardening')")
    hardening.add_argument("--max-connections", type=int, default=2048, metavar="N",
                           help="connections at once; past that 503 (default 2048)")
    hardening.add_argument("--max-client-connections", type=int, default=64, metavar="N",
                           help="connections at once from one address; past that 429 "
                           "(default 64)")
    hardening.add_argument("--request-deadline", type=_positive, default=60.0,
                           metavar="SECONDS", help="time for a request's line, headers and "
                           "body together; past it 408 and closed (default 60)")
    hardening.add_argument("--client-bytes-per-s", type=_positive, default=256 * 1024,
                           metavar="BYTES", help="event bytes admitted per second from one "
                           "address before 429 (default 262144; burst 4 MiB)")
    hardening.add_argument("--node-bytes-per-s", type=_positive, default=64 * 1024,
                           metavar="BYTES", help="event bytes admitted per second for one "
                           "node before 429 (default 65536; burst 2 MiB)")
    hardening.add_argument("--max-unknown-nodes", type=int, default=1024, metavar="N",
                           help="nodes without hosts/<mac>.toml that may report; a new one "
                           "past that gets 403 (default 1024; -1: no limit)")
    parser.add_argument("--forget-unassigned-after", type=_days, default=GRACE_DAYS,
                        metavar="DAYS", help="a node the repository does not assign leaves "
                        "the page and the feeds this long after its last report, recorded "
                        f"in the audit log (0: never; default {GRACE_DAYS:g})")
    parser.set_defaults(func=run)
    actions = parser.add_subparsers(dest="serve_command", metavar="[forget]")
    forget = actions.add_parser(
        "forget", help="remove one node from the home base now (audited)",
        description="Remove node MAC from the home base's event database at once: its "
        "state and its events leave the page, the feeds and the API, and the audit log "
        "(GET /api/v1/audit) records who did it and why. Its status changes are kept. "
        "Works while 'bootpull serve' runs on the same database: it notices within "
        "seconds. A node that reports again is back, with only its new events (its "
        "past status changes still draw its history).")
    forget.add_argument("mac", metavar="MAC", help="the node, in any MAC notation, or "
                        "pasted from its console line")
    # SUPPRESS: without it this default would override 'bootpull serve --db X forget'.
    forget.add_argument("--db", type=Path, default=argparse.SUPPRESS,
                        metavar="PATH", help="the event database (default "
                        "./bootpull-events.db)")
    forget.add_argument("--reason", default="", metavar="TEXT",
                        help="why, for the audit log (default: 'forgotten by an admin')")
    forget.set_defaults(func=run_forget)


#: what the ``server`` extra (pyproject.toml) brings that ``serve`` imports
SERVER_EXTRA = ("feedgen.feed", "prometheus_client")


def require_server_extra() -> None:
    """Refuse to serve without the ``server`` extra: without it the feeds would fail
    only at their first request, long after the home base looked started."""
    for module in SERVER_EXTRA:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            missing = (exc.name or module).split(".")[0]  # the package pip would install
            raise UsageError(
                "'bootpull serve' needs the server extra, which is not installed",
                why=f"the module {missing!r} cannot be imported ({exc})",
                hint="pip install 'bootpull[server]'",
            ) from None


def run_forget(args: argparse.Namespace) -> int:
    """``bootpull serve forget MAC``: exit 0 when forgotten, 1 when there was no such node."""
    import getpass

    from bootpull_repo.nodearg import parse_mac

    from bootpull_homebase.store import EventStore

    mac = parse_mac(args.mac)
    if not args.db.exists():
        raise UsageError(f"there is no event database at {args.db}",
                         hint="pass the --db that 'bootpull serve' uses")
    store = EventStore(args.db)
    try:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown user"
        reason = args.reason.strip() or "forgotten by an admin"
        if not store.forget(mac, actor=f"bootpull serve forget ({user})", reason=reason):
            print(f"bootpull serve forget: node {mac} is not in {args.db}; nothing changed",
                  file=sys.stderr)
            return 1
    finally:
        store.close()
    print(f"bootpull serve forget: node {mac} forgotten ({reason}); see /api/v1/audit")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.repo is None:
        raise UsageError("'bootpull serve' needs --repo DIR",
                         hint="bootpull serve --repo DIR [--listen HOST:PORT], or "
                              "'bootpull serve forget MAC --db PATH'")
    require_server_extra()
    from bootpull_homebase.server import (
        Homebase,
        Settings,
        bound_address,
        make_server,
        parse_listen,
    )
    from bootpull_homebase.webhook import check_url

    host, port = parse_listen(args.listen)
    if args.max_body < 1024:
        raise UsageError("--max-body must be at least 1024 bytes")
    if args.webhook:
        check_url(args.webhook)  # refuse before the database is opened
    console = Console()
    settings = Settings(
        repo=args.repo, db=args.db, host=host, port=port, silent_after=args.silent_after,
        role_silent_after=tuple(args.silent_after_role),
        rate=args.rate, burst=args.burst, max_body=args.max_body, public_url=args.public_url,
        refresh=max(1, args.refresh), access_log=args.access_log, syslog=tuple(args.syslog),
        keep_days=args.keep_days, max_connections=max(1, args.max_connections),
        max_client_connections=max(1, args.max_client_connections),
        request_deadline=args.request_deadline, client_bytes_rate=args.client_bytes_per_s,
        node_bytes_rate=args.node_bytes_per_s, max_unknown_nodes=args.max_unknown_nodes,
        webhook=args.webhook, forget_unassigned_after=args.forget_unassigned_after * 86400.0)
    with console.step("open the event store and the repository") as step:
        homebase = Homebase(settings, console=console)
        step.note(f"{homebase.store.count()} events in {settings.db}")
        step.note(f"repository {homebase.git.git_dir}")
    server = make_server(homebase)
    bound_host, bound_port = bound_address(server)
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    url = f"http://{shown}:{bound_port}"
    print(f"bootpull serve: listening on {url}/", flush=True)
    console.info(f"status page {url}/  feeds {url}/feeds/all.atom  health {url}/healthz  "
                 f"repository {url}/repo.git")

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        homebase.close()
        console.info("home base stopped")
        sys.stdout.flush()
    return 0
