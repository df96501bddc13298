"""``bootpull repo``: the admin tools for the deploy repository (docs/contract.md §3.3).

Each subcommand lives in its own module with ``configure(subparsers)``, which adds its
parser (``subparsers.add_parser(...)``) and sets ``func`` to a handler taking the
parsed namespace and returning the exit code. To add one, add one line to
:data:`SUBCOMMANDS`. Subcommand modules import heavy libraries (tuf, dulwich) inside
their handlers only.

Global options, accepted before or after the subcommand:
``-C DIR`` (the repository; default: the current directory) and ``--keys DIR`` (the
private key directory; default ``$BOOTPULL_KEYS``, else ``~/.config/bootpull/keys/<name>/``).
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

#: The subcommands, in the order ``--help`` lists them: (module, why it is there).
SUBCOMMANDS: list[str] = [
    "bootpull_repo.init",  # repo init DIR
    "bootpull_repo.anchors",  # repo trust
    "bootpull_repo.role_new",  # repo role new NAME
    "bootpull_repo.assign",  # repo assign MAC ROLE [--version V]
    "bootpull_repo.unassign",  # repo unassign MAC
    "bootpull_repo.enroll",  # repo enroll MAC / repo reject MAC
    "bootpull_repo.secrets",  # repo secret set|rewrap|list
    "bootpull_repo.release",  # repo release ROLE VERSION
    "bootpull_repo.publish",  # repo publish
    "bootpull_repo.hold",  # repo hold [ROLE] / repo unhold [ROLE]
    "bootpull_repo.rotate",  # repo rotate-key ROLE
    "bootpull_repo.lint",  # repo lint [--rev REF]
    "bootpull_repo.show",  # repo show MAC
    "bootpull_repo.history",  # repo history MAC [--db PATH | --homebase URL]
    "bootpull_repo.site_config",  # repo site-config
]


class _WithCommonOptions:
    """Hands each subcommand's parser the global options too (so they may come last)."""

    def __init__(self, real: Any, common: argparse.ArgumentParser) -> None:
        self._real = real
        self._common = common

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        kwargs["parents"] = [*kwargs.get("parents", []), self._common]
        parser: argparse.ArgumentParser = self._real.add_parser(name, **kwargs)
        return parser

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def global_options(parser: argparse.ArgumentParser, *, default: Any = argparse.SUPPRESS
                   ) -> None:
    """``-C`` and ``--keys``; a nested subcommand's parser takes them too (so they may
    come last there as well)."""
    _global_options(parser, default=default)


def _global_options(parser: argparse.ArgumentParser, *, default: Any) -> None:
    parser.add_argument("-C", dest="repo_dir", metavar="DIR", default=default,
                        help="the repository (default: the current directory)")
    parser.add_argument("--keys", dest="keys", metavar="DIR", default=default,
                        help="the private key directory (default: $BOOTPULL_KEYS, else "
                        "~/.config/bootpull/keys/<repo name>/)")


def configure(parser: argparse.ArgumentParser) -> None:
    _global_options(parser, default=None)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wrapped = _WithCommonOptions(sub, common)
    for module in SUBCOMMANDS:
        importlib.import_module(module).configure(wrapped)
