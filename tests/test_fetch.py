"""GitRemote over a real ``git http-backend``: what is fetched, and how little."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from bootpull.backoff import Backoff, Counters
from bootpull.bundle import MODE_EXEC, MODE_FILE, MODE_SYMLINK
from bootpull.console import Console
from bootpull.errors import FetchError
from bootpull.fetch import FetchLimits, GitRemote
from fakes import CapturingWriter, capturing_console
from gitserver import GitHttpServer, commit_files, git, make_bare_repo, push
from hypothesis import given
from hypothesis import strategies as st

ROLES = 5
ROLE_FILE = 200_000
FAST = FetchLimits(deadline=60, backoff=Backoff(base=0.05, cap=0.2), max_attempts=4)



def role_files(roles: int = ROLES, size: int = ROLE_FILE) -> dict[str, bytes]:
    files = {"bootpull.toml": b"format = 1\n",
             "hosts/52-54-00-12-34-56.toml": b'role = "r2"\n'}
    for r in range(roles):
        files[f"roles/r{r}/role.toml"] = f'format = 1\ndescription = "role {r}"\n'.encode()
        files[f"roles/r{r}/files/a.bin"] = os.urandom(size // 2)
        files[f"roles/r{r}/files/sub/b.bin"] = os.urandom(size - size // 2)
    return files


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bare = make_bare_repo(tmp_path_factory.mktemp("fetch") / "repo.git", role_files())
    work = bare.with_name(bare.name + ".work")
    (work / "roles/r2/files/run.sh").write_text("#!/bin/sh\necho hi\n")
    (work / "roles/r2/files/run.sh").chmod(0o755)
    (work / "roles/r2/files/link").symlink_to("run.sh")
    commit_files(work, {}, "exec and symlink")
    git("tag", "-a", "-m", "release", "role/r2/1.0", cwd=work)
    git("tag", "role/r2/light", cwd=work)
    push(work, bare, "main", "--tags")
    return bare


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[GitHttpServer]:
    with GitHttpServer({"repo.git": repo}) as srv:
        yield srv


@pytest.fixture
def remote_factory(tmp_path: Path) -> Iterator[Callable[..., GitRemote]]:
    made: list[GitRemote] = []

    def make(url: str, *, limits: FetchLimits = FAST, cache: Path | None = None,
             counters: Counters | None = None, console: Console | None = None) -> GitRemote:
        remote = GitRemote(url, cache or tmp_path / "cache", limits=limits,
                           console=console or capturing_console(),
                           counters=counters or Counters())
        made.append(remote)
        return remote

    yield make
    for remote in made:
        remote.close()


def test_snapshot_lists_and_reads_files_of_one_role(server, repo, remote_factory) -> None:
    remote = remote_factory(server.url)
    snap = remote.snapshot("main")
    assert snap.commit == git("rev-parse", "main", cwd=repo).strip()
    entries = {e.path: e for e in snap.list("roles/r2")}
    assert set(entries) == {"roles/r2/role.toml", "roles/r2/files/a.bin",
                            "roles/r2/files/sub/b.bin", "roles/r2/files/run.sh",
                            "roles/r2/files/link"}
    assert entries["roles/r2/files/a.bin"].mode == MODE_FILE
    assert entries["roles/r2/files/run.sh"].mode == MODE_EXEC
    assert entries["roles/r2/files/link"].mode == MODE_SYMLINK
    work = repo.with_name(repo.name + ".work")
    got = snap.read_many([*list(entries), "roles/r2/absent"])
    assert "roles/r2/absent" not in got
    assert got["roles/r2/files/a.bin"] == (work / "roles/r2/files/a.bin").read_bytes()
    assert got["roles/r2/files/link"] == b"run.sh"
    assert snap.read("bootpull.toml") == b"format = 1\n"
    assert snap.read("roles/r2") is None  # a directory is not a file
    assert snap.read("nope/nothing") is None
    assert snap.list("roles/none") == []
    assert snap.list("bootpull.toml") == []


def test_bytes_scale_with_the_role_not_the_repository(server, remote_factory) -> None:
    """Fetching one role of five moves about one fifth of the repository."""
    server.reset_counters()
    remote = remote_factory(server.url)
    snap = remote.snapshot("main")
    paths = [e.path for e in snap.list("roles/r3")]
    snap.read_many(paths)
    role_bytes = ROLE_FILE
    repo_bytes = ROLES * ROLE_FILE
    assert remote.bytes_received == server.bytes_sent  # our count is the server's count
    assert role_bytes <= remote.bytes_received < role_bytes * 1.05 + 8192
    assert remote.bytes_received < repo_bytes / 4
    # ls-refs, the commit with its root tree only (an empty cache; tree:1, so no
    # directory's listing rides along), the roles/ tree, the role's trees below that,
    # then all its blobs
    posts = [s for s in server.log if s.method == "POST"]
    assert len(posts) == 5
    assert [s.bytes_sent > ROLE_FILE for s in posts] == [False] * 4 + [True]
    assert sum(s.bytes_sent for s in posts[:4]) < 4096  # no other role's files


def test_second_snapshot_with_no_change_moves_only_the_ref_listing(
        server, tmp_path, remote_factory) -> None:
    cache = tmp_path / "cache"
    first = remote_factory(server.url, cache=cache)
    snap = first.snapshot("main")
    paths = [e.path for e in snap.list("roles/r1")]
    snap.read_many(paths)
    first.close()
    server.reset_counters()
    second = remote_factory(server.url, cache=cache)  # a reboot: new process, same cache
    again = second.snapshot("main")
    data = again.read_many(paths)
    assert len(data) == len(paths)
    assert second.bytes_received <= 4096
    assert server.bytes_sent == second.bytes_received
    assert [s.method for s in server.log] == ["GET", "POST"]


def test_cache_reuse_fetches_only_what_changed(server, repo, tmp_path, remote_factory) -> None:
    cache = tmp_path / "cache"
    first = remote_factory(server.url, cache=cache)
    snap = first.snapshot("main")
    snap.read_many([e.path for e in snap.list("roles/r0")])
    first.close()
    # another role reads blobs it has not seen; r0's are not fetched again
    second = remote_factory(server.url, cache=cache)
    snap2 = second.snapshot("main")
    before = second.bytes_received
    snap2.read_many([e.path for e in snap2.list("roles/r0")])
    assert second.bytes_received == before
    snap2.read("roles/r4/files/a.bin")
    assert second.bytes_received - before >= ROLE_FILE // 2


def test_tags_are_peeled_and_full_refs_work(server, repo, remote_factory) -> None:
    remote = remote_factory(server.url)
    head = git("rev-parse", "main", cwd=repo).strip()
    assert remote.snapshot("refs/tags/role/r2/1.0").commit == head  # annotated
    assert remote.snapshot("refs/tags/role/r2/light").commit == head  # lightweight
    assert remote.snapshot("refs/heads/main").commit == head


def test_new_commit_is_seen_and_old_blobs_are_reused(tmp_path, git_http_server,
                                                     remote_factory) -> None:
    bare = make_bare_repo(tmp_path / "moving.git", role_files(roles=2, size=100_000))
    server = git_http_server(bare)
    cache = tmp_path / "cache"
    first = remote_factory(server.url, cache=cache)
    old = first.snapshot("main")
    old.read_many([e.path for e in old.list("roles/r1")])
    first.close()
    work = bare.with_name(bare.name + ".work")
    new_id = commit_files(work, {"roles/r1/files/new.txt": b"new\n"}, "add a file")
    push(work, bare, "main")
    second = remote_factory(server.url, cache=cache)
    snap = second.snapshot("main")
    assert snap.commit == new_id
    got = snap.read_many([e.path for e in snap.list("roles/r1")])
    assert got["roles/r1/files/new.txt"] == b"new\n"
    assert second.bytes_received < 8192  # the unchanged 100 KB were not fetched again


def test_missing_repository_fails_fast_with_a_hint(server, remote_factory) -> None:
    counters = Counters()
    remote = remote_factory(server.base_url + "/nothing-here.git", counters=counters)
    started = time.monotonic()
    with pytest.raises(FetchError) as info:
        remote.snapshot("main")
    assert time.monotonic() - started < 10
    assert "404" in info.value.why
    assert "repository URL" in info.value.hint
    assert counters.retries == 0


def test_missing_ref_fails_with_a_hint(server, remote_factory) -> None:
    remote = remote_factory(server.url)
    with pytest.raises(FetchError) as info:
        remote.snapshot("refs/tags/role/r9/9.9")
    assert "does not exist" in info.value.what
    assert "bootpull repo release" in info.value.hint


def test_a_non_bare_repository_is_served_too(tmp_path, git_http_server, remote_factory) -> None:
    work = tmp_path / "admin"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    commit_files(work, {"bootpull.toml": b"format = 1\n"})
    server = git_http_server(work)
    assert remote_factory(server.url).snapshot("main").read("bootpull.toml") == b"format = 1\n"


def test_redirects_are_followed_for_the_advertisement(server, repo, git_http_server,
                                                      remote_factory) -> None:
    moved = git_http_server(repo)
    moved.redirects["/old/place.git"] = f"{moved.base_url}/repo.git"
    remote = remote_factory(f"{moved.base_url}/old/place.git")
    snap = remote.snapshot("main")
    assert snap.read("bootpull.toml") == b"format = 1\n"
    assert remote.url == moved.url
    assert [s.status for s in moved.log][:2] == [301, 200]


def test_redirect_to_somewhere_else_is_refused(repo, git_http_server, remote_factory) -> None:
    moved = git_http_server(repo)
    moved.redirects["/old.git/info/refs"] = "http://127.0.0.1:1/login"  # + ?service=…
    with pytest.raises(FetchError, match="not a git repository"):
        remote_factory(f"{moved.base_url}/old.git").snapshot("main")


@pytest.mark.parametrize(("location", "words"), [
    ("http://127.0.0.1:99999/x.git", "Port out of range"),
    ("http://[::1/x.git", "Invalid IPv6 URL"),
])
def test_a_redirect_to_a_malformed_url_is_a_fetch_error(repo, git_http_server, remote_factory,
                                                       location, words) -> None:
    """A hostile or broken server's Location is refused with exit 11, never a traceback."""
    moved = git_http_server(repo)
    moved.redirects["/old.git"] = location
    with pytest.raises(FetchError, match="is not a usable repository URL") as info:
        remote_factory(f"{moved.base_url}/old.git").snapshot("main")
    assert words in info.value.why and info.value.exit_code == 11


