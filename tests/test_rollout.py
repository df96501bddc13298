"""Staged rollout, as docs/admin.md describes it: release v2, pin the canary to v2, the
rest stay on v1, promote; then roll back with a new commit (never a history rewrite).

Two levels:

- ``test_rollout_as_show_sees_it``: what each node gets after each step, by
  ``bootpull repo show`` (the node's selection and verification, offline). Fast.
- ``test_rollout_on_two_nodes``: two real nodes (``bootpull node run --oneshot`` as
  subprocesses, each with its own state directory and MAC) against one git smart-HTTP
  server (``git http-backend``, tests/gitserver.py) serving the example repository;
  each runs the example's web role on its own port, passes its health check, and
  ``bootpull node status`` says which version it installed.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bootpull.cli import main
from bootpull.mac import Mac
from gitserver import GitHttpServer
from signed_repo import SignedRepo

CANARY = Mac.parse("52:54:00:00:00:01")
OTHER = Mac.parse("52:54:00:00:00:02")
V2_PAGE = b"<!doctype html><title>{title}</title><h1>v2</h1><table>{rows}</table>\n"


def repo_cmd(repo: SignedRepo, *args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["repo", "-C", str(repo.root), "--keys", str(repo.keys), *args])
    return code, out.getvalue() + err.getvalue()


def ok(repo: SignedRepo, *args: str) -> str:
    code, text = repo_cmd(repo, *args)
    assert code == 0, f"bootpull repo {' '.join(args)}: {text}"
    return text


def gets(repo: SignedRepo, mac: Mac) -> tuple[str, str, bool]:
    """(version, commit, accepted) that ``repo show`` says ``mac`` gets."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["repo", "-C", str(repo.root), "show", mac.colons, "--json"])
    view: dict[str, Any] = json.loads(out.getvalue())
    assert code == (0 if view["accepted"] else 1), view
    return view["version"], view["commit"], view["accepted"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare(repo: SignedRepo, ports: dict[Mac, int]) -> None:
    """Web v1 released; both nodes pinned to it, each on its own port, on loopback."""
    for mac, port in ports.items():
        repo.write(f"hosts/{mac.canonical}.toml",
                   f'role = "web"\nhostname = "web-{port}"\n\n[vars]\nPORT = "{port}"\n'
                   f'LISTEN = "127.0.0.1"\n'.encode())
    repo.commit("two web nodes on loopback")
    ok(repo, "release", "web", "1")
    for mac in ports:
        ok(repo, "assign", mac.colons, "web", "--version", "1")
    repo.publish()


def release_v2(repo: SignedRepo) -> None:
    repo.write("roles/web/files/page.html", V2_PAGE)
    repo.commit("web: the v2 page")
    ok(repo, "release", "web", "2")


def assert_history_kept(repo: SignedRepo, heads: list[str]) -> None:
    """Every earlier head is an ancestor of the current one: nothing was rewritten."""
    now = repo.git("rev-parse", "main")
    for head in heads:
        subprocess.run(["git", "-C", str(repo.root), "merge-base", "--is-ancestor", head,
                        now], check=True)
    assert repo.git("tag", "-l", "role/web/*").split() == ["role/web/1", "role/web/2"]


def test_rollout_as_show_sees_it(example_repo: SignedRepo) -> None:
    repo = example_repo
    prepare(repo, {CANARY: 18081, OTHER: 18082})
    v1 = repo.git("rev-parse", "role/web/1^{commit}")
    heads = [repo.git("rev-parse", "main")]
    assert gets(repo, CANARY) == ("1", v1, True)
    assert gets(repo, OTHER) == ("1", v1, True)

    release_v2(repo)
    v2 = repo.git("rev-parse", "role/web/2^{commit}")
    ok(repo, "assign", CANARY.colons, "web", "--version", "2")
    # Committed but not published: nodes would refuse it (and keep what they run).
    assert gets(repo, CANARY)[2] is False
    heads.append(repo.publish())
    assert gets(repo, CANARY) == ("2", v2, True)
    assert gets(repo, OTHER) == ("1", v1, True)

    ok(repo, "assign", OTHER.colons, "web", "--version", "2")  # promote
    heads.append(repo.publish())
    assert gets(repo, OTHER) == ("2", v2, True)

    for mac in (CANARY, OTHER):  # roll back: new commits
        ok(repo, "assign", mac.colons, "web", "--version", "1")
    heads.append(repo.publish())
    assert gets(repo, CANARY) == ("1", v1, True)
    assert gets(repo, OTHER) == ("1", v1, True)
    assert_history_kept(repo, heads)
    subjects = repo.git("log", "--format=%s", "main").splitlines()
    assert subjects.count(f"assign {CANARY.canonical} to web@1") == 2  # pinned, then back


# -- two real nodes -------------------------------------------------------------------

def node_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("BOOTPULL_KEYS", None)
    return env


def node_run(url: str, mac: Mac, trust: Path, state: Path) -> subprocess.CompletedProcess[str]:
    cmdline = state.parent / f"cmdline-{mac.canonical}"
    # nothing from the host's own kernel command line; no home base to wait for
    cmdline.write_text("console=ttyS0 bootpull.report_deadline=0\n")
    return subprocess.run(
        [sys.executable, "-m", "bootpull", "node", "run", "--oneshot", "--repo", url,
         "--mac", mac.colons, "--trust", str(trust), "--state-dir", str(state),
         "--cmdline", str(cmdline)],
        capture_output=True, text=True, timeout=300, env=node_env(), check=False)


def status(state: Path) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "bootpull", "node", "status", "--state-dir",
                           str(state), "--json"], capture_output=True, text=True, timeout=120,
                          check=True)
    return dict(json.loads(proc.stdout))


