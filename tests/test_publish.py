"""The admin side of the signed repository: repo init / trust / assign / release / publish."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from bootpull.cli import main
from bootpull.mac import Mac
from bootpull_repo.context import RepoContext
from bootpull_repo.gitcli import Git
from signed_repo import MAC_WEB, SignedRepo, node_pull, targets_of

pytestmark = pytest.mark.formats(1, 2)  # signed metadata format 1 and 2

ROOT = Path(__file__).resolve().parent.parent


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def repo_cli(root: Path, keys: Path, *args: str) -> int:
    return main(["repo", "-C", str(root), "--keys", str(keys), *args])


def listed_versions(repo: SignedRepo) -> dict[str, int]:
    """"<role>.json" → version, as the committed snapshot.json lists them."""
    doc = json.loads((repo.root / ".bootpull/metadata/snapshot.json").read_text())
    return {name: int(info["version"]) for name, info in doc["signed"]["meta"].items()}


def test_repository_made_with_plain_git_then_published(tmp_path: Path, git_identity: None
                                                       ) -> None:
    """Admins use ordinary git: only `repo init` and `repo publish` come from bootpull."""
    work = tmp_path / "site"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    (work / "bootpull.toml").write_text('format = 1\nname = "site"\n')
    (work / "hosts").mkdir()
    (work / "hosts/52-54-00-12-34-56.toml").write_text('role = "app"\n[vars]\nCOLOR = "red"\n')
    files = work / "roles/app/files"
    files.mkdir(parents=True)
    (work / "roles/app/role.toml").write_text(
        'format = 1\ndescription = "app"\n[run]\ncommand = ["./app"]\n')
    (files / "app").write_text("#!/bin/sh\nexec sleep 1000\n")
    (files / "app").chmod(0o755)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "by hand")
    keys = tmp_path / "keys"
    assert repo_cli(work, keys, "init", str(work)) == 0
    assert (work / ".bootpull/metadata/timestamp.json").is_file()
    bundle = node_pull(SignedRepo(work, keys), MAC_WEB, tmp_path / "state").bundle
    assert bundle.role.name == "app" and bundle.assignment.vars == {"COLOR": "red"}
    # more plain git: a change, committed by hand, is refused until published
    (files / "app").write_text("#!/bin/sh\nexec sleep 2000\n")
    git(work, "commit", "-q", "-am", "by hand again")
    with pytest.raises(Exception, match="does not match its signed hash"):
        node_pull(SignedRepo(work, keys), MAC_WEB, tmp_path / "state")
    assert repo_cli(work, keys, "publish") == 0
    assert git(work, "status", "--porcelain") == ""
    node_pull(SignedRepo(work, keys), MAC_WEB, tmp_path / "state")


def test_init_then_example_repository_publishes(tmp_path: Path, git_identity: None) -> None:
    copy = tmp_path / "example"
    shutil.copytree(ROOT / "repo-layout/example", copy)
    git(copy, "init", "-q", "-b", "main")
    git(copy, "add", "-A")
    git(copy, "commit", "-q", "-m", "example")
    assert repo_cli(copy, tmp_path / "keys", "init", str(copy)) == 0
    repo = SignedRepo(copy, tmp_path / "keys")
    assert node_pull(repo, Mac.parse("52-54-00-12-34-56"), tmp_path / "s").bundle.role.name \
        == "web"
    assert node_pull(repo, Mac.parse("52-54-00-99-99-99"), tmp_path / "s2").bundle.assignment \
        .source == "hosts/default.toml"


def test_init_creates_layout_keys_and_trust_file(tmp_path: Path, git_identity: None,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path / "keys"
    assert main(["repo", "--keys", str(keys), "init", str(tmp_path / "new")]) == 0
    out = capsys.readouterr().out
    assert str(keys / "trust.json") in out
    root = tmp_path / "new"
    assert (root / "bootpull.toml").read_text().startswith("# The deploy repository")
    assert (root / "hosts").is_dir() and (root / "roles").is_dir()
    for role in ("root", "targets", "snapshot", "timestamp"):
        assert (keys / f"{role}.pem").stat().st_mode & 0o777 == 0o600
    assert not list(root.rglob("*.pem")), "a private key inside the repository"
    assert (keys / "trust.json").read_bytes() == (root / ".bootpull/metadata/1.root.json") \
        .read_bytes()
    assert git(root, "status", "--porcelain") == ""
    assert "publish" in git(root, "log", "-1", "--format=%s")
    # repo trust prints the same anchors; --out writes them
    assert main(["repo", "-C", str(root), "trust"]) == 0
    assert capsys.readouterr().out.encode() == (keys / "trust.json").read_bytes()
    assert main(["repo", "trust", "-C", str(root), "--out", str(tmp_path / "t.json")]) == 0
    assert (tmp_path / "t.json").read_bytes() == (keys / "trust.json").read_bytes()
    # never twice
    assert main(["repo", "--keys", str(tmp_path / "k2"), "init", str(root)]) == 2
    # never over existing keys
    assert main(["repo", "--keys", str(keys), "init", str(tmp_path / "other")]) == 1


def test_init_signs_format_2_unless_told_or_the_file_says_otherwise(
        tmp_path: Path, git_identity: None, capsys: pytest.CaptureFixture[str]) -> None:
    """A new bootpull.toml gets format 2 (docs/repo-format.md); `--format 1` keeps the
    format every node image reads; an existing file keeps its own unless --format says."""
    def made(name: str, *flags: str, settings: str | None = None) -> tuple[Path, str]:
        root = tmp_path / name
        if settings is not None:
            root.mkdir()
            (root / "bootpull.toml").write_text(settings)
        assert main(["repo", "--keys", str(tmp_path / f"{name}-keys"), "init", str(root),
                     *flags]) == 0
        assert git(root, "status", "--porcelain") == ""
        return root, capsys.readouterr().out

    fresh, out = made("fresh")
    assert "signed metadata format 2" in out
    assert 'format = 2' in (fresh / "bootpull.toml").read_text()
    assert list((fresh / ".bootpull/delegated").glob("hosts-*.json"))
    assert "format = 2" in git(fresh, "show", "HEAD:bootpull.toml")
    old, out = made("old", "--format", "1")
    assert "signed metadata format 1" in out and not (old / ".bootpull/delegated").exists()
    kept, out = made("kept", settings='format = 1\nname = "kept"\n')
    assert "signed metadata format 1" in out and not (kept / ".bootpull/delegated").exists()
    moved, out = made("moved", "--format", "2", settings='format = 1\nname = "moved"\n')
    assert "signed metadata format 2" in out
    assert git(moved, "show", "HEAD:bootpull.toml") == 'format = 2\nname = "moved"'
    assert (moved / ".bootpull/delegated").is_dir()
    # an uncommitted edit of an existing bootpull.toml is never committed by --format
    dirty = tmp_path / "dirty"
    dirty.mkdir()
    git(dirty, "init", "-q", "-b", "main")
    (dirty / "bootpull.toml").write_text('format = 1\nname = "dirty"\n')
    git(dirty, "add", "-A")
    git(dirty, "commit", "-q", "-m", "settings")
    (dirty / "bootpull.toml").write_text('format = 1\nname = "dirty"\nbranch = "x"\n')
    assert main(["repo", "--keys", str(tmp_path / "k4"), "init", str(dirty),
                 "--format", "2"]) != 0
    assert "uncommitted changes" in capsys.readouterr().err
    assert (dirty / "bootpull.toml").read_text().startswith("format = 1")
    assert not (dirty / ".bootpull").exists() and not (tmp_path / "k4").exists()
    with pytest.raises(SystemExit) as usage:
        main(["repo", "--keys", str(tmp_path / "k3"), "init", str(tmp_path / "bad"),
              "--format", "3"])
    assert usage.value.code == 2 and "invalid choice: 3" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_key_directory_resolution(tmp_path: Path, git_identity: None,
                                  monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("BOOTPULL_KEYS", raising=False)
    assert main(["repo", "init", str(tmp_path / "lab"), "--name", "lab1"]) == 0
    assert (tmp_path / "config/bootpull/keys/lab1/targets.pem").is_file()
    # later commands find it by the name in bootpull.toml
    assert main(["repo", "-C", str(tmp_path / "lab"), "publish"]) == 0
    # $BOOTPULL_KEYS wins over the default
    monkeypatch.setenv("BOOTPULL_KEYS", str(tmp_path / "nowhere"))
    assert main(["repo", "-C", str(tmp_path / "lab"), "publish"]) == 1
    assert "the targets key is not in" in capsys.readouterr().err
    # a key directory inside the repository is refused
    assert main(["repo", "--keys", str(tmp_path / "in/keys"), "init", str(tmp_path / "in")]) == 1
    assert "inside the repository" in capsys.readouterr().err


def test_assign_accepts_any_mac_notation_and_keeps_other_keys(signed_repo: SignedRepo) -> None:
    for notation in ("52:54:00:AB:CD:EF", "5254.00ab.cdef", "525400ABCDEF", "52-54-00-ab-cd-ef",
                     # pasted from the console, as 'repo show' and 'history' take it
                     "node 52-54-00-ab-cd-ef is not assigned", "'52:54:00:ab:cd:ef'"):
        signed_repo.bootpull("assign", notation, "web")
    hosts = sorted(p.name for p in (signed_repo.root / "hosts").glob("52-54-00-ab*"))
    assert hosts == ["52-54-00-ab-cd-ef.toml"]
    host = signed_repo.root / f"hosts/{MAC_WEB.canonical}.toml"
    signed_repo.bootpull("assign", MAC_WEB.colons, "db")
    text = host.read_text()
    assert 'role = "db"' in text and 'hostname = "web-1"' in text and 'PORT = "8080"' in text
    assert signed_repo.git("log", "-1", "--format=%s") == "assign 52-54-00-12-34-56 to db (head)"
    assert signed_repo.git("status", "--porcelain") == ""


def test_assign_refuses_unknown_role_bad_mac_and_unreleased_version(
        signed_repo: SignedRepo, capsys: pytest.CaptureFixture[str]) -> None:
    head = signed_repo.git("rev-parse", "HEAD")
    assert repo_cli(signed_repo.root, signed_repo.keys, "assign", MAC_WEB.colons, "nope") == 2
    assert "there is no role 'nope'" in capsys.readouterr().err
    assert repo_cli(signed_repo.root, signed_repo.keys, "assign", "52:54:00", "web") == 2
    assert repo_cli(signed_repo.root, signed_repo.keys, "assign", MAC_WEB.colons, "web",
                    "--version", "9.9") == 2
    assert "repo release web 9.9" in capsys.readouterr().err
    assert signed_repo.git("rev-parse", "HEAD") == head


def test_release_tags_and_publish_signs_every_release(signed_repo: SignedRepo,
                                                      metadata_format: int) -> None:
    signed_repo.bootpull("release", "web", "1.0")
    signed_repo.write("roles/web/files/serve.sh", b"#!/bin/sh\necho 2\n", mode=0o755)
    signed_repo.commit("web 2")
    signed_repo.bootpull("release", "web", "2.0")
    signed_repo.bootpull("release", "db", "1.0")
    assert repo_cli(signed_repo.root, signed_repo.keys, "release", "web", "2.0") == 2
    signed_repo.publish()
    targets = targets_of(signed_repo.root)
    for prefix in ("release/web/1.0/", "release/web/2.0/", "release/db/1.0/", "head/roles/web/"):
        assert f"{prefix}role.toml" in targets
    assert targets["release/web/1.0/files/serve.sh"]["hashes"] != \
        targets["release/web/2.0/files/serve.sh"]["hashes"]
    for path, mode in (("serve.sh", 0o100755), ("www/home.html", 0o120000)):
        custom = targets[f"head/roles/web/files/{path}"]["custom"]
        assert isinstance(custom, dict) and custom["git_mode"] == mode
        assert set(custom) == ({"git_mode"} if metadata_format == 1 else {"git_mode", "git_oid"})
    assert "head/hosts/52-54-00-12-34-56.toml" in targets and "head/bootpull.toml" in targets
    assert not [p for p in targets if p.startswith("head/.bootpull")]


def test_publish_refuses_a_repository_with_problems(signed_repo: SignedRepo,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    signed_repo.write("roles/web/role.toml", b'format = 1\ndescription = "x"\n[run]\ncomand=[]\n')
    signed_repo.write("hosts/52:54:00:00:00:01.toml", b'role = "ghost"\n')
    signed_repo.commit("broken")
    head = signed_repo.git("rev-parse", "HEAD")
    assert repo_cli(signed_repo.root, signed_repo.keys, "publish") == 1
    err = capsys.readouterr().err
    assert "roles/web/role.toml:4: unknown key 'comand'" in err
    assert "hosts/52:54:00:00:00:01.toml: host file name" in err
    assert signed_repo.git("rev-parse", "HEAD") == head


def test_publish_signs_the_commit_not_the_work_tree(
        signed_repo: SignedRepo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    signed_repo.write("roles/web/files/serve.sh", b"uncommitted\n", mode=0o755)
    signed_repo.publish()
    assert signed_repo.git("status", "--porcelain") == "M roles/web/files/serve.sh"
    assert "not published: roles/web/files/serve.sh" in capsys.readouterr().err
    files = {f.path: f.data for f in node_pull(signed_repo, MAC_WEB, tmp_path / "s")
             .bundle.files}
    assert files["serve.sh"] == b"#!/bin/sh\necho serving\n"


def test_freshness_needs_only_snapshot_and_timestamp_keys(signed_repo: SignedRepo,
                                                          tmp_path: Path) -> None:
    base_keys = tmp_path / "homebase-keys"
    base_keys.mkdir()
    for role in ("snapshot", "timestamp"):
        shutil.copy(signed_repo.keys / f"{role}.pem", base_keys / f"{role}.pem")
    before = json.loads((signed_repo.root / ".bootpull/metadata/targets.json").read_text())
    assert repo_cli(signed_repo.root, base_keys, "publish", "--freshness") == 0
    after = json.loads((signed_repo.root / ".bootpull/metadata/targets.json").read_text())
    assert before == after
    assert "refresh freshness" in signed_repo.git("log", "-1", "--format=%s")
    # the full publish needs the targets key
    assert repo_cli(signed_repo.root, base_keys, "publish") == 1
    node_pull(signed_repo, MAC_WEB, tmp_path / "s")


def test_global_options_may_follow_the_subcommand(signed_repo: SignedRepo) -> None:
    assert main(["repo", "publish", "-C", str(signed_repo.root), "--keys",
                 str(signed_repo.keys)]) == 0


def test_outside_a_repository_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    assert main(["repo", "-C", str(tmp_path), "publish"]) == 2
    assert "not inside a git repository" in capsys.readouterr().err


def test_publish_on_another_branch_says_nodes_follow_the_deploy_branch(
        signed_repo: SignedRepo, capsys: pytest.CaptureFixture[str]) -> None:
    signed_repo.git("checkout", "-q", "-b", "feature")
    signed_repo.publish()
    assert "nodes follow main" in capsys.readouterr().err
    signed_repo.git("checkout", "-q", "main")
    signed_repo.publish()
    assert "nodes follow" not in capsys.readouterr().err


def test_init_on_a_plain_directory_commits_its_files(tmp_path: Path, git_identity: None) -> None:
    copy = tmp_path / "example"
    shutil.copytree(ROOT / "repo-layout/example", copy)
    assert repo_cli(copy, tmp_path / "keys", "init", str(copy)) == 0
    assert git(copy, "status", "--porcelain") == ""
    repo = SignedRepo(copy, tmp_path / "keys")
    assert node_pull(repo, Mac.parse("52-54-00-12-34-57"), tmp_path / "s").bundle.role.name \
        == "sensor"


# -- a publish with nothing to do --------------------------------------------------

METADATA = ("root.json", "targets.json", "snapshot.json", "timestamp.json")


def metadata_files(repo: SignedRepo) -> dict[str, bytes]:
    return {name: (repo.root / ".bootpull/metadata" / name).read_bytes() for name in METADATA}


def signed_version(repo: SignedRepo, name: str) -> int:
    doc = json.loads((repo.root / f".bootpull/metadata/{name}.json").read_text())
    return int(doc["signed"]["version"])


def repo_context(repo: SignedRepo) -> RepoContext:
    return RepoContext(repo.root, Git(repo.root), None, str(repo.keys))


def test_a_second_publish_with_no_change_commits_nothing(
        signed_repo: SignedRepo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    head = signed_repo.git("rev-parse", "HEAD")
    count = signed_repo.git("rev-list", "--count", "--all")
    before = metadata_files(signed_repo)
    capsys.readouterr()
    assert repo_cli(signed_repo.root, signed_repo.keys, "publish") == 0
    assert capsys.readouterr().out == (
        f"publish: nothing to publish: the signed metadata already covers HEAD ({head[:12]})\n")
    assert repo_cli(signed_repo.root, signed_repo.keys, "publish", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["commit"] == head and doc["committed"] is False
    assert doc["targets"] == signed_version(signed_repo, "targets")
    assert signed_repo.git("rev-parse", "HEAD") == head
    assert signed_repo.git("rev-list", "--count", "--all") == count
    assert metadata_files(signed_repo) == before
    assert signed_repo.git("status", "--porcelain") == ""
    node_pull(signed_repo, MAC_WEB, tmp_path / "s")  # still what nodes accept


def test_a_one_file_change_is_published(signed_repo: SignedRepo, tmp_path: Path,
                                        metadata_format: int) -> None:
    before = listed_versions(signed_repo)
    signed_repo.write("roles/web/files/www/index.html", b"<h1>changed</h1>\n")
    change = signed_repo.commit("web: a new page")
    count = int(signed_repo.git("rev-list", "--count", "HEAD"))
    signed_repo.publish()
    assert int(signed_repo.git("rev-list", "--count", "HEAD")) == count + 1
    assert signed_repo.git("rev-parse", "HEAD~1") == change
    after = listed_versions(signed_repo)
    # format 1 signs targets.json again; format 2 only the web role's delegation
    signer = "targets.json" if metadata_format == 1 else "role-web.json"
    assert {n for n in after if after[n] != before.get(n)} == {signer}
    assert after[signer] == before[signer] + 1
    assert signed_repo.git("log", "-1", "--format=%s").startswith(
        f"publish: targets v{after['targets.json']}")
    files = {f.path: f.data for f in node_pull(signed_repo, MAC_WEB, tmp_path / "s")
             .bundle.files}
    assert files["www/index.html"] == b"<h1>changed</h1>\n"


def test_a_new_release_tag_is_published(signed_repo: SignedRepo) -> None:
    head = signed_repo.git("rev-parse", "HEAD")
    signed_repo.bootpull("release", "web", "1.0")  # a tag only: HEAD is the same commit
    assert signed_repo.publish() != head
    assert "release/web/1.0/role.toml" in targets_of(signed_repo.root)


def test_publish_re_signs_what_is_close_to_expiry(signed_repo: SignedRepo,
                                                 tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from bootpull_repo.publish import publish

    ctx = repo_context(signed_repo)
    head = signed_repo.git("rev-parse", "HEAD")
    timestamp = signed_version(signed_repo, "timestamp")
    soon = datetime.now(UTC) + timedelta(days=10)  # timestamp: 20 of its 30 days left
    done = publish(ctx, now=soon)
    assert not done.committed and done.commit == head
    later = datetime.now(UTC) + timedelta(days=20)  # 10 of 30 left: less than half
    done = publish(ctx, now=later)
    assert done.committed and done.commit != head
    assert signed_repo.git("rev-parse", "HEAD~1") == head
    assert done.timestamp_version == signed_version(signed_repo, "timestamp") == timestamp + 1
    expires = json.loads((signed_repo.root / ".bootpull/metadata/timestamp.json")
                         .read_text())["signed"]["expires"]
    assert expires.startswith((later + timedelta(days=30)).date().isoformat())
    node_pull(signed_repo, MAC_WEB, tmp_path / "s", now=later + timedelta(days=15))


def test_publish_re_signs_for_a_different_lifetime(signed_repo: SignedRepo) -> None:
    head = signed_repo.git("rev-parse", "HEAD")
    assert signed_repo.publish("--timestamp-days", "500") != head  # longer than it has
    head = signed_repo.git("rev-parse", "HEAD")
    assert signed_repo.publish("--timestamp-days", "500") == head
    assert signed_repo.publish("--timestamp-days", "7") != head  # shorter than it has


def test_publish_re_signs_below_a_higher_version_on_another_branch(
        signed_repo: SignedRepo, metadata_format: int) -> None:
    signed_repo.git("checkout", "-q", "-b", "other")
    signed_repo.write("roles/db/files/schema.sql", b"create table o (x int);\n")
    signed_repo.commit("other: db change")
    signed_repo.publish()
    other = signed_version(signed_repo, "targets")
    on_other = listed_versions(signed_repo)
    signed_repo.git("checkout", "-q", "main")
    head = signed_repo.git("rev-parse", "HEAD")
    assert listed_versions(signed_repo) != on_other
    assert signed_repo.publish() != head  # versions only go up across branches
    on_main = listed_versions(signed_repo)
    assert all(on_main[name] >= version for name, version in on_other.items()), on_main
    # what 'other' signed anew (format 1: targets.json; format 2: role-db.json) goes above
    signer = "targets.json" if metadata_format == 1 else "role-db.json"
    assert on_main[signer] == on_other[signer] + 1
    assert signed_version(signed_repo, "targets") >= other


def test_freshness_always_re_signs(signed_repo: SignedRepo) -> None:
    head = signed_repo.git("rev-parse", "HEAD")
    assert signed_repo.publish("--freshness") != head
    assert "refresh freshness" in signed_repo.git("log", "-1", "--format=%s")


def test_after_a_clean_publish_only_changed_host_files_are_read_again(
        signed_repo: SignedRepo, monkeypatch: pytest.MonkeyPatch) -> None:
    """Publish remembers the last tree that passed lint; a change to host files alone
    lints those files (and everything else but the other host files) again."""
    from bootpull import layout
    from bootpull_repo.publish import PublishError, publish

    repo = signed_repo
    repo.write("hosts/02-00-00-00-00-01.toml", b'role = "web"\n')
    repo.commit("one more host")
    repo.publish()  # a full lint: it passes and is remembered
    parsed: list[str] = []
    real = layout.parse_host

    def counting(data: bytes, path: str) -> object:
        parsed.append(path)
        return real(data, path)

    monkeypatch.setattr(layout, "parse_host", counting)
    repo.write("hosts/02-00-00-00-00-02.toml", b'role = "web"\n')
    repo.commit("another host")
    repo.publish()
    assert set(parsed) == {"hosts/02-00-00-00-00-02.toml"}, parsed
    # a changed host file with a problem is still refused
    repo.write("hosts/02-00-00-00-00-02.toml", b'role = "nope"\n')
    repo.commit("a role that is not there")
    with pytest.raises(PublishError) as info:
        publish(repo_context(repo))
    assert "hosts/02-00-00-00-00-02.toml:1: role 'nope' does not exist" in str(info.value.why)
    # removing a role breaks host files that did not change: everything is linted again
    repo.git("checkout", "-q", "HEAD~1", "--", "hosts")
    repo.git("rm", "-rq", "roles/db")
    repo.commit("no more db")
    parsed.clear()
    with pytest.raises(PublishError) as info:
        publish(repo_context(repo))
    assert f"hosts/{Mac.parse('52:54:00:12:34:57').canonical}.toml:2: role 'db' does not " \
        "exist" in str(info.value.why)
    assert len(set(parsed)) >= 4, "a change outside hosts/ lints every host file"