def test_a_home_base_root_url_finds_its_repo_git(repo, git_http_server, remote_factory) -> None:
    """Discovery's well-known name gives http://bootpull.<domain>/; the home base serves
    the repository at /repo.git (docs/contract.md §4.1)."""
    server = git_http_server(repo)  # served as /repo.git
    remote = remote_factory(server.base_url + "/")
    assert remote.snapshot("main").read("bootpull.toml") == b"format = 1\n"
    assert remote.url == server.url


def test_the_url_in_effect_is_read_only_and_starts_as_given(server, remote_factory) -> None:
    remote = remote_factory(server.url + "/")
    assert remote.url == server.url  # before any request: as given, no trailing /
    with pytest.raises(AttributeError):
        remote.url = "http://127.0.0.1:1/elsewhere.git"  # type: ignore[misc]
    remote.snapshot("main")
    assert remote.url == server.url


def test_a_redirect_to_a_home_base_root_then_its_repo_git(repo, git_http_server,
                                                          remote_factory) -> None:
    """Redirected to a home base's root (a 404 for info/refs), the remote tries its
    /repo.git there: the URL in effect is the last one, and later requests go to it."""
    moved = git_http_server(repo)  # served as /repo.git
    moved.redirects["/old/place.git"] = moved.base_url
    remote = remote_factory(f"{moved.base_url}/old/place.git")
    snap = remote.snapshot("main")
    assert remote.url == moved.url == f"{moved.base_url}/repo.git"
    assert snap.read("bootpull.toml") == b"format = 1\n"
    assert remote.url == moved.url
    # the server logs a request once its answer is written, so the client's next request
    # may be logged before the redirect that led to it: the first three, in any order
    assert sorted((s.method, s.path.split("?")[0], s.status) for s in moved.log[:3]) == [
        ("GET", "/info/refs", 404), ("GET", "/old/place.git/info/refs", 301),
        ("GET", "/repo.git/info/refs", 200)]
    assert all(s.path.startswith("/repo.git/") for s in moved.log[3:])


