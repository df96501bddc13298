"""The typed data that crosses the node's stage boundaries.

- :class:`TreeReader` is what the fetch stage hands to verification: read-only access
  to the files of one fetched commit, straight from the object store (never a checkout).
- :class:`Assignment` is what the repository says one node gets (host file, or the
  default), :class:`RoleSpec` is a parsed ``role.toml``.
- :class:`Bundle` is a *verified* role bundle: only verified bytes ever become one, and
  only a Bundle is ever installed.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

Restart = Literal["always", "on-failure", "never"]

MODE_FILE = 0o100644
MODE_EXEC = 0o100755
MODE_SYMLINK = 0o120000


@dataclass(frozen=True)
class TreeEntry:
    path: str  # relative to the commit's root, "/"-separated
    mode: int  # git mode: 0o100644, 0o100755, 0o120000 (symlink); trees are not listed
    blob_id: str  # hex git object id


class TreeReader(Protocol):
    """Read access to one commit of the deploy repository (written by the fetch stage)."""

    @property
    def commit(self) -> str: ...

    def read(self, path: str) -> bytes | None:
        """The file's bytes, or None when the commit has no such file."""
        ...

    def list(self, prefix: str) -> list[TreeEntry]:
        """Every file (recursively) under directory ``prefix``; empty if there is none."""
        ...

    def read_many(self, paths: builtins.list[str]) -> dict[str, bytes]:
        """Several files at once (one network round where the reader fetches lazily)."""
        ...


@runtime_checkable
class BlobReader(Protocol):
    """A :class:`TreeReader` that can also read blobs by id, without any tree: how a node
    reads what metadata format 2 signs (each target's ``custom.git_oid``)."""

    def read_blobs(self, oids: dict[str, str]) -> dict[str, bytes]:
        """``{name: oid}`` → ``{name: bytes}``; a missing or non-blob object raises."""
        ...


@dataclass(frozen=True)
class HealthSpec:
    command: tuple[str, ...]
    interval: float = 30.0
    timeout: float = 10.0


@dataclass(frozen=True)
class RoleSpec:
    """``roles/<role>/role.toml``, format 1 (docs/contract.md §1.5)."""

    name: str
    description: str
    command: tuple[str, ...]  # relative to the install directory
    restart: Restart = "on-failure"
    hooks: tuple[tuple[str, ...], ...] = ()
    health: HealthSpec | None = None
    silent_after: float | None = None  # [report] silent_after: the home base's deadline
    #: [run] user and group: who the command, hooks and health check run as (None: root;
    #: the group is the user's name when not given); docs/contract.md §9.6
    user: str | None = None
    group: str | None = None
    #: [run] capabilities: canonical names ("net_raw"), in bit order; only with user
    capabilities: tuple[str, ...] = ()


@dataclass(frozen=True)
class Assignment:
    """What one node gets: from ``hosts/<mac>.toml`` or, failing that, ``hosts/default.toml``.

    With ``groups = [...]`` in the host file, :func:`bootpull.layout.merge_groups` adds
    the groups' ``[vars]`` and ``version`` (the host file's own win) and records where
    each came from (docs/contract.md §1.4).
    """

    role: str
    source: str  # "hosts/52-54-00-12-34-56.toml" or "hosts/default.toml"
    hostname: str | None = None
    version: str | None = None  # pinned release, or None to follow the deploy head
    log_level: str | None = None
    vars: dict[str, str] = field(default_factory=dict)
    groups: tuple[str, ...] = ()  # the host file's groups = [...], in its order
    #: after merging: the file each of ``vars`` came from (missing: ``source``)
    var_sources: dict[str, str] = field(default_factory=dict)
    version_source: str | None = None  # after merging: the file ``version`` came from

    def var_source(self, name: str) -> str:
        """The file variable ``name`` came from: the host file or ``groups/<g>.toml``."""
        return self.var_sources.get(name, self.source)


@dataclass(frozen=True)
class Group:
    """``groups/<name>.toml``: a named set of nodes, and what the hosts that name it get."""

    name: str
    source: str  # "groups/site-a.toml"
    description: str | None = None
    nodes: tuple[str, ...] = ()  # canonical MACs (the home base's filters)
    version: str | None = None  # a pinned release for the hosts that name the group
    vars: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BundleFile:
    path: str  # relative to roles/<role>/files/, "/"-separated
    mode: int  # MODE_FILE, MODE_EXEC or MODE_SYMLINK (data is then the link target)
    data: bytes


@dataclass(frozen=True)
class Bundle:
    """A verified role bundle, ready to install."""

    role: RoleSpec
    version: str  # the release version, or "head-<short commit>" when following the head
    commit: str
    files: tuple[BundleFile, ...]
    assignment: Assignment
    role_toml: bytes = b""  # the verified role.toml itself, installed beside files/
    #: the verified, still encrypted secrets (bootpull.role_secrets): ``path`` is the
    #: repository path, ``roles/<role>/secrets/<NAME>.age`` or ``secrets/<mac>/<NAME>.age``
    secrets: tuple[BundleFile, ...] = ()


#: The largest file a role may hold: a node refuses a bigger git object (exit 12), since
#: inflating and indexing it would take more memory than a 192 MB node has to spare
#: (bootpull.fetch; docs/node.md, "Memory"). ``bootpull repo lint`` says so first.
MAX_FILE_BYTES = 32 * 2**20


@dataclass(frozen=True)
class Limits:
    """``[limits]`` of ``bootpull.toml``: what one node agrees to fetch for its role."""

    max_bundle_bytes: int = 1 << 30  # the sum of the role's file sizes
    max_files: int = 10_000


@dataclass(frozen=True)
class RepoSettings:
    """``bootpull.toml``, format 1: the repository-wide settings (written by verify)."""

    format: int = 1
    name: str | None = None  # names the admin's key directory; the node ignores it
    branch: str = "main"  # the deploy branch
    report_url: str | None = None  # [report] url
    silent_after: float | None = None  # [report] silent_after: the home base's deadline
    log_level: str | None = None  # the default for every node
    limits: Limits = field(default_factory=Limits)
    #: how the home base trusts a new node's key: "manual" (an admin enrolls it) or
    #: "first-seen" (the first key it sees, until a commit pins one); the node ignores it
    enrollment: str = "manual"
    #: ``[hold]``: the fleet-wide stop of a rollout ('bootpull repo hold'): held nodes
    #: keep what they run and install no new version
    hold_all: bool = False
    hold_roles: tuple[str, ...] = ()
    hold_reason: str = ""

    def held(self, role: str) -> bool:
        return self.hold_all or role in self.hold_roles
