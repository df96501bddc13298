"""The image's build time: ``/etc/bootpull/build-time`` (RFC 3339 UTC) is
``SOURCE_DATE_EPOCH``, which defaults to the checkout's HEAD commit time (or the node
sources' newest mtime), and is in the manifest. Runs the builder's ``configure`` and
``write_manifest`` steps on a small staging tree: no full image build."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from bootpull.trust import image_build_time
from bootpull_image.build import build_time, configure, write_manifest
from bootpull_image.settings import BuildSettings, Context, default_epoch
from hypothesis import given
from hypothesis import strategies as st


def test_configure_writes_the_build_time_and_the_manifest_lists_it(tmp_path: Path) -> None:
    out, root = tmp_path / "out", tmp_path / "root"
    out.mkdir()
    root.mkdir()
    ctx = Context(settings=BuildSettings(out=out, source_date_epoch=1700000000,
                                         cache=tmp_path / "cache"),
                  work=tmp_path, root=root, kernel_version="6.1.0-test")
    configure(ctx)
    text = (root / "etc/bootpull/build-time").read_text()
    assert text == "2023-11-14T22:13:20Z\n"
    # what the node reads back (bootpull.trust.image_build_time) is the same instant
    assert image_build_time(root / "etc/bootpull/build-time") == \
        datetime.fromtimestamp(1700000000, UTC)
    write_manifest(ctx)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["build_time"] == {"path": "/etc/bootpull/build-time",
                                      "time": "2023-11-14T22:13:20Z"}
    entry = manifest["files"]["etc/bootpull/build-time"]
    assert entry["size"] == len(text)


@given(st.integers(0, 2**33))
def test_build_time_round_trips_through_the_nodes_reader(epoch: int) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "build-time"
        path.write_text(build_time(epoch) + "\n")
        assert image_build_time(path) == datetime.fromtimestamp(epoch, UTC)


def _git(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}).stdout


def test_source_date_epoch_defaults_to_the_head_commit_time(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    sources = checkout / "bootstrap" / "bootpull"
    sources.mkdir(parents=True)
    (sources / "x.py").write_text("x = 1\n")
    _git("init", "-q", cwd=checkout)
    _git("add", ".", cwd=checkout)
    when = "1650000000 +0000"
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x", cwd=checkout,
         env={"GIT_COMMITTER_DATE": when, "GIT_AUTHOR_DATE": "1600000000 +0000"})
    assert default_epoch({}, checkout) == 1650000000
    # SOURCE_DATE_EPOCH wins when set
    assert default_epoch({"SOURCE_DATE_EPOCH": "1234"}, checkout) == 1234


def test_source_date_epoch_outside_git_is_the_newest_source_mtime(tmp_path: Path) -> None:
    checkout = tmp_path / "tarball"
    sources = checkout / "bootstrap" / "bootpull"
    (sources / "sub").mkdir(parents=True)
    for name, mtime in (("a.py", 1500000000), ("sub/b.py", 1600000000)):
        (sources / name).write_text("")
        os.utime(sources / name, (mtime, mtime))
    (sources / "__pycache__").mkdir()
    (sources / "__pycache__" / "a.pyc").write_text("")  # build products do not count
    os.utime(sources / "sub", (1, 1))
    os.utime(sources / "__pycache__", (1, 1))
    os.utime(sources, (1, 1))
    assert default_epoch({}, checkout) == 1600000000


def test_the_default_for_this_checkout_is_not_1970() -> None:
    if not (Path(__file__).resolve().parents[1] / ".git").exists():
        pytest.skip("not a git checkout")
    assert default_epoch({}) > 1_600_000_000
