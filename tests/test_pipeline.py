"""``bootpull node run``: the whole pipeline against a real signed repository served by
``git http-backend`` on 127.0.0.1, with a real HTTP event sink as the home base.

The repository is the session's signed repository (``bootpull repo init/assign/publish``)
plus a ``marker`` role assigned to MAC_NEW, whose command writes its environment to a
marker file in ``BOOTPULL_VAR_MARKER_DIR`` and stays up; its health check passes while
``health.sh`` says so.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from bootpull.backoff import Backoff
from bootpull.console import Console
from bootpull.mac import Mac
from bootpull.pipeline import Settings, origin_events_url, run
from bootpull.state import StateDir
from bootpull.status import collect
from bootpull.supervise import Policy
from bootpull.trust import load_floor, save_floor
from eventsink import EventSink
from fakes import CapturingWriter
from gitserver import GitHttpServer
from marker_role import ROLE, SICK, add_marker_role
from sample_bundles import process_gone
from signed_repo import MAC_NEW, SignedRepo

FAST = Policy(tries=2, start_grace=0.2, first_check_spacing=0.2,
              backoff=Backoff(base=0.05, cap=0.1), stop_timeout=5.0)



class Node:
    """One node's state dir and the settings to run the pipeline in-process."""

    def __init__(self, tmp: Path, repo: SignedRepo, url: str, mac: Mac = MAC_NEW) -> None:
        self.state = tmp / "state"
        self.trust = tmp / "trust.json"
        self.trust.write_bytes(repo.trust)
        self.url = url
        self.mac = mac

    def settings(self, **kw: object) -> Settings:
        base: dict[str, object] = dict(state_dir=self.state, repo_url=self.url, mac=self.mac,
                                       trust_file=self.trust, oneshot=True, policy=FAST,
                                       fetch_deadline=4.0, fetch_deadline_with_lkg=3.0)
        base.update(kw)
        return Settings(**base)  # type: ignore[arg-type]

    def run(self, **kw: object) -> tuple[int, str]:
        out = CapturingWriter()
        code = run(self.settings(**kw), Console(out))
        return code, out.text

    @property
    def status(self) -> dict[str, object]:
        return collect(StateDir(self.state))


@pytest.fixture
def served(signed_repo: SignedRepo, git_http_server: object, sink: EventSink,
           tmp_path: Path) -> tuple[SignedRepo, GitHttpServer, Path]:
    markers = tmp_path / "markers"
    markers.mkdir()
    add_marker_role(signed_repo, markers, sink.url)
    server = git_http_server(signed_repo.root)  # type: ignore[operator]
    return signed_repo, server, markers


def test_oneshot_installs_runs_the_role_then_a_second_run_reinstalls_nothing(
        served: tuple[SignedRepo, GitHttpServer, Path], sink: EventSink,
        tmp_path: Path) -> None:
    repo, server, markers = served
    node = Node(tmp_path, repo, server.url)
    code, text = node.run()
    assert code == 0, text
    status = node.status
    version = str(status["version"])
    assert status["role"] == "marker" and version.startswith("head-")
    assert status["commit"] == repo.git("rev-parse", "HEAD") and status["lkg"] is None
    lines = (markers / f"marker-{version}").read_text().splitlines()
    assert "BOOTPULL_MAC=52-54-00-aa-bb-cc" in lines and "BOOTPULL_ROLE=marker" in lines
    assert "BOOTPULL_HOSTNAME=marker-1" in lines
    assert f"BOOTPULL_COMMIT={status['commit']}" in lines
    assert f"BOOTPULL_VAR_MARKER_DIR={markers}" in lines
    assert lines[-1] == status["path"]  # its working directory is its install directory
    assert "[finished] run marker" in text
    # the role was stopped when --oneshot ended
    assert process_gone(int((markers / "pid").read_text()))
    stages = [(e["stage"], e["status"]) for e in sink.received]
    assert ("install", "ok") in stages and ("run", "ok") in stages
    assert all(e["node"] == "52-54-00-aa-bb-cc" for e in sink.received)
    run_event = next(e for e in sink.received if e["stage"] == "run")
    assert run_event["role"] == "marker" and run_event["version"] == version
    assert status["spooled_events"] == 0
    records = [json.loads(line) for line in
               (node.state / "console.jsonl").read_text().splitlines()]
    assert any(r.get("kind") == "step" and r.get("status") == "finished"
               and str(r.get("stage", "")).startswith("run marker") for r in records)
    installed_path = Path(str(status["path"]))
    inode = (installed_path / "run.sh").stat().st_ino
    received = len(sink.received)

    server.reset_counters()
    code, text = node.run()
    assert code == 0, text
    assert "unchanged: nothing to do" in text
    assert server.bytes_sent <= 4096  # and almost nothing went over the wire
    assert (installed_path / "run.sh").stat().st_ino == inode
    assert node.status["lkg"] is None  # nothing new was installed
    new_stages = [e["stage"] for e in sink.received[received:]]
    assert "install" not in new_stages and "run" in new_stages
    assert (markers / "runs").read_text().splitlines() == [version, version]


