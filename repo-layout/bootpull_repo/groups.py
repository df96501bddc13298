"""``groups/<name>.toml``: named sets of nodes (a site, a rack, a customer).

A group file lists its nodes by MAC, and may carry variables and a version for the
hosts that name it (``groups = ["site-a"]`` in a host file)::

    format = 1
    description = "site A, building 2"   # optional
    nodes = ["52:54:00:12:34:56", "52-54-00-ab-cd-ef"]
    version = "1.2"                      # optional: for the hosts that name the group

    [vars]                               # optional: as a host file's [vars]
    SITE = "a"

The parser is the node's (:func:`bootpull.layout.parse_group`): a node reads the group
files its host file names. This module is the admin and home base side: every group of
one commit by name, and a node's groups — those whose ``nodes`` list it, and those its
host file names (docs/repo-format.md "groups/<name>.toml").
"""

from __future__ import annotations

from collections.abc import Mapping

from bootpull import layout
from bootpull.bundle import TreeReader
from bootpull.layout import GROUPS_DIR, Problem

__all__ = ["GROUPS_DIR", "by_node", "group_name", "host_groups", "parse_group",
           "read_groups"]


def group_name(path: str) -> str | None:
    """``groups/site-a.toml`` → ``site-a``; None for anything else."""
    if not path.startswith(f"{GROUPS_DIR}/") or path.count("/") != 1:
        return None
    name = path.removeprefix(f"{GROUPS_DIR}/")
    return name.removesuffix(".toml") if name.endswith(".toml") else None


def parse_group(data: bytes, path: str) -> tuple[tuple[str, ...], list[Problem]]:
    """The canonical MACs of one group file, and its problems (the MACs that parse are
    returned even when others do not)."""
    name = group_name(path) or path
    group, problems = layout.parse_group(data, name, path)
    return (group.nodes if group is not None else ()), problems


def read_groups(tree: TreeReader) -> tuple[dict[str, tuple[str, ...]], list[Problem]]:
    """Every group at one commit (name → MACs), and every problem of its files."""
    groups, problems = layout.read_groups(tree)
    return {name: group.nodes for name, group in groups.items()}, problems


def by_node(groups: Mapping[str, tuple[str, ...]],
            named: Mapping[str, tuple[str, ...]] | None = None) -> dict[str, tuple[str, ...]]:
    """MAC → the sorted names of its groups: those whose ``nodes`` list it, and those
    ``named`` gives it (MAC → the ``groups = [...]`` of the host file that applies)."""
    out: dict[str, set[str]] = {}
    for name in groups:
        for mac in groups[name]:
            out.setdefault(mac, set()).add(name)
    for mac, names in (named or {}).items():
        out.setdefault(mac, set()).update(names)
    return {mac: tuple(sorted(names)) for mac, names in out.items() if names}


def host_groups(hosts: Mapping[str, bytes]) -> dict[str, tuple[str, ...]]:
    """``hosts/<mac>.toml`` stem → the groups that host file names (``groups = [...]``);
    a file that does not parse names none ('bootpull repo lint' reports it)."""
    out: dict[str, tuple[str, ...]] = {}
    for stem, data in hosts.items():
        assignment, _problems = layout.parse_host(data, f"{layout.HOSTS_DIR}/{stem}.toml")
        if assignment is not None and assignment.groups:
            out[stem] = assignment.groups
    return out
