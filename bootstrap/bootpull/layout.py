"""The repository layout, format 1 (docs/contract.md §1): one parser for the node and admin tools.

Every parser here is a pure function over bytes. It returns the parsed value (or None)
and a list of :class:`Problem` — file, line, what is wrong, how to fix it — and never
stops at the first problem. The ``load_*`` wrappers raise a
:class:`~bootpull.errors.LayoutError` instead, for the node, which must not use a file
that has any problem at all.

tomllib gives no line numbers for keys, so :func:`key_line` finds a key's line in the
text itself (the table header, then the key inside that table).

Files:

- ``bootpull.toml`` → :class:`~bootpull.bundle.RepoSettings`
- ``hosts/<mac>.toml`` and ``hosts/default.toml`` → :class:`~bootpull.bundle.Assignment`
- ``roles/<role>/role.toml`` → :class:`~bootpull.bundle.RoleSpec`
- ``groups/<name>.toml`` → :class:`~bootpull.bundle.Group`, merged into the assignment
  of the hosts that name it (``groups = [...]``) by :func:`merge_groups`
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from bootpull.bundle import (
    Assignment,
    Group,
    HealthSpec,
    Limits,
    RepoSettings,
    Restart,
    RoleSpec,
    TreeReader,
)
from bootpull.errors import LayoutError, NotAssignedError
from bootpull.mac import Mac, MacError

FORMAT = 1
# bootpull.toml's newest format: 2 means signed metadata format 2 (delegations,
# bootpull.delegation); the files of the layout itself are all format 1.
SETTINGS_FORMAT = 2
SETTINGS_FILE = "bootpull.toml"
HOSTS_DIR = "hosts"
DEFAULT_HOST_FILE = "hosts/default.toml"
ROLES_DIR = "roles"
GROUPS_DIR = "groups"

#: The one role-name rule (a directory, a tag part and an install directory on the node):
#: lowercase letters, digits, '.', '_' and '-', at most 63, starting with a letter or
#: digit, no "..". The installer, lint and 'repo role new' all use :func:`check_role_name`.
ROLE_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")  # the repository's name
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,62}$")  # one tag path component
_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")  # BOOTPULL_VAR_<NAME>
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_BRANCH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,199}$")
_LOG_LEVELS = ("debug", "info", "warn", "warning", "error")
_RESTARTS: tuple[Restart, ...] = ("always", "on-failure", "never")
_MAX_ARGV = 256


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one file, printed as ``file:line: what — how to fix it``."""

    file: str
    line: int
    what: str
    fix: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.what} — {self.fix}"

    def error(self) -> LayoutError:
        return LayoutError(self.what, path=self.file, line=self.line, hint=self.fix)


@dataclass
class Report:
    """Every problem found, in the order found."""

    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def extend(self, problems: Iterable[Problem]) -> None:
        self.problems.extend(problems)

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


def raise_first(problems: list[Problem]) -> None:
    """Raise the first problem as a LayoutError that also counts the others."""
    if not problems:
        return
    first = problems[0]
    more = len(problems) - 1
    what = first.what + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")
    raise LayoutError(what, path=first.file, line=first.line, hint=first.fix)


# -- names -----------------------------------------------------------------------


def check_role_name(name: str) -> str | None:
    """Why ``name`` is not a valid role name, or None when it is."""
    if ROLE_NAME.match(name) and ".." not in name:
        return None
    if ROLE_NAME.match(name.lower()) and ".." not in name:
        return (f"{name!r} is not a valid role name: role names are lowercase only "
                f"(as in {name.lower()!r})")
    return (f"{name!r} is not a valid role name: use lowercase letters, digits, '.', '_' "
            "and '-' (at most 63, starting with a letter or digit)")


def check_group_name(name: str) -> str | None:
    """Why ``name`` is not a valid group name (the role-name rule), or None when it is."""
    why = check_role_name(name)
    return None if why is None else why.replace("role name", "group name")


def check_repo_name(name: str) -> str | None:
    """Why ``name`` is not a valid repository name (``bootpull.toml`` ``name``), or None."""
    if not _NAME.match(name) or ".." in name:
        return f"{name!r} is not a valid repository name"
    return None


def check_version(version: str) -> str | None:
    """Why ``version`` is not a valid release version, or None when it is."""
    if not _VERSION.match(version) or ".." in version or version.endswith(".lock"):
        return (f"{version!r} is not a valid version: use letters, digits, '.', '_', '+' "
                "and '-' (at most 63, starting with a letter or digit)")
    return None


def host_file(mac: Mac) -> str:
    """``hosts/52-54-00-12-34-56.toml``."""
    return f"{HOSTS_DIR}/{mac.canonical}.toml"