def test_git_cli_clones_from_the_same_server(server, repo, tmp_path) -> None:
    """Sanity: the test server is a real smart-HTTP server for git itself, over v2."""
    out = tmp_path / "clone"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_TRACE_PACKET": str(tmp_path / "trace")}
    subprocess.run(["git", "-c", "protocol.version=2", "clone", "-q", "--depth", "1",
                    "--filter=blob:none", server.url, str(out)], env=env, check=True,
                   timeout=120, capture_output=True)
    assert (out / "roles/r2/files/run.sh").read_text() == "#!/bin/sh\necho hi\n"
    assert "version 2" in (tmp_path / "trace").read_text()


def _hostile_repo(path: Path, name: bytes) -> Path:
    """A bare repository whose roles/evil/ tree has an entry git would never write."""
    from dulwich.objects import Blob, Commit, Tree
    from dulwich.repo import Repo

    repo = Repo.init_bare(str(path), mkdir=True)
    blob = Blob.from_string(b"pwned\n")
    evil = Tree()
    evil.add(name, 0o100644, blob.id)
    roles = Tree()
    roles.add(b"evil", 0o040000, evil.id)
    root = Tree()
    root.add(b"roles", 0o040000, roles.id)
    commit = Commit()
    commit.tree = root.id
    commit.author = commit.committer = b"Mallory <m@example.invalid>"
    commit.author_time = commit.commit_time = 1767225600
    commit.author_timezone = commit.commit_timezone = 0
    commit.message = b"evil\n"
    for obj in (blob, evil, roles, root, commit):
        repo.object_store.add_object(obj)
    repo.refs[b"refs/heads/main"] = commit.id
    repo.close()
    return path


