"""``groups/<name>.toml``: named sets of nodes (a site, a rack, a customer).

A group file lists its nodes by MAC::

    format = 1
    description = "site A, building 2"   # optional
    nodes = ["52:54:00:12:34:56", "52-54-00-ab-cd-ef"]

A node may be in any number of groups. Groups are read by the home base (the status
page filters by group) and checked by ``bootpull repo lint``; the node agent does not
read them, so an image that predates groups boots from a repository that has them.
"""

from __future__ import annotations

import tomllib

from bootpull.bundle import TreeReader
from bootpull.layout import Problem, check_role_name
from bootpull.mac import Mac, MacError

GROUPS_DIR = "groups"
_KEYS = ("format", "description", "nodes")


def group_name(path: str) -> str | None:
    """``groups/site-a.toml`` → ``site-a``; None for anything else."""
    if not path.startswith(f"{GROUPS_DIR}/") or path.count("/") != 1:
        return None
    name = path.removeprefix(f"{GROUPS_DIR}/")
    return name.removesuffix(".toml") if name.endswith(".toml") else None


def parse_group(data: bytes, path: str) -> tuple[tuple[str, ...], list[Problem]]:
    """The canonical MACs of one group file, and its problems (the MACs that parse are
    returned even when others do not)."""
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return (), [Problem(path, 0, f"is not valid UTF-8 TOML: {exc}",
                            "fix the syntax (see https://toml.io)")]
    problems = [Problem(path, 0, f"unknown key {key!r}",
                        f"a group file has only {', '.join(_KEYS)}")
                for key in doc if key not in _KEYS]
    if doc.get("format", 1) != 1:
        problems.append(Problem(path, 0, f"format {doc.get('format')!r} is not 1",
                                "write format = 1"))
    nodes = doc.get("nodes", [])
    if not isinstance(nodes, list):
        return (), [*problems, Problem(path, 0, "'nodes' must be a list of MAC addresses",
                                       'write nodes = ["52:54:00:12:34:56"]')]
    macs: list[str] = []
    for item in nodes:
        try:
            if not isinstance(item, str):
                raise MacError(f"{item!r} is not a string")
            macs.append(Mac.parse(item).canonical)
        except MacError:
            problems.append(Problem(path, 0, f"{item!r} in 'nodes' is not a MAC address",
                                    "write it as 52:54:00:12:34:56"))
    return tuple(dict.fromkeys(macs)), problems


def read_groups(tree: TreeReader) -> tuple[dict[str, tuple[str, ...]], list[Problem]]:
    """Every group at one commit (name → MACs), and every problem of its files."""
    groups: dict[str, tuple[str, ...]] = {}
    problems: list[Problem] = []
    for entry in tree.list(GROUPS_DIR):
        name = group_name(entry.path)
        if name is None:
            problems.append(Problem(entry.path, 0, "is not a group file",
                                    "keep group files directly in groups/, named <name>.toml"))
            continue
        if (why := check_role_name(name)) is not None:
            problems.append(Problem(entry.path, 0, why.replace("role name", "group name"),
                                    "rename the file"))
            continue
        data = tree.read(entry.path)
        if data is None:
            continue
        macs, found = parse_group(data, entry.path)
        groups[name] = macs
        problems += found
    return groups, problems


def by_node(groups: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """MAC → the sorted names of its groups."""
    out: dict[str, list[str]] = {}
    for name in sorted(groups):
        for mac in groups[name]:
            out.setdefault(mac, []).append(name)
    return {mac: tuple(names) for mac, names in out.items()}
