"""Run and supervise: the contract environment, restart policies, health, drift, stop."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from bootpull.backoff import Backoff, Counters
from bootpull.bundle import HealthSpec, Restart
from bootpull.console import Console
from bootpull.errors import RunError
from bootpull.install import install
from bootpull.mac import Mac
from bootpull.state import Installed, StateDir
from bootpull.supervise import Happening, Identity, Policy, Supervisor, role_env
from fakes import CapturingWriter
from sample_bundles import HEALTH_FAIL, HEALTH_OK, RUN_SH, make_bundle, process_gone

MAC = Mac.parse("52:54:00:12:34:56")
IDENT = Identity(MAC, hostname="node-a", ip="10.0.0.5")
FAST = Policy(tries=3, start_grace=0.3, first_check_spacing=0.1,
              backoff=Backoff(base=0.01, cap=0.05), stable_after=30.0, stop_timeout=5.0)



def installed(tmp_path: Path, **kwargs: object) -> Installed:
    state = StateDir(tmp_path / "state")
    return install(make_bundle("1.0", **kwargs), state, env={},  # type: ignore[arg-type]
                   console=Console(CapturingWriter())).installed


def supervisor(inst: Installed, counters: Counters | None = None,
               policy: Policy = FAST) -> Supervisor:
    return Supervisor(inst, role_env(inst, IDENT, {"PATH": "/usr/bin:/bin"}),
                      console=Console(CapturingWriter()), counters=counters or Counters(),
                      policy=policy)


def run_until(sup: Supervisor, pred: object, timeout: float = 30.0) -> list[Happening]:
    seen: list[Happening] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen += sup.tick()
        if callable(pred) and pred(seen):
            return seen
        time.sleep(min(0.05, sup.next_due()))
    raise AssertionError(f"timed out; saw {seen}")


def test_role_env_carries_the_contract_variables(tmp_path: Path) -> None:
    inst = installed(tmp_path, vars={"port": "8080", "LISTEN": "0.0.0.0"})
    env = role_env(inst, IDENT, {"PATH": "/bin", "SECRET": "not passed"})
    assert env["BOOTPULL_MAC"] == "52-54-00-12-34-56"
    assert env["BOOTPULL_ROLE"] == "web" and env["BOOTPULL_VERSION"] == "1.0"
    assert env["BOOTPULL_COMMIT"] == inst.commit and len(inst.commit) == 40
    assert env["BOOTPULL_HOSTNAME"] == "node-a" and env["BOOTPULL_IP"] == "10.0.0.5"
    assert env["BOOTPULL_VAR_PORT"] == "8080" and env["BOOTPULL_VAR_LISTEN"] == "0.0.0.0"
    assert "SECRET" not in env and env["PATH"] == "/bin"


def test_role_runs_in_its_install_dir_with_its_env(tmp_path: Path) -> None:
    inst = installed(tmp_path, vars={"COLOR": "red"})
    sup = supervisor(inst)
    sup.start()
    try:
        sup.wait_started()
        marker = inst.path / "marker-1.0"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (
                marker.exists() and marker.read_text().count("\n") >= 8):
            time.sleep(0.05)
        lines = marker.read_text().splitlines()
        assert "BOOTPULL_VAR_COLOR=red" in lines and "BOOTPULL_ROLE=web" in lines
        assert "BOOTPULL_MAC=52-54-00-12-34-56" in lines
        assert lines[-1] == str(inst.path)
        assert sup.running()
    finally:
        sup.stop()
    assert not sup.running()


def test_stop_ends_the_role_and_its_children(tmp_path: Path) -> None:
    script = b"#!/bin/sh\nsleep 300 &\necho $! > child.pid\nwait\n"
    inst = installed(tmp_path, files={"run.sh": script})
    sup = supervisor(inst)
    sup.start()
    pidfile = inst.path / "child.pid"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (pidfile.exists() and pidfile.read_text()):
        time.sleep(0.05)
    child = int(pidfile.read_text())
    sup.stop()
    assert process_gone(child), "the role's child outlived stop()"


def test_stop_ends_what_the_role_left_behind_after_it_exited(tmp_path: Path) -> None:
    script = b"#!/bin/sh\nsleep 300 &\necho $! > daemon.pid\nexit 0\n"
    inst = installed(tmp_path, files={"run.sh": script}, restart="never")
    sup = supervisor(inst)
    sup.start()
    run_until(sup, lambda s: any(h.kind == "exited" for h in s))
    daemon = int((inst.path / "daemon.pid").read_text())
    os.kill(daemon, 0)  # still there after its parent exited
    sup.stop()
    assert process_gone(daemon), "the daemon the role left outlived stop()"


@pytest.mark.parametrize(("restart", "code", "restarts"), [
    ("on-failure", 1, True), ("on-failure", 0, False), ("always", 0, True),
    ("never", 1, False),
])
def test_restart_policy(tmp_path: Path, restart: Restart, code: int, restarts: bool) -> None:
    script = f"#!/bin/sh\necho run >> runs\nexit {code}\n".encode()
    inst = installed(tmp_path, files={"run.sh": script}, restart=restart)
    counters = Counters()
    sup = supervisor(inst, counters)
    sup.start()
    try:
        if restarts:
            seen = run_until(sup, lambda s: sum(h.kind == "restarted" for h in s) >= 2)
            assert counters.restarts >= 2 and sup.restarts == counters.restarts
            assert (inst.path / "runs").read_text().count("run") >= 2
            assert all(h.status == "warn" for h in seen if h.kind == "restarted")
        else:
            seen = run_until(sup, lambda s: any(h.kind == "exited" for h in s))
            exited = next(h for h in seen if h.kind == "exited")
            assert exited.status == ("ok" if code == 0 else "fail")
            assert exited.details["exit_code"] == code
            time.sleep(0.2)
            assert sup.tick() == [] and counters.restarts == 0 and sup.done
            assert (inst.path / "runs").read_text().count("run") == 1
    finally:
        sup.stop()


def test_crash_loop_becomes_unhealthy_instead_of_spinning(tmp_path: Path) -> None:
    inst = installed(tmp_path, files={"run.sh": b"#!/bin/sh\nexit 7\n"}, restart="always")
    counters = Counters()
    sup = supervisor(inst, counters)
    sup.start()
    seen = run_until(sup, lambda s: any(h.kind == "unhealthy" for h in s))
    assert counters.restarts == FAST.tries - 1
    assert next(h for h in seen if h.kind == "unhealthy").details["exit_code"] == 7
    assert sup.done and not sup.running()


def test_health_check_passes_then_start_is_done(tmp_path: Path) -> None:
    health = HealthSpec(command=("./health.sh",), interval=0.2, timeout=5)
    inst = installed(tmp_path, health=health)
    sup = supervisor(inst)
    sup.start()
    try:
        sup.wait_started()
        assert sup.healthy
    finally:
        sup.stop()


def test_slow_starting_role_passes_within_its_window(tmp_path: Path) -> None:
    health = HealthSpec(command=("./health.sh",), interval=5.0, timeout=5)
    check = b'#!/bin/sh\n[ -e ready ]\n'
    run = b"#!/bin/sh\nsleep 1.2\ntouch ready\nexec sleep 600\n"
    inst = installed(tmp_path, health=health, files={"run.sh": run, "health.sh": check})
    sup = supervisor(inst)  # tries=3, interval 5 s: up to 15 s to come up, checked often
    sup.start()
    try:
        t0 = time.monotonic()
        sup.wait_started()
        assert sup.healthy and 1.0 < time.monotonic() - t0 < 5.0
    finally:
        sup.stop()


def test_failing_first_health_check_is_a_run_error(tmp_path: Path) -> None:
    health = HealthSpec(command=("./health.sh",), interval=0.2, timeout=5)
    inst = installed(tmp_path, health=health,
                     files={"run.sh": RUN_SH, "health.sh": HEALTH_FAIL})
    sup = supervisor(inst)
    sup.start()
    try:
        with pytest.raises(RunError) as err:
            sup.wait_started()
        assert err.value.exit_code == 14 and "within 0.6s" in err.value.what
        assert "unhealthy" in err.value.why
    finally:
        sup.stop()


def test_health_check_timeout_counts_as_failure(tmp_path: Path) -> None:
    health = HealthSpec(command=("./health.sh",), interval=0.1, timeout=0.2)
    inst = installed(tmp_path, health=health,
                     files={"run.sh": RUN_SH, "health.sh": b"#!/bin/sh\nexec sleep 5\n"})
    sup = supervisor(inst, policy=Policy(tries=1, first_check_spacing=0.1))
    sup.start()
    try:
        with pytest.raises(RunError) as err:
            sup.wait_started()
        assert "longer than 0.2s" in err.value.why
    finally:
        sup.stop()


def test_role_that_dies_at_start_is_a_run_error(tmp_path: Path) -> None:
    inst = installed(tmp_path, files={"run.sh": b"#!/bin/sh\nexit 3\n"})
    sup = supervisor(inst)
    sup.start()
    with pytest.raises(RunError, match="exited with code 3"):
        sup.wait_started()


def test_missing_command_is_a_run_error(tmp_path: Path) -> None:
    inst = installed(tmp_path, command=("./nothere",))
    with pytest.raises(RunError, match="could not start") as err:
        supervisor(inst).start()
    assert "No such file" in err.value.why


def test_health_check_failing_later_makes_the_role_unhealthy(tmp_path: Path) -> None:
    check = b"#!/bin/sh\n[ ! -e sick ]\n"
    health = HealthSpec(command=("./health.sh",), interval=0.1, timeout=5)
    inst = installed(tmp_path, health=health, files={"run.sh": RUN_SH, "health.sh": check})
    sup = supervisor(inst)
    sup.start()
    try:
        sup.wait_started()
        (inst.path / "sick").write_text("")
        seen = run_until(sup, lambda s: any(h.kind == "unhealthy" for h in s))
        assert [h.status for h in seen if h.kind == "unhealthy"] == ["fail"]
        assert not sup.healthy
    finally:
        sup.stop()


def test_drift_is_reported_once_and_then_cleared(tmp_path: Path) -> None:
    inst = installed(tmp_path)
    sup = supervisor(inst)
    assert sup.check_drift() == []
    original = (inst.path / "www/index.html").read_bytes()
    (inst.path / "www/index.html").write_bytes(b"defaced")
    drift = sup.check_drift()
    assert [(h.kind, h.status) for h in drift] == [("drift", "warn")]
    assert drift[0].details["files_changed"] == ["www/index.html"]
    assert sup.check_drift() == []  # the same drift is not reported twice
    (inst.path / "www/index.html").write_bytes(original)
    assert [(h.kind, h.status) for h in sup.check_drift()] == [("drift-cleared", "ok")]


def test_periodic_drift_check_runs_from_tick(tmp_path: Path) -> None:
    inst = installed(tmp_path)
    sup = supervisor(inst, policy=Policy(drift_interval=0.1))
    (inst.path / "run.sh").write_bytes(b"#!/bin/sh\necho evil\n")
    seen = run_until(sup, lambda s: any(h.kind == "drift" for h in s), timeout=10)
    assert next(h for h in seen if h.kind == "drift").details["files_changed"] == ["run.sh"]


def test_health_ok_script_is_used(tmp_path: Path) -> None:
    inst = installed(tmp_path, health=HealthSpec(("./health.sh",), 1, 5),
                     files={"run.sh": RUN_SH, "health.sh": HEALTH_OK})
    sup = supervisor(inst)
    assert sup.check_health() == (True, "")


def test_a_health_check_that_leaves_a_process_does_not_hang(tmp_path: Path) -> None:
    check = b"#!/bin/sh\nsleep 300 &\necho $! > health.pid\nexit 0\n"
    inst = installed(tmp_path, health=HealthSpec(("./health.sh",), 1, 5),
                     files={"run.sh": RUN_SH, "health.sh": check})
    t0 = time.monotonic()
    assert supervisor(inst).check_health() == (True, "")
    assert time.monotonic() - t0 < 4
    assert process_gone(int((inst.path / "health.pid").read_text()))
