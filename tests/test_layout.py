"""The format-1 parser: reports with file and line, newer formats, selection; property tests."""

from __future__ import annotations

import string

from bootpull import layout
from bootpull.bundle import HealthSpec, TreeEntry
from bootpull.errors import LayoutError, NotAssignedError
from bootpull.mac import Mac
from hypothesis import given
from hypothesis import strategies as st

MAC = Mac.parse("52:54:00:12:34:56")
HOST = f"hosts/{MAC.canonical}.toml"


def problems_of(text: str, path: str = HOST) -> list[str]:
    return [str(p) for p in layout.parse_host(text.encode(), path)[1]]


# -- host files -------------------------------------------------------------------


def test_host_file_parses_every_key() -> None:
    data = b'''role = "web"
hostname = "web-1.lab"
version = "1.2"
log_level = "WARNING"

[vars]
PORT = "8080"
DEBUG = true
N = 3
'''
    assignment, problems = layout.parse_host(data, HOST)
    assert problems == []
    assert assignment is not None
    assert (assignment.role, assignment.hostname, assignment.version, assignment.log_level) == \
        ("web", "web-1.lab", "1.2", "warn")
    assert assignment.vars == {"PORT": "8080", "DEBUG": "true", "N": "3"}
    assert assignment.source == HOST


def test_host_file_reports_every_problem_with_its_line() -> None:
    text = '''# comment
rol = "web"
hostname = "not a hostname"
version = 1.2

[vars]
"bad-name" = "x"
LIST = [1, 2]
'''
    got = problems_of(text)
    assert f"{HOST}:2: unknown key 'rol' in the top level — did you mean 'role'?" in got
    assert any(p.startswith(f"{HOST}:1: 'role' is missing") for p in got)
    assert any(p.startswith(f"{HOST}:3: 'not a hostname' is not a valid hostname") for p in got)
    assert any(p.startswith(f"{HOST}:4: 'version' must be a string") and 'version = "1.2"' in p
               for p in got)
    assert any(p.startswith(f"{HOST}:7: 'bad-name' cannot be an environment variable")
               for p in got)
    assert any(p.startswith(f"{HOST}:8: vars.LIST must be a string") for p in got)
    assert len(got) == 6


def test_toml_syntax_error_has_its_line() -> None:
    got = problems_of('role = "web"\nhostname = \n')
    assert len(got) == 1 and got[0].startswith(f"{HOST}:2: is not valid TOML")


def test_not_utf8_is_reported() -> None:
    _, problems = layout.parse_host(b'role = "\xff"\n', HOST)
    assert problems[0].what.startswith("is not UTF-8")


def test_newer_format_says_to_upgrade() -> None:
    # bootpull.toml reads format 1 and 2 (the signed metadata's format); the role and
    # host files are format 1 only
    for parse, newer, reads in (
            (lambda d: layout.parse_settings(d), 3, "reads format 1 to 2 only"),
            (lambda d: layout.parse_role(d, "web"), 2, "reads format 1 only"),
            (lambda d: layout.parse_host(d, HOST), 2, "reads format 1 only")):
        value, problems = parse(f'format = {newer}\nrole = "web"\nfuture_key = 1\n'.encode())
        assert value is None
        assert len(problems) == 1, problems  # nothing else is judged in a format we can't read
        assert problems[0].line == 1
        assert f"format {newer}" in problems[0].what and reads in problems[0].what
        assert "upgrade bootpull" in problems[0].fix


def test_settings_format_2_is_read() -> None:
    settings, problems = layout.parse_settings(b'format = 2\nname = "lab"\n')
    assert problems == [] and settings is not None and settings.format == 2


# -- role.toml --------------------------------------------------------------------

ROLE = b'''format = 1
description = "web"

[run]
command = ["./serve.sh", "--port", "8080"]
restart = "always"

[install]
hooks = [["./check.sh"], ["./migrate.sh", "--all"]]

[health]
command = ["./health.sh"]
interval = 10
timeout = 2.5
'''


def test_role_parses_every_key() -> None:
    spec, problems = layout.parse_role(ROLE, "web")
    assert problems == [] and spec is not None
    assert spec.command == ("./serve.sh", "--port", "8080")
    assert spec.restart == "always"
    assert spec.hooks == (("./check.sh",), ("./migrate.sh", "--all"))
    assert spec.health == HealthSpec(("./health.sh",), 10.0, 2.5)


def test_role_defaults() -> None:
    spec = layout.load_role(b'format = 1\ndescription = "d"\n[run]\ncommand = ["x"]\n', "r")
    assert spec.restart == "on-failure" and spec.hooks == () and spec.health is None