def test_unknown_mac_banner_names_the_command_and_installs_nothing(
        served: tuple[SignedRepo, GitHttpServer, Path], tmp_path: Path) -> None:
    repo, server, _ = served
    stranger = Mac.parse("52:54:00:de:ad:01")
    node = Node(tmp_path, repo, server.url, mac=stranger)
    code, text = node.run()
    assert code == 12
    assert "node 52-54-00-de-ad-01 is not assigned" in text
    assert "run 'bootpull repo assign 52:54:00:de:ad:01 ROLE' and publish" in text
    assert node.status["role"] == "" and not list((node.state / "roles").iterdir())


def test_fetch_failure_without_lkg_exits_11(served: tuple[SignedRepo, GitHttpServer, Path],
                                            tmp_path: Path) -> None:
    repo, server, _ = served
    server.stop()
    node = Node(tmp_path, repo, server.url)
    code, text = node.run()
    assert code == 11, text
    flat = " ".join(text.split())
    assert "FETCH FAILED (exit 11)" in flat and "no last-known-good role" in flat
    assert node.status["role"] == ""


def test_fetch_failure_with_an_install_runs_it_and_counts_a_fallback(
        served: tuple[SignedRepo, GitHttpServer, Path], sink: EventSink,
        tmp_path: Path) -> None:
    repo, server, markers = served
    node = Node(tmp_path, repo, server.url)
    assert node.run()[0] == 0
    version = node.status["version"]
    server.stop()
    code, text = node.run()
    assert code == 0, text
    assert "FETCH FAILED" in text and "running the installed version" in text
    status = node.status
    assert status["version"] == version
    assert status["counters"]["fallbacks"] == 1  # type: ignore[index]
    assert (markers / "runs").read_text().splitlines() == [version, version]
    fallback = [e for e in sink.received
                if e["stage"] == "fetch" and "fallback" in e["details"]]
    assert len(fallback) == 1 and fallback[0]["status"] == "warn"
    assert fallback[0]["counters"]["fallbacks"] == 1


def test_unpublished_change_is_refused_and_nothing_is_installed(
        served: tuple[SignedRepo, GitHttpServer, Path], tmp_path: Path) -> None:
    repo, server, _ = served
    node = Node(tmp_path, repo, server.url)
    assert node.run()[0] == 0
    before = node.status
    repo.write("roles/marker/files/run.sh", b"#!/bin/sh\necho pwned > /tmp/pwned\n",
               mode=0o755)
    repo.commit("sneaky")
    code, text = node.run()
    assert code == 12, text
    assert "VERIFY FAILED (exit 12)" in text
    after = node.status
    assert after["version"] == before["version"] and after["path"] == before["path"]
    assert len([p for p in (node.state / "roles" / "marker").iterdir()]) == 1


def test_failing_health_check_reverts_to_the_lkg_without_a_boot_loop(
        served: tuple[SignedRepo, GitHttpServer, Path], sink: EventSink,
        tmp_path: Path) -> None:
    repo, server, markers = served
    node = Node(tmp_path, repo, server.url)
    assert node.run()[0] == 0
    good = node.status["version"]
    repo.write("roles/marker/files/health.sh", SICK, mode=0o755)
    repo.commit("a broken health check")
    repo.publish()
    code, text = node.run()
    assert code == 14, text
    assert "port 80 is closed" in text and "last-known-good" in text
    status = node.status
    assert status["version"] == good  # current is the LKG again
    bad = status["bad_versions"]
    assert isinstance(bad, dict) and len(bad) == 1
    assert status["counters"]["fallbacks"] == 1  # type: ignore[index]
    reverted = [e for e in sink.received if e["stage"] == "run" and e["status"] == "fail"]
    assert reverted and reverted[0]["details"]["fallback"] == good
    runs = (markers / "runs").read_text().splitlines()
    assert runs[0] == good and runs[-1] == good and len(runs) == 3  # good, bad, good
    # the next boot does not try the bad version again: no boot loop
    code, text = node.run()
    assert code == 0, text
    assert "not retried" in text
    assert (markers / "runs").read_text().splitlines()[3:] == [good]
    assert node.status["version"] == good


