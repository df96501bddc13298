"""Group variables: ``groups/<name>.toml`` ``[vars]`` and ``version``, named by host files.

The parser and the merge (:func:`bootpull.layout.parse_group`, :func:`merge_groups`),
lint, ``repo show``, the home base, and the node's own pull over a signed repository
served by a real ``git http-backend``.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bootpull import layout
from bootpull.bundle import Assignment, Group
from bootpull.cli import main
from bootpull.errors import LayoutError, VerifyError
from bootpull.mac import Mac
from bootpull_repo.gitcli import Git
from gitserver import GitHttpServer
from hypothesis import given
from hypothesis import strategies as st
from signed_repo import MAC_DB, MAC_WEB, SignedRepo, node_pull
from test_layout import DictTree  # the layout tests' fake tree

pytestmark = pytest.mark.formats(1, 2)  # signed metadata format 1 and 2

HOST = f"hosts/{MAC_WEB.canonical}.toml"
SITE = "groups/site-a.toml"
SENSORS = "groups/sensors.toml"


def host(text: str, path: str = HOST) -> Assignment:
    assignment, problems = layout.parse_host(text.encode(), path)
    assert problems == [] and assignment is not None, problems
    return assignment


def group(name: str, text: str) -> Group:
    parsed, problems = layout.parse_group(text.encode(), name)
    assert problems == [] and parsed is not None, problems
    return parsed


# -- the parsers -------------------------------------------------------------------


def test_a_group_file_parses_every_key() -> None:
    parsed = group("site-a", 'format = 1\ndescription = "site A"\n'
                   'nodes = ["52:54:00:12:34:56", "5254.0012.3456", "52-54-00-AB-CD-EF"]\n'
                   'version = "1.2"\n[vars]\nSITE = "a"\nDEBUG = true\nRETRIES = 3\n')
    assert parsed == Group(name="site-a", source=SITE, description="site A",
                           nodes=("52-54-00-12-34-56", "52-54-00-ab-cd-ef"), version="1.2",
                           vars={"SITE": "a", "DEBUG": "true", "RETRIES": "3"})


def test_group_vars_and_version_follow_the_host_file_rules() -> None:
    text = ('format = 1\nversion = 1.2\n[vars]\nfoo = "1"\nFOO = "2"\n1X = "3"\n'
            'T = [1]\nN = "a\\u0000b"\n')
    parsed, problems = layout.parse_group(text.encode(), "site-a")
    assert [(p.line, p.what) for p in problems] == [
        (2, "'version' must be a string, not the number 1.2"),
        (5, "vars.FOO and vars.foo are both BOOTPULL_VAR_FOO (names are upper-cased)"),
        (6, "'1X' cannot be an environment variable name"),
        (7, "vars.T must be a string, number or boolean, not a list"),
        (8, "vars.N contains a NUL character"),
    ]
    assert all(p.file == SITE for p in problems)
    assert parsed is not None and parsed.vars == {"foo": "1"}  # what parsed, for the home base
    with pytest.raises(LayoutError) as info:
        layout.load_group(text.encode(), "site-a")
    assert info.value.path == SITE and "(and 4 more problems)" in info.value.what


def test_a_group_name_follows_the_role_name_rule() -> None:
    _parsed, problems = layout.parse_group(b"format = 1\n", "Site A")
    assert [p.what for p in problems] == [
        "'Site A' is not a valid group name: use lowercase letters, digits, '.', '_' and "
        "'-' (at most 63, starting with a letter or digit)"]


def test_host_groups_is_a_list_of_group_names() -> None:
    assert host('role = "web"\ngroups = ["site-a", "sensors"]\n').groups == (
        "site-a", "sensors")
    assert host('role = "web"\n').groups == ()
    for value, what in [('"site-a"', "'groups' must be a list of group names"),
                        ("[1]", "'groups' must be a list of group names"),
                        ('["Site"]', "'Site' is not a valid group name: group names are "
                                     "lowercase only (as in 'site')"),
                        ('["a", "a"]', "'groups' names 'a' twice")]:
        assignment, problems = layout.parse_host(
            f'role = "web"\ngroups = {value}\n'.encode(), HOST)
        assert assignment is None and [(p.line, p.what) for p in problems] == [(2, what)]


# -- the merge ---------------------------------------------------------------------


def test_group_vars_and_version_reach_the_host_and_say_where_they_came_from() -> None:
    mine = host('role = "web"\ngroups = ["site-a", "sensors"]\n[vars]\nPORT = "8080"\n')
    groups = {"site-a": group("site-a", 'version = "1.2"\n[vars]\nSITE = "a"\n'),
              "sensors": group("sensors", '[vars]\nINTERVAL = 5\n')}
    merged, problems = layout.merge_groups(mine, groups)
    assert problems == [] and merged is not None
    assert merged.vars == {"PORT": "8080", "SITE": "a", "INTERVAL": "5"}
    assert {name: merged.var_source(name) for name in merged.vars} == {
        "PORT": HOST, "SITE": SITE, "INTERVAL": SENSORS}
    assert (merged.version, merged.version_source) == ("1.2", SITE)
    assert merged.groups == ("site-a", "sensors")


def test_the_host_file_wins_over_its_groups() -> None:
    mine = host('role = "web"\nversion = "2.0"\ngroups = ["site-a"]\n[vars]\nPORT = "1"\n')
    groups = {"site-a": group("site-a", 'version = "1.2"\n[vars]\nPORT = "2"\nSITE = "a"\n')}
    merged, problems = layout.merge_groups(mine, groups)
    assert problems == [] and merged is not None
    assert merged.vars == {"PORT": "1", "SITE": "a"}
    assert (merged.var_source("PORT"), merged.var_source("SITE")) == (HOST, SITE)
    assert (merged.version, merged.version_source) == ("2.0", HOST)


def test_without_groups_the_assignment_is_untouched() -> None:
    mine = host('role = "web"\n[vars]\nPORT = "1"\n')
    merged, problems = layout.merge_groups(mine, {"site-a": group("site-a", "[vars]\nX = 1\n")})
    assert merged is mine and problems == []
    assert mine.var_source("PORT") == HOST and mine.version_source is None


def test_two_groups_may_not_set_the_same_variable_or_a_version() -> None:
    text = 'role = "web"\n\ngroups = ["site-a", "sensors"]\n[vars]\nPORT = "1"\n'
    mine = host(text)
    groups = {"site-a": group("site-a", 'version = "1"\n[vars]\nPORT = "2"\n'),
              "sensors": group("sensors", 'version = "2"\n[vars]\nPORT = "3"\n')}
    merged, problems = layout.merge_groups(mine, groups, text)
    assert merged is None
    assert [(p.file, p.line, p.what) for p in problems] == [
        (HOST, 3, "groups 'site-a' and 'sensors' both set BOOTPULL_VAR_PORT (vars.PORT in "
         "groups/site-a.toml, vars.PORT in groups/sensors.toml)"),
        (HOST, 3, "groups 'site-a' and 'sensors' both set version ('1' in "
         "groups/site-a.toml, '2' in groups/sensors.toml)"),
    ]
    assert problems[0].fix == "set it in one of them only: the groups a host names have no order"


def test_a_missing_group_is_refused_with_the_file_to_create() -> None:
    mine = host('role = "web"\ngroups = ["site-a"]\n')
    with pytest.raises(LayoutError) as info:
        layout.with_groups(mine, {}, b'role = "web"\ngroups = ["site-a"]\n')
    assert str(info.value) == (
        f"{HOST}:2: names group 'site-a', but groups/site-a.toml does not exist — create "
        "groups/site-a.toml (format = 1, [vars]), or remove 'site-a' from groups; then "
        "commit and 'bootpull repo publish'")


var_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True).filter(
    lambda name: any(c.isalpha() for c in name))


@st.composite
def two_spellings(draw: st.DrawFn) -> tuple[str, str]:
    """Two names equal ignoring case, spelled differently."""
    name = draw(var_names)
    flips = draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    other = "".join(c.swapcase() if flip else c for c, flip in zip(name, flips, strict=True))
    if other == name:
        index = next(i for i, c in enumerate(name) if c.isalpha())
        other = name[:index] + name[index].swapcase() + name[index + 1:]
    return name, other


@given(spellings=two_spellings(), where=st.sampled_from(["host-group", "group-group"]))
def test_names_equal_ignoring_case_but_spelled_differently_are_refused(
        spellings: tuple[str, str], where: str) -> None:
    first, second = spellings
    groups = {"sensors": group("sensors", f'[vars]\n{second} = "g"\n')}
    if where == "host-group":
        text = f'role = "web"\ngroups = ["sensors"]\n[vars]\n{first} = "h"\n'
    else:
        groups["site-a"] = group("site-a", f'[vars]\n{first} = "g"\n')
        text = 'role = "web"\ngroups = ["site-a", "sensors"]\n'
    merged, problems = layout.merge_groups(host(text), groups, text)
    assert merged is None
    assert len(problems) == 1 and f"BOOTPULL_VAR_{first.upper()}" in problems[0].what


@given(name=var_names)
def test_the_same_spelling_is_an_override_from_the_host_and_a_collision_between_groups(
        name: str) -> None:
    groups = {"sensors": group("sensors", f'[vars]\n{name} = "g"\n'),
              "site-a": group("site-a", f'[vars]\n{name} = "a"\n')}
    merged, problems = layout.merge_groups(
        host(f'role = "web"\ngroups = ["sensors"]\n[vars]\n{name} = "h"\n'), groups)
    assert problems == [] and merged is not None and merged.vars == {name: "h"}
    merged, problems = layout.merge_groups(
        host('role = "web"\ngroups = ["site-a", "sensors"]\n'), groups)
    assert merged is None and len(problems) == 1


# -- validate_tree and lint --------------------------------------------------------

GOOD_ROLE = b'format = 1\ndescription = "d"\n[run]\ncommand = ["./x"]\n'


def test_validate_tree_checks_what_a_host_names() -> None:
    files = {
        "bootpull.toml": b"format = 1\n", "roles/web/role.toml": GOOD_ROLE,
        HOST: b'role = "web"\ngroups = ["site-a", "ghost", "broken"]\n[vars]\nsite = "x"\n',
        "hosts/default.toml": b'role = "web"\ngroups = ["site-a"]\n',
        SITE: b'version = "9.9"\n[vars]\nSITE = "a"\n',
        "groups/broken.toml": b"nodes = = 1\n",
    }
    got = [str(p) for p in layout.validate_tree(DictTree(files), tags=set()).problems]
    assert got == [
        "groups/broken.toml:1: is not valid TOML: Invalid value — fix the TOML syntax "
        "(see https://toml.io)",
        f"{HOST}:4: vars.site differs only in case from vars.SITE in groups/site-a.toml "
        "(both are BOOTPULL_VAR_SITE) — spell it SITE here to override the group's value, "
        "or rename one",
        f"{HOST}:2: names group 'ghost', but groups/ghost.toml does not exist — create "
        "groups/ghost.toml (format = 1, [vars]), or remove 'ghost' from groups; then commit "
        "and 'bootpull repo publish'",
        "groups/site-a.toml:1: there is no release tag role/web/9.9 (for hosts/default.toml, "
        "role web) — run 'bootpull repo release web 9.9', or remove the version from "
        "groups/site-a.toml",
    ]
    assert layout.validate_tree(DictTree(files), tags={"role/web/9.9"}).problems[-1].what \
        .startswith("names group 'ghost'")


def lint(root: Path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["repo", "-C", str(root), "lint"])
    return code, out.getvalue()


WEB_HOST = "hosts/52-54-00-12-34-56.toml"
SENSOR_HOST = "hosts/52-54-00-12-34-57.toml"


def _with_groups(root: Path, host_groups: str, **groups: str) -> None:
    (root / "groups").mkdir(exist_ok=True)
    for name, text in groups.items():
        (root / "groups" / f"{name}.toml").write_text(text)
    path = root / SENSOR_HOST
    path.write_text(path.read_text().replace('hostname = "sensor-1"\n',
                                             f'hostname = "sensor-1"\ngroups = {host_groups}\n'))


def test_lint_accepts_groups_with_vars(tmp_path: Path) -> None:
    from bootpull_repo.example import make_example_repo

    root = make_example_repo(tmp_path / "repo")
    _with_groups(root, '["site-a", "sensors"]',
                 **{"site-a": 'format = 1\nnodes = []\n[vars]\nSITE = "a"\n',
                    "sensors": 'format = 1\n[vars]\nMODE = "fast"\n'})
    assert lint(root) == (0, "")


@pytest.mark.parametrize("case", ["missing", "collision", "case", "no-tag", "bad-group"])
def test_lint_reports_group_problems(tmp_path: Path, case: str) -> None:
    from bootpull_repo.example import make_example_repo

    root = make_example_repo(tmp_path / "repo")
    site = 'format = 1\nversion = "7.0"\n[vars]\nSITE = "a"\n'
    expected = {
        "missing": (('["site-a", "ghost"]', {"site-a": 'format = 1\n'}),
                    f"{SENSOR_HOST}:4: names group 'ghost', but groups/ghost.toml does not "
                    "exist"),
        "collision": (('["site-a", "sensors"]', {"site-a": '[vars]\nSITE = "a"\n',
                                                  "sensors": '[vars]\nsite = "b"\n'}),
                      f"{SENSOR_HOST}:4: groups 'site-a' and 'sensors' both set "
                      "BOOTPULL_VAR_SITE"),
        "case": (('["sensors"]', {"sensors": '[vars]\ninterval = "9"\n'}),
                 f"{SENSOR_HOST}:8: vars.INTERVAL differs only in case from vars.interval in "
                 "groups/sensors.toml"),
        "no-tag": (('["site-a"]', {"site-a": site}),
                   "groups/site-a.toml:2: there is no release tag role/sensor/7.0 (for "
                   f"{SENSOR_HOST}, role sensor)"),
        "bad-group": (('["site-a"]', {"site-a": 'format = 1\n[vars]\nA-B = "1"\n'}),
                      "groups/site-a.toml:3: 'A-B' cannot be an environment variable name"),
    }[case]
    (host_groups, groups), line = expected
    _with_groups(root, host_groups, **groups)
    code, out = lint(root)
    assert code == 1
    assert len(out.splitlines()) == 1 and out.startswith(line) and " — " in out, out


# -- repo show ---------------------------------------------------------------------


def test_show_prints_each_variable_with_its_source(example_repo: SignedRepo) -> None:
    example_repo.write(SITE, b'format = 1\n[vars]\nSITE = "a"\nPORT = "1"\n')
    text = (example_repo.root / WEB_HOST).read_text()
    example_repo.write(WEB_HOST, text.replace('hostname = "web-1"\n',
                                              'hostname = "web-1"\ngroups = ["site-a"]\n')
                       .encode())
    example_repo.commit("web-1 is at site A")
    example_repo.publish()
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["repo", "-C", str(example_repo.root), "show", MAC_WEB.colons])
    assert code == 0, err.getvalue()
    assert "  groups        site-a\n" in out.getvalue()
    assert (f"  vars          BOOTPULL_VAR_PORT=8080 (from {WEB_HOST})\n"
            f"                BOOTPULL_VAR_SITE=a (from {SITE})\n") in out.getvalue()
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["repo", "-C", str(example_repo.root), "show", MAC_WEB.colons, "--json"])
    view = json.loads(out.getvalue())
    assert code == 0 and view["accepted"] is True
    assert view["vars"] == {"PORT": "8080", "SITE": "a"}
    assert view["var_sources"] == {"PORT": WEB_HOST, "SITE": SITE}
    assert (view["groups"], view["version_source"]) == (["site-a"], None)


# -- the node ----------------------------------------------------------------------


def _http_pull(repo: SignedRepo, server: GitHttpServer, mac: Mac, state: Path) -> Any:
    from bootpull.backoff import Counters
    from bootpull.console import Console
    from bootpull.fetch import FetchLimits, GitRemote

    remote = GitRemote(server.url, state.parent / f"{state.name}-cache", limits=FetchLimits(),
                       console=Console(), counters=Counters())
    try:
        return node_pull(remote, mac, state, trust_root=repo.trust)
    finally:
        remote.close()


def _name_groups(repo: SignedRepo, mac: Mac, groups: str, extra: str = "") -> None:
    path = f"hosts/{mac.canonical}.toml"
    text = (repo.root / path).read_text()
    repo.write(path, text.replace('role = "', f'groups = {groups}\nrole = "', 1).encode()
               + extra.encode())


def test_a_node_gets_its_groups_vars_and_version_and_its_own_win(
        signed_repo: SignedRepo, git_http_server: Callable[..., GitHttpServer],
        tmp_path: Path) -> None:
    signed_repo.bootpull("release", "db", "1.0")
    signed_repo.write("roles/db/files/db.sh", b"#!/bin/sh\necho db v2\n", mode=0o755)
    signed_repo.write(SITE, b'format = 1\nversion = "1.0"\n[vars]\nSITE = "a"\n')
    signed_repo.write(SENSORS, b'format = 1\n[vars]\nINTERVAL = 5\nPORT = "1"\n')
    _name_groups(signed_repo, MAC_WEB, '["sensors"]')  # web-1 has PORT = "8080" itself
    _name_groups(signed_repo, MAC_DB, '["site-a", "sensors"]')
    signed_repo.commit("two groups")
    signed_repo.publish()
    server = git_http_server(signed_repo.root)
    db = _http_pull(signed_repo, server, MAC_DB, tmp_path / "db").bundle
    assert (db.version, db.assignment.version_source) == ("1.0", SITE)
    assert db.commit == signed_repo.git("rev-parse", "role/db/1.0^{commit}")
    assert {f.path: f.data for f in db.files}["db.sh"] == b"#!/bin/sh\necho db\n"  # the tag
    assert db.assignment.vars == {"SITE": "a", "INTERVAL": "5", "PORT": "1"}
    assert db.assignment.groups == ("site-a", "sensors")
    web = _http_pull(signed_repo, server, MAC_WEB, tmp_path / "web").bundle
    assert web.version.startswith("head-") and web.assignment.version is None
    assert {f.path: f.data for f in web.files}["serve.sh"] == b"#!/bin/sh\necho serving\n"
    assert web.assignment.vars == {"PORT": "8080", "INTERVAL": "5"}
    assert web.assignment.var_source("PORT") == HOST
    assert web.assignment.var_source("INTERVAL") == SENSORS
    # the host file's own version wins over site-a's
    signed_repo.bootpull("release", "web", "2.0")
    signed_repo.write(HOST, b'role = "web"\nversion = "2.0"\ngroups = ["site-a"]\n'
                      b'[vars]\nPORT = "8080"\n')
    signed_repo.commit("web-1: its own version, and site A")
    signed_repo.publish()
    web = _http_pull(signed_repo, server, MAC_WEB, tmp_path / "web").bundle
    assert (web.version, web.assignment.version_source) == ("2.0", HOST)
    assert web.assignment.vars == {"PORT": "8080", "SITE": "a"}


def test_a_group_changed_after_publish_is_refused(
        signed_repo: SignedRepo, git_http_server: Callable[..., GitHttpServer],
        tmp_path: Path, metadata_format: int) -> None:
    """Format 1 refuses the unpublished group file; format 2 reads the signed one by its
    blob id, so the node keeps the published vars and never sees the new bytes."""
    signed_repo.write(SITE, b'format = 1\n[vars]\nSITE = "a"\n')
    _name_groups(signed_repo, MAC_WEB, '["site-a"]')
    signed_repo.commit("web-1 at site A")
    signed_repo.publish()
    server = git_http_server(signed_repo.root)
    assert _http_pull(signed_repo, server, MAC_WEB, tmp_path / "a").bundle.assignment.vars \
        == {"PORT": "8080", "SITE": "a"}
    signed_repo.write(SITE, b'format = 1\n[vars]\nSITE = "evil"\n')
    signed_repo.commit("not re-signed")
    if metadata_format == 2:
        assert _http_pull(signed_repo, server, MAC_WEB,
                          tmp_path / "b").bundle.assignment.vars["SITE"] == "a"
        return
    with pytest.raises(VerifyError) as info:
        _http_pull(signed_repo, server, MAC_WEB, tmp_path / "b")
    assert info.value.what == f"{SITE} does not match its signed hash"
    assert "publish" in info.value.hint


def _publish_unchecked(repo: SignedRepo) -> None:
    from bootpull_repo.context import RepoContext
    from bootpull_repo.publish import publish

    ctx = RepoContext(repo.root, Git(repo.root), None, str(repo.keys))
    publish(ctx, check=False)  # what lint would refuse, signed anyway


def test_a_missing_or_unsigned_group_stops_the_node(signed_repo: SignedRepo,
                                                    tmp_path: Path,
                                                    metadata_format: int) -> None:
    """Format 2's node sees only signed files: to it an unpublished group is missing."""
    _name_groups(signed_repo, MAC_WEB, '["sensors"]')
    signed_repo.commit("names a group that is not there")
    _publish_unchecked(signed_repo)
    with pytest.raises(LayoutError) as missing:
        node_pull(signed_repo, MAC_WEB, tmp_path / "a")
    assert missing.value.path == HOST
    assert missing.value.what == "names group 'sensors', but groups/sensors.toml does not exist"
    assert "create groups/sensors.toml" in missing.value.hint
    signed_repo.write(SENSORS, b'format = 1\n[vars]\nX = "1"\n')
    signed_repo.commit("the group, committed but not published")
    if metadata_format == 2:
        with pytest.raises(LayoutError) as still:
            node_pull(signed_repo, MAC_WEB, tmp_path / "b")
        assert still.value.what == missing.value.what
        return
    with pytest.raises(VerifyError) as unsigned:
        node_pull(signed_repo, MAC_WEB, tmp_path / "b")
    assert unsigned.value.what == f"{SENSORS} is in the commit but not in the signed metadata"


