"""/repo.git: the deploy repository over real git smart HTTP (git http-backend).

The git CLI and dulwich (what the node uses) clone and fetch from a running home
base, with protocol v2 and a partial-clone filter; pushes are refused.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import requests
from bootpull_homebase.server import Running
from dulwich.client import HttpGitClient
from dulwich.repo import Repo
from homebase_fixtures import git


def _git_env() -> dict[str, str]:
    return {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": os.environ.get("HOME", "/root")}


def test_git_clone_gets_the_deploy_head(homebase: Running, homebase_repo: Path,
                                         tmp_path: Path) -> None:
    out = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", f"{homebase.url}/repo.git", str(out)], check=True,
                   env=_git_env(), timeout=120)
    assert git(out, "rev-parse", "HEAD") == git(homebase_repo, "rev-parse", "HEAD")
    assert (out / "roles" / "web" / "files" / "file0.txt").read_text() == "web payload v2\n"
    assert "role/web/1.0" in git(out, "tag")


def test_protocol_v2_and_blob_filter(homebase: Running, homebase_repo: Path,
                                     tmp_path: Path) -> None:
    out = tmp_path / "partial"
    proc = subprocess.run(
        ["git", "-c", "protocol.version=2", "clone", "-q", "--filter=blob:none", "--no-checkout",
         f"{homebase.url}/repo.git", str(out)],
        env={**_git_env(), "GIT_TRACE_PACKET": "1"}, capture_output=True, text=True,
        timeout=120, check=True)
    assert "git< version 2" in proc.stderr, "the server did not speak protocol v2"
    assert "filter blob:none" in proc.stderr
    # Without a checkout, no blob was fetched: the filter was honoured.
    missing = subprocess.run(
        ["git", "-C", str(out), "rev-list", "--objects", "--missing=print", "HEAD"],
        capture_output=True, text=True, check=True, timeout=60).stdout
    assert sum(1 for line in missing.splitlines() if line.startswith("?")) >= 10


def test_dulwich_fetch_filter_and_exact_blob_wants(homebase: Running, homebase_repo: Path,
                                                   tmp_path: Path) -> None:
    """What the node does: commit and trees only (blob:none), then the blobs it needs."""
    head = git(homebase_repo, "rev-parse", "HEAD").encode()
    blob = git(homebase_repo, "rev-parse", "HEAD:roles/web/files/file1.txt").encode()
    other = git(homebase_repo, "rev-parse", "HEAD:roles/db/files/file1.txt").encode()
    target = Repo.init_bare(str(tmp_path / "node.git"), mkdir=True)
    client = HttpGitClient(homebase.url)
    result = client.fetch("/repo.git", target, determine_wants=lambda refs, depth=None: [head],
                          filter_spec=b"blob:none", protocol_version=2)
    assert result.refs[b"refs/heads/main"] == head
    assert head in target.object_store
    assert blob not in target.object_store
    client.fetch("/repo.git", target, determine_wants=lambda refs, depth=None: [blob],
                 protocol_version=2)
    assert target.object_store[blob].data == b"web payload 1\n" * 50
    assert other not in target.object_store


def test_push_is_refused(homebase: Running, homebase_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", f"{homebase.url}/repo.git", str(out)], check=True,
                   env=_git_env(), timeout=120)
    (out / "evil").write_text("x")
    git(out, "add", "evil")
    git(out, "commit", "-q", "-m", "evil")
    push = subprocess.run(["git", "-C", str(out), "push", "origin", "HEAD:main"],
                          capture_output=True, text=True, env=_git_env(), timeout=120)
    assert push.returncode != 0
    assert "403" in push.stderr
    answer = requests.get(f"{homebase.url}/repo.git/info/refs?service=git-receive-pack",
                          timeout=30)
    assert answer.status_code == 403
    assert "read-only" in answer.json()["error"]
    assert git(homebase_repo, "log", "--format=%s", "-1") != "evil"


@pytest.mark.parametrize("path", ["/repo.git/../../etc/passwd", "/repo.git/objects/xx/nope"])
def test_no_way_out_of_the_repository(homebase: Running, path: str) -> None:
    answer = requests.get(f"{homebase.url}{path}", timeout=30)
    assert answer.status_code in (403, 404)
    assert b"root:" not in answer.content


def test_the_node_fetcher_against_the_home_base(homebase: Running, homebase_repo: Path,
                                                tmp_path: Path) -> None:
    """The node's own transport (bootpull.fetch: v2, tree filters, exact blob wants)."""
    from bootpull.backoff import Counters
    from bootpull.console import Console
    from bootpull.fetch import FetchLimits, GitRemote

    remote = GitRemote(f"{homebase.url}/repo.git", tmp_path / "cache",
                       limits=FetchLimits(deadline=120.0), console=Console(),
                       counters=Counters())
    snap = remote.snapshot("main")
    assert snap.commit == git(homebase_repo, "rev-parse", "HEAD")
    files = snap.read_many(["roles/web/files/file0.txt", "roles/web/files/file3.txt"])
    assert files["roles/web/files/file0.txt"] == b"web payload v2\n"
    assert files["roles/web/files/file3.txt"] == b"web payload 3\n" * 50
    assert [e.path for e in snap.list("roles/db/files")][:1] == ["roles/db/files/file0.txt"]
    tagged = remote.snapshot("role/web/1.0")
    assert tagged.read("roles/web/files/file0.txt") == b"web payload 0\n" * 50