def boot_both(url: str, trust: Path, states: dict[Mac, Path]) -> dict[Mac, str]:
    """Run each node once; return the version each one installed and ran."""
    out = {}
    for mac, state in states.items():
        proc = node_run(url, mac, trust, state)
        # no home base here: the role ran, its events stay spooled (docs/contract.md §6)
        assert proc.returncode == 15, f"node {mac} exited {proc.returncode}:\n{proc.stderr}"
        info = status(state)
        assert info["role"] == "web"
        out[mac] = info["version"]
    return out


def installed_page(state: Path) -> bytes:
    return (state / "current" / "page.html").read_bytes()


@pytest.mark.slow
def test_rollout_on_two_nodes(example_repo: SignedRepo, tmp_path: Path) -> None:
    pytest.importorskip("bootpull.pipeline", reason="the node pipeline is not here yet")
    repo = example_repo
    ports = {CANARY: free_port(), OTHER: free_port()}
    prepare(repo, ports)
    trust = tmp_path / "trust.json"
    trust.write_bytes(repo.trust)
    states = {mac: tmp_path / f"state-{mac.canonical}" for mac in ports}
    with GitHttpServer() as server:
        url = server.add_repo("repo.git", repo.root)
        server.start()
        assert boot_both(url, trust, states) == {CANARY: "1", OTHER: "1"}
        v1_page = installed_page(states[CANARY])

        release_v2(repo)
        ok(repo, "assign", CANARY.colons, "web", "--version", "2")
        repo.publish()
        assert boot_both(url, trust, states) == {CANARY: "2", OTHER: "1"}
        assert installed_page(states[CANARY]) == V2_PAGE
        assert installed_page(states[OTHER]) == v1_page

        ok(repo, "assign", OTHER.colons, "web", "--version", "2")  # promote
        repo.publish()
        assert boot_both(url, trust, states) == {CANARY: "2", OTHER: "2"}

        for mac in ports:  # roll back: a new commit, published
            ok(repo, "assign", mac.colons, "web", "--version", "1")
        repo.publish()
        assert boot_both(url, trust, states) == {CANARY: "1", OTHER: "1"}
        assert installed_page(states[OTHER]) == v1_page
    assert repo.git("tag", "-l", "role/web/*").split() == ["role/web/1", "role/web/2"]