def test_role_problems_have_lines_in_their_table() -> None:
    text = b'''format = 1
description = "d"

[run]
comand = ["x"]
restart = "sometimes"

[health]
command = []
interval = -1
'''
    _, problems = layout.parse_role(text, "web")
    got = [str(p) for p in problems]
    assert "roles/web/role.toml:5: unknown key 'comand' in [run] — did you mean 'command'?" in got
    assert any(p.startswith("roles/web/role.toml:4: 'run.command' is missing") for p in got)
    assert any(p.startswith("roles/web/role.toml:6: restart must be one of") for p in got)
    assert any(p.startswith("roles/web/role.toml:9: 'health.command' must be a non-empty")
               for p in got)
    assert any(p.startswith("roles/web/role.toml:10: 'health.interval' must be a number")
               for p in got)


def test_role_missing_format_and_run() -> None:
    _, problems = layout.parse_role(b'description = "d"\n', "web")
    whats = {p.what for p in problems}
    assert "'format' is missing" in whats and "the [run] section is missing" in whats


def test_key_line_finds_dotted_and_quoted_keys() -> None:
    text = 'format = 1\nrun.command = ["x"]\n[health]\n"command" = ["y"]\n'
    assert layout.key_line(text, "run", "command") == 2
    assert layout.key_line(text, "health", "command") == 4
    assert layout.key_line(text, "nothing") == 0


# -- bootpull.toml ----------------------------------------------------------------


def test_settings_parse() -> None:
    settings = layout.load_settings(b'''format = 1
name = "lab"
branch = "production"
log_level = "debug"
[report]
url = "http://10.0.0.1:8080/api/v1/events"
[limits]
max_bundle_bytes = 1000
max_files = 10
''')
    assert settings.branch == "production" and settings.name == "lab"
    assert settings.report_url == "http://10.0.0.1:8080/api/v1/events"
    assert settings.log_level == "debug"
    assert (settings.limits.max_bundle_bytes, settings.limits.max_files) == (1000, 10)


def test_settings_problems() -> None:
    _, problems = layout.parse_settings(
        b'format = 1\nbranch = "a..b"\n[report]\nurl = "ftp://x"\n[limits]\nmax_files = 0\n')
    lines = sorted(p.line for p in problems)
    assert lines == [2, 4, 6]
    _, problems = layout.parse_settings(b'name = "x"\n')
    assert [p.what for p in problems] == ["'format' is missing"]


def test_load_raises_the_first_problem_and_counts_the_rest() -> None:
    try:
        layout.load_settings(b'format = "one"\nbogus = 1\n')
    except LayoutError as exc:
        assert exc.path == "bootpull.toml" and exc.line == 1
        assert "(and 1 more problem)" in exc.what
    else:
        raise AssertionError("no LayoutError")


# -- selection --------------------------------------------------------------------


def test_select_prefers_the_host_file() -> None:
    got = layout.select(MAC, b'role = "web"\n', b'role = "db"\n')
    assert (got.role, got.source) == ("web", HOST)
    got = layout.select(MAC, None, b'role = "db"\n')
    assert (got.role, got.source) == ("db", "hosts/default.toml")


def test_select_unassigned_has_the_contract_hint() -> None:
    try:
        layout.select(Mac.parse("5254.0012.3456"), None, None)
    except NotAssignedError as exc:
        assert exc.hint == "run 'bootpull repo assign 52:54:00:12:34:56 ROLE' and publish"
        assert exc.what == "node 52-54-00-12-34-56 is not assigned"
    else:
        raise AssertionError("no NotAssignedError")


def test_select_a_broken_host_file_does_not_fall_back_to_default() -> None:
    try:
        layout.select(MAC, b'role = 5\n', b'role = "db"\n')
    except LayoutError as exc:
        assert exc.path == HOST and exc.line == 1
    else:
        raise AssertionError("a broken host file fell back to the default")


def test_host_path_names() -> None:
    assert layout.host_path_problem(HOST) is None
    assert layout.host_path_problem("hosts/default.toml") is None
    assert "canonical" in layout.host_path_problem("hosts/52:54:00:12:34:56.toml").what  # type: ignore[union-attr]
    assert "not a MAC" in layout.host_path_problem("hosts/web1.toml").what  # type: ignore[union-attr]
    assert layout.host_path_problem("hosts/readme.md") is not None


# -- property tests ---------------------------------------------------------------

names = st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,20}", fullmatch=True).filter(lambda s: ".." not in s)
safe_text = st.text(alphabet=string.ascii_letters + string.digits + " _-./:é", max_size=30)
var_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)


def toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@given(role=names, hostname=st.none() | st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]",
                                                      fullmatch=True),
       version=st.none() | st.from_regex(r"[0-9][0-9a-z.+-]{0,8}", fullmatch=True).filter(
           lambda v: ".." not in v and not v.endswith(".lock")),
       variables=st.dictionaries(var_names, safe_text, max_size=4).filter(
           lambda d: len({k.upper() for k in d}) == len(d)))  # foo/FOO: refused
