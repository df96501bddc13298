"""Outside the boot image, ``node discover`` and ``node run`` send DHCP only on the
interfaces named with ``--interface`` (or ``bootpull.interface=``); otherwise they exit 2
before any packet (docs/contract.md §3.1). The DHCP code is replaced by a trap here, so a
refusal that came too late fails loudly instead of sending DISCOVERs on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import pytest
from bootpull import dhcp_client, settings
from bootpull import discover as discover_mod
from bootpull.cli import main
from bootpull.errors import UsageError
from bootpull_lab import netlab as lab_net


class Trap(AssertionError):
    pass


@pytest.fixture
def no_dhcp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Outside the image (its marker absent), and every way to DHCP is a trap."""
    def trap(*_args: object, **_kw: object) -> NoReturn:
        raise Trap("a DHCP code path was entered")

    monkeypatch.setattr(settings, "IMAGE_MARKER", tmp_path / "no-image.conf")
    monkeypatch.setattr(discover_mod, "discover", trap)
    monkeypatch.setattr(dhcp_client, "acquire", trap)
    monkeypatch.setattr(dhcp_client, "preload", trap)
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("console=ttyS0 bootpull.dhcp_delay=0\n")
    return cmdline


@pytest.mark.parametrize("command", [["node", "discover", "--json"],
                                     ["node", "discover"]])
def test_node_discover_without_interface_outside_the_image_exits_2_before_dhcp(
        no_dhcp: Path, capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    code = main([*command, "--cmdline", str(no_dhcp), "--timeout", "1"])
    assert code == 2
    err = capsys.readouterr().err
    assert "no --interface given, and this is not the boot image" in err
    assert "--interface IF" in err and "every one of its interfaces" in err


def test_node_run_without_interface_outside_the_image_exits_2_before_dhcp(
        no_dhcp: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    state = tmp_path / "state"
    code = main(["node", "run", "--oneshot", "--state-dir", str(state),
                 "--cmdline", str(no_dhcp), "--repo", "http://127.0.0.1:9/r.git"])
    assert code == 2
    err = capsys.readouterr().err
    assert "node run: no --interface given, and this is not the boot image" in err
    assert "--repo URL and --mac MAC" in err
    assert not state.exists()  # refused before the state directory was touched


def test_the_trap_would_fire(no_dhcp: Path) -> None:
    """The fixture is armed: with an interface named, discovery is entered (and trapped)."""
    with pytest.raises(Trap):
        main(["node", "discover", "--interface", "no-such-if0", "--cmdline", str(no_dhcp)])


def test_a_named_interface_or_the_kernel_key_or_the_image_allows_dhcp(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(settings, "IMAGE_MARKER", tmp_path / "image.conf")
    with pytest.raises(UsageError) as caught:
        settings.check_dhcp_allowed("node discover", ())
    assert caught.value.exit_code == 2
    assert str(tmp_path / "image.conf") in caught.value.why
    settings.check_dhcp_allowed("node discover", ("eth0",))  # --interface
    kernel = settings.KernelLine.parse("bootpull.interface=eth1")
    settings.check_dhcp_allowed("node run", kernel.interface)  # bootpull.interface=
    (tmp_path / "image.conf").write_text("IMAGE_VERSION=1\n")
    assert settings.in_boot_image()
    settings.check_dhcp_allowed("node run", ())  # the image: every Ethernet interface


def test_node_run_with_repo_and_mac_does_no_dhcp_and_is_not_refused(
        no_dhcp: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--repo and --mac: no DHCP at all, so no interface is needed (exit 11: port 9)."""
    code = main(["node", "run", "--oneshot", "--state-dir", str(tmp_path / "s"),
                 "--cmdline", str(no_dhcp), "--repo", "http://127.0.0.1:9/r.git",
                 "--mac", "52:54:00:00:00:01", "--trust", str(tmp_path / "none.json")])
    assert code != 2, capsys.readouterr().err


@pytest.mark.netns
@pytest.mark.slow
def test_the_real_command_in_a_namespace_refuses_and_dnsmasq_sees_no_discover(
        netlab: lab_net.Lab, tmp_path: Path) -> None:
    """The process as an admin would run it (no image marker on this machine), inside a
    namespace whose one NIC reaches a real dnsmasq: exit 2 and not one DHCPDISCOVER;
    then with ``--interface eth0`` the same namespace gets its lease (the server was
    there to answer)."""
    assert not settings.IMAGE_MARKER.exists(), "this machine looks like the boot image"
    server, client = netlab.namespace("server"), netlab.namespace("client")
    link = netlab.link(client, server, client_if="eth0")
    dnsmasq = netlab.dnsmasq(server, [link], [*link.dhcp_range(),
                                              f"dhcp-option=vendor:bootpull,1,"
                                              f"http://{link.server_ip}/r.git"], ping=False)
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("console=ttyS0 bootpull.dhcp_delay=0\n")
    argv = ["node", "discover", "--json", "--timeout", "15", "--cmdline", str(cmdline)]
    refused = client.run(lab_net.bootpull_argv(*argv), check=False, timeout=60)
    assert refused.returncode == 2, refused.stderr
    assert "not the boot image" in refused.stderr and refused.stdout == ""
    assert "DHCPDISCOVER" not in dnsmasq.log()
    found = client.run(lab_net.bootpull_argv(*argv, "--interface", "eth0"), check=False,
                       timeout=60)
    assert found.returncode == 0, found.stderr
    assert "DHCPDISCOVER" in dnsmasq.log()