def test_a_role_that_fails_as_it_starts_says_why_in_its_event(
        served: tuple[SignedRepo, GitHttpServer, Path], sink: EventSink,
        tmp_path: Path) -> None:
    """The reason a role gives on stderr reaches the home base (details.output and the
    why), not only the serial console; console.jsonl keeps it too."""
    repo, server, _ = served
    node = Node(tmp_path, repo, server.url)
    assert node.run()[0] == 0
    repo.write("roles/marker/files/run.sh", b"#!/bin/sh\necho 'starting tcpdump'\n"
               b"echo \"tcpdump: Couldn't find user 'tcpdump'\" >&2\nexit 1\n", mode=0o755)
    repo.commit("a role that cannot drop privileges")
    repo.publish()
    code, text = node.run()
    assert code == 14, text
    failed = [e for e in sink.received if e["stage"] == "run" and e["status"] == "fail"]
    assert failed, sink.received
    details = failed[0]["details"]
    assert "Couldn't find user 'tcpdump'" in details["output"]
    assert "starting tcpdump" in details["output"]
    assert "Couldn't find user 'tcpdump'" in details["why"]
    log = (node.state / "console.jsonl").read_text()
    assert "Couldn't find user" in log


def test_the_data_dir_survives_upgrades_and_runs_and_is_said_when_in_ram(
        served: tuple[SignedRepo, GitHttpServer, Path], tmp_path: Path) -> None:
    repo, server, markers = served
    node = Node(tmp_path, repo, server.url)
    assert node.run()[0] == 0
    first = node.status["version"]
    data = node.state / "data" / "marker"
    marker = (markers / f"marker-{first}").read_text()
    assert f"BOOTPULL_DATA_DIR={data}" in marker.splitlines()
    assert data.is_dir() and data.stat().st_mode & 0o777 == 0o700
    (data / "host_key").write_text("kept\n")
    repo.write("roles/marker/files/extra.txt", b"v2\n")
    repo.commit("a new version")
    repo.publish()
    code, text = node.run()
    assert code == 0, text
    second = node.status["version"]
    assert second != first
    assert f"BOOTPULL_DATA_DIR={data}" in (markers / f"marker-{second}").read_text()
    assert (data / "host_key").read_text() == "kept\n"
    assert "is in RAM" not in text
    ram = tmp_path / "mounts-ram"
    ram.write_text(f"dev0 / ext4 rw 0 0\nnone {node.state} tmpfs rw 0 0\n")
    code, text = node.run(mounts_file=ram)
    assert code == 0, text
    assert " ".join(text.split()).count("the data directory of role marker") == 1, text


@pytest.mark.formats(1, 2)  # the hold is in bootpull.toml: top-level signed in format 2
def test_a_held_node_ignores_a_new_version_until_unhold(
        served: tuple[SignedRepo, GitHttpServer, Path], sink: EventSink,
        tmp_path: Path) -> None:
    """The big red switch: 'repo hold ROLE' (committed and published) keeps a running node
    on its version while a newer one is published; it says "held"; 'unhold' lets it go."""
    repo, server, markers = served
    node = Node(tmp_path, repo, server.url)
    assert node.run()[0] == 0
    first = node.status["version"]
    repo.bootpull("hold", "marker", "--reason", "v2 breaks the sensors")
    settings = (repo.root / "bootpull.toml").read_text()
    assert 'roles = ["marker"]' in settings and "v2 breaks the sensors" in settings
    assert repo.git("log", "-2", "--format=%s").splitlines()[1] == (
        "hold marker: v2 breaks the sensors")
    # the hold's own commit changes nothing the node installs: nothing to hold, it is
    # the same install under the new head's name
    code, text = node.run()
    assert code == 0, text
    held_head = repo.git("rev-parse", "HEAD")
    assert node.status["version"] == f"head-{held_head[:12]}" != first
    assert node.status["commit"] == held_head and node.status["lkg"] is None
    assert "held by the repository" not in text
    assert "changes nothing this node installs" in " ".join(text.split())
    first = node.status["version"]
    repo.write("roles/marker/files/extra.txt", b"v2\n")
    repo.commit("a new version")
    repo.publish()
    sink.received.clear()
    code, text = node.run()
    assert code == 0, text
    assert node.status["version"] == first
    words = " ".join(text.split())
    assert "held by the repository (v2 breaks the sensors)" in words
    held = [e for e in sink.received if e["stage"] == "hold"]
    assert len(held) == 1 and held[0]["status"] == "warn"
    assert held[0]["details"]["held"] is True and held[0]["details"]["running"] == first
    assert held[0]["details"]["available"] != first
    assert (markers / "runs").read_text().splitlines().count(first) >= 1
    repo.bootpull("unhold", "marker")
    assert "[hold]" not in (repo.root / "bootpull.toml").read_text()
    assert "The rollout is held" not in (repo.root / "bootpull.toml").read_text()
    code, text = node.run()
    assert code == 0, text
    assert node.status["version"] != first and "held by the repository" not in text


