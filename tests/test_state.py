"""The state directory's atomic writes: a file all new or all old, ``current`` never missing."""

from __future__ import annotations

import errno
import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from bootpull.state import switch_link, write_atomic
from bootpull.trust import Floor, load_floor, save_floor


def disk_full(fd: int) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "status.json"
    write_atomic(path, b"old\n")
    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError):
        write_atomic(path, b"new\n")
    monkeypatch.undo()
    assert path.read_bytes() == b"old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_a_failed_floor_write_keeps_the_old_floor_and_leaves_no_temp_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = Floor(1, 5, 5, 4, "2026-01-01T00:00:00+00:00")
    save_floor(tmp_path, old)
    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError):
        save_floor(tmp_path, Floor(2, 6, 6, 5, "2026-02-01T00:00:00+00:00"))
    monkeypatch.undo()
    assert load_floor(tmp_path) == old
    assert [p.name for p in (tmp_path / "trust").iterdir()] == ["floor.json"]


# -- the switch of current ------------------------------------------------------------

TESTS = Path(__file__).resolve().parent
OLD, NEW = "roles/web/old", "roles/web/new"
SWITCH_CHILD = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import crash_points
from bootpull.state import switch_link
root = Path(sys.argv[2])
crash_points.kill_after_call(int(sys.argv[3]), root)
switch_link(root / "current", sys.argv[4])
"""


def two_releases(root: Path) -> Path:
    """A state directory with two releases and ``current`` pointing at OLD."""
    for release in (OLD, NEW):
        (root / release).mkdir(parents=True)
    current = root / "current"
    current.symlink_to(OLD)
    return current


def assert_names_a_release(current: Path) -> str:
    assert current.is_symlink(), "current is missing"
    target = str(current.readlink())
    assert target in (OLD, NEW), f"current points at {target!r}"
    assert current.resolve().is_dir(), f"current ({target}) does not resolve"
    return target


def test_current_names_the_old_or_the_new_release_whenever_the_switch_is_killed(
        tmp_path: Path) -> None:
    """The switch is killed right after its first call that adds, removes or renames a
    name beside ``current``, then after its second, and so on until it completes: every
    time, ``current`` names one release or the other (an unlink-then-symlink switch
    leaves it missing, and fails here)."""
    seen: list[str] = []
    for n in itertools.count(1):
        current = two_releases(tmp_path / f"kill-after-{n}")
        proc = subprocess.run([sys.executable, "-c", SWITCH_CHILD, str(TESTS),
                               str(current.parent), str(n), NEW],
                              capture_output=True, timeout=60, check=False)
        seen.append(assert_names_a_release(current))
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
        assert n < 20, "the switch did not complete after 20 calls"
    # the kills fell on both sides of the switch, which then completed
    assert seen[0] == OLD and seen[-2:] == [NEW, NEW], seen


SWITCHES = 2000
WATCHER = """
import os, select, sys
link = sys.argv[1]
print("watching", flush=True)
reads, bad = 0, "-"
while bad == "-" and not select.select([sys.stdin], [], [], 0)[0]:
    for _ in range(1000):
        try:
            target = os.readlink(link)
        except FileNotFoundError:
            target = "missing"
        reads += 1
        if target not in ("roles/web/old", "roles/web/new"):
            bad = repr(target)
            break
print(reads, bad, flush=True)
"""


def test_current_never_goes_missing_for_a_watcher_while_it_is_switched(
        tmp_path: Path) -> None:
    """A second process reads ``current`` as fast as it can while it is switched back
    and forth: it never finds it missing or pointing elsewhere."""
    current = two_releases(tmp_path)
    watcher = subprocess.Popen([sys.executable, "-c", WATCHER, str(current)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert watcher.stdout is not None
        assert watcher.stdout.readline() == b"watching\n"
        for n in range(SWITCHES):
            switch_link(current, NEW if n % 2 == 0 else OLD)
        out, _ = watcher.communicate(b"stop\n", timeout=60)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    reads, bad = out.decode().split()
    assert bad == "-", f"the watcher saw current as {bad}"
    assert int(reads) > SWITCHES, "the watcher hardly ran"
