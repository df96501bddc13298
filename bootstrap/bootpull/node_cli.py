"""``bootpull node``: the commands the boot image runs (docs/contract.md §3.1).

Only argument parsing lives here; each command's handler is imported when it runs,
so ``bootpull node --help`` stays light.
"""

from __future__ import annotations

import argparse
import importlib


def _lazy(module: str) -> object:
    def handler(args: argparse.Namespace) -> int:
        return int(importlib.import_module(module).command(args))

    return handler


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    discover = sub.add_parser(
        "discover", help="get a DHCP lease and find the repository; print JSON",
        description="Acquire a DHCP lease on each candidate interface, run the discovery "
        "order (cmdline, DHCP 43.1, DHCP 67, DNS SRV, well-known name) and print the result.",
    )
    discover.add_argument("--interface", action="append", default=[], metavar="IF",
                          help="try only this interface (repeatable); default: all with carrier")
    discover.add_argument("--timeout", type=float, default=30.0, metavar="S",
                          help="overall time limit in seconds (default 30)")
    discover.add_argument("--no-configure", action="store_true",
                          help="do not put the leased address and route on the interface")
    discover.add_argument("--json", action="store_true", help="print one JSON object")
    discover.add_argument("--cmdline", default=None, metavar="FILE",
                          help="read kernel parameters from FILE instead of /proc/cmdline")
    discover.add_argument("--console", default=None, metavar="DEV",
                          help="console device, as in ttyS0,115200 (default: stderr)")
    discover.add_argument("--log", default=None, metavar="LEVEL",
                          help="debug, info, warn or error")
    discover.set_defaults(func=_lazy("bootpull.discover"))

    run = sub.add_parser(
        "run", help="the whole boot pipeline: discover, fetch, verify, install, run, report",
    )
    run.add_argument("--interface", action="append", default=[], metavar="IF")
    run.add_argument("--state-dir", default="/var/lib/bootpull", metavar="DIR")
    run.add_argument("--repo", default=None, metavar="URL",
                     help="the repository URL (with --mac: no DHCP at all)")
    run.add_argument("--mac", default=None, metavar="MAC", help="identity override")
    run.add_argument("--trust", default=None, metavar="FILE",
                     help="trust anchors (default: the ones baked into the image)")
    run.add_argument("--ca", action="append", default=[], metavar="FILE",
                     help="a PEM CA certificate https trusts besides the system's "
                     "(repeatable)")
    run.add_argument("--console", default=None, metavar="DEV")
    run.add_argument("--oneshot", action="store_true",
                     help="stop after the role has started and passed its first health check")
    run.add_argument("--cmdline", default=None, metavar="FILE",
                     help="read kernel parameters from FILE instead of /proc/cmdline")
    run.add_argument("--log", default=None, metavar="LEVEL")
    run.set_defaults(func=_lazy("bootpull.pipeline"))

    status = sub.add_parser("status", help="the installed role, its version and the counters")
    status.add_argument("--state-dir", default="/var/lib/bootpull", metavar="DIR")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_lazy("bootpull.status"))