@pytest.mark.parametrize("name", [b"..", b"a/b", b"."])
def test_a_crafted_tree_entry_name_is_a_verify_error(name, tmp_path, git_http_server,
                                                    remote_factory) -> None:
    from bootpull.errors import VerifyError

    server = git_http_server(_hostile_repo(tmp_path / "evil.git", name))
    snap = remote_factory(server.url).snapshot("main")
    with pytest.raises(VerifyError, match="entry named"):
        snap.list("roles/evil")


def test_stray_temporary_packs_are_cleaned_at_open(server, tmp_path, remote_factory) -> None:
    cache = tmp_path / "cache"
    remote_factory(server.url, cache=cache).snapshot("main")
    stray = cache / "objects" / "pack" / "tmpdeadbeef.pack"
    stray.write_bytes(b"PACK half written")
    remote = remote_factory(server.url, cache=cache)
    assert remote.snapshot("main").read("bootpull.toml") == b"format = 1\n"
    assert not stray.exists()


def test_a_change_to_another_role_costs_only_the_trees_on_the_path(
        tmp_path, git_http_server, remote_factory) -> None:
    bare = make_bare_repo(tmp_path / "many.git", role_files(roles=5, size=20_000))
    server = git_http_server(bare)
    cache = tmp_path / "cache"
    first = remote_factory(server.url, cache=cache)
    old = first.snapshot("main")
    mine = old.read_many([e.path for e in old.list("roles/r3")])
    first.close()
    work = bare.with_name(bare.name + ".work")
    commit_files(work, {f"roles/r0/files/more{i}.bin": os.urandom(20_000) for i in range(5)})
    push(work, bare, "main")
    server.reset_counters()
    second = remote_factory(server.url, cache=cache)
    new = second.snapshot("main")
    assert new.commit != old.commit
    assert new.read_many([e.path for e in new.list("roles/r3")]) == mine
    # ls-refs, the new commit with its root, the new roles/ tree; r3's trees and blobs are cached
    assert len([s for s in server.log if s.method == "POST"]) == 3
    assert second.bytes_received < 3000


