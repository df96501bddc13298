"""The example repository (repo-layout/example): its roles work, and it boots on nodes.

- Each role's files, run the way a node runs them (install hooks in the staged
  directory, the command with cwd = the install directory and the contract's
  environment, the health check), under busybox ``sh`` and Python's standard library
  only: what the boot image has.
- The whole example boots in the namespace harness: dnsmasq configured with exactly
  what ``bootpull repo site-config`` prints, the home base (``bootpull serve``) serving
  the signed example repository, and two nodes (the demo web node and the sensor node)
  running ``bootpull node run --oneshot`` with nothing but DHCP to go on. Their reports
  reach the home base, and ``bootpull repo history`` joins them with the git history.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from bootpull.cli import main
from bootpull_repo.example import DEMO_MAC, ROLES, SENSOR_MAC, example_dir
from signed_repo import SignedRepo

BUSYBOX_APPLETS = ("sh", "date", "sleep", "awk", "wc", "mkdir", "mv", "tail", "cat", "grep",
                   "env", "sort", "kill", "wget",
                   "timeout")


def role_spec(role: str) -> dict[str, object]:
    import tomllib

    return tomllib.loads((example_dir() / "roles" / role / "role.toml").read_text())


@pytest.fixture
def image_path(tmp_path: Path) -> str:
    """A PATH like the boot image's: busybox applets, and python3 (3.11, stdlib only)."""
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed")
    bin_dir = tmp_path / "image-bin"
    bin_dir.mkdir()
    for applet in BUSYBOX_APPLETS:
        (bin_dir / applet).symlink_to(busybox)
    # The interpreter itself (not a pyenv shim or the venv): the standard library only.
    (bin_dir / "python3").symlink_to(os.path.realpath(sys.executable))
    return str(bin_dir)


def installed(tmp_path: Path, role: str) -> Path:
    """The role's files/ as the installer lays them out (modes kept)."""
    target = tmp_path / "roles" / role / "1-test"
    shutil.copytree(example_dir() / "roles" / role / "files", target)
    return target


