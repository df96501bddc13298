"""``bootpull repo history MAC``: the node's audit trail.

Two halves, joined on one time line:

- **What the repository gave it.** Every commit of the deploy branch (first parents,
  as the branch moved) that changed what the node gets: ``bootpull.toml``, the host
  file that applies to it (its own, or ``hosts/default.toml`` while it has none), the
  role that file names, or — when pinned — the release it pins. A change to another
  node's host file or to a role the node does not run is not in its history. Each
  change says who made it, when, its message, what the node gets afterwards, and the
  publish commit that made it visible to nodes (a change is live only once published).
  The releases the node was pinned to are listed too, with their tagger and date.
- **What it reported running**: from the home base's event store (``--db PATH``) or
  its API (``--homebase URL``), each stretch of reports of one role, version and
  commit. Without either, the output says plainly that no reports are available.

Everything git says is read with plain git (``git log``, ``git cat-file``).
"""

from __future__ import annotations

import argparse
import bisect
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bootpull import layout
from bootpull.delegation import DELEGATED_DIR
from bootpull.errors import BootpullError, UsageError
from bootpull.mac import Mac

from bootpull_repo.gitcli import Git
from bootpull_repo.nodearg import parse_mac

METADATA_TARGETS = ".bootpull/metadata/targets.json"
_FIELD = "\x1f"
_RECORD = "\x1e"


@dataclass(frozen=True)
class Gets:
    """What the node gets at one commit (the parts that matter to it)."""

    settings: str | None  # blob id of bootpull.toml
    source: str | None  # the host file that applies, or None (not assigned)
    host: str | None  # its blob id
    role: str | None  # None: no valid assignment
    version: str | None  # pinned version, or None (follows the head)
    content: str | None  # tree id of roles/<role>/ at the head, or in the pinned tag

    def label(self) -> str:
        if self.source is None:
            return "nothing (not assigned)"
        if self.role is None:
            return f"nothing ({self.source} is invalid)"
        if self.content is None:
            where = (f"release {layout.release_tag(self.role, self.version)}"
                     if self.version else "the deploy head")
            return f"{self.role}@{self.version or 'head'} (the role is missing from {where})"
        return f"{self.role}@{self.version or 'head'}"


@dataclass(frozen=True)
class Change:
    commit: str
    author: str
    email: str
    time: str  # the author date, ISO 8601
    message: str
    changed: list[str]  # what changed for this node, in words
    gets: str  # what the node gets afterwards
    published_in: str | None  # the publish commit that made it visible, or None


@dataclass(frozen=True)
class Release:
    tag: str
    commit: str
    tagger: str
    time: str
    message: str


@dataclass(frozen=True)
class Running:
    """One stretch of consecutive reports with the same role, version and commit."""

    role: str
    version: str
    commit: str
    first: str  # RFC 3339 (the node's own time of the first report)
    last: str
    reports: int
    last_status: str
    last_stage: str
    last_message: str


@dataclass
class History:
    mac: Mac
    branch: str
    changes: list[Change] = field(default_factory=list)
    releases: list[Release] = field(default_factory=list)
    running: list[Running] | None = None  # None: no reports available
    reports_note: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "node": self.mac.canonical, "branch": self.branch,
            "changes": [asdict(c) for c in self.changes],
            "releases": [asdict(r) for r in self.releases],
            "reports": None if self.running is None else [asdict(r) for r in self.running],
            "reports_note": self.reports_note,
        }


# -- the git half ---------------------------------------------------------------------


def _commits(git: Git, branch: str, paths: list[str]
             ) -> list[tuple[str, str, str, str, str, str]]:
    """(id, parent, author, email, date, message), oldest first, of the branch's first
    parents that change ``paths`` (git's own path-limited log: cheap on long histories)."""
    fmt = _FIELD.join(("%H", "%P", "%an", "%ae", "%aI", "%B")) + _RECORD
    out = git.run("log", "--first-parent", "--reverse", f"--format={fmt}", branch, "--",
                  *paths)
    commits = []
    for record in out.decode("utf-8", "replace").split(_RECORD):
        record = record.strip("\n")
        if not record:
            continue
        sha, parents, name, email, date, message = record.split(_FIELD, 5)
        commits.append((sha, (parents.split() or [""])[0], name, email, date, message.strip()))
    return commits


