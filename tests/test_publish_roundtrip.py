"""Property: whatever tree of files a role has, publish → pull gives it back exactly."""

from __future__ import annotations

import argparse
import json
import shutil

import pytest
from bootpull.bundle import MODE_EXEC, MODE_FILE, MODE_SYMLINK
from bootpull_repo.context import RepoContext
from bootpull_repo.publish import publish
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from signed_repo import MAC_DB, SignedRepo, node_pull

pytestmark = pytest.mark.formats(1, 2)  # signed metadata format 1 and 2

# file names git and every filesystem here accept: no "/", no NUL, not "." or ".."
name = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="/\x00",
                                      exclude_categories=("Cs", "Cc")),
               min_size=1, max_size=12).filter(lambda n: n not in (".", "..", ".git")
                                                and not n.lower().startswith(".git"))
paths = st.lists(name, min_size=1, max_size=3).map("/".join)
entry = st.tuples(st.sampled_from([MODE_FILE, MODE_EXEC, MODE_SYMLINK]),
                  st.binary(max_size=300))
trees = st.dictionaries(paths, entry, min_size=1, max_size=6).filter(
    lambda t: not any(a != b and b.startswith(a + "/") for a in t for b in t))


@pytest.mark.slow
@settings(max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=trees)
def test_publish_then_pull_returns_every_file_with_its_mode(
        signed_repo_template: SignedRepo, tmp_path_factory: object,
        tree: dict[str, tuple[int, bytes]]) -> None:
    base = tmp_path_factory.mktemp("rt")  # type: ignore[attr-defined]
    repo = SignedRepo(base / "repo", base / "keys")
    shutil.copytree(signed_repo_template.root, repo.root, symlinks=True)
    shutil.copytree(signed_repo_template.keys, repo.keys)
    shutil.rmtree(repo.root / "roles/db/files")
    expected = {}
    for path, (mode, data) in tree.items():
        full = repo.root / "roles/db/files" / path
        full.parent.mkdir(parents=True, exist_ok=True)
        if mode == MODE_SYMLINK:
            target = data.decode("latin-1").replace("\x00", "") or "x"
            full.symlink_to(target)
            expected[path] = (mode, target.encode("utf-8", "surrogateescape"))
        else:
            full.write_bytes(data)
            full.chmod(0o755 if mode == MODE_EXEC else 0o644)
            expected[path] = (mode, data)
    repo.commit("random role")
    # The transport under test, not lint: publish(check=False) signs what lint would refuse
    # (a role without its command, links the installer refuses); 'repo publish' does not.
    publish(RepoContext.from_args(argparse.Namespace(repo_dir=str(repo.root),
                                                     keys=str(repo.keys))), check=False)
    bundle = node_pull(repo, MAC_DB, base / "state").bundle
    assert {f.path: (f.mode, f.data) for f in bundle.files} == expected
    targets = json.loads((repo.root / ".bootpull/metadata/targets.json").read_text())
    signed = {p[len("head/roles/db/files/"):] for p in targets["signed"]["targets"]
              if p.startswith("head/roles/db/files/")}
    assert signed == set(expected)
