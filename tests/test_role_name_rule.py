"""One role-name rule: the parser, lint, ``repo role new`` and the installer agree."""

from __future__ import annotations

from pathlib import Path

import pytest
from bootpull import layout
from bootpull.bundle import MODE_EXEC, MODE_FILE
from bootpull.errors import InstallError, UsageError
from bootpull.install import install
from bootpull.state import StateDir
from bootpull_repo.lint import lint_tree
from bootpull_repo.role_new import check_name
from fakes import DictTree, capturing_console
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sample_bundles import make_bundle

HOST = "hosts/52-54-00-12-34-56.toml"

names = st.text(alphabet="abcXYZ019._- /\\\x00é", min_size=1, max_size=8) | st.from_regex(
    r"[a-zA-Z0-9][a-zA-Z0-9._-]{0,70}", fullmatch=True)


def _toml_str(value: str) -> str:
    return '"' + "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}"
                         for c in value) + '"'


def parser_accepts(name: str) -> bool:
    host = f"role = {_toml_str(name)}\n".encode()
    return layout.parse_host(host, HOST)[0] is not None


def lint_accepts(name: str) -> bool:
    """A repository with one role of this name, assigned to one node."""
    if "/" in name or name in (".", ".."):
        return False  # not a directory name at all: no repository can hold it
    tree = DictTree({
        "bootpull.toml": (MODE_FILE, b"format = 1\n"),
        HOST: (MODE_FILE, f"role = {_toml_str(name)}\n".encode()),
        f"roles/{name}/role.toml": (MODE_FILE, b'format = 1\ndescription = "d"\n'
                                    b'[run]\ncommand = ["./run.sh"]\n'),
        f"roles/{name}/files/run.sh": (MODE_EXEC, b"#!/bin/sh\n"),
    })
    return lint_tree(tree).ok


def role_new_accepts(name: str) -> bool:
    try:
        check_name(name)
    except UsageError:
        return False
    return True


def installer_accepts(name: str, state: Path) -> bool:
    try:
        install(make_bundle(role=name), StateDir(state), env={},
                console=capturing_console())
    except InstallError:
        return False
    return True


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=names)
@example(name="web")
@example(name="Web")
@example(name="a..b")
@example(name="x" * 63)
@example(name="x" * 64)
@example(name="-web")
@example(name="web.1_a-b")
@example(name="../etc")
def test_parser_lint_role_new_and_installer_agree(name: str, tmp_path_factory:
                                                  pytest.TempPathFactory) -> None:
    expected = layout.check_role_name(name) is None
    assert parser_accepts(name) == expected
    assert lint_accepts(name) == expected
    assert role_new_accepts(name) == expected
    assert installer_accepts(name, tmp_path_factory.mktemp("state")) == expected


def test_the_rule_itself() -> None:
    assert layout.check_role_name("web-1.a_b") is None
    assert layout.check_role_name("x" * 63) is None
    for bad in ("Web", "x" * 64, "a..b", "-web", ".web", "a b", "", "a/b"):
        assert layout.check_role_name(bad) is not None, bad
    assert "lowercase only (as in 'web')" in str(layout.check_role_name("Web"))


def test_the_repository_name_may_have_capitals() -> None:
    settings_, problems = layout.parse_settings(b'format = 1\nname = "Lab-1"\n')
    assert problems == [] and settings_ is not None and settings_.name == "Lab-1"
    assert layout.check_repo_name("a..b") is not None
