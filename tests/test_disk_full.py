"""A full or failing state disk while installing: exit 13 with a clear banner, nothing
half-written, ``current`` untouched — never a traceback.

The disk-full tests give the node a real small filesystem (a tmpfs of 1 MiB, mounted
inside the test's directory and unmounted again whatever happens) and fill it, so
``ENOSPC`` comes from the kernel: the install of a new version and a first install,
in-process like tests/test_pipeline.py (``--oneshot``) and as the real
``bootpull node run`` without ``--oneshot``. ``EIO`` and failing link switches are
injected into single calls. tests/test_disk_full_reports.py: the status file, the
counters and the spool on a full disk while the role runs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from bootpull.console import Console
from bootpull.errors import InstallError, RunError
from bootpull.install import install, prune, revert_to_lkg
from bootpull.pipeline import Settings, run
from bootpull.state import Installed, StateDir, write_atomic
from eventsink import EventSink
from fakes import CapturingWriter
from marker_role import add_marker_role
from sample_bundles import make_bundle
from signed_repo import MAC_NEW, SignedRepo
from test_pipeline import Node, running_node
from tmpfs import mounted_tmpfs

DISK_SIZE = "1m"
BIG = 1 << 19  # a payload file bigger than what is left; zeros: its pack is tiny
ENV = {"PATH": "/usr/bin:/bin"}


def console() -> tuple[Console, CapturingWriter]:
    out = CapturingWriter()
    return Console(out), out


def installed(tmp_path: Path, *versions: str) -> tuple[StateDir, Console, Installed]:
    """A state directory with ``versions`` of the web role installed; the last one."""
    state = StateDir(tmp_path / "state")
    cons, _ = console()
    last = [install(make_bundle(v), state, env=ENV, console=cons).installed for v in versions]
    return state, cons, last[-1]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs at ``tmp_path/disk``; unmounted at the end, even on a failure."""
    with mounted_tmpfs(tmp_path / "disk", f"size={DISK_SIZE},mode=0755") as disk:
        yield disk


@dataclass(frozen=True)
class OnDisk:
    """A node whose state directory is on ``disk``, the repository it pulls (served by
    git on 127.0.0.1, reporting to the test's event sink) and its role's marker dir."""

    node: Node
    repo: SignedRepo
    markers: Path
    disk: Path


