"""pull(): from a signed repository to a verified Bundle (real git, real TUF, no mocks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bootpull.bundle import MODE_EXEC, MODE_FILE, MODE_SYMLINK
from bootpull.errors import NotAssignedError, VerifyError
from bootpull.trust import floor_path, load_floor
from bootpull_repo.gitcli import Git
from signed_repo import MAC_DB, MAC_NEW, MAC_WEB, SignedRepo, node_pull

pytestmark = pytest.mark.formats(1, 2)  # signed metadata format 1 and 2


def test_pull_gets_its_role_with_modes_and_vars(signed_repo: SignedRepo, tmp_path: Path) -> None:
    result = node_pull(signed_repo, MAC_WEB, tmp_path / "state")
    bundle = result.bundle
    assert bundle.role.name == "web"
    assert bundle.role.command == ("./serve.sh", "--port", "8080")
    assert bundle.role.restart == "always"
    assert bundle.role.health is not None and bundle.role.health.interval == 5
    files = {f.path: (f.mode, f.data) for f in bundle.files}
    assert files == {
        "check.sh": (MODE_EXEC, b"#!/bin/sh\nexit 0\n"),
        "serve.sh": (MODE_EXEC, b"#!/bin/sh\necho serving\n"),
        "www/home.html": (MODE_SYMLINK, b"index.html"),
        "www/index.html": (MODE_FILE, b"<h1>hello</h1>\n"),
    }
    assert bundle.assignment.hostname == "web-1"
    assert bundle.assignment.vars == {"PORT": "8080"}
    assert bundle.assignment.source == f"hosts/{MAC_WEB.canonical}.toml"
    head = signed_repo.git("rev-parse", "HEAD")
    assert bundle.commit == head == result.head_commit
    assert bundle.version == f"head-{head[:12]}"
    assert bundle.role_toml == (signed_repo.root / "roles/web/role.toml").read_bytes()
    assert result.settings.branch == "main"


def test_pull_fetches_only_its_own_role(signed_repo: SignedRepo, tmp_path: Path) -> None:
    """The bundle holds db's files and nothing of web's, and only db's blobs are read."""
    reads: list[str] = []

    class CountingRemote:
        def __init__(self) -> None:
            self.inner = signed_repo.remote()

        def snapshot(self, ref: str) -> object:
            tree = self.inner.snapshot(ref)
            real_many = tree.read_many

            def read_many(paths: list[str]) -> dict[str, bytes]:
                reads.extend(paths)
                return real_many(paths)

            tree.read_many = read_many  # type: ignore[method-assign]
            real_blobs = tree.read_blobs

            def read_blobs(oids: dict[str, str]) -> dict[str, bytes]:  # format 2: by id
                reads.extend(oids)
                return real_blobs(oids)

            tree.read_blobs = read_blobs  # type: ignore[method-assign]
            return tree

    result = node_pull(CountingRemote(), MAC_DB, tmp_path / "state",  # type: ignore[arg-type]
                       trust_root=signed_repo.trust)
    assert {f.path for f in result.bundle.files} == {"db.sh", "schema.sql"}
    roles = [p for p in reads if p.startswith("roles/")]
    assert roles and all(p.startswith("roles/db/") for p in roles)
    assert all(p.startswith(("roles/db/", ".bootpull/metadata/", "hosts/")) or
               p == "bootpull.toml" for p in reads)


def test_a_local_remote_has_no_repository_url(signed_repo: SignedRepo, tmp_path: Path) -> None:
    assert node_pull(signed_repo, MAC_WEB, tmp_path / "state").repo_url is None


def test_pull_writes_the_version_floor(signed_repo: SignedRepo, tmp_path: Path) -> None:
    state = tmp_path / "state"
    result = node_pull(signed_repo, MAC_WEB, state)
    floor = load_floor(state)
    assert floor.targets == result.metadata.targets >= 2
    assert floor.timestamp == result.metadata.timestamp
    assert floor.last_good_time is not None
    assert json.loads(floor_path(state).read_text())["format"] == 1


def test_default_host_file_applies_to_unknown_nodes(signed_repo: SignedRepo,
                                                    tmp_path: Path) -> None:
    signed_repo.write("hosts/default.toml", b'role = "db"\n')
    signed_repo.commit("default: db")
    signed_repo.publish()
    result = node_pull(signed_repo, MAC_NEW, tmp_path / "state")
    assert result.bundle.role.name == "db"
    assert result.bundle.assignment.source == "hosts/default.toml"
    # a node with its own file still gets its own
    assert node_pull(signed_repo, MAC_WEB, tmp_path / "s2").bundle.role.name == "web"


def test_unassigned_node_says_what_to_run(signed_repo: SignedRepo, tmp_path: Path) -> None:
    with pytest.raises(NotAssignedError) as info:
        node_pull(signed_repo, MAC_NEW, tmp_path / "state")
    assert info.value.hint == "run 'bootpull repo assign 52:54:00:aa:bb:cc ROLE' and publish"
    assert info.value.what == "node 52-54-00-aa-bb-cc is not assigned"
    assert info.value.exit_code == 12