def _batch_check(git: Git, specs: list[str]) -> dict[str, str | None]:
    """``<rev>:<path>`` → object id, or None when it is missing (one git process)."""
    if not specs:
        return {}
    out = git.run("cat-file", "--batch-check=%(objectname)",
                  input="".join(f"{s}\n" for s in specs).encode()).decode().splitlines()
    return {spec: (None if line.endswith(" missing") or not line.strip() else line.strip())
            for spec, line in zip(specs, out, strict=True)}


def _assignments(git: Git, oids: set[str], paths: dict[str, str]
                 ) -> dict[str, tuple[str | None, str | None]]:
    """Host file blob → (role, version); (None, None) for a file the node cannot use."""
    out: dict[str, tuple[str | None, str | None]] = {}
    ordered = sorted(oids)
    for oid, data in git.blobs(ordered):
        assignment, problems = layout.parse_host(data, paths[oid])
        out[oid] = ((assignment.role, assignment.version) if assignment and not problems
                    else (None, None))
    return out


def _sources(git: Git, commits: list[tuple[str, str, str, str, str, str]], own: str
             ) -> tuple[dict[str, str | None], dict[str, tuple[str | None, str | None]],
                        dict[str, tuple[str | None, str | None]]]:
    """For each commit: the blob ids of its paths, the host file that applies (path, blob)
    and, by blob, the (role, version) it assigns."""
    specs = []
    for sha, *_ in commits:
        specs += [f"{sha}:{layout.SETTINGS_FILE}", f"{sha}:{own}",
                  f"{sha}:{layout.DEFAULT_HOST_FILE}"]
    found = _batch_check(git, specs)
    sources: dict[str, tuple[str | None, str | None]] = {}
    paths: dict[str, str] = {}
    for sha, *_ in commits:
        for path in (own, layout.DEFAULT_HOST_FILE):
            oid = found[f"{sha}:{path}"]
            if oid is not None:
                sources[sha] = (path, oid)
                paths[oid] = path
                break
        else:
            sources[sha] = (None, None)
    parsed = _assignments(git, {oid for _, oid in sources.values() if oid}, paths)
    return found, sources, parsed


def git_history(git: Git, mac: Mac, branch: str) -> tuple[list[Change], list[Release]]:
    own = layout.host_file(mac)
    # What a node gets can change only in a commit that changes bootpull.toml, the host
    # files that can apply to it, or the files of a role it follows at the head (a
    # release tag's content never changes). So git walks the host files first, for the
    # roles they ever name, then those paths and roles: path-limited walks, whose
    # results grow with the node's own commits, not with the branch's.
    hosts = [own, layout.DEFAULT_HOST_FILE]
    _found, sources, parsed = _sources(git, _commits(git, branch, hosts), own)
    followed = sorted({role for role, version in parsed.values()
                       if role is not None and version is None})
    commits = _commits(git, branch, [layout.SETTINGS_FILE, *hosts,
                                     *(f"{layout.ROLES_DIR}/{role}" for role in followed)])
    found, sources, parsed = _sources(git, commits, own)
    # The role content each commit gives: the role's tree at the commit, or in the tag.
    content_specs = []
    for sha, *_ in commits:
        _path, source_oid = sources[sha]
        role, version = parsed.get(source_oid, (None, None)) if source_oid else (None, None)
        if role is None:
            continue
        if version is None:
            content_specs.append(f"{sha}:{layout.ROLES_DIR}/{role}")
        else:
            content_specs.append(
                f"refs/tags/{layout.release_tag(role, version)}^{{commit}}:"
                f"{layout.ROLES_DIR}/{role}")
    content = _batch_check(git, sorted(set(content_specs)))
    published = _publish_commits(git, branch)
    every = git.text("rev-list", "--first-parent", "--reverse", branch, "--").split()
    order = {sha: i for i, sha in enumerate(every)}
    publish_order = sorted((order[p], p) for p in published if p in order)
    publish_at = [i for i, _ in publish_order]

    changes: list[Change] = []
    pinned: set[tuple[str, str]] = set()
    before = Gets(None, None, None, None, None, None)
    for sha, _parent, name, email, date, message in commits:
        host_path, oid = sources[sha]
        role, version = parsed.get(oid, (None, None)) if oid else (None, None)
        tree = None
        if role is not None:
            spec = (f"{sha}:{layout.ROLES_DIR}/{role}" if version is None else
                    f"refs/tags/{layout.release_tag(role, version)}^{{commit}}:"
                    f"{layout.ROLES_DIR}/{role}")
            tree = content.get(spec)
            if version is not None:
                pinned.add((role, version))
        settings = found[f"{sha}:{layout.SETTINGS_FILE}"]
        now = Gets(settings, host_path, oid, role, version, tree)
        if now != before:
            changed = _describe(before, now)
            at = bisect.bisect_left(publish_at, order[sha])  # the first publish from here
            live = publish_order[at][1] if at < len(publish_order) else None
            changes.append(Change(sha, name, email, date, message, changed, now.label(), live))
        before = now
    return changes, _releases(git, pinned)


