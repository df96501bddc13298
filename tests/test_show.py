"""``bootpull repo show MAC``: the node's selection and verification, run offline.

What show prints is checked against plain git (ls-tree, cat-file) and against the
node's own pull() on the same repository.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from bootpull.cli import main
from bootpull.mac import Mac
from signed_repo import SignedRepo, node_pull

DEMO = Mac.parse("52-54-00-12-34-56")
SENSOR = Mac.parse("52-54-00-12-34-57")
UNKNOWN = Mac.parse("02:00:00:00:be:ef")


def run(repo: SignedRepo, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["repo", "-C", str(repo.root), "--keys", str(repo.keys), *args])
    return code, out.getvalue(), err.getvalue()


def show_json(repo: SignedRepo, mac: str, *extra: str) -> tuple[int, dict[str, Any]]:
    code, out, err = run(repo, "show", mac, "--json", *extra)
    assert out, err
    return code, json.loads(out)


def files_by_git(repo: SignedRepo, ref: str, role: str) -> list[dict[str, Any]]:
    """The role's files at ``ref``, read with plain git."""
    listing = repo.git("ls-tree", "-r", ref, "--", f"roles/{role}/files/")
    out = []
    for line in listing.splitlines():
        meta, path = line.split("\t", 1)
        mode, _kind, oid = meta.split()
        data = subprocess.run(["git", "-C", str(repo.root), "cat-file", "blob", oid],
                              capture_output=True, check=True).stdout
        out.append({"path": path[len(f"roles/{role}/files/"):], "mode": mode,
                    "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    return out


@pytest.mark.parametrize("notation", [
    "52:54:00:12:34:56", "52-54-00-12-34-56", "5254.0012.3456", "525400123456",
    "52:54:00:12:34:56".upper(), "node 52-54-00-12-34-56 is not assigned",
    "'52:54:00:12:34:56'",
])
def test_show_accepts_any_mac_notation(example_repo: SignedRepo, notation: str) -> None:
    code, view = show_json(example_repo, notation, "--no-verify")
    assert code == 0
    assert view["node"] == DEMO.canonical


def test_show_the_demo_node(example_repo: SignedRepo, tmp_path: Path) -> None:
    code, view = show_json(example_repo, DEMO.colons)
    assert code == 0
    head = example_repo.git("rev-parse", "main")
    assert view["source"] == "hosts/52-54-00-12-34-56.toml"
    assert (view["role"], view["pinned"], view["branch"]) == ("web", False, "main")
    assert view["version"] == f"head-{head[:12]}"
    assert view["commit"] == view["head"] == head
    assert view["hostname"] == "web-1"
    assert view["vars"] == {"PORT": "8080"}
    assert view["command"] == ["./web.sh"]
    assert view["files"] == files_by_git(example_repo, "main", "web")
    assert view["accepted"] is True
    # The node's own pull over the same repository gets exactly these files.
    result = node_pull(example_repo, DEMO, tmp_path / "state")
    pulled = sorted((f.path, hashlib.sha256(f.data).hexdigest()) for f in result.bundle.files)
    assert pulled == sorted((f["path"], f["sha256"]) for f in view["files"])
    assert result.bundle.version == view["version"]
    assert result.bundle.commit == view["commit"]


def test_an_unknown_node_gets_the_default(example_repo: SignedRepo) -> None:
    code, view = show_json(example_repo, UNKNOWN.colons)
    assert code == 0
    assert (view["source"], view["role"], view["hostname"]) == (
        "hosts/default.toml", "sensor", None)
    assert view["vars"] == {"INTERVAL": "30"}
    _, text, _ = run(example_repo, "show", UNKNOWN.colons)
    assert "from DHCP option 12, else node-02-00-00-00-be-ef" in text


def test_without_a_default_an_unknown_node_is_not_assigned(example_repo: SignedRepo) -> None:
    example_repo.git("rm", "-q", "hosts/default.toml")
    example_repo.commit("no default")
    code, out, err = run(example_repo, "show", UNKNOWN.colons)
    assert code != 0 and out == ""
    assert "node 02-00-00-00-be-ef is not assigned" in err
    assert "bootpull repo assign 02:00:00:00:be:ef ROLE" in err


def test_an_unpublished_change_is_shown_and_flagged(example_repo: SignedRepo) -> None:
    example_repo.write("roles/web/files/page.html", b"<p>changed</p>\n")
    example_repo.commit("web: new page")
    code, view = show_json(example_repo, DEMO.colons)
    assert code == 1
    assert view["accepted"] is False
    assert "publish" in view["verdict"]
    page = next(f for f in view["files"] if f["path"] == "page.html")
    assert page["sha256"] == hashlib.sha256(b"<p>changed</p>\n").hexdigest()
    example_repo.publish()
    code, view = show_json(example_repo, DEMO.colons)
    assert (code, view["accepted"]) == (0, True)


def test_a_pinned_node_gets_the_tagged_commit(example_repo: SignedRepo) -> None:
    example_repo.bootpull("release", "web", "1.0")
    tagged = example_repo.git("rev-parse", "role/web/1.0^{commit}")
    example_repo.write("roles/web/files/page.html", b"<p>v2</p>\n")
    example_repo.commit("web: v2 page")
    example_repo.bootpull("assign", DEMO.colons, "web", "--version", "1.0")
    example_repo.publish()
    code, view = show_json(example_repo, DEMO.canonical)
    assert code == 0, view
    assert (view["version"], view["pinned"], view["ref"]) == ("1.0", True,
                                                               "refs/tags/role/web/1.0")
    assert view["commit"] == tagged
    assert view["files"] == files_by_git(example_repo, "role/web/1.0", "web")
    assert view["accepted"] is True
    # The host file kept its hostname and vars.
    assert view["hostname"] == "web-1" and view["vars"] == {"PORT": "8080"}


def test_text_output_names_role_version_commit_and_every_file(example_repo: SignedRepo
                                                              ) -> None:
    code, text, _ = run(example_repo, "show", SENSOR.colons)
    assert code == 0
    head = example_repo.git("rev-parse", "main")
    assert text.startswith("node 52-54-00-12-34-57 (52:54:00:12:34:57)\n")
    assert f"  commit        {head}\n" in text
    assert "  role          sensor: " in text
    for f in files_by_git(example_repo, "main", "sensor"):
        assert f"{f['mode']} {f['size']:>9} {f['sha256']} {f['path']}\n" in text
    assert "  published     yes: " in text


def test_foreign_trust_anchors_are_refused(example_repo: SignedRepo,
                                          signed_repo: SignedRepo) -> None:
    other = example_repo.root.parent / "other-trust.json"
    other.write_bytes(signed_repo.trust)
    code, view = show_json(example_repo, DEMO.colons, "--trust", str(other))
    assert code == 1 and view["accepted"] is False