def test_expired_metadata_boots_the_lkg_and_reports_an_alarm(
        served: tuple[SignedRepo, GitHttpServer, Path], sink: EventSink,
        tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    repo, server, markers = served
    node = Node(tmp_path, repo, server.url)
    assert node.run()[0] == 0
    version = node.status["version"]
    # the node once saw a good time 45 days ahead: the metadata is expired for it
    floor = load_floor(node.state)
    later = (datetime.now(UTC) + timedelta(days=45)).isoformat()
    save_floor(node.state, replace(floor, last_good=later))
    code, text = node.run()
    assert code == 12, text
    assert (markers / "runs").read_text().splitlines() == [version, version]  # LKG ran
    status = node.status
    assert status["stale"] is True and status["version"] == version
    alarms = [e for e in sink.received if e["stage"] == "verify"]
    assert alarms and alarms[0]["status"] == "fail"
    assert "not fresh" in alarms[0]["message"]
    ran = [e for e in sink.received if e["stage"] == "run"][-1]
    assert ran["status"] == "warn" and ran["details"]["stale"] is True


def test_failing_install_hook_keeps_the_previous_version_exit_13(
        served: tuple[SignedRepo, GitHttpServer, Path], tmp_path: Path) -> None:
    repo, server, _ = served
    node = Node(tmp_path, repo, server.url)
    assert node.run()[0] == 0
    before = node.status["path"]
    repo.write("roles/marker/role.toml", ROLE + b'\n[install]\nhooks = [["./setup.sh"]]\n')
    repo.write("roles/marker/files/setup.sh", b"#!/bin/sh\necho 'no space' >&2\nexit 2\n",
               mode=0o755)
    repo.commit("a failing hook")
    repo.publish()
    code, text = node.run()
    assert code == 13, text
    assert "INSTALL FAILED (exit 13)" in text and "no space" in text
    assert node.status["path"] == before


def test_a_failing_install_hook_marks_its_version_bad_and_is_not_retried(
        served: tuple[SignedRepo, GitHttpServer, Path], sink: EventSink,
        tmp_path: Path) -> None:
    """Like a run failure: the version that failed its hook is never installed again,
    so polling does not flap FAIL/OK; the event names the hook and quotes its output."""
    repo, server, markers = served
    node = Node(tmp_path, repo, server.url)
    assert node.run()[0] == 0
    before = node.status["path"]
    repo.write("roles/marker/role.toml", ROLE + b'\n[install]\nhooks = [["./check.sh"]]\n')
    repo.write("roles/marker/files/check.sh", (
        b"#!/bin/sh\necho run >> '" + str(markers / "hook-runs").encode() + b"'\n"
        b"for i in $(seq 1 40); do echo \"line $i\"; done\n"
        b"echo 'rules.bpf:3: syntax error near \"tcp prot 80\"' >&2\nexit 3\n"), mode=0o755)
    repo.commit("rules with a typo")
    repo.publish()
    code, text = node.run()
    assert code == 13, text
    assert node.status["path"] == before  # the previous version keeps running
    assert len(node.state.joinpath("bad.json").read_text()) > 2
    failed = [e for e in sink.received if e["stage"] == "install" and e["status"] == "fail"]
    assert len(failed) == 1, failed
    details = failed[0]["details"]
    assert details["hook"] == "./check.sh" and details["exit_code"] == 13
    assert 'syntax error near "tcp prot 80"' in details["output"]
    assert details["output"].count("line ") == 19  # the last 20 lines: 19 + the error
    assert "line 40" in details["output"] and "line 1\n" not in details["output"]
    sink.received.clear()
    for _ in range(2):  # later polls: the hook never runs again, one warning in all
        code, text = node.run()
        assert code == 0, text
        assert node.status["path"] == before
    assert (markers / "hook-runs").read_text().splitlines() == ["run"]
    assert [e["status"] for e in sink.received if e["stage"] == "install"] == ["warn",
                                                                               "warn"]


def test_report_url_down_spools_then_delivers_in_order(
        served: tuple[SignedRepo, GitHttpServer, Path], sink: EventSink,
        tmp_path: Path) -> None:
    repo, server, _ = served
    node = Node(tmp_path, repo, server.url)
    port = sink.port
    sink.stop()
    assert node.run(report_deadline=1.0)[0] == 15  # the role ran; events undelivered
    spooled = node.status["spooled_events"]
    assert isinstance(spooled, int) and spooled >= 2
    assert node.status["counters"]["retries"] >= 1  # type: ignore[index]
    back = EventSink(port)
    try:
        assert node.run()[0] == 0
        messages = [(e["stage"], e["message"]) for e in back.received]
        # the oldest spooled event first: the node's key, the fetch (its rung), the install
        assert [m[0] for m in messages[:3]] == ["identity", "fetch", "install"]
        times = [e["time"] for e in back.received]
        assert times == sorted(times)
        assert node.status["spooled_events"] == 0
        first_run = [m for m in messages if m[0] == "run"]
        assert len(first_run) == 2  # one per boot, none lost, none twice
    finally:
        back.stop()


def test_origin_events_url() -> None:
    assert origin_events_url("http://10.0.0.1:8080/repo.git") == \
        "http://10.0.0.1:8080/api/v1/events"
    assert origin_events_url("https://boot.example/x/y/") == \
        "https://boot.example/api/v1/events"


# -- the real command, as a process ------------------------------------------------------


@contextlib.contextmanager
def running_node(node: Node, tmp_path: Path, cmdline: str, timeout: float = 120.0
                 ) -> Iterator[tuple[subprocess.Popen[bytes], Path, Callable[..., None]]]:
    """``bootpull node run`` as a subprocess with kernel command line ``cmdline``: yields
    the process, its log and ``wait_for(pred, what)``; killed at the end if still up."""
    cmd_file = tmp_path / "cmdline"
    cmd_file.write_text(cmdline)
    log = tmp_path / "node.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(node_cmd(node, "--cmdline", str(cmd_file)), stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        yield proc, log, functools.partial(wait_while_running, proc, log, timeout=timeout)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def wait_while_running(proc: subprocess.Popen[bytes], log: Path, pred: Callable[[], object],
                       what: str, timeout: float = 120.0) -> None:
    """Wait until ``pred()`` is true; fail (with the node's log) if the node exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        assert proc.poll() is None, log.read_text()
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()}")


def node_cmd(node: Node, *extra: str) -> list[str]:
    return [sys.executable, "-m", "bootpull", "node", "run", "--repo", node.url, "--mac",
            node.mac.colons, "--trust", str(node.trust), "--state-dir", str(node.state),
            *extra]


def test_node_run_oneshot_command_and_status_json(
        served: tuple[SignedRepo, GitHttpServer, Path], tmp_path: Path) -> None:
    repo, server, markers = served
    node = Node(tmp_path, repo, server.url)
    proc = subprocess.run(node_cmd(node, "--oneshot"), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    again = subprocess.run(node_cmd(node, "--oneshot"), capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    assert "unchanged: nothing to do" in again.stderr
    status = subprocess.run([sys.executable, "-m", "bootpull", "node", "status",
                             "--state-dir", str(node.state), "--json"],
                            capture_output=True, text=True, timeout=60, check=True)
    info = json.loads(status.stdout)
    assert info["role"] == "marker" and info["version"].startswith("head-")
    assert info["commit"] == repo.git("rev-parse", "HEAD") and info["lkg"] is None
    assert set(info["counters"]) == {"retries", "restarts", "fallbacks"}
    assert (markers / f"marker-{info['version']}").exists()
    assert (markers / "runs").read_text().split() == [info["version"]] * 2


def test_node_run_judges_expiry_no_earlier_than_the_image_build_time(
        served: tuple[SignedRepo, GitHttpServer, Path], tmp_path: Path) -> None:
    """The box's clock is behind (no RTC, a dead battery): the metadata looks fresh by
    it, but the image (``bootpull.build_time=``, the file the image builder writes) was
    built after the metadata expired, so the node refuses it as expired."""
    from datetime import UTC, datetime, timedelta

    from bootpull_image.build import build_time

    repo, server, markers = served
    node = Node(tmp_path, repo, server.url)
    stamp = tmp_path / "build-time"
    cmd = tmp_path / "cmdline"
    cmd.write_text(f"quiet bootpull.build_time={stamp}\n")
    later = datetime.now(UTC) + timedelta(days=45)  # past every expiry of the repository
    stamp.write_text(build_time(int(later.timestamp())) + "\n")
    refused = subprocess.run(node_cmd(node, "--oneshot", "--cmdline", str(cmd)),
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 12, refused.stderr
    assert "the signed metadata has expired" in refused.stderr, refused.stderr
    judged = datetime.fromtimestamp(int(later.timestamp()), UTC).isoformat()
    assert f"judged at {judged}" in refused.stderr  # the build time, not the clock
    assert "Traceback" not in refused.stderr
    assert not (markers / "runs").exists()  # nothing was installed or run
    # the same node, with an image built before the metadata expired, takes it
    stamp.write_text(build_time(int((datetime.now(UTC) - timedelta(days=1)).timestamp())))
    taken = subprocess.run(node_cmd(node, "--oneshot", "--cmdline", str(cmd)),
                           capture_output=True, text=True, timeout=300)
    assert taken.returncode == 0, taken.stderr
    assert (markers / "runs").exists()


def test_node_run_oneshot_survives_a_damaged_git_cache(
        served: tuple[SignedRepo, GitHttpServer, Path], tmp_path: Path) -> None:
    """A power loss while the object cache was written left its packs and indexes cut
    short: the next boot discards them, says so, counts it, and fetches again."""
    from bootpull.fetch import cache_problems

    repo, server, markers = served
    node = Node(tmp_path, repo, server.url)
    first = subprocess.run(node_cmd(node, "--oneshot"), capture_output=True, text=True,
                           timeout=300)
    assert first.returncode == 0, first.stderr
    cache = StateDir(node.state).cache
    damaged = sorted((cache / "objects/pack").glob("pack-*.idx"))
    assert damaged
    for idx in damaged:  # every index cut short, every pack cut in half
        with idx.open("r+b") as f:
            f.truncate(idx.stat().st_size // 3)
        pack = idx.with_suffix(".pack")
        with pack.open("r+b") as f:
            f.truncate(pack.stat().st_size // 2)
    again = subprocess.run(node_cmd(node, "--oneshot"), capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr
    assert "object cache is damaged" in again.stderr
    assert cache_problems(cache) == []
    info = node.status
    assert info["commit"] == repo.git("rev-parse", "HEAD")
    counters = info["counters"]
    assert isinstance(counters, dict) and counters["fallbacks"] >= 1, counters
    assert (markers / "runs").read_text().split() == [info["version"]] * 2


@pytest.mark.slow
def test_node_run_polls_picks_up_its_role_and_upgrades_without_a_reboot(
        served: tuple[SignedRepo, GitHttpServer, Path], tmp_path: Path) -> None:
    repo, server, markers = served
    stranger = Mac.parse("52:54:00:de:ad:02")
    node = Node(tmp_path, repo, server.url, mac=stranger)
    with running_node(node, tmp_path, "quiet bootpull.poll=0.5\n") as (proc, log, wait_for):
        wait_for(lambda: "bootpull repo assign 52:54:00:de:ad:02 ROLE" in log.read_text(),
                 "the not-assigned banner")
        text = (repo.root / f"hosts/{MAC_NEW.canonical}.toml").read_text()
        repo.write(f"hosts/{stranger.canonical}.toml", text.encode())
        repo.commit("assign the stranger")
        first = repo.publish()
        wait_for(lambda: (markers / "runs").exists(), "the role to start")
        assert (markers / "runs").read_text().split() == [f"head-{first[:12]}"]
        # the repository goes away: the node keeps running its role
        server.stop()
        wait_for(lambda: "Connection refused" in log.read_text(), "a failed poll")
        assert proc.poll() is None
        # a new version is published while the server is down; then it comes back
        repo.write("roles/marker/files/extra.txt", b"v2\n")
        repo.commit("v2")
        second = repo.publish()
        server.start()
        wait_for(lambda: f"head-{second[:12]}" in (markers / "runs").read_text(),
                 "the upgrade")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
        info = collect(StateDir(node.state))
        assert info["version"] == f"head-{second[:12]}"
        assert info["lkg"]["version"] == f"head-{first[:12]}"
        assert info["counters"]["retries"] >= 1  # the fetches tried while it was down
        assert "Connection refused" in log.read_text()
        assert info["health"] == "stopped"


@pytest.mark.slow
@pytest.mark.formats(1, 2)
def test_a_commit_that_changes_nothing_here_does_not_restart_the_role(
        served: tuple[SignedRepo, GitHttpServer, Path], sink: EventSink,
        tmp_path: Path) -> None:
    """Another host's change, published: the running node names its install after the new
    head and reports it, but installs nothing and does not restart its role."""
    repo, server, markers = served
    node = Node(tmp_path, repo, server.url)
    with running_node(node, tmp_path, "bootpull.poll=0.5\n") as (proc, log, wait_for):
        runs = markers / "runs"
        wait_for(runs.exists, "the role to start")
        first = runs.read_text().split()
        assert len(first) == 1 and first[0].startswith("head-")
        # the server is down while the commit and its publish are made, so that the
        # node sees only the published head (in format 2 it accepts the commit alone)
        server.stop()
        text = (repo.root / f"hosts/{MAC_NEW.canonical}.toml").read_text()
        repo.write("hosts/52-54-00-de-ad-03.toml", text.replace("marker-1", "other").encode())
        repo.commit("assign another node")
        other = repo.publish()
        server.start()
        wait_for(lambda: node.status["commit"] == other, "the relabel")
        status = node.status
        assert status["version"] == f"head-{other[:12]}" and status["lkg"] is None

        def renamed() -> list[dict[str, Any]]:
            return [e for e in sink.received if e["stage"] == "heartbeat"
                    and e["details"].get("unchanged")]

        wait_for(renamed, "the heartbeat that says so")
        said = renamed()
        assert len(said) == 1 and said[0]["status"] == "ok", said
        assert said[0]["version"] == f"head-{other[:12]}" and said[0]["commit"] == other
        assert said[0]["details"]["previous"] == first[0]
        time.sleep(2)  # several polls more
        assert runs.read_text().split() == first and proc.poll() is None
        assert len(renamed()) == 1
        assert "changes nothing this node installs" in " ".join(log.read_text().split())
        # a change to what this node runs still restarts it, under the new name
        server.stop()
        repo.write("roles/marker/files/extra.txt", b"v2\n")
        repo.commit("v2")
        second = repo.publish()
        server.start()
        wait_for(lambda: f"head-{second[:12]}" in runs.read_text(), "the upgrade")
        assert runs.read_text().split() == [*first, f"head-{second[:12]}"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
    info = collect(StateDir(node.state))
    assert info["lkg"]["version"] == f"head-{other[:12]}"


@pytest.mark.slow
def test_node_run_reverts_to_the_lkg_when_health_fails_later(
        served: tuple[SignedRepo, GitHttpServer, Path], sink: EventSink,
        tmp_path: Path) -> None:
    repo, server, markers = served
    node = Node(tmp_path, repo, server.url)
    with running_node(node, tmp_path, "bootpull.poll=0.5\n") as (proc, log, wait_for):
        runs = markers / "runs"
        wait_for(runs.exists, "the first version")
        good = runs.read_text().split()[0]
        repo.write("roles/marker/files/health.sh",
                   b'#!/bin/sh\n[ -e up ] && [ ! -e "$BOOTPULL_VAR_MARKER_DIR/sick" ]\n',
                   mode=0o755)
        repo.commit("health that can fail")
        second = f"head-{repo.publish()[:12]}"
        wait_for(lambda: second in runs.read_text(), "the second version")
        (markers / "sick").write_text("")
        wait_for(lambda: runs.read_text().split()[-1] == good, "the revert to the LKG")
        info = collect(StateDir(node.state))
        assert info["version"] == good
        assert any(why.startswith(f"{second}: ") for why in info["bad_versions"].values())
        assert info["counters"]["fallbacks"] >= 1
        time.sleep(2)  # several polls: the bad version is not installed again
        assert runs.read_text().split()[-1] == good and proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
        reverted = [e for e in sink.received if e["stage"] == "run" and e["status"] == "fail"]
        assert reverted and reverted[-1]["details"]["fallback"] == good


def test_a_second_node_run_on_the_same_state_dir_is_refused(tmp_path: Path) -> None:
    from bootpull.state import StateDir as Dir

    node_state = Dir(tmp_path / "state")
    fd = node_state.lock()
    try:
        out = CapturingWriter()
        settings = Settings(state_dir=node_state.root, repo_url="http://127.0.0.1:9/r",
                            mac=MAC_NEW, trust_file=tmp_path / "none", oneshot=True)
        assert run(settings, Console(out)) == 2
        assert "another bootpull node run is using" in out.text
    finally:
        os.close(fd)
    fd = node_state.lock()  # free again once the holder closed it
    os.close(fd)


def test_settings_from_the_command_line_and_the_kernel_command_line(tmp_path: Path) -> None:
    import argparse

    from bootpull.settings import DEFAULT_TRUST

    cmdline = tmp_path / "cmdline"
    cmdline.write_text("quiet bootpull.poll=7 bootpull.trust=/etc/t.json "
                       "bootpull.report=http://10.0.0.1/api/v1/events bootpull.log=debug "
                       "bootpull.interface=eth1,eth2 bootpull.mac=52:54:00:00:00:01\n")
    args = argparse.Namespace(cmdline=str(cmdline), mac=None, log=None, trust=None,
                              state_dir="/var/lib/bootpull", repo=None, oneshot=False,
                              interface=[], console=None, ca=[])
    s = Settings.from_args(args)
    assert s.poll_interval == 7 and s.trust_file == Path("/etc/t.json")
    assert s.report_url == "http://10.0.0.1/api/v1/events"
    assert s.interfaces == ("eth1", "eth2") and s.mac == Mac.parse("52-54-00-00-00-01")
    assert s.log_level.name == "DEBUG"
    args.trust, args.mac = "/x/trust.json", "5254.0000.0002"
    s = Settings.from_args(args)
    assert s.trust_file == Path("/x/trust.json") and s.mac == Mac.parse("525400000002")
    cmdline.write_text("quiet\n")
    args.trust = None
    assert Settings.from_args(args).trust_file == DEFAULT_TRUST == Path(
        "/etc/bootpull/trust.json")
    assert Settings.from_args(args).build_time_file == Path("/etc/bootpull/build-time")
    cmdline.write_text("quiet bootpull.build_time=/tmp/bt\n")
    assert Settings.from_args(args).build_time_file == Path("/tmp/bt")


@pytest.mark.parametrize(("argv", "words"), [
    (["--mac", "not-a-mac"], "--mac:"), (["--log", "loud"], "--log:"),
    (["--repo", "http://127.0.0.1:99999/x.git"], "Port out of range 0-65535"),
    (["--repo", "http://[::1/x.git"], "Invalid IPv6 URL"),
    (["--repo", "ftp://h/x.git"], "is not an http:// or https:// URL"),
])
def test_bad_arguments_are_usage_errors(tmp_path: Path, argv: list[str], words: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from bootpull.cli import main

    cmdline = tmp_path / "cmdline"
    cmdline.write_text("quiet\n")
    code = main(["node", "run", "--oneshot", "--state-dir", str(tmp_path / "s"),
                 "--cmdline", str(cmdline), "--repo", "http://127.0.0.1:9/r", *argv])
    assert code == 2
    err = capsys.readouterr().err
    assert "bootpull: error:" in err and words in err, err
    assert not (tmp_path / "s").exists()  # nothing touched


@pytest.mark.slow
def test_node_run_heartbeats_re_verify_the_installed_files(
        served: tuple[SignedRepo, GitHttpServer, Path], sink: EventSink,
        tmp_path: Path) -> None:
    repo, server, _ = served
    node = Node(tmp_path, repo, server.url)
    with running_node(node, tmp_path, "bootpull.heartbeat=0.3 bootpull.poll=30\n",
                      timeout=60.0) as (proc, log, wait_for):
        def beats() -> list[dict[str, object]]:
            return [e for e in sink.received if e["stage"] == "heartbeat"]


        wait_for(lambda: len(beats()) >= 2, "two heartbeats")
        first = beats()[0]
        assert first["status"] == "ok"
        details = dict(first["details"])  # type: ignore[call-overload]
        assert details.pop("rollback_protection") in ("state-disk", "none")  # §7.3
        assert details.pop("identity") in ("persistent", "ephemeral")  # §7.3
        assert str(details.pop("key")).startswith("SHA256:")
        assert details == {"files_changed": [], "stale": False, "restarts": 0}
        path = Path(str(collect(StateDir(node.state))["path"]))
        (path / "run.sh").write_bytes(b"#!/bin/sh\necho tampered\n")
        wait_for(lambda: beats()[-1]["status"] == "warn", "a drift heartbeat")
        assert beats()[-1]["details"]["files_changed"] == ["run.sh"]  # type: ignore[index]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
