"""``bootpull repo lint``: every problem in the repository, in one pass.

The node's own validator (:func:`bootpull.layout.validate_tree`) does the format-1
checks: TOML syntax, unknown keys with a did-you-mean, missing and ill-typed keys,
host file names, hostnames, a host whose role does not exist, a pinned version with no
release tag, an invalid ``hosts/default.toml``, group files (``groups/<name>.toml``,
with their ``[vars]`` and ``version``), a host naming a group that does not exist, two
of a host's groups setting the same variable or a version, a host variable that
differs from a group's only in case, and a group version with no release tag for a
host's role. This module adds what needs the whole
repository or the node's other stages, so that a repository lint accepts is one every
node can select from, install and start:

- a role command, install hook or health command that is not in the role's ``files/``
  (or not executable there);
- the same node described twice, under two MAC notations;
- a role larger than ``[limits]`` of ``bootpull.toml`` (what the node agrees to fetch),
  or with a file larger than a node fetches (:data:`bootpull.bundle.MAX_FILE_BYTES`);
- role files the node's installer would refuse (:func:`bootpull.install.check_files`)
  and role names it would refuse;
- a pinned release (by a host file or by one of its groups) whose tagged commit has
  no valid role;
- secrets (:func:`bootpull_repo.secrets.check_secrets`) that an enrolled node of their
  role cannot decrypt, that are still encrypted to nodes no longer enrolled or
  assigned, that are not age files, or whose names are not names.

Each problem prints as ``file:line: what is wrong — how to fix it``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from bootpull import bundle, layout
from bootpull.bundle import MODE_EXEC, MODE_SYMLINK, BundleFile, Limits, TreeReader
from bootpull.errors import BootpullError, InstallError, UsageError
from bootpull.layout import Problem, Report
from bootpull.mac import Mac, MacError

from bootpull_repo.identities import read_pins
from bootpull_repo.secrets import check_secrets

#: Reads the commit of a release tag (``role/web/1.0``), or None when there is none.
ReleaseReader = Callable[[str], TreeReader | None]


class LintFailed(BootpullError):
    """``repo lint`` could not look at what it was asked to (not a repository, say)."""

    exit_code = 1
    stage = "lint"


def lint_tree(tree: TreeReader, *, tags: set[str] | None = None,
              release: ReleaseReader | None = None,
              hosts: Collection[str] | None = None) -> Report:
    """Every problem in one commit (or the work tree), sorted by file and line.

    ``hosts`` limits what is read of ``hosts/`` to those host files: only for a tree
    that differs in them alone from one that passed (publish). Every other check, and
    the names of every host file (duplicates), still covers the whole tree.
    """
    report = layout.validate_tree(tree, tags=tags, hosts=hosts)
    limits = _limits(tree)
    duplicates = _duplicate_hosts(tree)
    # A duplicate's "rename it to the canonical name" advice would clobber the other
    # file: the duplicate problem below replaces it.
    report.problems = [p for p in report.problems
                       if not (p.line == 0 and p.file in duplicates)]
    report.extend(duplicates.values())
    report.extend(_refs_of_broken_hosts(tree, tags, hosts))
    report.extend(read_pins(tree)[1])  # groups/: validate_tree checks them
    report.extend(check_secrets(tree))
    for role in _role_names(tree):
        report.extend(check_role(tree, role, limits))
    if release is not None and tags is not None:
        report.extend(_check_releases(tree, tags, release, limits, hosts))
    report.problems = _unique_sorted(report.problems)
    return report


def _unique_sorted(problems: list[Problem]) -> list[Problem]:
    seen: set[Problem] = set()
    out = []
    for problem in problems:
        if problem not in seen:
            seen.add(problem)
            out.append(problem)
    order = {p.file: i for i, p in enumerate(out)}  # files in the order first found
    return sorted(out, key=lambda p: (_file_rank(p.file), p.file, order[p.file], p.line))


def _file_rank(path: str) -> int:
    if path == layout.SETTINGS_FILE:
        return 0
    if path.startswith(layout.HOSTS_DIR + "/"):
        return 1
    return 2


def _limits(tree: TreeReader) -> Limits:
    data = tree.read(layout.SETTINGS_FILE)
    settings = layout.parse_settings(data)[0] if data is not None else None
    return settings.limits if settings is not None else Limits()


def _role_names(tree: TreeReader) -> list[str]:
    entries = tree.list(layout.ROLES_DIR)
    return sorted({e.path.split("/")[1] for e in entries if e.path.count("/") >= 2})


# -- hosts ---------------------------------------------------------------------------


_CANONICAL_HOST = re.compile(r"hosts/[0-9a-f]{2}(?:-[0-9a-f]{2}){5}\.toml")


def _duplicate_hosts(tree: TreeReader) -> dict[str, Problem]:
    """Host files that name the same MAC in different notations, keyed by file."""
    by_mac: dict[Mac, list[str]] = {}
    names = [e.path for e in tree.list(layout.HOSTS_DIR)
             if e.path.count("/") == 1 and e.path != layout.DEFAULT_HOST_FILE
             and not e.path.startswith(layout.HOSTS_DIR + "/.")]
    if all(_CANONICAL_HOST.fullmatch(path) for path in names):
        return {}  # two canonical names of one MAC are the same name
    for path in names:
        stem, dot, ext = path.rsplit("/", 1)[-1].rpartition(".")
        if not dot or ext != "toml":
            continue
        try:
            by_mac.setdefault(Mac.parse(stem), []).append(path)
        except MacError:
            continue
    out: dict[str, Problem] = {}
    for mac, paths in by_mac.items():
        if len(paths) < 2:
            continue
        canonical = layout.host_file(mac)
        keep = canonical if canonical in paths else sorted(paths)[0]
        for path in sorted(paths):
            if path == keep:
                continue
            fix = (f"keep one file per node: merge it into {keep} and 'git rm {path}'"
                   + ("" if keep == canonical else f", then 'git mv {keep} {canonical}'"))
            out[path] = Problem(path, 0, f"describes the same node as {keep} ({mac.colons})",
                                fix)
    return out


def _refs_of_broken_hosts(tree: TreeReader, tags: set[str] | None,
                          hosts: Collection[str] | None = None) -> list[Problem]:
    """A missing role or release tag, for host files the validator stopped at early.

    :func:`bootpull.layout.validate_tree` checks what a host file names only when the
    file has no other problem; lint reports everything in one pass.
    """
    import tomllib

    roles = set(_role_names(tree))
    out = []
    for entry in tree.list(layout.HOSTS_DIR):
        if hosts is not None and entry.path not in hosts:
            continue
        data = tree.read(entry.path)
        if data is None or layout.host_path_problem(entry.path) is not None:
            continue
        if layout.parse_host(data, entry.path)[0] is not None:
            continue  # parsed: validate_tree checked its role already
        try:
            doc = tomllib.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError):
            continue
        role = doc.get("role")
        if not isinstance(role, str) or layout.check_role_name(role) is not None:
            continue
        text = data.decode("utf-8")
        if role not in roles:
            out.append(Problem(
                entry.path, layout.key_line(text, "role"), f"role {role!r} does not exist",
                f"create roles/{role}/role.toml ('bootpull repo role new {role}'), or assign "
                "an existing role"))
        version = doc.get("version")
        if (tags is not None and isinstance(version, str)
                and layout.check_version(version) is None
                and layout.release_tag(role, version) not in tags):
            tag = layout.release_tag(role, version)
            out.append(Problem(
                entry.path, layout.key_line(text, "version"), f"there is no release tag {tag}",
                f"run 'bootpull repo release {role} {version}', or remove the version to "
                "follow the deploy branch"))
    return out


# -- roles ---------------------------------------------------------------------------


def _role_files(tree: TreeReader, role: str) -> tuple[list[BundleFile], dict[str, int]]:
    root = f"{layout.ROLES_DIR}/{role}/"
    entries = [e for e in tree.list(root.rstrip("/")) if e.path.startswith(root + "files/")]
    data = tree.read_many([e.path for e in entries])
    files = [BundleFile(e.path[len(root + "files/"):], e.mode, data.get(e.path, b""))
             for e in entries]
    modes = {f.path: f.mode for f in files}
    return files, modes


def check_role(tree: TreeReader, role: str, limits: Limits) -> list[Problem]:
    """What keeps ``roles/<role>/`` from installing and starting on a node."""
    from bootpull import install

    path = layout.role_file(role)
    problems: list[Problem] = []
    role_toml = tree.read(path)
    files, modes = _role_files(tree, role)
    size = sum(len(f.data) for f in files) + len(role_toml or b"")
    count = len(files) + (1 if role_toml is not None else 0)
    if size > limits.max_bundle_bytes:
        biggest = max(files, key=lambda f: len(f.data)) if files else None
        where = f"; the largest is files/{biggest.path} ({len(biggest.data)} bytes)" \
            if biggest else ""
        problems.append(Problem(
            f"{layout.ROLES_DIR}/{role}/files", 0,
            f"role {role!r} is {size} bytes, more than the limit of {limits.max_bundle_bytes}"
            f"{where}",
            "make the role smaller, or raise [limits] max_bundle_bytes in bootpull.toml"))
    for big in (f for f in files if len(f.data) > bundle.MAX_FILE_BYTES):
        problems.append(Problem(
            f"{layout.ROLES_DIR}/{role}/files/{big.path}", 0,
            f"it is {len(big.data)} bytes, more than a node fetches as one file "
            f"({bundle.MAX_FILE_BYTES // 2**20} MiB): nodes would refuse the role",
            "split it into smaller files (split -b 16M, and join them in an install "
            "hook), or fetch it from elsewhere in an install hook and check its hash"))
    if count > limits.max_files:
        problems.append(Problem(
            f"{layout.ROLES_DIR}/{role}/files", 0,
            f"role {role!r} has {count} files, more than the limit of {limits.max_files}",
            "pack files into fewer ones, or raise [limits] max_files in bootpull.toml"))
    try:
        install.check_files(files)
    except InstallError as exc:
        problems.append(Problem(f"{layout.ROLES_DIR}/{role}/files", 0,
                                f"the node would refuse to install it: {exc.what}",
                                exc.hint or "rename or remove that file"))
    if role_toml is None:
        return problems
    text = role_toml.decode("utf-8", "replace")
    problems += _check_commands(role, _argvs(text), text, path, modes)
    from bootpull_repo import role_debs  # roles made by 'role from-debs'

    problems += role_debs.lint_role(tree, role)
    return problems


Argvs = list[tuple[tuple[str, ...], tuple[str, ...]]]


def _argvs(text: str) -> Argvs:
    """Every well-formed argv of a role.toml (also when other keys have problems)."""
    import tomllib

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return []

    def argv(value: Any) -> tuple[str, ...] | None:
        if isinstance(value, list) and value and all(isinstance(a, str) for a in value) \
                and value[0]:
            return tuple(value)
        return None

    def table(name: str) -> dict[str, Any]:
        value = doc.get(name)
        return value if isinstance(value, dict) else {}

    out: Argvs = []
    if (run := argv(table("run").get("command"))) is not None:
        out.append((("run", "command"), run))
    hooks = table("install").get("hooks")
    for hook in hooks if isinstance(hooks, list) else []:
        if (found := argv(hook)) is not None:
            out.append((("install", "hooks"), found))
    if (health := argv(table("health").get("command"))) is not None:
        out.append((("health", "command"), health))
    return out


def _check_commands(role: str, argvs: Argvs, text: str, path: str, modes: dict[str, int]
                    ) -> list[Problem]:
    problems = []
    for keys, argv in argvs:
        program = argv[0]
        if program.startswith("/"):
            continue  # a program of the image itself, as in /bin/sh
        name = "/".join(part for part in program.split("/") if part not in ("", "."))
        mode = modes.get(name)
        label = ".".join(keys)
        if mode is None:
            problems.append(Problem(
                path, layout.key_line(text, *keys),
                f"{label} runs {program!r}, which is not in files/",
                f"add files/{name} to the role, or correct the path (it is relative to the "
                "install directory, which holds the files/ content)"))
        elif mode != MODE_EXEC and mode != MODE_SYMLINK:
            problems.append(Problem(
                path, layout.key_line(text, *keys),
                f"{label} runs {program!r}, which is not executable",
                f"chmod +x roles/{role}/files/{name} and commit it (git keeps the mode)"))
    return problems


def _check_releases(tree: TreeReader, tags: set[str], release: ReleaseReader,
                    limits: Limits, hosts: Collection[str] | None = None) -> list[Problem]:
    """Each pinned release (by a host file or a group it names) must hold a role the
    node can install; the problem is on the file that pins it."""
    problems: list[Problem] = []
    checked: set[str] = set()
    groups = layout.read_groups(tree)[0]
    for entry in tree.list(layout.HOSTS_DIR):
        if hosts is not None and entry.path not in hosts:
            continue
        data = tree.read(entry.path)
        if data is None or layout.host_path_problem(entry.path) is not None:
            continue
        assignment, bad = layout.parse_host(data, entry.path)
        if assignment is not None and not bad:
            assignment = layout.merge_groups(assignment, groups)[0]
        if assignment is None or bad or assignment.version is None:
            continue
        where = assignment.version_source or entry.path
        if where != entry.path:
            data = tree.read(where) or b""
        tag = layout.release_tag(assignment.role, assignment.version)
        if tag not in tags or tag in checked:
            continue
        checked.add(tag)
        tagged = release(tag)
        if tagged is None:
            continue
        text = data.decode("utf-8", "replace")
        line = layout.key_line(text, "version")
        role_toml = tagged.read(layout.role_file(assignment.role))
        if role_toml is None:
            problems.append(Problem(where, line,
                                    f"release {tag} has no {layout.role_file(assignment.role)}",
                                    "pin a release that has the role, or remove the version"))
            continue
        _spec, bad = layout.parse_role(role_toml, assignment.role)
        inner = bad or check_role(tagged, assignment.role, limits)
        if inner:
            problems.append(Problem(
                where, line, f"release {tag} is broken: {inner[0]}",
                f"release a fixed version ('bootpull repo release {assignment.role} V') "
                "and pin that"))
    return problems


# -- the command ---------------------------------------------------------------------


def lint_repo(root: Path, *, rev: str | None = None) -> Report:
    """Lint the work tree at ``root`` (or commit ``rev`` of it), with its release tags."""
    from bootpull.errors import FetchError
    from bootpull.localgit import LocalRemote

    from bootpull_repo.worktree import WorkTree

    try:
        remote: LocalRemote | None = LocalRemote(root)
    except FetchError:
        remote = None
    if remote is None:
        if rev is not None:
            raise LintFailed(f"{root} is not a git repository, so it has no {rev!r}",
                             hint="run 'git init' there, or lint without --rev")
        return lint_tree(WorkTree(root))
    try:
        tags = remote.tags()

        def release(tag: str) -> TreeReader | None:
            assert remote is not None
            try:
                return remote.snapshot(f"refs/tags/{tag}")
            except BootpullError:
                return None

        tree: TreeReader
        if rev is None:
            tree = WorkTree(root)
        else:
            from bootpull_repo.gitcli import Git

            commit = Git(root).rev(rev)
            if commit is None:
                raise UsageError(f"the repository has no commit {rev!r}",
                                 hint="give a branch, a tag or a commit id, as in --rev HEAD")
            tree = remote.snapshot(commit)
        return lint_tree(tree, tags=tags, release=release)
    finally:
        remote.close()


def repo_root(start: Path) -> Path:
    """The deploy repository ``start`` is in: its git top level when that has a
    ``bootpull.toml`` (lint from any subdirectory), else ``start`` itself (a folder that
    is not a repository of its own, such as ``repo-layout/example``)."""
    from bootpull_repo.gitcli import Git

    git = Git(start)
    if git.ok("rev-parse", "--show-toplevel"):
        top = Path(git.text("rev-parse", "--show-toplevel"))
        if (top / layout.SETTINGS_FILE).is_file():
            return top
    return start


def command(args: argparse.Namespace) -> int:
    start = Path(getattr(args, "repo_dir", None) or ".")
    if not start.is_dir():
        raise UsageError(f"{start} is not a directory", hint="give -C the repository")
    report = lint_repo(repo_root(start), rev=args.rev)
    for problem in report.problems:
        print(problem)
    if report.problems:
        count = len(report.problems)
        files = len({p.file for p in report.problems})
        print(f"bootpull repo lint: {count} problem{'s' if count > 1 else ''} in "
              f"{files} file{'s' if files > 1 else ''}", file=sys.stderr)
        return 1
    print("bootpull repo lint: no problems", file=sys.stderr)
    return 0


def configure(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "lint", help="find every problem in the repository, each with a fix",
        description="Check the repository as 'git add -A' would commit it (or one commit, "
        "with --rev) and print every problem as 'file:line: what is wrong — how to fix "
        "it'. Exits 1 if there is any.",
    )
    parser.add_argument("--rev", default=None, metavar="REF",
                        help="lint this commit (branch, tag or id) instead of the work tree")
    parser.set_defaults(func=command)
