"""Diskless nodes (docs/security.md): a state directory in memory keeps the version
floor only until the next boot. The node says so at boot, every event it sends carries
``details.rollback_protection`` (``none``, ``state-disk`` or ``unknown``),
and ``bootpull.require_state=1`` installs nothing without a state disk (exit 12).

The filesystem probe reads a mounts file (``Settings.mounts_file``, /proc/mounts on a
node); the tests write their own.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bootpull.diskless import state_fs_type
from bootpull.settings import KernelLine
from eventsink import EventSink
from gitserver import GitHttpServer
from marker_role import add_marker_role
from signed_repo import SignedRepo
from test_pipeline import Node


def mounts(tmp_path: Path, *rows: tuple[str, str]) -> Path:
    path = tmp_path / "mounts"
    path.write_text("".join(f"dev{i} {point} {fstype} rw 0 0\n"
                            for i, (point, fstype) in enumerate(rows)))
    return path


def test_state_fs_type_is_the_longest_mount_above_the_directory(tmp_path: Path) -> None:
    table = mounts(tmp_path, ("/", "rootfs"), ("/var", "ext4"), ("/var/lib/bootpull", "ext4"),
                   ("/var/lib/bootpull2", "tmpfs"), ("/mnt/a\\040b", "tmpfs"))
    assert state_fs_type(Path("/var/lib/bootpull"), table) == "ext4"
    assert state_fs_type(Path("/var/lib/bootpull/x"), table) == "ext4"
    assert state_fs_type(Path("/var/lib/bootpull2"), table) == "tmpfs"
    assert state_fs_type(Path("/var/lib/other"), table) == "ext4"
    assert state_fs_type(Path("/etc"), table) == "rootfs"
    assert state_fs_type(Path("/mnt/a b/s"), table) == "tmpfs"
    assert state_fs_type(Path("/x"), tmp_path / "missing") is None
    # mounted over: the later line wins, as in /proc/mounts
    again = mounts(tmp_path, ("/", "ramfs"), ("/", "ext4"))
    assert state_fs_type(Path("/var/lib/bootpull"), again) == "ext4"


def test_require_state_is_a_typed_kernel_key() -> None:
    assert KernelLine.parse("bootpull.require_state=1").require_state is True
    assert KernelLine.parse("bootpull.require_state=0").require_state is False
    assert KernelLine.parse("quiet").require_state is False
    bad = KernelLine.parse("bootpull.require_state=yes")
    assert bad.require_state is False and bad.problem("require_state") is not None


@pytest.fixture
def served_node(signed_repo: SignedRepo, git_http_server: object, sink: EventSink,
                tmp_path: Path) -> Node:
    markers = tmp_path / "markers"
    markers.mkdir()
    add_marker_role(signed_repo, markers, sink.url)
    server: GitHttpServer = git_http_server(signed_repo.root)  # type: ignore[operator]
    return Node(tmp_path, signed_repo, server.url)


def in_memory(node: Node, tmp_path: Path) -> Path:
    return mounts(tmp_path, ("/", "ext4"), (str(node.state), "ramfs"))


def details_of(sink: EventSink, stage: str) -> list[object]:
    return [e["details"].get("rollback_protection") for e in sink.received
            if e["stage"] == stage]


@pytest.mark.slow
def test_a_diskless_node_warns_and_its_events_say_rollback_protection_none(
        served_node: Node, sink: EventSink, tmp_path: Path) -> None:
    node = served_node
    node.state.mkdir()
    code, log = node.run(mounts_file=in_memory(node, tmp_path), report_deadline=5.0)
    assert code == 0, log
    assert "no rollback protection" in log and "(ramfs)" in log, log
    assert details_of(sink, "install") == ["none"]
    assert details_of(sink, "run") == ["none"]
    assert details_of(sink, "heartbeat") == []  # --oneshot sends none
    assert {e["details"].get("rollback_protection") for e in sink.received} == {"none"}


@pytest.mark.slow
def test_a_node_with_a_state_disk_says_state_disk_and_does_not_warn(
        served_node: Node, sink: EventSink, tmp_path: Path) -> None:
    node = served_node
    table = mounts(tmp_path, ("/", "ramfs"), (str(node.state), "ext4"))
    code, log = node.run(mounts_file=table, report_deadline=5.0, require_state=True)
    assert code == 0, log
    assert "no rollback protection" not in log
    assert details_of(sink, "install") == ["state-disk"]
    assert details_of(sink, "run") == ["state-disk"]


@pytest.mark.slow
def test_require_state_on_a_diskless_node_installs_nothing_and_exits_12(
        served_node: Node, sink: EventSink, tmp_path: Path) -> None:
    node = served_node
    node.state.mkdir()
    code, log = node.run(mounts_file=in_memory(node, tmp_path), report_deadline=5.0,
                         require_state=True)
    assert code == 12, log
    assert "bootpull.require_state=1 and there is no state disk" in log
    assert "bootpull.state=/dev/DISK" in log
    assert not (node.state / "current").exists()
    roles = node.state / "roles"
    assert not roles.exists() or not any(roles.iterdir())
    # refused before the fetch, so the repository's [report] url is not known: the
    # event waits in the spool (the origin's URL is the git server here)
    spooled = [json.loads(p.read_text()) for p in sorted((node.state / "spool").glob("*.json"))]
    fail = [e for e in spooled + sink.received if e["status"] == "fail"]
    assert fail and fail[-1]["details"]["exit_code"] == 12, spooled


@pytest.mark.slow
def test_require_state_with_an_unreadable_mounts_file_refuses_too(
        served_node: Node, tmp_path: Path) -> None:
    """Unknown is not persistent: the node fails closed."""
    node = served_node
    code, log = node.run(mounts_file=tmp_path / "no-mounts", report_deadline=2.0,
                         require_state=True)
    assert code == 12, log
    assert "cannot be read from" in log
