"""Fixture plugin: the example repository (repo-layout/example), signed with the real tools.

- ``example_template``: built once per session: the example copied, ``git init``-ed and
  committed (:func:`bootpull_repo.example.make_example_repo`), then ``bootpull repo
  init`` (keys outside the repository, root.json, a first publish).
- ``example_repo``: a private copy of it (and of its keys) for one test.

Both are :class:`signed_repo.SignedRepo` objects (``git``, ``write``, ``commit``,
``bootpull``, ``publish``, ``remote``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from signed_repo import SignedRepo


@pytest.fixture(scope="session")
def example_template(tmp_path_factory: pytest.TempPathFactory,
                     git_identity: None) -> SignedRepo:
    from bootpull_repo.example import make_example_repo
    from bootpull_repo.init import init

    base = tmp_path_factory.mktemp("example")
    repo = SignedRepo(base / "repo", base / "keys")
    make_example_repo(repo.root)
    init(repo.root, keys_override=str(repo.keys), name="example")
    return repo


@pytest.fixture
def example_repo(example_template: SignedRepo, tmp_path: Path,
                 git_identity: None) -> SignedRepo:
    copy = SignedRepo(tmp_path / "example", tmp_path / "example-keys")
    shutil.copytree(example_template.root, copy.root, symlinks=True)
    shutil.copytree(example_template.keys, copy.keys)
    return copy
