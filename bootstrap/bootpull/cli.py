"""The ``bootpull`` command: one CLI for the node, the admin tools, the home base and the lab.

Each command group lives in its own package and is imported only when used, so
``bootpull --help`` imports nothing heavy (no scapy) and the boot image, which ships
only this package, still runs ``bootpull node ...``. A group whose package is not
installed (``bootpull serve`` inside the image) says so plainly.

A group module provides ``configure(parser)``, which adds its arguments and sets
``func`` to a handler taking the parsed namespace and returning the exit code.
Handlers raise :class:`~bootpull.errors.BootpullError`; only :func:`main` prints it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from bootpull import __version__
from bootpull.errors import BootpullError, UsageError

#: group name -> (module, one-line summary, what is missing if the import fails)
GROUPS: dict[str, tuple[str, str]] = {
    "node": ("bootpull.node_cli", "the node agent: discover, run, status"),
    "repo": ("bootpull_repo.cli", "admin tools for the deploy repository"),
    "serve": ("bootpull_homebase.cli", "run the home base (git, events, feeds, status)"),
    "image": ("bootpull_image.cli", "build the boot image"),
    "lab": ("bootpull_lab.cli", "boot QEMU nodes against a local home base"),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bootpull",
        description="Self-deploying machines: boot, learn, pull, verify, install, run, report.",
        epilog="Run 'bootpull COMMAND --help' for a command's own options.",
    )
    parser.add_argument("--version", action="version", version=f"bootpull {__version__}")
    sub = parser.add_subparsers(dest="group", metavar="COMMAND")
    for name, (_module, summary) in GROUPS.items():
        sub.add_parser(name, help=summary, add_help=False)
    return parser


def build_group_parser(group: str) -> argparse.ArgumentParser:
    """Import one group's module and build its parser."""
    module_name, summary = GROUPS[group]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name.split(".")[0]):
            raise UsageError(
                f"'bootpull {group}' is not part of this installation",
                why=f"the package {exc.name!r} is not installed here",
                hint="the boot image carries only 'bootpull node'; run this on an admin "
                "machine where bootpull is installed in full",
            ) from None
        raise
    parser = argparse.ArgumentParser(prog=f"bootpull {group}", description=summary)
    module.configure(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not args or args[0] not in GROUPS:
        top.parse_args(args or ["--help"])  # prints help or a usage error, and exits
        return 2
    try:
        parser = build_group_parser(args[0])
        ns = parser.parse_args(args[1:])
        func = getattr(ns, "func", None)
        if func is None:
            parser.print_help(sys.stderr)
            return 2
        return int(func(ns))
    except BootpullError as exc:
        if not exc.reported:
            print(f"bootpull: error: {exc.what}", file=sys.stderr)
            if exc.why:
                print(f"  why: {exc.why}", file=sys.stderr)
            if exc.hint:
                print(f"  do:  {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("bootpull: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
