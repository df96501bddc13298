"""pull() over real git smart HTTP (git http-backend on loopback) through bootpull.fetch.

The same signed repository as the other pull tests, served by ``git http-backend``;
the node's GitRemote fetches lazily, so a role's neighbours cost no bytes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from bootpull.backoff import Counters
from bootpull.console import Console
from bootpull.errors import VerifyError
from bootpull.trust import load_floor
from gitserver import GitHttpServer
from signed_repo import MAC_DB, MAC_WEB, SignedRepo, node_pull

BIG = 2 * 2**20


def http_remote(url: str, cache: Path) -> object:
    from bootpull.fetch import FetchLimits, GitRemote

    return GitRemote(url, cache, limits=FetchLimits(deadline=120.0), console=Console(),
                     counters=Counters())


def test_pull_over_smart_http_fetches_only_its_role(
        signed_repo: SignedRepo, tmp_path: Path,
        git_http_server: Callable[..., object]) -> None:
    signed_repo.write("roles/db/files/big.bin", os.urandom(BIG))  # incompressible
    signed_repo.commit("db: a big file")
    signed_repo.bootpull("release", "web", "1.0")
    signed_repo.publish()
    server = git_http_server(signed_repo.root)
    url = server.url_for("repo")  # type: ignore[attr-defined]

    remote = http_remote(url, tmp_path / "cache")
    result = node_pull(remote, MAC_WEB, tmp_path / "state",  # type: ignore[arg-type]
                       trust_root=signed_repo.trust)
    assert result.bundle.role.name == "web"
    assert {f.path for f in result.bundle.files} == {
        "check.sh", "serve.sh", "www/home.html", "www/index.html"}
    received = remote.bytes_received  # type: ignore[attr-defined]
    assert 0 < received < BIG // 4, f"the web node moved {received} bytes"
    assert load_floor(tmp_path / "state").targets == result.metadata.targets

    # the db node does get its big file, verified
    db = node_pull(http_remote(url, tmp_path / "cache-db"), MAC_DB,  # type: ignore[arg-type]
                   tmp_path / "state-db", trust_root=signed_repo.trust)
    assert len({f.path: f for f in db.bundle.files}["big.bin"].data) == BIG


def test_pinned_release_over_smart_http(signed_repo: SignedRepo, tmp_path: Path,
                                        git_http_server: Callable[..., object]) -> None:
    signed_repo.bootpull("release", "web", "1.0")
    signed_repo.write("roles/web/files/serve.sh", b"#!/bin/sh\necho head\n", mode=0o755)
    signed_repo.commit("web at the head")
    signed_repo.bootpull("assign", MAC_WEB.canonical, "web", "--version", "1.0")
    signed_repo.publish()
    server = git_http_server(signed_repo.root)
    remote = http_remote(server.url_for("repo"), tmp_path / "cache")  # type: ignore[attr-defined]
    bundle = node_pull(remote, MAC_WEB, tmp_path / "state",  # type: ignore[arg-type]
                       trust_root=signed_repo.trust).bundle
    assert bundle.version == "1.0"
    assert {f.path: f.data for f in bundle.files}["serve.sh"] == b"#!/bin/sh\necho serving\n"


def test_unpublished_change_over_smart_http_is_refused(
        signed_repo: SignedRepo, tmp_path: Path,
        git_http_server: Callable[..., object]) -> None:
    signed_repo.write("roles/web/files/serve.sh", b"#!/bin/sh\necho unpublished\n", mode=0o755)
    signed_repo.commit("not published")
    server = git_http_server(signed_repo.root)
    remote = http_remote(server.url_for("repo"), tmp_path / "cache")  # type: ignore[attr-defined]
    with pytest.raises(VerifyError) as info:
        node_pull(remote, MAC_WEB, tmp_path / "state",  # type: ignore[arg-type]
                  trust_root=signed_repo.trust)
    assert info.value.exit_code == 12
    assert "serve.sh does not match its signed hash" in info.value.what
    assert not (tmp_path / "state" / "trust" / "floor.json").exists()


def test_pull_carries_the_repository_url_in_effect(
        signed_repo: SignedRepo, tmp_path: Path,
        git_http_server: Callable[..., GitHttpServer]) -> None:
    """After a redirect, and after the home base's /repo.git, the result names the URL
    the node actually fetched from, so the node can use it from then on."""
    server = git_http_server(signed_repo.root)  # served as /repo
    url = server.url_for("repo")
    direct = node_pull(http_remote(url + "/", tmp_path / "c0"),  # type: ignore[arg-type]
                       MAC_WEB, tmp_path / "s0", trust_root=signed_repo.trust)
    assert direct.repo_url == url

    server.redirects["/moved"] = url
    remote = http_remote(server.base_url + "/moved", tmp_path / "c1")
    result = node_pull(remote, MAC_WEB, tmp_path / "s1",  # type: ignore[arg-type]
                       trust_root=signed_repo.trust)
    assert result.bundle.role.name == "web"
    assert result.repo_url == url == remote.url  # type: ignore[attr-defined]
    assert [s.status for s in server.log if s.path.startswith("/moved")] == [301]

    with GitHttpServer({"repo.git": signed_repo.root}) as home_base:
        remote = http_remote(home_base.base_url + "/", tmp_path / "c2")
        result = node_pull(remote, MAC_WEB, tmp_path / "s2",  # type: ignore[arg-type]
                           trust_root=signed_repo.trust)
    assert result.bundle.role.name == "web"
    assert result.repo_url == f"{home_base.base_url}/repo.git" == remote.url  # type: ignore[attr-defined]