def run_argv(argv: list[str], cwd: Path, env: dict[str, str], image_path: str,
             **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run like the node does (program relative to the install dir), but through busybox sh."""
    program = cwd / argv[0]
    return subprocess.run([f"{image_path}/sh", str(program), *argv[1:]], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60, check=False,
                          **kwargs)  # type: ignore[call-overload,no-any-return]


def contract_env(role: str, image_path: str, **variables: str) -> dict[str, str]:
    env = {"PATH": image_path, "HOME": "/", "BOOTPULL_MAC": DEMO_MAC, "BOOTPULL_ROLE": role,
           "BOOTPULL_VERSION": "head-0123456789ab", "BOOTPULL_COMMIT": "0" * 40,
           "BOOTPULL_HOSTNAME": f"{role}-1", "BOOTPULL_IP": "127.0.0.1"}
    env.update({f"BOOTPULL_VAR_{k}": v for k, v in variables.items()})
    return env


@contextlib.contextmanager
def started(argv: list[str], cwd: Path, env: dict[str, str], image_path: str
            ) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([f"{image_path}/sh", str(cwd / argv[0]), *argv[1:]], cwd=cwd,
                            env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_every_role_has_install_hooks_and_a_health_check() -> None:
    assert sorted(p.name for p in (example_dir() / "roles").iterdir()) == sorted(ROLES)
    for role in ROLES:
        spec = role_spec(role)
        assert spec["format"] == 1
        assert spec["install"]["hooks"]  # type: ignore[index]
        assert spec["health"]["command"]  # type: ignore[index]


def test_web_role_serves_its_environment(tmp_path: Path, image_path: str) -> None:
    spec = role_spec("web")
    where = installed(tmp_path, "web")
    port = free_port()
    env = contract_env("web", image_path, PORT=str(port), LISTEN="127.0.0.1")
    for hook in spec["install"]["hooks"]:  # type: ignore[index]
        result = run_argv(hook, where, env, image_path)
        assert result.returncode == 0, result.stderr
    health = spec["health"]["command"]  # type: ignore[index]
    assert run_argv(health, where, env, image_path).returncode == 1  # nothing runs yet
    with started(spec["run"]["command"], where, env, image_path) as proc:  # type: ignore[index]
        check = run_argv(health, where, env, image_path)
        assert check.returncode == 0, check.stderr
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            page = response.read().decode()
        assert "<h1>web-1</h1>" in page
        assert "<tr><th>BOOTPULL_VAR_PORT</th><td>" + str(port) in page
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/env.json", timeout=10) as r:
            assert json.load(r)["BOOTPULL_ROLE"] == "web"
        assert proc.poll() is None
    assert proc.returncode in (0, -15)


def test_web_install_hook_refuses_a_broken_page(tmp_path: Path, image_path: str) -> None:
    where = installed(tmp_path, "web")
    (where / "page.html").write_text("<p>no marker</p>\n")
    hook = role_spec("web")["install"]["hooks"][0]  # type: ignore[index]
    result = run_argv(hook, where, contract_env("web", image_path), image_path)
    assert result.returncode != 0
    assert "page.html lost its {rows} marker" in result.stderr


def test_sensor_role_logs_what_it_sees(tmp_path: Path, image_path: str) -> None:
    spec = role_spec("sensor")
    where = installed(tmp_path, "sensor")
    env = contract_env("sensor", image_path, INTERVAL="1")
    for hook in spec["install"]["hooks"]:  # type: ignore[index]
        result = run_argv(hook, where, env, image_path)
        assert result.returncode == 0, result.stderr
    assert (where / "log").is_dir()
    with started(spec["run"]["command"], where, env, image_path) as proc:  # type: ignore[index]
        check = run_argv(spec["health"]["command"], where, env, image_path)  # type: ignore[index]
        assert check.returncode == 0, check.stderr
        deadline = time.monotonic() + 30
        while len((where / "log" / "sensor.log").read_text().splitlines()) < 3:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the sensor wrote fewer than 3 lines in 30s"
            time.sleep(0.2)
    lines = (where / "log" / "sensor.log").read_text().splitlines()
    assert all(" host=sensor-1 load=" in line and " uptime=" in line for line in lines)
    assert proc.returncode in (0, -15)


def test_sensor_refuses_a_bad_interval(tmp_path: Path, image_path: str) -> None:
    where = installed(tmp_path, "sensor")
    env = contract_env("sensor", image_path, INTERVAL="soon")
    result = run_argv(["./sensor.sh"], where, env, image_path)
    assert result.returncode == 2
    assert "INTERVAL must be whole seconds" in result.stderr


def test_stale_sensor_log_fails_health(tmp_path: Path, image_path: str) -> None:
    where = installed(tmp_path, "sensor")
    (where / "log").mkdir()
    log = where / "log" / "sensor.log"
    log.write_text("old reading\n")
    old = time.time() - 3600
    os.utime(log, (old, old))
    result = run_argv(["./health.sh"], where, contract_env("sensor", image_path, INTERVAL="5"),
                      image_path)
    assert result.returncode == 1
    assert "last reading is" in result.stderr


# -- the whole example, booted ----------------------------------------------------------


def _wait_listening(ns: object, port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while not ns.run(["ss", "-Hltn", f"sport = :{port}"],  # type: ignore[attr-defined]
                     check=False).stdout.strip():
        assert proc.poll() is None, f"{what} exited {proc.returncode}"
        assert time.monotonic() < deadline, f"{what} did not listen on port {port}"
        time.sleep(0.1)


@pytest.mark.netns
@pytest.mark.slow
def test_example_boots_two_nodes_in_the_namespace_lab(
        netlab: object, example_repo: SignedRepo, tmp_path: Path) -> None:
    pytest.importorskip("bootpull.pipeline", reason="the node pipeline is not here yet")
    from bootpull_lab import netlab as lab_net
    from bootpull_repo.site_config import dnsmasq, make_site

    lab: lab_net.Lab = netlab  # type: ignore[assignment]
    server = lab.namespace("srv")
    web_ns = lab.namespace("web")
    sensor_ns = lab.namespace("sen")
    web_link = lab.link(web_ns, server, client_if="eth0", mac=DEMO_MAC)
    sensor_link = lab.link(sensor_ns, server, client_if="eth0", mac=SENSOR_MAC)
    base = f"http://{web_link.server_ip}:8080"
    site = make_site(f"{base}/repo.git", "lab.example.net", f"{base}/api/v1/events")
    lab.dnsmasq(server, [web_link, sensor_link],
                [*web_link.dhcp_range(), *sensor_link.dhcp_range(),
                 *dnsmasq(site).splitlines()], ping=False)

    db = tmp_path / "events.db"
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed in finally
    serve = server.popen(lab_net.bootpull_argv("serve", "--repo", str(example_repo.root),
                                               "--listen", "0.0.0.0:8080", "--db", str(db)),
                         stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_listening(server, 8080, serve, "bootpull serve")
        trust = tmp_path / "trust.json"
        trust.write_bytes(example_repo.trust)
        results = {}
        for name, ns in (("web", web_ns), ("sensor", sensor_ns)):
            state = tmp_path / f"state-{name}"
            cmdline = tmp_path / f"cmdline-{name}"
            cmdline.write_text("console=ttyS0 bootpull.dhcp_delay=0\n")
            proc = ns.run(lab_net.bootpull_argv(
                "node", "run", "--oneshot", "--interface", "eth0", "--trust", str(trust),
                "--state-dir", str(state), "--cmdline", str(cmdline)),
                check=False, timeout=300, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
            assert proc.returncode == 0, f"{name} node exited {proc.returncode}:\n{proc.stderr}"
            status = json.loads(subprocess.run(
                lab_net.bootpull_argv("node", "status", "--state-dir", str(state), "--json"),
                capture_output=True, text=True, check=True, timeout=120).stdout)
            results[name] = (status, proc.stderr)
        head = example_repo.git("rev-parse", "main")
        web, web_console = results["web"]
        assert (web["role"], web["version"], web["commit"]) == ("web", f"head-{head[:12]}", head)
        assert "(from dhcp-43)" in web_console, web_console
        assert "install hook: ./check.sh" in web_console
        assert "role web passed its health check" in web_console
        sensor, sensor_console = results["sensor"]
        assert sensor["role"] == "sensor"
        assert "role sensor passed its health check" in sensor_console
        assert (tmp_path / "state-sensor" / "current" / "log" / "sensor.log").read_text()
    finally:
        serve.terminate()
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait(timeout=30)
        log.close()

    # The reports reached the home base; history joins them with the git half.
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["repo", "-C", str(example_repo.root), "history", DEMO_MAC, "--json",
                     "--db", str(db)])
    assert code == 0
    history = json.loads(out.getvalue())
    assert history["changes"], history
    reported = history["reports"]
    assert reported, (tmp_path / "serve.log").read_text()
    assert reported[-1]["role"] == "web"
    assert reported[-1]["version"] == f"head-{head[:12]}"
    assert reported[-1]["commit"] == head
