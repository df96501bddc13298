"""``[report] silent_after`` in bootpull.toml and role.toml: one parser, lint, home base, node.

The home base reads the deadlines from the deploy branch (docs/homebase.md "SILENT");
the shared parser types and validates them, so lint accepts a repository that sets
them and a node still pulls it.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
from bootpull import layout
from bootpull.cli import main
from bootpull_homebase.repoview import RepoView
from hypothesis import given
from hypothesis import strategies as st
from signed_repo import MAC_DB, MAC_WEB, SignedRepo, node_pull

SETTINGS = b"""format = 1
name = "lab"

[report]
url = "http://base.example:8080/api/v1/events"
silent_after = 900
"""

ROLE = b"""format = 1
description = "web"

[run]
command = ["./serve.sh"]

[report]
silent_after = 45.5
"""


def test_settings_report_keys_are_typed() -> None:
    settings, problems = layout.parse_settings(SETTINGS)
    assert problems == [] and settings is not None
    assert settings.report_url == "http://base.example:8080/api/v1/events"
    assert settings.silent_after == 900.0 and isinstance(settings.silent_after, float)
    assert layout.parse_settings(b"format = 1\n")[0].silent_after is None  # type: ignore[union-attr]


def test_role_report_table_is_typed() -> None:
    spec, problems = layout.parse_role(ROLE, "web")
    assert problems == [] and spec is not None
    assert spec.silent_after == 45.5
    assert layout.load_role(ROLE.replace(b"\n[report]\nsilent_after = 45.5\n", b""),
                            "web").silent_after is None


@pytest.mark.parametrize("value", ["0", "-5", "true", '"600"', "nan", "inf", "[1]"])
def test_a_bad_deadline_is_reported_with_its_line(value: str) -> None:
    settings = SETTINGS.replace(b"silent_after = 900", f"silent_after = {value}".encode())
    got, problems = layout.parse_settings(settings)
    assert got is None and len(problems) == 1
    assert str(problems[0]).startswith("bootpull.toml:6: 'report.silent_after' must be a ")
    assert "silent_after = " in problems[0].fix
    role = ROLE.replace(b"silent_after = 45.5", f"silent_after = {value}".encode())
    spec, problems = layout.parse_role(role, "web")
    assert spec is None and len(problems) == 1
    assert str(problems[0]).startswith("roles/web/role.toml:8: 'report.silent_after' must be ")


def test_unknown_report_keys_get_a_did_you_mean() -> None:
    _, problems = layout.parse_role(ROLE.replace(b"silent_after =", b"silent_afer ="), "web")
    assert [str(p) for p in problems] == [
        "roles/web/role.toml:8: unknown key 'silent_afer' in [report] — did you mean "
        "'silent_after'?"]
    _, problems = layout.parse_role(ROLE + b'url = "http://x/"\n', "web")
    assert [p.line for p in problems] == [9]  # a role has no report URL of its own
    _, problems = layout.parse_settings(SETTINGS + b"silent = 3\n")
    assert [str(p) for p in problems] == [
        "bootpull.toml:7: unknown key 'silent' in [report] — did you mean 'silent_after'?"]


@given(st.floats(min_value=1e-3, max_value=1e9) | st.integers(min_value=1, max_value=10**9))
def test_any_positive_deadline_roundtrips(seconds: float) -> None:
    role = ROLE.replace(b"45.5", repr(seconds).encode())
    assert layout.load_role(role, "web").silent_after == float(seconds)
    settings = SETTINGS.replace(b"900", repr(seconds).encode())
    assert layout.load_settings(settings).silent_after == float(seconds)


def _lint(root: Path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["repo", "-C", str(root), "lint"])
    return code, out.getvalue()


@pytest.fixture
def deadline_repo(signed_repo: SignedRepo) -> SignedRepo:
    """The signed test repository with both deadlines set, published."""
    settings = (signed_repo.root / "bootpull.toml").read_bytes()
    signed_repo.write("bootpull.toml", settings + b"\n[report]\nsilent_after = 900\n")
    role = (signed_repo.root / "roles/web/role.toml").read_bytes()
    signed_repo.write("roles/web/role.toml", role + b"\n[report]\nsilent_after = 45\n")
    signed_repo.commit("deadlines")
    signed_repo.publish()
    return signed_repo


def test_lint_accepts_home_base_reads_and_node_pulls(deadline_repo: SignedRepo,
                                                     tmp_path: Path) -> None:
    assert _lint(deadline_repo.root) == (0, "")
    view = RepoView(deadline_repo.root, default_deadline=300, refresh=0)
    assert view.for_role("web") == 45  # roles/web/role.toml
    assert view.for_role("db") == 900  # bootpull.toml, for every other role
    result = node_pull(deadline_repo, MAC_WEB, tmp_path / "state-web")
    assert result.bundle.role.silent_after == 45
    assert result.settings.silent_after == 900
    assert node_pull(deadline_repo, MAC_DB, tmp_path / "state-db").bundle.role.silent_after \
        is None


def test_lint_reports_a_bad_deadline_in_the_repository(deadline_repo: SignedRepo) -> None:
    path = deadline_repo.root / "roles/web/role.toml"
    path.write_text(path.read_text().replace("silent_after = 45", "silent_after = -1"))
    code, out = _lint(deadline_repo.root)
    line = path.read_text().splitlines().index("silent_after = -1") + 1
    assert code == 1
    assert out.startswith(f"roles/web/role.toml:{line}: 'report.silent_after' must be a "
                          "number greater than 0, not -1 — write it as silent_after = ")