def _describe(a: Gets, b: Gets) -> list[str]:
    out = []
    if a.settings != b.settings:
        out.append(f"{layout.SETTINGS_FILE} " + ("added" if a.settings is None else
                                               "removed" if b.settings is None else "changed"))
    if a.source != b.source:
        if b.source is None:
            out.append(f"{a.source} removed: the node is not assigned")
        elif a.source is None:
            out.append(f"{b.source} added")
        else:
            out.append(f"now from {b.source} (was {a.source})")
    elif a.host != b.host:
        out.append(f"{b.source} changed")
    if (a.role, a.version) != (b.role, b.version) and b.role is not None:
        was = f" (was {a.role}@{a.version or 'head'})" if a.role else ""
        out.append(f"role {b.role}@{b.version or 'head'}{was}")
    elif a.content != b.content and b.role is not None:
        out.append(f"{layout.ROLES_DIR}/{b.role}/ changed" if b.version is None
                   else f"release {layout.release_tag(b.role, b.version)} content")
    return out or ["changed"]


def _publish_commits(git: Git, branch: str) -> set[str]:
    out = git.text("log", "--first-parent", "--format=%H", branch, "--", METADATA_TARGETS,
                   DELEGATED_DIR)  # format 2: a publish may re-sign only a delegated role
    return set(out.split())


def _releases(git: Git, pinned: set[tuple[str, str]]) -> list[Release]:
    out = []
    for role, version in sorted(pinned):
        tag = layout.release_tag(role, version)
        fmt = _FIELD.join(("%(objectname)", "%(*objectname)", "%(taggername)",
                           "%(taggerdate:iso-strict)", "%(creatordate:iso-strict)",
                           "%(contents:subject)"))
        text = git.text("for-each-ref", f"--format={fmt}", f"refs/tags/{tag}")
        if not text:
            continue
        obj, peeled, tagger, tagdate, created, subject = text.split(_FIELD, 5)
        out.append(Release(tag, peeled or obj, tagger or "(lightweight tag)",
                           tagdate or created, subject))
    return sorted(out, key=lambda r: r.time)


# -- the reports half -----------------------------------------------------------------


def summarize(events: list[dict[str, Any]]) -> list[Running]:
    """Consecutive events of one (role, version, commit) as one stretch, oldest first."""
    out: list[Running] = []
    for event in events:
        key = (str(event.get("role", "")), str(event.get("version", "")),
               str(event.get("commit", "")))
        when = str(event.get("time") or event.get("received") or "")
        status = str(event.get("status", ""))
        stage = str(event.get("stage", ""))
        message = str(event.get("message", ""))
        if out and (out[-1].role, out[-1].version, out[-1].commit) == key:
            last = out[-1]
            out[-1] = Running(last.role, last.version, last.commit, last.first, when,
                              last.reports + 1, status, stage, message)
        else:
            out.append(Running(*key, when, when, 1, status, stage, message))
    return out


def reports_from_db(path: Path, mac: Mac) -> list[dict[str, Any]]:
    if not path.is_file():
        raise UsageError(f"--db {path} does not exist",
                         hint="give the home base's event database (bootpull serve --db PATH)")
    from bootpull_homebase.store import EventStore

    store = EventStore(path)
    try:
        return [stored.event for stored in store.events_for(mac)]
    finally:
        store.close()