def role_file(role: str) -> str:
    return f"{ROLES_DIR}/{role}/role.toml"


def group_file(name: str) -> str:
    """``groups/site-a.toml``."""
    return f"{GROUPS_DIR}/{name}.toml"


def release_tag(role: str, version: str) -> str:
    """The git tag of a released version: ``role/<role>/<version>``."""
    return f"role/{role}/{version}"


# -- line numbers ----------------------------------------------------------------

_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(?:#.*)?$")


def _key_pattern(key: str) -> re.Pattern[str]:
    quoted = re.escape(key)
    return re.compile(rf"""^\s*(?:{quoted}|"{quoted}"|'{quoted}')\s*[=.]""")


def key_line(text: str, *keys: str) -> int:
    """The 1-based line where ``keys`` (a table path, then a key) is set; 0 if not found.

    ``key_line(text, "run", "command")`` finds ``command =`` under ``[run]``, or the
    ``[run]`` header itself, or a dotted ``run.command =`` at the top level.
    """
    lines = text.splitlines()
    if not keys:
        return 0
    *tables, key = keys
    table = ".".join(tables)
    current = ""
    header_line = 0
    pattern = _key_pattern(key)
    for number, line in enumerate(lines, start=1):
        header = _HEADER.match(line)
        if header:
            current = re.sub(r"\s*\.\s*", ".", header.group(1).strip("\"' "))
            if current == ".".join(keys):
                header_line = header_line or number
            if table and current == table:
                header_line = header_line or number
            continue
        if current == table and pattern.match(line):
            return number
    if header_line:
        return header_line
    if table:  # a dotted key at the top level: run.command = [...]
        dotted = re.compile(rf"^\s*{re.escape('.'.join(keys))}\s*=")
        for number, line in enumerate(lines, start=1):
            if _HEADER.match(line):
                break
            if dotted.match(line):
                return number
    return 0


# -- TOML ------------------------------------------------------------------------


def _load_toml(data: bytes, path: str) -> tuple[dict[str, Any] | None, str, list[Problem]]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, "", [Problem(path, 0, f"is not UTF-8 text (byte {exc.start})",
                                  "save the file as UTF-8")]
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = re.search(r"\(at line (\d+), column (\d+)\)", message)
        line = int(match.group(1)) if match else 0
        what = re.sub(r"\s*\(at (?:line \d+, column \d+|end of document)\)", "", message)
        return None, text, [Problem(path, line, f"is not valid TOML: {what}",
                                    "fix the TOML syntax (see https://toml.io)")]
    return doc, text, []


class _Checker:
    """Collects problems for one file, with line numbers looked up in its text."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text
        self.problems: list[Problem] = []

    def add(self, keys: tuple[str, ...], what: str, fix: str) -> None:
        line = (key_line(self.text, *keys) if keys else 0) or 1  # missing: add it at the top
        self.problems.append(Problem(self.path, line, what, fix))

    def unknown(self, table: dict[str, Any], allowed: Iterable[str],
                where: tuple[str, ...]) -> None:
        allowed = list(allowed)
        for key in table:
            if key not in allowed:
                import difflib  # only for a mistake: not on every boot's import path

                close = difflib.get_close_matches(key, allowed, n=1)
                fix = (f"did you mean '{close[0]}'?" if close
                       else f"remove it; allowed here: {', '.join(allowed)}")
                label = f"[{'.'.join(where)}]" if where else "the top level"
                self.add((*where, key), f"unknown key '{key}' in {label}", fix)

    def table(self, doc: dict[str, Any], key: str) -> dict[str, Any] | None:
        value = doc.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.add((key,), f"'{key}' must be a table", f"write it as a [{key}] section")
            return None
        return value

    def string(self, table: dict[str, Any], keys: tuple[str, ...], *, required: bool = False,
               example: str = "") -> str | None:
        value = table.get(keys[-1])
        if value is None:
            if required:
                self.add(keys[:-1] if len(keys) > 1 else (),
                         f"'{'.'.join(keys)}' is missing",
                         f"add {keys[-1]} = {example or chr(34) + '...' + chr(34)}")
            return None
        if not isinstance(value, str) or not value:
            self.add(keys, f"'{'.'.join(keys)}' must be a non-empty string",
                     f"write it as {keys[-1]} = {example or chr(34) + '...' + chr(34)}")
            return None
        return value

    def number(self, table: dict[str, Any], keys: tuple[str, ...], *, positive: bool = True,
               integer: bool = False) -> float | None:
        value = table.get(keys[-1])
        if value is None:
            return None
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or (
                positive and not value > 0) or value != value:  # NaN
            kind = "a whole number" if integer else "a number"
            self.add(keys, f"'{'.'.join(keys)}' must be {kind} greater than 0, not {value!r}",
                     f"write it as {keys[-1]} = 30")
            return None
        return value

    def argv(self, value: Any, keys: tuple[str, ...]) -> tuple[str, ...] | None:
        fix = f'write it as {keys[-1]} = ["bin/start", "--flag"]'
        if not isinstance(value, list) or not value:
            self.add(keys, f"'{'.'.join(keys)}' must be a non-empty list of strings (an argv)",
                     fix)
            return None
        if len(value) > _MAX_ARGV:
            self.add(keys, f"'{'.'.join(keys)}' has {len(value)} arguments (at most {_MAX_ARGV})",
                     "shorten it, or move the arguments into a script in files/")
            return None
        if not all(isinstance(arg, str) for arg in value) or not value[0] or any(
                "\x00" in arg for arg in value):
            self.add(keys, f"'{'.'.join(keys)}' must be a list of strings with a non-empty "
                     "program name and no NUL characters", fix)
            return None
        return tuple(value)


def _check_format(check: _Checker, doc: dict[str, Any], *, required: bool,
                  newest: int = FORMAT) -> bool:
    """False when the file is of a format this bootpull cannot read at all."""
    value = doc.get("format")
    if value is None:
        if required:
            check.add((), "'format' is missing", f"add format = {FORMAT} as the first line")
        return True
    if isinstance(value, bool) or not isinstance(value, int):
        check.add(("format",), f"'format' must be a whole number, not {value!r}",
                  f"write format = {FORMAT}")
        return True
    if value > newest:
        check.add(("format",), f"this file is format {value}, but this bootpull reads "
                  f"format {newest if newest == 1 else f'1 to {newest}'} only",
                  f"upgrade bootpull (the admin tools and the node image) to a release "
                  f"that reads format {value}")
        return False
    if value < 1:
        check.add(("format",), f"format {value} does not exist", f"write format = {FORMAT}")
    return True


# -- bootpull.toml ---------------------------------------------------------------

_SETTINGS_KEYS = ("format", "name", "branch", "log_level", "report", "limits", "enrollment",
                  "hold")
ENROLLMENT_POLICIES = ("manual", "first-seen")


def parse_settings(data: bytes, path: str = SETTINGS_FILE
                   ) -> tuple[RepoSettings | None, list[Problem]]:
    """``bootpull.toml``: ``format = 1`` or ``2`` (the signed metadata's format) and the
    repository-wide settings."""
    doc, text, problems = _load_toml(data, path)
    if doc is None:
        return None, problems
    check = _Checker(path, text)
    if not _check_format(check, doc, required=True, newest=SETTINGS_FORMAT):
        return None, check.problems
    check.unknown(doc, _SETTINGS_KEYS, ())
    name = check.string(doc, ("name",))
    if name is not None and (why := check_repo_name(name)):
        check.add(("name",), why,
                  "use letters, digits, '.', '_' and '-'")
    branch = check.string(doc, ("branch",), example='"main"') or "main"
    if not _BRANCH.match(branch) or ".." in branch or branch.endswith((".lock", "/")):
        check.add(("branch",), f"{branch!r} is not a valid branch name",
                  'name a git branch, as in branch = "main"')
    log_level = _log_level(check, doc, ("log_level",))
    enrollment = check.string(doc, ("enrollment",), example='"manual"') or "manual"
    if enrollment not in ENROLLMENT_POLICIES:
        check.add(("enrollment",), f"{enrollment!r} is not an enrollment policy",
                  'write enrollment = "manual" (an admin enrolls each node: bootpull repo '
                  'enroll) or enrollment = "first-seen"')
    report_url = None
    silent_after = None
    report = check.table(doc, "report")
    if report is not None:
        check.unknown(report, ("url", "silent_after"), ("report",))
        report_url = check.string(report, ("report", "url"),
                                  example='"http://base.example:8080/api/v1/events"')
        if report_url is not None and not re.match(r"^https?://[^\s/]+", report_url):
            check.add(("report", "url"), f"{report_url!r} is not an http:// or https:// URL",
                      'write it as url = "http://base.example:8080/api/v1/events"')
        silent_after = _silent_after(check, report)
    limits = Limits()
    table = check.table(doc, "limits")
    if table is not None:
        check.unknown(table, ("max_bundle_bytes", "max_files"), ("limits",))
        max_bytes = check.number(table, ("limits", "max_bundle_bytes"), integer=True)
        max_files = check.number(table, ("limits", "max_files"), integer=True)
        limits = Limits(int(max_bytes or limits.max_bundle_bytes),
                        int(max_files or limits.max_files))
    hold_all, hold_roles, hold_reason = False, (), ""
    table = check.table(doc, "hold")
    if table is not None:
        check.unknown(table, ("all", "roles", "reason", "since"), ("hold",))
        value = table.get("all", False)
        if not isinstance(value, bool):
            check.add(("hold", "all"), "'hold.all' must be true or false",
                      "write all = true, or use 'bootpull repo hold' / 'unhold'")
        hold_all = value is True
        roles = table.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            check.add(("hold", "roles"), "'hold.roles' must be a list of role names",
                      'write roles = ["web"], or use \'bootpull repo hold ROLE\'')
        else:
            hold_roles = tuple(roles)
        hold_reason = check.string(table, ("hold", "reason")) or ""
    if check.problems:
        return None, check.problems
    fmt = doc.get("format")
    return RepoSettings(format=fmt if fmt in (1, SETTINGS_FORMAT) else FORMAT, name=name,
                        branch=branch, report_url=report_url,
                        log_level=log_level, limits=limits, silent_after=silent_after,
                        enrollment=enrollment, hold_all=hold_all, hold_roles=hold_roles,
                        hold_reason=hold_reason), []


def _silent_after(check: _Checker, report: dict[str, Any]) -> float | None:
    """``[report] silent_after``: seconds without a report before the home base says SILENT."""
    value = check.number(report, ("report", "silent_after"))
    if value is not None and value == float("inf"):
        check.add(("report", "silent_after"), "'report.silent_after' must be a finite number "
                  "of seconds", "write it as silent_after = 600")
        return None
    return None if value is None else float(value)


def _log_level(check: _Checker, table: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    value = check.string(table, keys, example='"info"')
    if value is None:
        return None
    if value.lower() not in _LOG_LEVELS:
        check.add(keys, f"{value!r} is not a log level", "use debug, info, warn or error")
        return None
    return "warn" if value.lower() == "warning" else value.lower()


# -- hosts/<mac>.toml ------------------------------------------------------------

_HOST_KEYS = ("format", "role", "hostname", "version", "log_level", "vars", "groups")


def parse_host(data: bytes, path: str) -> tuple[Assignment | None, list[Problem]]:
    """``hosts/<mac>.toml`` or ``hosts/default.toml`` → what the node gets.

    The groups it names (``groups = [...]``) are not read here: :func:`merge_groups`
    adds them to the assignment.
    """
    doc, text, problems = _load_toml(data, path)
    if doc is None:
        return None, problems
    check = _Checker(path, text)
    if not _check_format(check, doc, required=False):
        return None, check.problems
    check.unknown(doc, _HOST_KEYS, ())
    role = check.string(doc, ("role",), required=True, example='"web"')
    if role is not None and (why := check_role_name(role)):
        check.add(("role",), why, "name a directory under roles/")
    hostname = check.string(doc, ("hostname",), example='"web-1"')
    if hostname is not None and not _HOSTNAME.match(hostname):
        check.add(("hostname",), f"{hostname!r} is not a valid hostname",
                  "use letters, digits and '-' in dot-separated labels (RFC 1123)")
    version = _version(check, doc)
    log_level = _log_level(check, doc, ("log_level",))
    variables = _vars(check, doc)
    groups = _group_names(check, doc)
    if check.problems or role is None:
        return None, check.problems
    return Assignment(role=role, source=path, hostname=hostname,
                      version=version, log_level=log_level,
                      vars=variables, groups=groups), []


def _version(check: _Checker, doc: dict[str, Any]) -> str | None:
    """``version``: a release version, as a string (host files and group files)."""
    version = doc.get("version")
    if version is None:
        return None
    if isinstance(version, int | float) and not isinstance(version, bool):
        check.add(("version",), f"'version' must be a string, not the number {version!r}",
                  f'quote it: version = "{version}"')
        return None
    version = check.string(doc, ("version",), example='"1.0"')
    if version is not None and (why := check_version(version)):
        check.add(("version",), why, "name a tag role/<role>/<version>")
        return None
    return version


def _vars(check: _Checker, doc: dict[str, Any]) -> dict[str, str]:
    """``[vars]``: each a BOOTPULL_VAR_<NAME> (host files and group files)."""
    variables: dict[str, str] = {}
    table = check.table(doc, "vars")
    seen: dict[str, str] = {}  # BOOTPULL_VAR_<NAME> is upper-cased: foo and FOO collide
    for name, value in (table or {}).items():
        if name.upper() in seen:
            check.add(("vars", name), f"vars.{name} and vars.{seen[name.upper()]} are "
                      f"both BOOTPULL_VAR_{name.upper()} (names are upper-cased)",
                      "keep one of them")
            continue
        seen[name.upper()] = name
        if not _VAR.match(name):
            check.add(("vars", name), f"{name!r} cannot be an environment variable name",
                      "use letters, digits and '_', not starting with a digit")
        elif isinstance(value, bool):
            variables[name] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            if isinstance(value, str) and "\x00" in value:
                check.add(("vars", name), f"vars.{name} contains a NUL character",
                          "remove it")
            else:
                variables[name] = str(value)
        else:
            check.add(("vars", name),
                      f"vars.{name} must be a string, number or boolean, "
                      f"not a {type(value).__name__}",
                      f'write it as {name} = "value"')
    return variables


def _group_names(check: _Checker, doc: dict[str, Any]) -> tuple[str, ...]:
    """``groups = ["site-a", "sensors"]``: the group files this host takes vars from."""
    value = doc.get("groups")
    if value is None:
        return ()
    fix = 'write it as groups = ["site-a"], naming files groups/<name>.toml'
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        check.add(("groups",), "'groups' must be a list of group names", fix)
        return ()
    names: list[str] = []
    for name in value:
        if (why := check_group_name(name)) is not None:
            check.add(("groups",), why, fix)
        elif name in names:
            check.add(("groups",), f"'groups' names {name!r} twice", "keep one of them")
        else:
            names.append(name)
    return tuple(names)


def host_path_problem(path: str) -> Problem | None:
    """Why ``hosts/<name>`` is not a valid host file name, or None when it is."""
    name = path.rsplit("/", 1)[-1]
    if path == DEFAULT_HOST_FILE or name.startswith("."):
        return None
    stem, dot, ext = name.rpartition(".")
    if not dot or ext != "toml":
        return Problem(path, 0, "is not a host file (host files end in .toml)",
                       "rename it to hosts/<mac>.toml, or remove it")
    try:
        mac = Mac.parse(stem)
    except MacError:
        return Problem(path, 0, f"{stem!r} is not a MAC address",
                       "name host files after the node's MAC, as in "
                       "hosts/52-54-00-12-34-56.toml")
    if stem != mac.canonical:
        return Problem(path, 0, f"host file name {name!r} is not in the canonical form",
                       f"rename it to {host_file(mac)} (git mv)")
    return None


# -- groups/<name>.toml ----------------------------------------------------------

_GROUP_KEYS = ("format", "description", "nodes", "version", "vars")
_GROUPS_FIX = "set it in one of them only: the groups a host names have no order"


def parse_group(data: bytes, name: str, path: str | None = None
                ) -> tuple[Group | None, list[Problem]]:
    """``groups/<name>.toml`` → its nodes, and the vars and version of the hosts that
    name it in ``groups = [...]``.

    Unlike the other parsers this returns what did parse also when there are problems
    (the home base still filters by a group with one bad MAC); None only for a file
    that cannot be read at all. The node uses :func:`load_group`, which refuses any.
    """
    path = path or group_file(name)
    doc, text, problems = _load_toml(data, path)
    if doc is None:
        return None, problems
    check = _Checker(path, text)
    if why := check_group_name(name):
        check.add((), why, "rename the file")
    if not _check_format(check, doc, required=False):
        return None, check.problems
    check.unknown(doc, _GROUP_KEYS, ())
    description = check.string(doc, ("description",), example='"site A, building 2"')
    nodes: list[str] = []
    value = doc.get("nodes", [])
    if not isinstance(value, list):
        check.add(("nodes",), "'nodes' must be a list of MAC addresses",
                  'write nodes = ["52:54:00:12:34:56"]')
        value = []
    for item in value:
        try:
            if not isinstance(item, str):
                raise MacError(f"{item!r} is not a string")
            nodes.append(Mac.parse(item).canonical)
        except MacError:
            check.add(("nodes",), f"{item!r} in 'nodes' is not a MAC address",
                      "write it as 52:54:00:12:34:56")
    version = _version(check, doc)
    variables = _vars(check, doc)
    return Group(name=name, source=path, description=description,
                 nodes=tuple(dict.fromkeys(nodes)), version=version,
                 vars=variables), check.problems


def load_group(data: bytes, name: str, path: str | None = None) -> Group:
    group, problems = parse_group(data, name, path)
    raise_first(problems)
    assert group is not None
    return group


def read_groups(tree: TreeReader) -> tuple[dict[str, Group], list[Problem]]:
    """Every group file of one commit (name → group), and every problem of them."""
    groups: dict[str, Group] = {}
    problems: list[Problem] = []
    for entry in tree.list(GROUPS_DIR):
        rel = entry.path[len(GROUPS_DIR) + 1:]
        if "/" in rel or not rel.endswith(".toml"):
            problems.append(Problem(entry.path, 0, "is not a group file",
                                    "keep group files directly in groups/, named <name>.toml"))
            continue
        name = rel.removesuffix(".toml")
        if (why := check_group_name(name)) is not None:
            problems.append(Problem(entry.path, 0, why, "rename the file"))
            continue
        data = tree.read(entry.path)
        if data is None:
            continue
        group, found = parse_group(data, name, entry.path)
        if group is not None:
            groups[name] = group
        problems += found
    return groups, problems


def merge_groups(assignment: Assignment, groups: Mapping[str, Group], text: str = ""
                 ) -> tuple[Assignment | None, list[Problem]]:
    """The assignment with the ``[vars]`` and ``version`` of the groups it names.

    The host file's own vars and version win over any group's. The groups have no
    order among themselves: a variable (ignoring case) or a version that two of them
    set is a problem, and so is a host variable that differs from a group's only in
    case. ``groups`` holds the parsed group files; a name missing from it is a group
    file that does not exist. ``text`` (the host file) gives the problems a line.
    """
    if not assignment.groups:
        return assignment, []
    line = (key_line(text, "groups") if text else 0) or 1
    path = assignment.source
    problems: list[Problem] = []
    host = {name.upper(): name for name in assignment.vars}
    variables = dict(assignment.vars)
    sources = {name: path for name in assignment.vars}
    taken: dict[str, tuple[str, Group]] = {}  # NAME -> (its spelling, the group setting it)
    pinned: Group | None = None
    for name in assignment.groups:
        group = groups.get(name)
        if group is None:
            problems.append(Problem(
                path, line, f"names group {name!r}, but {group_file(name)} does not exist",
                f"create {group_file(name)} (format = 1, [vars]), or remove {name!r} from "
                "groups; then commit and 'bootpull repo publish'"))
            continue
        for var, value in group.vars.items():
            key = var.upper()
            if key in taken:
                other, first = taken[key]
                problems.append(Problem(
                    path, line, f"groups {first.name!r} and {name!r} both set "
                    f"BOOTPULL_VAR_{key} (vars.{other} in {first.source}, vars.{var} in "
                    f"{group.source})", _GROUPS_FIX))
                continue
            taken[key] = (var, group)
            if key in host:
                if host[key] != var:
                    problems.append(Problem(
                        path, key_line(text, "vars", host[key]) or line,
                        f"vars.{host[key]} differs only in case from vars.{var} in "
                        f"{group.source} (both are BOOTPULL_VAR_{key})",
                        f"spell it {var} here to override the group's value, or rename one"))
                continue  # the host file's own value wins
            variables[var] = value
            sources[var] = group.source
        if group.version is not None:
            if pinned is not None:
                problems.append(Problem(
                    path, line, f"groups {pinned.name!r} and {name!r} both set version "
                    f"({pinned.version!r} in {pinned.source}, {group.version!r} in "
                    f"{group.source})", _GROUPS_FIX))
            else:
                pinned = group
    if problems:
        return None, problems
    version, version_source = assignment.version, path if assignment.version else None
    if version is None and pinned is not None:
        version, version_source = pinned.version, pinned.source
    return replace(assignment, vars=variables, var_sources=sources, version=version,
                   version_source=version_source), []


def with_groups(assignment: Assignment, groups: Mapping[str, Group],
                data: bytes | None = None) -> Assignment:
    """:func:`merge_groups` for the node: raise the first problem as a LayoutError."""
    text = data.decode("utf-8", "replace") if data is not None else ""
    merged, problems = merge_groups(assignment, groups, text)
    raise_first(problems)
    assert merged is not None
    return merged


# -- roles/<role>/role.toml ------------------------------------------------------

_ROLE_KEYS = ("format", "description", "run", "install", "health", "report")


def parse_role(data: bytes, name: str, path: str | None = None
               ) -> tuple[RoleSpec | None, list[Problem]]:
    """``roles/<name>/role.toml`` → how the role is installed and run."""
    path = path or role_file(name)
    doc, text, problems = _load_toml(data, path)
    if doc is None:
        return None, problems
    check = _Checker(path, text)
    if why := check_role_name(name):
        check.add((), why, "rename the role's directory")
    if not _check_format(check, doc, required=True):
        return None, check.problems
    check.unknown(doc, _ROLE_KEYS, ())
    description = check.string(doc, ("description",), required=True,
                               example='"what this role does"')
    command: tuple[str, ...] | None = None
    restart: Restart = "on-failure"
    run_as: tuple[str | None, str | None, tuple[str, ...]] = (None, None, ())
    run = check.table(doc, "run")
    if run is None:
        if "run" not in doc:
            check.add((), "the [run] section is missing",
                      'add [run] with command = ["bin/start"]')
    else:
        check.unknown(run, ("command", "restart", "user", "group", "capabilities"), ("run",))
        run_as = _run_as(check, run)
        if "command" not in run:
            check.add(("run",), "'run.command' is missing",
                      'add command = ["bin/start"] under [run]')
        else:
            command = check.argv(run["command"], ("run", "command"))
        value = run.get("restart", "on-failure")
        if value not in _RESTARTS:
            check.add(("run", "restart"), f"restart must be one of always, on-failure, never, "
                      f"not {value!r}", 'write restart = "on-failure"')
        else:
            restart = value
    hooks: list[tuple[str, ...]] = []
    install = check.table(doc, "install")
    if install is not None:
        check.unknown(install, ("hooks",), ("install",))
        value = install.get("hooks", [])
        if not isinstance(value, list):
            check.add(("install", "hooks"), "'install.hooks' must be a list of argvs",
                      'write hooks = [["bin/setup", "--flag"]]')
        else:
            for hook in value:
                argv = check.argv(hook, ("install", "hooks"))
                if argv is not None:
                    hooks.append(argv)
    health: HealthSpec | None = None
    table = check.table(doc, "health")
    if table is not None:
        check.unknown(table, ("command", "interval", "timeout"), ("health",))
        health_command = None
        if "command" not in table:
            check.add(("health",), "'health.command' is missing",
                      'add command = ["bin/check"] under [health], or remove [health]')
        else:
            health_command = check.argv(table["command"], ("health", "command"))
        interval = check.number(table, ("health", "interval"))
        timeout = check.number(table, ("health", "timeout"))
        if health_command is not None:
            health = HealthSpec(health_command, float(interval or 30.0),
                                float(timeout or 10.0))
    silent_after = None
    report = check.table(doc, "report")
    if report is not None:
        check.unknown(report, ("silent_after",), ("report",))
        silent_after = _silent_after(check, report)
    if check.problems or command is None or description is None:
        return None, check.problems
    user, group, capabilities = run_as
    return RoleSpec(name=name, description=description, command=command, restart=restart,
                    hooks=tuple(hooks), health=health, silent_after=silent_after,
                    user=user, group=group, capabilities=capabilities), []


def _run_as(check: _Checker, run: dict[str, Any]
            ) -> tuple[str | None, str | None, tuple[str, ...]]:
    """``[run] user``, ``group`` and ``capabilities`` (docs/contract.md §9.6): the group
    defaults to the user's name; capabilities come canonical (``net_raw``), in bit order."""
    from bootpull.role_users import CAPABILITIES, capability, check_user_name

    names: dict[str, str | None] = {}
    for key in ("user", "group"):
        value = check.string(run, ("run", key), example='"tcpdump"')
        if value is not None and (why := check_user_name(value, key)):
            better = re.sub("[^a-z0-9_-]", "", value.lower()).lstrip("0123456789_-")[:32]
            fix = ("remove it" if value == "root"
                   else f'write it as {key} = "{better or "name"}"')
            check.add(("run", key), why, fix)
            value = None
        names[key] = value
    user, group = names["user"], names["group"]
    if "group" in run and "user" not in run:
        check.add(("run", "group"), "'run.group' without 'run.user': a role without a user "
                  "runs as root", 'add user = "name" under [run], or remove group')
    caps: set[str] = set()
    listed = run.get("capabilities", [])
    if not isinstance(listed, list) or not all(isinstance(c, str) for c in listed):
        check.add(("run", "capabilities"), "'run.capabilities' must be a list of capability "
                  "names", 'write it as capabilities = ["net_raw"]')
        listed = []
    for item in listed:
        name = capability(item)
        if name is None:
            import difflib

            key = item.strip().lower().removeprefix("cap_")
            close = difflib.get_close_matches(key, list(CAPABILITIES), n=1)
            check.add(("run", "capabilities"), f"unknown capability {item!r}",
                      f"did you mean '{close[0]}'?" if close else
                      "use a Linux capability name (capabilities(7)), such as net_raw, "
                      "net_admin or net_bind_service")
        else:
            caps.add(name)
    if caps and "user" not in run:
        check.add(("run", "capabilities"), "'run.capabilities' without 'run.user': a role "
                  "without a user runs as root, which has every capability already",
                  'add user = "name" under [run] (the role then runs as that user with '
                  "only these capabilities), or remove capabilities")
    return user, (group or user) if user else None, tuple(
        sorted(caps, key=CAPABILITIES.__getitem__))


# -- strict loaders (the node) ---------------------------------------------------


def load_settings(data: bytes) -> RepoSettings:
    settings, problems = parse_settings(data)
    raise_first(problems)
    assert settings is not None
    return settings


def load_role(data: bytes, name: str, path: str | None = None) -> RoleSpec:
    spec, problems = parse_role(data, name, path)
    raise_first(problems)
    assert spec is not None
    return spec


def select(mac: Mac, host_bytes: bytes | None, default_bytes: bytes | None) -> Assignment:
    """What ``mac`` gets: its own host file wins over ``hosts/default.toml``.

    Raises :class:`~bootpull.errors.NotAssignedError` when there is neither, and a
    :class:`~bootpull.errors.LayoutError` when the file that applies has any problem.
    """
    if host_bytes is not None:
        path, data = host_file(mac), host_bytes
    elif default_bytes is not None:
        path, data = DEFAULT_HOST_FILE, default_bytes
    else:
        raise NotAssignedError(
            f"node {mac.canonical} is not assigned",
            path=host_file(mac),
            hint=f"run 'bootpull repo assign {mac.colons} ROLE' and publish",
        )
    assignment, problems = parse_host(data, path)
    raise_first(problems)
    assert assignment is not None
    return assignment


# -- the whole tree (lint, publish) ----------------------------------------------


def validate_tree(tree: TreeReader, *, tags: set[str] | None = None,
                  hosts: Collection[str] | None = None) -> Report:
    """Check every format-1 file of one commit (or work tree); report every problem.

    ``tags``, when given, is the set of tag names (``role/web/1.0``) that pinned
    versions must name. ``hosts``, when given, limits the check of ``hosts/`` to those
    paths (publish: the host files changed since a tree that passed).
    """
    report = Report()
    settings_bytes = tree.read(SETTINGS_FILE)
    if settings_bytes is None:
        report.problems.append(Problem(SETTINGS_FILE, 0, "is missing",
                                       "create it with format = 1 ('bootpull repo init')"))
    else:
        report.extend(parse_settings(settings_bytes)[1])
    role_entries = tree.list(ROLES_DIR)
    roles = sorted({e.path.split("/")[1] for e in role_entries if e.path.count("/") >= 2})
    known: set[str] = set()
    for role in roles:
        path = role_file(role)
        data = tree.read(path)
        if data is None:
            report.problems.append(Problem(f"{ROLES_DIR}/{role}", 0, "has no role.toml",
                                           f"create {path}, or remove the directory"))
            continue
        known.add(role)
        report.extend(parse_role(data, role, path)[1])
    groups, problems = read_groups(tree)
    report.extend(problems)
    for entry in tree.list(GROUPS_DIR):  # a broken group file is reported above, not missing
        name = entry.path[len(GROUPS_DIR) + 1:].removesuffix(".toml")
        if entry.path == group_file(name) and name not in groups:
            groups[name] = Group(name=name, source=entry.path)
    for entry in tree.list(HOSTS_DIR):
        if hosts is not None and entry.path not in hosts:
            continue
        if entry.path.count("/") != 1:
            report.problems.append(Problem(entry.path, 0, "is in a subdirectory of hosts/",
                                           "keep host files directly in hosts/"))
            continue
        if entry.path.rsplit("/", 1)[-1].startswith("."):
            continue
        problem = host_path_problem(entry.path)
        if problem is not None:
            report.problems.append(problem)
            continue
        data = tree.read(entry.path)
        if data is None:
            continue
        assignment, problems = parse_host(data, entry.path)
        report.extend(problems)
        if assignment is None:
            continue
        text = data.decode("utf-8", errors="replace")
        if assignment.role not in known:
            report.problems.append(Problem(
                entry.path, key_line(text, "role"), f"role {assignment.role!r} does not exist",
                f"create roles/{assignment.role}/role.toml ('bootpull repo role new "
                f"{assignment.role}'), or assign an existing role"))
        if assignment.version is not None and tags is not None:
            tag = release_tag(assignment.role, assignment.version)
            if tag not in tags:
                report.problems.append(Problem(
                    entry.path, key_line(text, "version"), f"there is no release tag {tag}",
                    f"run 'bootpull repo release {assignment.role} {assignment.version}', "
                    "or remove the version to follow the deploy branch"))
        merged, problems = merge_groups(assignment, groups, text)
        report.extend(problems)
        source = merged.version_source if merged is not None else None
        if merged is None or merged.version is None or source in (None, entry.path):
            continue
        tag = release_tag(merged.role, merged.version)
        if tags is not None and source is not None and tag not in tags:
            group_text = (tree.read(source) or b"").decode("utf-8", errors="replace")
            report.problems.append(Problem(
                source, key_line(group_text, "version"),
                f"there is no release tag {tag} (for {entry.path}, role {merged.role})",
                f"run 'bootpull repo release {merged.role} {merged.version}', or remove "
                f"the version from {source}"))
    return report