def test_a_collision_stops_the_node(signed_repo: SignedRepo, tmp_path: Path) -> None:
    signed_repo.write(SITE, b'[vars]\nMODE = "a"\n')
    signed_repo.write(SENSORS, b'[vars]\nmode = "b"\n')
    _name_groups(signed_repo, MAC_WEB, '["site-a", "sensors"]')
    signed_repo.commit("two groups set MODE")
    _publish_unchecked(signed_repo)
    with pytest.raises(LayoutError) as info:
        node_pull(signed_repo, MAC_WEB, tmp_path / "a")
    assert str(info.value).startswith(
        f"{HOST}:1: groups 'site-a' and 'sensors' both set BOOTPULL_VAR_MODE")


def test_a_host_without_groups_reads_no_group_file(signed_repo: SignedRepo,
                                                   tmp_path: Path) -> None:
    signed_repo.write(SITE, b'format = 1\nnodes = ["52:54:00:12:34:56"]\n[vars]\nX = "1"\n')
    signed_repo.commit("a group that web-1's host file does not name")
    signed_repo.publish()
    reads: list[str] = []

    class Recording:
        def __init__(self) -> None:
            self.inner = signed_repo.remote()

        def snapshot(self, ref: str) -> object:
            tree = self.inner.snapshot(ref)
            real_read, real_many = tree.read, tree.read_many

            def read(path: str) -> bytes | None:
                reads.append(path)
                return real_read(path)

            def read_many(paths: list[str]) -> dict[str, bytes]:
                reads.extend(paths)
                return real_many(paths)

            tree.read, tree.read_many = read, read_many  # type: ignore[method-assign]
            return tree

    result = node_pull(Recording(), MAC_WEB, tmp_path / "s",  # type: ignore[arg-type]
                       trust_root=signed_repo.trust)
    assert result.bundle.assignment.vars == {"PORT": "8080"}  # nodes = [...] gives no vars
    assert reads and not [p for p in reads if p.startswith("groups/")]


