"""Fixture plugin: ONE boot image per session, a signed repository it trusts, home bases.

- ``lab_template``: the example repository, signed with its own keys (session).
- ``lab_image``: the boot image built once per session with that repository's trust
  anchors and the test site's CA (downloads cached in ./cache, so only the first run on
  a machine downloads).
- ``lab_repo``: a private copy of the repository and its keys for one test (same keys,
  so the session image trusts it).
- ``lab_homebase``: ``bootpull serve`` for ``lab_repo`` on 127.0.0.1.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bootpull.console import Console
from bootpull_lab.deploy import LabRepo, make_repo
from bootpull_lab.homebase import HomeBase
from nginxserver import SitePki


@pytest.fixture(scope="session")
def lab_template(tmp_path_factory: pytest.TempPathFactory) -> LabRepo:
    return make_repo(tmp_path_factory.mktemp("lab-template"), "repo")


@pytest.fixture(scope="session")
def node_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A snapshot of bootstrap/bootpull: every build in the session packs the same code,
    even while someone edits the checkout."""
    import bootpull

    dest = tmp_path_factory.mktemp("node-source") / "bootpull"
    shutil.copytree(Path(bootpull.__file__).parent, dest,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


@pytest.fixture(scope="session")
def lab_image_dir(tmp_path_factory: pytest.TempPathFactory, lab_template: LabRepo,
                  node_source: Path, site_pki: SitePki) -> Path:
    """The session's one image: the lab repository's anchors, and the test site's CA
    (``--ca``), so a node can boot from the https server of tests/nginxserver.py."""
    from bootpull_image.build import build_image
    from bootpull_image.settings import BuildSettings

    out = tmp_path_factory.mktemp("lab-image")
    build_image(BuildSettings(out=out, trust=lab_template.trust, source_date_epoch=1700000000,
                              node_source=node_source, ca=(site_pki.ca_file,)), Console())
    return out


@pytest.fixture(scope="session")
def lab_manifest(lab_image_dir: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((lab_image_dir / "manifest.json").read_text())
    return manifest


@pytest.fixture
def lab_repo(lab_template: LabRepo, tmp_path: Path) -> LabRepo:
    base = tmp_path / "site"
    base.mkdir()
    copy = LabRepo(base / "repo", base / "repo-keys")
    shutil.copytree(lab_template.root, copy.root, symlinks=True)
    shutil.copytree(lab_template.keys, copy.keys)
    shutil.copyfile(lab_template.trust, copy.trust)
    return copy


@pytest.fixture
def lab_homebase(lab_repo: LabRepo, tmp_path: Path) -> Iterator[HomeBase]:
    with HomeBase(lab_repo.root, db=tmp_path / "events.db",
                  log=tmp_path / "homebase.log") as hb:
        yield hb
