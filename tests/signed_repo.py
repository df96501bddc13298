"""Fixture plugin: signed deploy repositories made with the real admin tools.

``signed_repo`` is a fresh copy (per test) of a repository built once per session with
``bootpull repo init``, two roles (``web``, ``db``), two assigned nodes and a publish.
Tests change it with the plain git CLI (``repo.git(...)``) or the admin commands, and
pull from it through :class:`bootpull.localgit.LocalRemote` (the dulwich object store;
nothing is checked out).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from bootpull.backoff import Counters
from bootpull.console import Console
from bootpull.localgit import LocalRemote
from bootpull.mac import Mac
from bootpull.pull import PullResult, Remote, pull

MAC_WEB = Mac.parse("52:54:00:12:34:56")
MAC_DB = Mac.parse("52:54:00:12:34:57")
MAC_NEW = Mac.parse("52:54:00:aa:bb:cc")

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Test Admin", "GIT_AUTHOR_EMAIL": "admin@example.invalid",
    "GIT_COMMITTER_NAME": "Test Admin", "GIT_COMMITTER_EMAIL": "admin@example.invalid",
}  # only the identity: this session-wide environment must not change others' git config

WEB_ROLE = b"""format = 1
description = "a web server"

[run]
command = ["./serve.sh", "--port", "8080"]
restart = "always"

[health]
command = ["./check.sh"]
interval = 5
timeout = 2
"""

DB_ROLE = b"""format = 1
description = "a database"

[run]
command = ["./db.sh"]
"""


@dataclass
class SignedRepo:
    root: Path
    keys: Path

    @property
    def trust(self) -> bytes:
        return (self.keys / "trust.json").read_bytes()

    def git(self, *args: str) -> str:
        proc = subprocess.run(["git", "-C", str(self.root), *args], capture_output=True,
                              text=True, check=True)
        return proc.stdout.strip()

    def write(self, path: str, data: bytes, *, mode: int | None = None) -> None:
        full = self.root / path
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_bytes(data)
        if mode is not None:
            full.chmod(mode)

    def commit(self, message: str = "change") -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

    def bootpull(self, *args: str) -> None:
        from bootpull.cli import main

        code = main(["repo", "-C", str(self.root), "--keys", str(self.keys), *args])
        assert code == 0, f"bootpull repo {' '.join(args)} exited {code}"

    def publish(self, *args: str) -> str:
        self.bootpull("publish", *args)
        return self.git("rev-parse", "HEAD")

    def remote(self) -> LocalRemote:
        return LocalRemote(self.root)


def targets_of(root: Path) -> dict[str, dict[str, object]]:
    """Every signed target: targets.json's, and (format 2) each delegated role's."""
    out: dict[str, dict[str, object]] = {}
    for path in [root / ".bootpull/metadata/targets.json",
                 *sorted((root / ".bootpull/delegated").glob("*.json"))]:
        targets = json.loads(path.read_text())["signed"]["targets"]
        assert not set(targets) & set(out), "a target is signed by two roles"
        out.update(targets)
    return out


def node_pull(repo: SignedRepo | Remote, mac: Mac, state: Path, **kwargs: object
              ) -> PullResult:
    """What a node does in the verify stage: pull(), with the repository's anchors."""
    remote = repo.remote() if isinstance(repo, SignedRepo) else repo
    trust = kwargs.pop("trust_root", None)
    if trust is None:
        assert isinstance(repo, SignedRepo), "give trust_root= with a bare remote"
        trust = repo.trust
    return pull(remote, mac, trust_root=trust, state_dir=state,  # type: ignore[arg-type]
                console=Console(), counters=Counters(), **kwargs)  # type: ignore[arg-type]


def build_signed_repo(base: Path) -> SignedRepo:
    from bootpull_repo.init import init

    repo = SignedRepo(base / "repo", base / "keys")
    init(repo.root, keys_override=str(repo.keys), name="testrepo", fmt=1)  # formats: 2 migrates
    repo.write("roles/web/role.toml", WEB_ROLE)
    repo.write("roles/web/files/serve.sh", b"#!/bin/sh\necho serving\n", mode=0o755)
    repo.write("roles/web/files/check.sh", b"#!/bin/sh\nexit 0\n", mode=0o755)
    repo.write("roles/web/files/www/index.html", b"<h1>hello</h1>\n")
    (repo.root / "roles/web/files/www/home.html").symlink_to("index.html")
    repo.write("roles/db/role.toml", DB_ROLE)
    repo.write("roles/db/files/db.sh", b"#!/bin/sh\necho db\n", mode=0o755)
    repo.write("roles/db/files/schema.sql", b"create table t (x int);\n")
    repo.commit("two roles")
    repo.bootpull("assign", MAC_WEB.colons, "web")
    repo.bootpull("assign", MAC_DB.canonical.upper(), "db")
    repo.write(f"hosts/{MAC_WEB.canonical}.toml",
               b'role = "web"\nhostname = "web-1"\n\n[vars]\nPORT = "8080"\n')
    repo.commit("web-1 gets a hostname and a port")
    repo.publish()
    return repo


@pytest.fixture(scope="session")
def git_identity() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for key, value in GIT_IDENTITY.items():
            patch.setenv(key, value)
        yield


def migrate(repo: SignedRepo, fmt: int = 2) -> str:
    """Move the repository to metadata format ``fmt`` the admin's way (commit, publish)."""
    return repo.publish("--format", str(fmt))


@pytest.fixture(scope="session")
def signed_repo_template(tmp_path_factory: pytest.TempPathFactory,
                         git_identity: None) -> SignedRepo:
    return build_signed_repo(tmp_path_factory.mktemp("signed"))


@pytest.fixture(scope="session")
def signed_repo_template_format2(signed_repo_template: SignedRepo,
                                 tmp_path_factory: pytest.TempPathFactory) -> SignedRepo:
    """The session's repository, migrated to metadata format 2."""
    base = tmp_path_factory.mktemp("signed2")
    copy = SignedRepo(base / "repo", base / "keys")
    shutil.copytree(signed_repo_template.root, copy.root, symlinks=True)
    shutil.copytree(signed_repo_template.keys, copy.keys)
    migrate(copy)
    return copy


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "formats(*numbers): run the test once per signed metadata format "
        "(signed_repo is built in each); the closest marker wins")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("formats")
    if marker is not None and "metadata_format" in metafunc.fixturenames:
        metafunc.parametrize("metadata_format", list(marker.args), indirect=True,
                             ids=[f"format{n}" for n in marker.args])


@pytest.fixture
def metadata_format(request: pytest.FixtureRequest) -> int:
    """The signed metadata format of ``signed_repo``: 1 unless ``formats`` says more."""
    return int(getattr(request, "param", 1))


@pytest.fixture
def signed_repo(request: pytest.FixtureRequest, metadata_format: int, tmp_path: Path,
                git_identity: None) -> SignedRepo:
    """A private copy of the session's signed repository (and its keys), in
    ``metadata_format``."""
    template: SignedRepo = request.getfixturevalue(
        "signed_repo_template" if metadata_format == 1 else "signed_repo_template_format2")
    copy = SignedRepo(tmp_path / "repo", tmp_path / "keys")
    shutil.copytree(template.root, copy.root, symlinks=True)
    shutil.copytree(template.keys, copy.keys)
    return copy