def reports_from_homebase(url: str, mac: Mac, *, timeout: float = 30.0) -> list[dict[str, Any]]:
    import urllib.error
    import urllib.request

    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise UsageError(f"--homebase {url!r} is not an http(s) URL",
                         hint="give the home base's address, as in http://base.example:8080")
    target = f"{base}/api/v1/nodes/{mac.canonical}?limit=10000"
    try:
        with urllib.request.urlopen(target, timeout=timeout) as response:  # noqa: S310
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return []
        raise BootpullError(f"the home base answered {exc.code} for {target}",
                            hint="check --homebase") from None
    except (OSError, ValueError) as exc:
        raise BootpullError(f"cannot read {target}", why=str(exc),
                            hint="check that the home base runs and --homebase is right"
                            ) from None
    events = body.get("events") if isinstance(body, dict) else None
    return [e for e in events if isinstance(e, dict)] if isinstance(events, list) else []


# -- the command ----------------------------------------------------------------------


def history(root: Path, mac: Mac, *, db: Path | None = None, homebase: str | None = None
            ) -> History:
    from bootpull.localgit import LocalRemote

    from bootpull_repo.show import deploy_head

    remote = LocalRemote(root)
    try:
        branch, _head = deploy_head(remote)
    finally:
        remote.close()
    git = Git(root)
    changes, releases = git_history(git, mac, branch)
    result = History(mac, branch, changes, releases)
    if db is not None:
        events = reports_from_db(db, mac)
        result.reports_note = f"from the event database {db}"
    elif homebase is not None:
        events = reports_from_homebase(homebase, mac)
        result.reports_note = f"from the home base {homebase}"
    else:
        result.reports_note = ("no reports are available: pass --db PATH (the home base's "
                               "event database) or --homebase URL to add what the node "
                               "reported running")
        return result
    result.running = summarize(events)
    if not events:
        result.reports_note += ": the node has never reported"
    return result


def render(h: History) -> str:
    lines = [f"history of node {h.mac.canonical} ({h.mac.colons}) on branch {h.branch}, "
             "oldest first", "", "what the repository gave it:"]
    if not h.changes:
        lines.append("  nothing: no commit on the branch ever assigned it")
    for c in h.changes:
        subject = c.message.splitlines()[0] if c.message else ""
        lines.append(f"  {c.time}  {c.commit[:12]}  {c.author} <{c.email}>")
        lines.append(f"      {subject}")
        live = (f"published in {c.published_in[:12]}" if c.published_in
                else "NOT published yet: nodes do not see it")
        lines.append(f"      {'; '.join(c.changed)} → gets {c.gets}; {live}")
    if h.releases:
        lines += ["", "releases it was pinned to:"]
        for rel in h.releases:
            lines.append(f"  {rel.time}  {rel.tag} at {rel.commit[:12]} by {rel.tagger}: "
                         f"{rel.message}")
    lines += ["", "what it reported running:"]
    if h.running is None:
        lines.append(f"  {h.reports_note}")
    elif not h.running:
        lines.append(f"  none ({h.reports_note})")
    else:
        lines.append(f"  ({h.reports_note})")
        for r in h.running:
            span = r.first if r.first == r.last else f"{r.first} … {r.last}"
            lines.append(f"  {span}  {r.role}@{r.version} commit {r.commit[:12] or '?'}: "
                         f"{r.reports} report{'s' if r.reports != 1 else ''}, last "
                         f"{r.last_status.upper()} at {r.last_stage}: {r.last_message}")
    return "\n".join(lines) + "\n"


def configure(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "history", help="node MAC's audit trail: the commits that changed what it gets, "
        "and what it reported running",
        description="List every commit of the deploy branch that changed what node MAC "
        "gets (bootpull.toml, its host file or hosts/default.toml, its role's files, its "
        "pinned release) with author, time and message and the publish that made it "
        "live; with --db or --homebase, also the versions it reported running.")
    parser.add_argument("mac", metavar="MAC", help="in any notation, as in 52:54:00:12:34:56")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--db", default=None, metavar="PATH",
                        help="the home base's event database (bootpull serve --db)")
    source.add_argument("--homebase", default=None, metavar="URL",
                        help="the home base, as in http://base.example:8080")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    from bootpull_repo.context import RepoContext

    ctx = RepoContext.from_args(args)
    mac = parse_mac(args.mac)
    result = history(ctx.root, mac, db=Path(args.db) if args.db else None,
                     homebase=args.homebase)
    if args.json:
        sys.stdout.write(json.dumps(result.as_json(), indent=2) + "\n")
    else:
        sys.stdout.write(render(result))
    return 0