def test_host_roundtrip(role: str, hostname: str | None, version: str | None,
                        variables: dict[str, str]) -> None:
    lines = [f"role = {toml_str(role)}"]
    if hostname:
        lines.append(f"hostname = {toml_str(hostname)}")
    if version:
        lines.append(f"version = {toml_str(version)}")
    lines.append("[vars]")
    lines += [f"{name} = {toml_str(value)}" for name, value in variables.items()]
    assignment, problems = layout.parse_host("\n".join(lines).encode(), HOST)
    assert problems == []
    assert assignment is not None
    assert (assignment.role, assignment.hostname, assignment.version) == (role, hostname, version)
    assert assignment.vars == variables


@given(argv=st.lists(safe_text.filter(bool), min_size=1, max_size=5),
       restart=st.sampled_from(["always", "on-failure", "never"]),
       interval=st.integers(min_value=1, max_value=3600))
def test_role_roundtrip(argv: list[str], restart: str, interval: int) -> None:
    command = "[" + ", ".join(toml_str(a) for a in argv) + "]"
    text = (f'format = 1\ndescription = "d"\n[run]\ncommand = {command}\n'
            f'restart = "{restart}"\n[health]\ncommand = {command}\ninterval = {interval}\n')
    spec, problems = layout.parse_role(text.encode(), "r")
    assert problems == [] and spec is not None
    assert spec.command == tuple(argv) and spec.restart == restart
    assert spec.health is not None and spec.health.interval == interval


@given(st.binary(max_size=300))
def test_host_parser_never_crashes_on_bytes(data: bytes) -> None:
    assignment, problems = layout.parse_host(data, HOST)
    assert (assignment is None) == bool(problems)
    for problem in problems:
        assert problem.file == HOST and problem.what and problem.fix
        assert 0 <= problem.line <= data.count(b"\n") + 1


toml_values = st.recursive(
    st.none().map(lambda _: '""') | st.integers().map(str) | safe_text.map(toml_str)
    | st.booleans().map(lambda b: "true" if b else "false") | st.floats(
        allow_nan=True, allow_infinity=True).map(lambda f: repr(f).replace("inf", "inf")
                                                 .replace("nan", "nan")),
    lambda inner: st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
    max_leaves=6)
keys = st.sampled_from(["format", "description", "command", "restart", "hooks", "interval",
                        "timeout", "role", "version", "vars", "hostname", "x"])
tables = st.sampled_from(["", "run", "install", "health", "vars", "report", "limits"])


@given(st.lists(st.tuples(tables, keys, toml_values), max_size=10))
def test_role_and_host_parsers_report_instead_of_crashing(entries: list[tuple[str, str, str]]
                                                          ) -> None:
    by_table: dict[str, dict[str, str]] = {}
    for table, key, value in entries:
        by_table.setdefault(table, {})[key] = value
    parts = [f"{k} = {v}" for k, v in by_table.pop("", {}).items()]
    for table, items in by_table.items():
        parts.append(f"[{table}]")
        parts += [f"{k} = {v}" for k, v in items.items()]
    data = "\n".join(parts).encode()
    for value, problems in (layout.parse_role(data, "r"), layout.parse_host(data, HOST),
                            layout.parse_settings(data)):
        assert (value is None) == bool(problems)
        for problem in problems:
            assert problem.what and problem.fix


# -- the whole tree ---------------------------------------------------------------