def test_nothing_is_ever_checked_out(server, tmp_path, remote_factory) -> None:
    cache = tmp_path / "cache"
    snap = remote_factory(server.url, cache=cache).snapshot("main")
    snap.read_many([e.path for e in snap.list("")])  # every file of the commit
    names = {p.name for p in cache.rglob("*")}
    assert not names & {"bootpull.toml", "roles", "hosts", "a.bin", "run.sh", "link"}
    assert {p.suffix for p in (cache / "objects" / "pack").iterdir()} <= {".pack", ".idx"}


@pytest.fixture(scope="module")
def cached_snapshot(server, tmp_path_factory):
    remote = GitRemote(server.url, tmp_path_factory.mktemp("hyp") / "cache", limits=FAST,
                       console=Console(CapturingWriter()), counters=Counters())
    snap = remote.snapshot("main")
    snap.list("")  # every tree cached: the examples below need no network
    yield snap
    remote.close()


@given(st.text(alphabet=st.sampled_from("/.ab\0r2files-_x\\ é"), max_size=40))
def test_any_path_string_reads_as_a_file_or_none(cached_snapshot, path: str) -> None:
    data = cached_snapshot.read(path)
    assert data is None or isinstance(data, bytes)
    entries = cached_snapshot.list(path)
    assert all(e.path.startswith(path.strip("/").split("/")[0]) for e in entries)


def test_a_full_cache_starts_afresh(server, tmp_path, remote_factory) -> None:
    cache = tmp_path / "cache"
    first = remote_factory(server.url, cache=cache)
    first.snapshot("main").read("roles/r1/files/a.bin")
    first.close()
    lines = CapturingWriter()
    small = FetchLimits(deadline=60, max_cache_bytes=50_000)
    second = remote_factory(server.url, cache=cache, limits=small, console=Console(lines))
    assert second.snapshot("main").read("roles/r1/files/a.bin") is not None
    assert second.bytes_received > ROLE_FILE // 2  # fetched once more
    assert "starting it afresh" in lines.text


def test_a_timestamp_re_sign_costs_a_reboot_under_4_kb(tmp_path, git_http_server,
                                                      remote_factory) -> None:
    """The home base re-signs freshness (a commit changing timestamp.json); a node that
    boots again reads everything it read before, one file at a time, as a verifier does."""
    files = role_files(roles=5, size=20_000)
    for name in ("root", "targets", "snapshot", "timestamp"):
        files[f".bootpull/metadata/{name}.json"] = os.urandom(1500 if name != "timestamp"
                                                              else 400).hex().encode()
    bare = make_bare_repo(tmp_path / "signed.git", files)
    server = git_http_server(bare)
    cache = tmp_path / "cache"

    def boot() -> GitRemote:
        remote = remote_factory(server.url, cache=cache)
        snap = remote.snapshot("main")
        for path in ("bootpull.toml", "hosts/52-54-00-12-34-56.toml",
                     *(f".bootpull/metadata/{n}.json" for n in ("root", "timestamp",
                                                                 "snapshot", "targets"))):
            assert snap.read(path) is not None
        snap.read_many([e.path for e in snap.list("roles/r2")])
        remote.close()
        return remote

    boot()
    work = bare.with_name(bare.name + ".work")
    commit_files(work, {".bootpull/metadata/timestamp.json": os.urandom(400).hex().encode()})
    push(work, bare, "main")
    assert boot().bytes_received <= 4096
