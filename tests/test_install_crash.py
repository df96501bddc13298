"""kill -9 during an install leaves the complete old tree or the complete new one, and
the next run recovers by itself.

A child process installs and SIGKILLs itself at a named point (``crash_points``: it
wraps the calls that mark each point, bootpull knows nothing of it), and a second test
kills it from outside at random moments.
"""

from __future__ import annotations

import itertools
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bootpull.console import Console
from bootpull.install import check_drift, install, recover
from bootpull.state import StateDir
from sample_bundles import many_files_bundle

TESTS = Path(__file__).resolve().parent
CHILD = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from sample_bundles import many_files_bundle
from bootpull.console import Console
from bootpull.install import install
from bootpull.state import StateDir
import crash_points
import time
bundle = many_files_bundle(sys.argv[2])
point = sys.argv[4] if len(sys.argv) > 4 else ""
if point.isdigit():
    crash_points.kill_after_call(int(point), Path(sys.argv[1]))
elif point:
    crash_points.arm(point, bundle)
print("start", flush=True)
t0 = time.monotonic()
install(bundle, StateDir(Path(sys.argv[1])), env={"PATH": "/usr/bin:/bin"}, console=Console())
print(time.monotonic() - t0, flush=True)
"""
ENV = {"PATH": "/usr/bin:/bin"}


class Quiet:
    def write(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def prepared(tmp_path: Path) -> StateDir:
    state = StateDir(tmp_path / "state")
    for version in ("1.0", "2.0"):
        install(many_files_bundle(version), state, env=ENV, console=Console(Quiet()))
    return state


def child(state: StateDir, version: str, kill_at: str | None) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(state.root), version,
                             str(TESTS), *([kill_at] if kill_at else [])],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def assert_whole(state: StateDir) -> str:
    """current is a complete install of the old or the new version; return which."""
    cur = state.current()
    assert cur is not None, "current must always name a complete install"
    assert cur.version in ("2.0", "3.0")
    assert check_drift(cur) == []
    assert (cur.path / "hook-done").read_text() == "staged\n"
    return cur.version


def assert_recovers(state: StateDir) -> None:
    recover(state, Console(Quiet()))
    out = install(many_files_bundle("3.0"), state, env=ENV, console=Console(Quiet()))
    cur, lkg = state.current(), state.lkg()
    assert cur is not None and cur.version == "3.0" and check_drift(cur) == []
    assert lkg is not None and lkg.version == "2.0" and check_drift(lkg) == []
    assert out.installed.path == cur.path
    leftovers = [p.name for p in state.root.rglob(".*") if p.name != ".bootpull"]
    assert leftovers == []
    assert sorted(p.name for p in (state.roles / "web").iterdir()) == sorted([cur.id, lkg.id])


@pytest.mark.parametrize("point", ["staging", "staged", "hooked", "renamed", "lkg",
                                   "switched", "trashed"])
def test_kill_at_each_point_leaves_a_whole_tree_and_recovers(tmp_path: Path,
                                                             point: str) -> None:
    state = prepared(tmp_path)
    proc = child(state, "3.0", point)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err.decode()
    version = assert_whole(state)
    expected_new = point in ("switched", "trashed")
    assert version == ("3.0" if expected_new else "2.0")
    assert_recovers(state)


def test_kill_after_each_call_beside_current_leaves_a_whole_tree_and_recovers(
        tmp_path: Path) -> None:
    """The install is killed right after its first call that adds, removes or renames a
    name in the state directory's top (current, lkg and their temporary links), then after
    its second, and so on until it completes: current and lkg always name complete
    installs (an unlink-then-symlink switch of either fails here)."""
    versions: list[str] = []
    for n in itertools.count(1):
        state = prepared(tmp_path / f"kill-after-{n}")
        proc = child(state, "3.0", str(n))
        _, err = proc.communicate(timeout=120)
        versions.append(assert_whole(state))
        lkg = state.lkg()
        assert lkg is not None and lkg.version in ("1.0", "2.0")
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, err.decode()
        assert_recovers(state)
        assert n < 20, "the install did not complete after 20 such calls"
    # the kills fell on both sides of the switch of current, and the install completed
    assert versions[0] == "2.0" and versions[-2:] == ["3.0", "3.0"], versions


@pytest.mark.slow
def test_kill_at_random_moments_always_leaves_a_whole_tree(tmp_path: Path) -> None:
    rng = random.Random(1234)
    # how long one install takes here, to aim the kills inside it
    state = prepared(tmp_path / "timing")
    proc = child(state, "3.0", None)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    took = float(out.split()[-1])
    seen: set[str] = set()
    for n in range(8):
        state = prepared(tmp_path / f"run{n}")
        proc = child(state, "3.0", None)
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"start\n"
        time.sleep(rng.uniform(0.0, took * 1.2))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=120)
        seen.add(assert_whole(state))
        assert_recovers(state)
    assert seen <= {"2.0", "3.0"}  # the invariant held at every kill


def test_the_shipped_agent_reads_no_test_setting() -> None:
    """The kill points live in crash_points.py: nothing in the image names a test variable."""
    shipped = TESTS.parent / "bootstrap" / "bootpull"
    named = [p.name for p in sorted(shipped.rglob("*.py")) if "BOOTPULL_TEST" in p.read_text()]
    assert named == []