class DictTree:
    """A named fake TreeReader: a commit held in a dict of path → bytes."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    @property
    def commit(self) -> str:
        return "0" * 40

    def read(self, path: str) -> bytes | None:
        return self.files.get(path)

    def list(self, prefix: str) -> list[TreeEntry]:
        return [TreeEntry(p, 0o100644, "0" * 40) for p in sorted(self.files)
                if p.startswith(prefix.rstrip("/") + "/")]

    def read_many(self, paths: list[str]) -> dict[str, bytes]:
        return {p: self.files[p] for p in paths if p in self.files}


GOOD_ROLE = b'format = 1\ndescription = "d"\n[run]\ncommand = ["./x"]\n'


def test_validate_tree_reports_every_file() -> None:
    tree = DictTree({
        "bootpull.toml": b"format = 1\n",
        "hosts/52-54-00-12-34-56.toml": b'role = "web"\nversion = "2.0"\n',
        "hosts/52-54-00-12-34-57.toml": b'role = "ghost"\n',
        "hosts/52:54:00:12:34:58.toml": b'role = "web"\n',
        "hosts/.gitkeep": b"",
        "roles/web/role.toml": GOOD_ROLE,
        "roles/web/files/x": b"#!/bin/sh\n",
        "roles/broken/role.toml": b'format = 1\n[run]\ncommand = "x"\n',
        "roles/empty/files/a": b"",
    })
    report = layout.validate_tree(tree, tags={"role/web/1.0"})
    got = [str(p) for p in report.problems]
    assert not report.ok
    assert any(p.startswith("hosts/52-54-00-12-34-56.toml:2: there is no release tag "
                            "role/web/2.0") for p in got)
    assert any(p.startswith("hosts/52-54-00-12-34-57.toml:1: role 'ghost' does not exist")
               for p in got)
    assert any("hosts/52:54:00:12:34:58.toml: host file name" in p for p in got)
    assert any(p.startswith("roles/broken/role.toml:1: 'description' is missing") for p in got)
    assert any(p.startswith("roles/broken/role.toml:3: 'run.command' must be") for p in got)
    assert any(p.startswith("roles/empty: has no role.toml") for p in got)
    assert len(got) == 6, got
    assert layout.validate_tree(DictTree({"bootpull.toml": b"format = 1\n",
                                          "roles/web/role.toml": GOOD_ROLE})).ok


macs = st.binary(min_size=6, max_size=6).map(Mac)


@given(mac=macs, notation=st.sampled_from(["canonical", "colons", "dots", "bare"]),
       upper=st.booleans())
def test_any_notation_selects_the_canonical_host_file(mac: Mac, notation: str,
                                                      upper: bool) -> None:
    hexes = mac.octets.hex()
    text = {"canonical": mac.canonical, "colons": mac.colons,
            "dots": f"{hexes[:4]}.{hexes[4:8]}.{hexes[8:]}", "bare": hexes}[notation]
    parsed = Mac.parse(text.upper() if upper else text)
    assert layout.host_file(parsed) == f"hosts/{mac.canonical}.toml"
    assert layout.host_path_problem(layout.host_file(parsed)) is None
    assert layout.select(parsed, b'role = "r"\n', None).source == layout.host_file(mac)


@given(role=names, version=st.none() | st.from_regex(r"[0-9][0-9a-z.]{0,6}", fullmatch=True)
       .filter(lambda v: ".." not in v and not v.endswith(".lock")),
       had_version=st.booleans(), variables=st.dictionaries(var_names, safe_text, max_size=3))
def test_assign_render_sets_role_and_version_and_keeps_the_rest(
        role: str, version: str | None, had_version: bool, variables: dict[str, str]) -> None:
    from bootpull_repo.assign import render

    lines = ["# my node", 'role = "old"', 'hostname = "h-1"']
    if had_version:
        lines.append('version = "0.1"')
    lines.append("[vars]")
    lines += [f"{k} = {toml_str(v)}" for k, v in variables.items()]
    text = render("\n".join(lines) + "\n", MAC, role, version)
    assignment, problems = layout.parse_host(text.encode(), HOST)
    assert problems == [] and assignment is not None
    assert (assignment.role, assignment.version, assignment.hostname) == (role, version, "h-1")
    assert assignment.vars == variables
    assert text.startswith("# my node\n")


@given(st.lists(st.tuples(st.sampled_from(["", "run", "health", "vars", "a.b"]), var_names),
                min_size=1, max_size=8, unique=True),
       st.lists(st.sampled_from(["# c", "", "  "]), max_size=3))
def test_key_line_finds_each_key_where_it_was_written(entries: list[tuple[str, str]],
                                                      filler: list[str]) -> None:
    lines: list[str] = []
    where: dict[tuple[str, str], int] = {}
    by_table: dict[str, list[str]] = {}
    for table, key in entries:
        by_table.setdefault(table, []).append(key)
    for table in sorted(by_table, key=lambda t: t != ""):  # the top level first
        if table:
            lines.append(f"[{table}]")
        for key in by_table[table]:
            lines += filler
            lines.append(f"{key} = 1")
            where[(table, key)] = len(lines)
    text = "\n".join(lines)
    for (table, key), line in where.items():
        path = (*table.split("."), key) if table else (key,)
        assert layout.key_line(text, *path) == line


def test_vars_that_differ_only_in_case_are_refused() -> None:
    """foo and FOO would both be BOOTPULL_VAR_FOO: one would vanish silently."""
    from bootpull.layout import parse_host

    assignment, problems = parse_host(b'role = "web"\n[vars]\nfoo = "1"\nFOO = "2"\n',
                                      "hosts/52-54-00-12-34-56.toml")
    assert assignment is None
    assert [p.what for p in problems] == [
        "vars.FOO and vars.foo are both BOOTPULL_VAR_FOO (names are upper-cased)"]
    assert problems[0].line == 4
    fine, none = parse_host(b'role = "web"\n[vars]\nfoo = "1"\nbar = "2"\n', "hosts/x.toml")
    assert fine is not None and none == [] and fine.vars == {"foo": "1", "bar": "2"}
