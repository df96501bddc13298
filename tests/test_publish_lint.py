"""``repo publish`` refuses what ``repo lint`` refuses: nothing it would flag is ever signed."""

from __future__ import annotations

from pathlib import Path

import pytest
from bootpull.cli import main
from bootpull.mac import Mac
from signed_repo import MAC_WEB, SignedRepo, node_pull


def publish(repo: SignedRepo) -> int:
    return main(["repo", "-C", str(repo.root), "--keys", str(repo.keys), "publish"])


def signed_state(repo: SignedRepo) -> tuple[str, bytes]:
    return (repo.git("rev-parse", "HEAD"),
            (repo.root / ".bootpull/metadata/targets.json").read_bytes())


def test_a_missing_role_command_is_never_signed(signed_repo: SignedRepo,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    signed_repo.git("rm", "-q", "roles/web/files/serve.sh")
    signed_repo.git("update-index", "--chmod=-x", "roles/web/files/check.sh")
    signed_repo.git("commit", "-q", "-m", "serve.sh gone, check.sh not executable")
    before = signed_state(signed_repo)
    capsys.readouterr()
    assert publish(signed_repo) != 0
    err = capsys.readouterr().err
    assert "2 problems; nothing was signed" in err
    assert ("roles/web/role.toml:5: run.command runs './serve.sh', which is not in files/ — "
            "add files/serve.sh to the role") in err
    assert ("roles/web/role.toml:9: health.command runs './check.sh', which is not executable "
            "— chmod +x roles/web/files/check.sh") in err
    assert signed_state(signed_repo) == before
    assert signed_repo.git("status", "--porcelain", "--", ".bootpull") == ""


def test_files_the_installer_would_refuse_are_never_signed(
        signed_repo: SignedRepo, capsys: pytest.CaptureFixture[str]) -> None:
    signed_repo.write("roles/db/files/.bootpull/x", b"the installer's own directory\n")
    signed_repo.commit("a file under .bootpull")
    before = signed_state(signed_repo)
    capsys.readouterr()
    assert publish(signed_repo) != 0
    assert "roles/db/files: the node would refuse to install it" in capsys.readouterr().err
    assert signed_state(signed_repo) == before


def test_the_example_repository_still_publishes_and_pulls(example_repo: SignedRepo,
                                                          tmp_path: Path) -> None:
    page = example_repo.root / "roles/web/files/page.html"
    example_repo.write("roles/web/files/page.html", page.read_bytes() + b"<!-- edited -->\n")
    example_repo.commit("a change to publish")
    head = example_repo.git("rev-parse", "HEAD")
    assert publish(example_repo) == 0
    assert example_repo.git("rev-parse", "HEAD~1") == head
    assert node_pull(example_repo, Mac.parse("52-54-00-12-34-56"), tmp_path / "s") \
        .bundle.role.name == "web"


def test_the_signed_test_repository_publishes(signed_repo: SignedRepo, tmp_path: Path) -> None:
    assert publish(signed_repo) == 0
    assert node_pull(signed_repo, MAC_WEB, tmp_path / "s").bundle.role.name == "web"
