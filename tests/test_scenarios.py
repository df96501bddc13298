"""The scenario matrix: real QEMU nodes booting the session's image against a real home base.

Every node boots the one image built per session (``lab_image_dir``), on QEMU's
restricted user network: DHCP hands out ``http://10.0.2.100:8080/repo.git`` in the
BOOTP file field, and ``guestfwd`` carries the guest's connections to the test's own
``bootpull serve`` on 127.0.0.1. See docs/lab.md for how to add a scenario.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from bootpull.mac import Mac
from bootpull_lab.deploy import LabRepo, make_repo
from bootpull_lab.homebase import HomeBase
from bootpull_lab.vm import GUEST_HOST, GUEST_PORT, Nic, UserNet, Vm, make_state_disk, user_url
from gitserver import GitHttpServer
from gitserver_kinds import STOCK
from nginxserver import SitePki

pytestmark = [pytest.mark.qemu, pytest.mark.slow]

WEB_MAC = Mac.parse("52:54:00:12:34:56")  # hosts/52-54-00-12-34-56.toml: role web
UNKNOWN_MAC = Mac.parse("52:54:00:00:00:99")
BOOT_TIMEOUT = 300.0  # TCG on a busy 2-core machine: generous
RUNNING = r"\[finished\] run {role} (\S+) \("


def _nic(mac: Mac, hb: HomeBase) -> Nic:
    return Nic(mac, UserNet(port=hb.port, bootfile=user_url("/repo.git")))


@contextmanager
def node(image: Path, tmp_path: Path, nics: Sequence[Nic], *, name: str = "node",
         cmdline: Sequence[str] = ("bootpull.poll=5",), state_disk: Path | None = None,
         memory: int = 256) -> Iterator[Vm]:
    with Vm(image, nics, log=tmp_path / f"{name}.log", cmdline=cmdline,
            state_disk=state_disk, memory=memory, name=name) as vm:
        yield vm


def _wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (OSError, ValueError):
            pass
        time.sleep(1)
    raise AssertionError(f"{what}: not within {timeout:g}s (last: {last!r})")


def _reported(hb: HomeBase, mac: Mac, **want: Any) -> Callable[[], Any]:
    def check() -> Any:
        record = hb.node(mac.canonical)
        if record is None:
            return None
        return record if all(record.get(k) == v for k, v in want.items()) else None

    return check


def _git(repo: LabRepo, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "lab", "GIT_AUTHOR_EMAIL": "lab@bootpull.invalid",
           "GIT_COMMITTER_NAME": "lab", "GIT_COMMITTER_EMAIL": "lab@bootpull.invalid"}
    subprocess.run(["git", "-C", str(repo.root), *args], check=True, capture_output=True,
                   env=env)


def _edit_and_publish(repo: LabRepo, path: str, text: str, message: str) -> str:
    target = repo.root / path
    target.write_text(text)
    _git(repo, "add", path)
    _git(repo, "commit", "-q", "-m", message)
    repo.bootpull("publish")
    return subprocess.run(["git", "-C", str(repo.root), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()


# -- 1. happy path -----------------------------------------------------------------------


def test_happy_path(lab_image_dir: Path, lab_homebase: HomeBase, tmp_path: Path) -> None:
    # at the memory floor the image must meet: 192 MB
    with node(lab_image_dir, tmp_path, [_nic(WEB_MAC, lab_homebase)], memory=192) as vm:
        vm.wait_for(RUNNING.format(role="web"), BOOT_TIMEOUT)
        console = vm.console
        # every stage shows on the console with its timing
        for stage in ("discover", "fetch deploy branch main", "verify signed metadata",
                      "install web", "run web"):
            assert f"[finished] {stage}" in console, stage
        for line in console.splitlines():
            if "[finished]" in line:
                assert " (" in line and "s)" in line, line
        assert "repository http://10.0.2.100:8080/repo.git (from dhcp-67)" in console
        _wait_until(_reported(lab_homebase, WEB_MAC, role="web", status="OK"), 90,
                    "the node's report at the home base")


# -- 2. reassign and reboot ----------------------------------------------------------------


def test_reassign_and_reboot(lab_image_dir: Path, lab_repo: LabRepo, lab_homebase: HomeBase,
                             tmp_path: Path) -> None:
    with node(lab_image_dir, tmp_path, [_nic(WEB_MAC, lab_homebase)],
              cmdline=("bootpull.poll=600",)) as vm:
        vm.wait_for(RUNNING.format(role="web"), BOOT_TIMEOUT)
        lab_repo.bootpull("assign", WEB_MAC.colons, "sensor")
        lab_repo.bootpull("publish")
        vm.reboot()
        vm.wait_for(r"bootpull image .* up", 120)  # a new boot
        vm.wait_for(RUNNING.format(role="sensor"), BOOT_TIMEOUT)
        _wait_until(_reported(lab_homebase, WEB_MAC, role="sensor"), 90,
                    "the sensor role reported")


# -- 3. pulled cable -----------------------------------------------------------------------


def test_pulled_cable_during_fetch(lab_image_dir: Path, lab_homebase: HomeBase,
                                   tmp_path: Path) -> None:
    with node(lab_image_dir, tmp_path, [_nic(WEB_MAC, lab_homebase)]) as vm:
        vm.wait_for(r"\[started\] fetch", BOOT_TIMEOUT)
        vm.set_link(0, up=False)
        # longer than the fetch's stall timeout (30 s), so the fetch fails and retries
        time.sleep(45)
        assert "[finished] run web" not in vm.console
        vm.set_link(0, up=True)
        vm.wait_for(RUNNING.format(role="web"), BOOT_TIMEOUT)
        record = _wait_until(_reported(lab_homebase, WEB_MAC, role="web"), 90,
                             "the node's report")
        assert record["counters"]["retries"] >= 1, record


# -- 4. repository down at boot, last-known-good on disk --------------------------------------


def test_repo_down_at_boot_runs_lkg_then_upgrades(lab_image_dir: Path, lab_repo: LabRepo,
                                                  tmp_path: Path) -> None:
    disk = make_state_disk(tmp_path / "state.img")
    hb = HomeBase(lab_repo.root, db=tmp_path / "events.db", log=tmp_path / "hb.log")
    with hb, node(lab_image_dir, tmp_path, [_nic(WEB_MAC, hb)], name="first",
                  state_disk=disk) as vm:
        first = vm.wait_for(RUNNING.format(role="web"), BOOT_TIMEOUT).group(1)
    # the home base is down now; the node boots from its disk
    with node(lab_image_dir, tmp_path, [_nic(WEB_MAC, hb)], name="second",
              state_disk=disk) as vm:
        assert vm.wait_for(RUNNING.format(role="web"), BOOT_TIMEOUT).group(1) == first
        page = (lab_repo.root / "roles/web/files/page.html").read_text()
        new = _edit_and_publish(lab_repo, "roles/web/files/page.html",
                                page + "<!-- version two -->\n", "web: version two")
        with HomeBase(lab_repo.root, db=tmp_path / "events.db", log=tmp_path / "hb.log",
                      port=hb.port) as hb2:
            upgraded = vm.wait_for(RUNNING.format(role="web"), BOOT_TIMEOUT).group(1)
            assert upgraded != first and new[:12] in upgraded
            record = _wait_until(_reported(hb2, WEB_MAC, version=upgraded), 90,
                                 "the upgraded version reported")
            assert record["counters"]["fallbacks"] >= 1, record


# -- 5. rogue repository --------------------------------------------------------------------


def test_rogue_repository_is_refused(lab_image_dir: Path, tmp_path: Path) -> None:
    rogue = make_repo(tmp_path / "rogue-site", "rogue")  # its own keys: not the image's
    with HomeBase(rogue.root, db=tmp_path / "events.db", log=tmp_path / "hb.log") as hb, \
            node(lab_image_dir, tmp_path, [_nic(WEB_MAC, hb)]) as vm:
        vm.wait_for(r"BOOTPULL: VERIFY FAILED", BOOT_TIMEOUT)
        time.sleep(3)
        console = vm.console
        banner = console[console.index("BOOTPULL: VERIFY FAILED"):]
        assert "why:" in banner and "do:" in banner
        assert "[started] run" not in console and "[started] install" not in console


# -- 6. unknown MAC -------------------------------------------------------------------------


def test_unknown_mac_waits_then_picks_up_its_role(lab_image_dir: Path, lab_repo: LabRepo,
                                                  lab_homebase: HomeBase,
                                                  tmp_path: Path) -> None:
    _git(lab_repo, "rm", "-q", "hosts/default.toml")
    _git(lab_repo, "commit", "-q", "-m", "no default role")
    lab_repo.bootpull("publish")
    with node(lab_image_dir, tmp_path, [_nic(UNKNOWN_MAC, lab_homebase)]) as vm:
        vm.wait_for(r"BOOTPULL: \S+ FAILED", BOOT_TIMEOUT)
        time.sleep(3)
        command = f"bootpull repo assign {UNKNOWN_MAC.colons}"
        assert command in vm.console.replace("\n      ", " ")
        lab_repo.bootpull("assign", UNKNOWN_MAC.colons, "sensor")
        lab_repo.bootpull("publish")
        vm.wait_for(RUNNING.format(role="sensor"), BOOT_TIMEOUT)
        assert vm.console.count("bootpull image 0.1.0") == 1  # no reboot


# -- 7. two NICs, the first unplugged -------------------------------------------------------


def test_two_nics_first_unplugged(lab_image_dir: Path, lab_homebase: HomeBase,
                                  tmp_path: Path) -> None:
    second = Mac.parse("52:54:00:12:34:57")  # hosts/52-54-00-12-34-57.toml: role sensor
    with node(lab_image_dir, tmp_path, [_nic(WEB_MAC, lab_homebase),
                                        _nic(second, lab_homebase)]) as vm:
        vm.set_link(0, up=False)
        vm.wait_for(RUNNING.format(role="sensor"), BOOT_TIMEOUT)
        assert "(eth1)" in vm.console


# -- 8. health check fails after an upgrade ---------------------------------------------------


def test_failing_health_after_upgrade_reverts_to_lkg(lab_image_dir: Path, lab_repo: LabRepo,
                                                     lab_homebase: HomeBase,
                                                     tmp_path: Path) -> None:
    with node(lab_image_dir, tmp_path, [_nic(WEB_MAC, lab_homebase)]) as vm:
        good = vm.wait_for(RUNNING.format(role="web"), BOOT_TIMEOUT).group(1)
        published = _edit_and_publish(
            lab_repo, "roles/web/files/health.sh",
            "#!/bin/sh\necho 'health: broken on purpose' >&2\nexit 1\n",
            "web: a health check that fails")
        reverted = vm.wait_for(r"reverted to the last-known-good web (\S+)",
                               BOOT_TIMEOUT).group(1)
        # the install that ran before: in metadata format 2 it is renamed after the
        # edit's commit when the node saw that commit before its publish (same files)
        edit = subprocess.run(["git", "-C", str(lab_repo.root), "rev-parse", f"{published}~1"],
                              check=True, capture_output=True, text=True).stdout.strip()
        assert reverted in (good, f"head-{edit[:12]}"), vm.console
        record = _wait_until(_reported(lab_homebase, WEB_MAC, version=reverted), 90,
                             "the node reporting the last-known-good")
        assert record["counters"]["fallbacks"] >= 1, record


# -- 9. the servers sites run --------------------------------------------------------------


def test_boots_from_a_stock_git_server(lab_image_dir: Path, lab_repo: LabRepo,
                                       tmp_path: Path) -> None:
    """git http-backend with git's default config (no allowFilter): the node takes the
    whole tip over protocol v2, says so and what to enable, and runs its role."""
    server = GitHttpServer(git_config=STOCK)
    server.add_repo("repo.git", lab_repo.root / ".git")
    with server, node(lab_image_dir, tmp_path, [Nic(WEB_MAC, UserNet(
            port=server.port, bootfile=user_url("/repo.git")))]) as vm:
        vm.wait_for(RUNNING.format(role="web"), BOOT_TIMEOUT)
        flat = " ".join(vm.console.split())
    assert "fetching over v2: git protocol v2 without partial fetch" in flat
    assert "to fetch less, set uploadpack.allowFilter=true" in flat
    assert any(s.path.endswith("/git-upload-pack") for s in server.log)


def test_boots_from_https_with_the_site_ca(lab_image_dir: Path, lab_repo: LabRepo,
                                          site_pki: SitePki, tmp_path: Path,
                                          nginx_git_server: Callable[..., Any]) -> None:
    """nginx + fcgiwrap + git http-backend over https with a private CA, which the image
    trusts (``bootpull image build --ca``): the node fetches its role over v2+filter."""
    server = nginx_git_server({"repo.git": lab_repo.root}, cert=site_pki.valid,
                              git_config={"uploadpack.allowFilter": "true"})
    url = f"https://{GUEST_HOST}:{GUEST_PORT}/repo.git"
    with node(lab_image_dir, tmp_path, [Nic(WEB_MAC, UserNet(port=server.port,
                                                            bootfile=url))]) as vm:
        vm.wait_for(RUNNING.format(role="web"), BOOT_TIMEOUT)
        flat = " ".join(vm.console.split())
    assert f"repository {url} (from dhcp-67)" in flat
    assert "fetching over v2+filter" in flat
    assert "FETCH FAILED" not in flat and "certificate" not in flat, flat[-3000:]