# -- the home base -----------------------------------------------------------------


def test_the_home_base_knows_a_nodes_groups_and_its_group_version(
        signed_repo: SignedRepo) -> None:
    from bootpull_homebase.repoview import RepoView

    signed_repo.bootpull("release", "db", "1.0")
    signed_repo.write(SITE, b'format = 1\nversion = "1.0"\n')
    signed_repo.write(SENSORS, f'format = 1\nnodes = ["{MAC_DB.colons}"]\n'.encode())
    signed_repo.write("groups/lab.toml", b"format = 1\n")
    signed_repo.write("hosts/default.toml", b'role = "db"\ngroups = ["lab"]\n')
    _name_groups(signed_repo, MAC_DB, '["site-a"]')
    signed_repo.commit("groups")
    view = RepoView(signed_repo.root, refresh=0)
    assert view.groups_of(MAC_DB.canonical) == ("sensors", "site-a")
    assert view.groups_of(MAC_WEB.canonical) == ()
    assert view.groups_of("02-00-00-00-be-ef") == ("lab",)  # hosts/default.toml applies
    intent = view.intent_for(MAC_DB)
    assert intent is not None and intent.version == "1.0"
    assert intent.commit == signed_repo.git("rev-parse", "role/db/1.0^{commit}")


def test_the_error_an_older_image_gives_is_the_one_the_docs_quote(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An image from before groups had these host keys; docs/admin.md quotes its error."""
    monkeypatch.setattr(layout, "_HOST_KEYS",
                        ("format", "role", "hostname", "version", "log_level", "vars"))
    text = b'# hosts/52-54-00-12-34-56.toml\nrole = "web"\ngroups = ["site-a", "sensors"]\n'
    _assignment, problems = layout.parse_host(text, HOST)
    admin = (Path(__file__).parent.parent / "docs" / "admin.md").read_text()
    assert [str(p) for p in problems] == [
        f"{HOST}:3: unknown key 'groups' in the top level — remove it; allowed here: "
        "format, role, hostname, version, log_level, vars"]
    assert str(problems[0]) in admin