def test_pinned_release_gets_the_tagged_content(signed_repo: SignedRepo, tmp_path: Path) -> None:
    signed_repo.bootpull("release", "web", "1.0")
    signed_repo.write("roles/web/files/serve.sh", b"#!/bin/sh\necho v2\n", mode=0o755)
    signed_repo.commit("web: v2 at the head")
    signed_repo.bootpull("assign", MAC_WEB.canonical, "web", "--version", "1.0")
    signed_repo.publish()
    pinned = node_pull(signed_repo, MAC_WEB, tmp_path / "a").bundle
    assert pinned.version == "1.0"
    assert dict((f.path, f.data) for f in pinned.files)["serve.sh"] == b"#!/bin/sh\necho serving\n"
    assert pinned.commit == signed_repo.git("rev-parse", "role/web/1.0^{commit}")
    # assign kept the hostname and vars of the host file
    assert pinned.assignment.hostname == "web-1" and pinned.assignment.vars == {"PORT": "8080"}
    signed_repo.bootpull("assign", MAC_WEB.canonical, "web")
    signed_repo.publish()
    head = node_pull(signed_repo, MAC_WEB, tmp_path / "a").bundle
    assert dict((f.path, f.data) for f in head.files)["serve.sh"] == b"#!/bin/sh\necho v2\n"


def test_pinned_release_that_was_never_published_is_refused(signed_repo: SignedRepo,
                                                            tmp_path: Path) -> None:
    from bootpull_repo.context import RepoContext
    from bootpull_repo.publish import publish

    signed_repo.bootpull("release", "web", "2.0")
    signed_repo.bootpull("assign", MAC_WEB.canonical, "web", "--version", "2.0")
    signed_repo.git("tag", "-d", "role/web/2.0")  # the tag vanished before publish
    ctx = RepoContext(signed_repo.root, Git(signed_repo.root), None, str(signed_repo.keys))
    publish(ctx, check=False)  # signs the pin to 2.0, but there is no release 2.0 to sign
    signed_repo.git("tag", "-a", "role/web/2.0", "-m", "unsigned", "HEAD")
    with pytest.raises(VerifyError) as info:
        node_pull(signed_repo, MAC_WEB, tmp_path / "state")
    assert "release role/web/2.0 is not signed" in info.value.what


def test_deploy_branch_named_in_bootpull_toml_is_followed(signed_repo: SignedRepo,
                                                          tmp_path: Path) -> None:
    signed_repo.git("checkout", "-q", "-b", "production")
    text = (signed_repo.root / "bootpull.toml").read_text()
    signed_repo.write("bootpull.toml", text.replace('branch = "main"',
                                                    'branch = "production"').encode())
    signed_repo.commit("deploy from production")
    signed_repo.publish()
    signed_repo.git("checkout", "-q", "main")
    signed_repo.git("merge", "-q", "--ff-only", "production")
    signed_repo.git("checkout", "-q", "production")
    signed_repo.write("roles/db/files/schema.sql", b"create table u (y int);\n")
    signed_repo.commit("db: production only")
    signed_repo.publish()
    result = node_pull(signed_repo, MAC_DB, tmp_path / "state")
    assert result.branch == "production"
    assert dict((f.path, f.data) for f in result.bundle.files)["schema.sql"] == \
        b"create table u (y int);\n"


def test_verify_modules_and_repo_help_import_no_heavy_library() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import bootpull.pull, bootpull.trust, bootpull.layout, bootpull.localgit\n"
        "from bootpull.cli import build_group_parser\n"
        "build_group_parser('repo').format_help()\n"
        "heavy = {'tuf', 'dulwich', 'securesystemslib', 'cryptography'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout.strip()
    assert out == "[]"


def test_switching_the_deploy_branch_never_looks_like_a_rollback(signed_repo: SignedRepo,
                                                                 tmp_path: Path) -> None:
    """production forks from an older main; main then points nodes at production."""
    state = tmp_path / "state"
    first = node_pull(signed_repo, MAC_DB, state)
    signed_repo.git("branch", "production")  # forks here: its metadata is older than main's
    text = (signed_repo.root / "bootpull.toml").read_text()
    switched = text.replace('branch = "main"', 'branch = "production"').encode()
    signed_repo.write("bootpull.toml", switched)
    signed_repo.commit("nodes: follow production")
    signed_repo.publish()
    signed_repo.publish("--freshness")  # main: two timestamp versions ahead of the fork
    # (a plain publish here would have nothing to do, and commit nothing)
    signed_repo.git("checkout", "-q", "production")
    signed_repo.write("bootpull.toml", switched)
    signed_repo.write("roles/db/files/schema.sql", b"create table p (z int);\n")
    signed_repo.commit("production: db change")
    signed_repo.publish()  # versions continue from main's, not from the fork point
    main_ts = json.loads(signed_repo.git("show", "main:.bootpull/metadata/timestamp.json"))
    prod_ts = json.loads((signed_repo.root / ".bootpull/metadata/timestamp.json").read_text())
    assert prod_ts["signed"]["version"] == main_ts["signed"]["version"] + 1
    result = node_pull(signed_repo, MAC_DB, state)  # starts at main, hops to production
    assert result.branch == "production"
    assert result.metadata.targets > first.metadata.targets
    assert load_floor(state).branch == "production"
    # main is abandoned (even its metadata is gone): the node starts at production
    signed_repo.git("checkout", "-q", "main")
    signed_repo.git("rm", "-q", "-r", ".bootpull")
    signed_repo.commit("main: abandoned")
    again = node_pull(signed_repo, MAC_DB, state)
    assert again.branch == "production"
    assert {f.path: f.data for f in again.bundle.files}["schema.sql"] == \
        b"create table p (z int);\n"


def test_two_branches_naming_each_other_are_refused(signed_repo: SignedRepo,
                                                    tmp_path: Path) -> None:
    text = (signed_repo.root / "bootpull.toml").read_text()
    signed_repo.git("branch", "other")
    signed_repo.write("bootpull.toml", text.replace('branch = "main"', 'branch = "other"')
                      .encode())
    signed_repo.commit("main: go to other")
    signed_repo.publish()
    with pytest.raises(VerifyError) as info:
        node_pull(signed_repo, MAC_WEB, tmp_path / "state")
    assert "yet another branch" in info.value.what
    assert "on other says branch = 'main'" in info.value.why