@pytest.fixture
def disk_node(signed_repo: SignedRepo, git_http_server: Callable[..., Any], sink: EventSink,
              small_disk: Path, tmp_path: Path) -> Iterator[OnDisk]:
    markers = tmp_path / "markers"
    markers.mkdir()
    add_marker_role(signed_repo, markers, sink.url)
    server = git_http_server(signed_repo.root)
    try:
        yield OnDisk(Node(small_disk, signed_repo, server.url), signed_repo, markers,
                     small_disk)
    finally:
        kill_role(markers)  # before the disk is unmounted: it may still run there


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill ``disk`` with one file until the kernel says ENOSPC, then free ``leave``
    bytes again; return the file (delete it to free the disk)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for chunk in (1 << 16, 1 << 12, 1):
            with contextlib.suppress(OSError):
                for _ in range((1 << 30) // chunk):  # bounded: far more than the disk
                    os.write(fd, b"\0" * chunk)
    finally:
        os.close(fd)
    with pytest.raises(OSError) as full:
        write_atomic(disk / "probe", b"x" * 8192)
    assert full.value.errno == errno.ENOSPC
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def staging_dirs(node: Node) -> list[str]:
    roles = node.state / "roles"
    return [p.name for p in roles.glob("*/.*")] if roles.is_dir() else []


def current_text(node: Node) -> str:
    link = node.state / "current"
    return str(link.readlink()) if link.is_symlink() else ""


def publish_big(repo: SignedRepo) -> None:
    repo.write("roles/marker/files/big.bin", b"\0" * BIG)
    repo.commit("a big file")
    repo.publish()


def kill_role(markers: Path) -> None:
    """The marker role's process group, if a failed test left it running on the disk."""
    with contextlib.suppress(OSError, ValueError):
        os.killpg(int((markers / "pid").read_text()), signal.SIGKILL)


# -- the install: a full disk is exit 13, and nothing changes ----------------------------


def test_a_new_version_onto_a_full_state_disk_is_exit_13_and_keeps_current(
        disk_node: OnDisk, sink: EventSink) -> None:
    node, repo, markers = disk_node.node, disk_node.repo, disk_node.markers
    assert node.run()[0] == 0
    before = node.status
    link = current_text(node)
    installs = sorted(p.name for p in (node.state / "roles/marker").iterdir())
    publish_big(repo)
    fill(disk_node.disk, leave=128 * 1024)  # room for the fetch and the metadata, not 512 KiB

    code, text = node.run()
    assert code == 13, text
    flat = " ".join(text.split())
    assert "INSTALL FAILED (exit 13)" in flat
    assert "what: no space left on the state disk while installing marker head-" in flat
    assert "No space left on device" in flat and "big.bin" in flat  # why: the file
    assert f"df -h {node.state}" in flat and "needs about 0.5 MiB" in flat  # do:
    assert "Traceback" not in text
    # nothing half-written: no staging left, current and the installs as they were
    assert staging_dirs(node) == []
    assert current_text(node) == link
    assert sorted(p.name for p in (node.state / "roles/marker").iterdir()) == installs
    after = node.status
    assert after["version"] == before["version"] and after["path"] == before["path"]
    failed = [e for e in sink.received if e["stage"] == "install" and e["status"] == "fail"]
    assert failed and failed[-1]["details"]["exit_code"] == 13
    assert "No space left on device" in failed[-1]["details"]["why"]
    # with the space back the same version installs: nothing was left in its way
    (disk_node.disk / "filler").unlink()
    code, text = node.run()
    assert code == 0, text
    assert node.status["version"] != before["version"]
    assert (markers / "runs").read_text().split()[0] == before["version"]


def test_a_first_install_on_a_full_disk_is_exit_13(disk_node: OnDisk) -> None:
    node, markers = disk_node.node, disk_node.markers
    publish_big(disk_node.repo)
    fill(disk_node.disk, leave=256 * 1024)  # the git cache and the metadata fit, 512 KiB not

    code, text = node.run()
    assert code == 13, text
    flat = " ".join(text.split())
    assert "INSTALL FAILED (exit 13)" in flat
    assert "no space left on the state disk while installing marker head-" in flat
    assert "Traceback" not in text
    assert current_text(node) == "" and staging_dirs(node) == []
    assert not (markers / "runs").exists()
    assert node.status["role"] == ""


@pytest.mark.slow
def test_without_oneshot_a_full_disk_install_leaves_the_previous_role_running(
        disk_node: OnDisk, tmp_path: Path) -> None:
    node, markers = disk_node.node, disk_node.markers
    assert node.run()[0] == 0
    good = str(node.status["version"])
    link = current_text(node)
    publish_big(disk_node.repo)
    fill(disk_node.disk, leave=128 * 1024)
    with running_node(node, tmp_path, "bootpull.poll=0.5\n") as (proc, log, wait_for):
        runs = markers / "runs"
        wait_for(lambda: runs.read_text().split() == [good, good],
                 "the previous version to start again")
        wait_for(lambda: log.read_text().count("[failed] install marker") >= 3,
                 "the install to fail at three polls")
        text = log.read_text()
        assert " ".join(text.split()).count("INSTALL FAILED (exit 13)") == 1  # once
        assert "no space left on the state disk while installing marker" in text
        assert proc.poll() is None and current_text(node) == link
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
    assert "Traceback" not in log.read_text()
    assert staging_dirs(node) == [] and current_text(node) == link


def test_an_io_error_while_installing_is_an_install_error_with_the_reason(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state, cons, first = installed(tmp_path, "1.0")
    real_write = os.write
    calls = 0

    def failing_write(fd: int, data: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", failing_write)
    with pytest.raises(InstallError) as caught:
        install(make_bundle("2.0"), state, env=ENV, console=cons)
    monkeypatch.undo()
    err = caught.value
    assert err.exit_code == 13
    assert err.what == "an I/O error on the state disk while installing web 2.0"
    assert "[Errno 5] Input/output error" in err.why
    assert ".staging-2.0-" in err.why and "health.sh" in err.why  # the file it wrote
    assert "dmesg" in err.hint and str(state.root) in err.hint
    current = state.current()
    assert current is not None and current.path == first.path
    assert sorted(p.name for p in (state.roles / "web").iterdir()) == [first.path.name]


def test_a_switch_of_current_that_fails_keeps_the_old_one_and_the_disk_clean(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The new install is complete, but the link cannot be made: it is removed again,
    and ``lkg`` (switched just before) names what it named before."""
    state, cons, first = installed(tmp_path, "0.9", "1.0")
    lkg = str(state.lkg_link.readlink())
    real_symlink = os.symlink

    def no_current(target: Any, link: Any, *args: Any, **kwargs: Any) -> None:
        if Path(link).name.startswith(".current.tmp-"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(link))
        real_symlink(target, link, *args, **kwargs)

    monkeypatch.setattr(os, "symlink", no_current)
    with pytest.raises(InstallError, match="no space left on the state disk"):
        install(make_bundle("2.0"), state, env=ENV, console=cons)
    monkeypatch.undo()
    current = state.current()
    assert current is not None and current.path == first.path
    assert str(state.lkg_link.readlink()) == lkg and "0.9-" in lkg
    assert sorted(p.name for p in (state.roles / "web").iterdir()) == sorted(
        [first.path.name, Path(lkg).name])


def test_a_directory_fsync_failing_after_the_switch_is_still_a_done_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bootpull.state

    state, cons, _ = installed(tmp_path, "1.0")
    real = bootpull.state.fsync_dir
    root_syncs = 0

    def fsync_dir(path: Path) -> None:
        nonlocal root_syncs
        if path == state.root:
            root_syncs += 1
            if root_syncs == 2:  # lkg's switch is the first, current's the second
                raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(path)

    monkeypatch.setattr(bootpull.state, "fsync_dir", fsync_dir)
    outcome = install(make_bundle("2.0"), state, env=ENV, console=cons)
    monkeypatch.undo()
    assert root_syncs == 2
    current = state.current()
    assert current is not None and current.version == "2.0" == outcome.installed.version


def test_a_revert_the_disk_refuses_is_a_run_error_and_current_stays(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state, _, second = installed(tmp_path, "1.0", "2.0")

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO), str(args[1]))

    monkeypatch.setattr(os, "symlink", broken)
    with pytest.raises(RunError) as caught:
        revert_to_lkg(state)
    monkeypatch.undo()
    assert caught.value.what == ("an I/O error on the state disk: could not switch back to "
                                 "the last-known-good web 1.0")
    assert caught.value.exit_code == 14 and "Input/output error" in caught.value.why
    current = state.current()
    assert current is not None and current.path == second.path


def test_prune_keeps_the_installs_the_links_name_even_when_they_cannot_be_read(
        tmp_path: Path) -> None:
    """A record that reads back as an error (a failing disk) must not get the install
    that runs deleted as "unused"."""
    state, _, current = installed(tmp_path, "1.0", "2.0")
    record = current.path / ".bootpull" / "record.json"
    record.unlink()
    record.mkdir()  # reading it is now an OSError (EISDIR)
    assert state.current() is None
    prune(state)
    assert current.path.is_dir() and len(list((state.roles / "web").iterdir())) == 2


# -- the state directory at start ---------------------------------------------------------


def test_a_read_only_state_disk_is_exit_13_not_a_traceback(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "ro", "ro,size=64k") as disk:
        out = CapturingWriter()
        settings = Settings(state_dir=disk / "state", repo_url="http://127.0.0.1:9/r",
                            mac=MAC_NEW, trust_file=tmp_path / "none", oneshot=True)
        assert run(settings, Console(out)) == 13, out.text
        flat = " ".join(out.text.split())
        assert "INSTALL FAILED (exit 13)" in flat
        assert f"the state disk is read-only: the state directory {disk / 'state'} cannot be" \
            " used" in flat


# -- the console's event log -----------------------------------------------------------


def test_the_console_log_on_a_full_disk_loses_lines_and_says_so_once(
        small_disk: Path) -> None:
    out = CapturingWriter()
    log = small_disk / "console.jsonl"
    cons = Console(out, json_log=log)
    cons.info("before")
    filler = fill(small_disk)
    lines: Callable[[], int] = lambda: len(log.read_bytes().splitlines())  # noqa: E731
    for i in range(2000):  # more than the page the log's last line is on
        cons.info(f"line {i} " + "x" * 100)
    assert out.text.count("cannot be written") == 1
    kept = lines()
    filler.unlink()
    cons.info("after")
    assert "is written again" in out.text
    cons.close()  # nothing held back to fail on
    import json

    records = log.read_bytes().splitlines()
    assert len(records) == kept + 1 or len(records) == kept + 2  # + a line cut short
    assert json.loads(records[0])["message"] == "before"
    assert json.loads(records[-1])["message"] == "after"
