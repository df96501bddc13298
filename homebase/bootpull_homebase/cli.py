"""``bootpull serve``: run the home base (docs/contract.md §3.4, §4)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from bootpull.console import Console
from bootpull.errors import UsageError


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
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
    parser.add_argument("--repo", required=True, type=Path, metavar="DIR",
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
    parser.add_argument("--access-log", action="store_true", help="log every request to stderr")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bootpull_homebase.server import (
        Homebase,
        Settings,
        bound_address,
        make_server,
        parse_listen,
    )

    host, port = parse_listen(args.listen)
    if args.max_body < 1024:
        raise UsageError("--max-body must be at least 1024 bytes")
    console = Console()
    settings = Settings(
        repo=args.repo, db=args.db, host=host, port=port, silent_after=args.silent_after,
        role_silent_after=tuple(args.silent_after_role),
        rate=args.rate, burst=args.burst, max_body=args.max_body, public_url=args.public_url,
        refresh=max(1, args.refresh), access_log=args.access_log, syslog=tuple(args.syslog))
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
