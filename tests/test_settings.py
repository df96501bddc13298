"""bootpull.settings: the kernel command line and the node's options, parsed once."""

from __future__ import annotations

import argparse
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
from bootpull.console import Level
from bootpull.errors import UsageError
from bootpull.mac import Mac
from bootpull.settings import (
    DEFAULT_DHCP_DELAY,
    DEFAULT_HEARTBEAT,
    DEFAULT_POLL,
    KERNEL_KEYS,
    KNOWN_KEYS,
    DiscoverSettings,
    KernelLine,
    Settings,
    unknown_key_warnings,
)
from hypothesis import given
from hypothesis import strategies as st

CONTRACT = Path(__file__).resolve().parent.parent / "docs" / "contract.md"


def run_args(**kw: object) -> argparse.Namespace:
    base: dict[str, object] = dict(cmdline=None, mac=None, log=None, trust=None,
                                   state_dir="/var/lib/bootpull", repo=None, oneshot=False,
                                   interface=[], console=None, ca=[])
    base.update(kw)
    return argparse.Namespace(**base)


def discover_args(**kw: object) -> argparse.Namespace:
    base: dict[str, object] = dict(interface=[], timeout=30.0, no_configure=False,
                                   json=False, cmdline=None, console=None, log=None)
    base.update(kw)
    return argparse.Namespace(**base)


# -- the table ---------------------------------------------------------------------------


def test_the_table_is_the_contracts() -> None:
    """Every key of docs/contract.md §2.6 is in KERNEL_KEYS, read by the same party."""
    text = CONTRACT.read_text(encoding="utf-8")
    section = text[text.index("### 2.6 "):text.index("### 2.7 ")]
    rows = re.findall(r"^\| `bootpull\.([a-z_.]+)=[^`]*` \| ([^|]+?) \|", section,
                      re.MULTILINE)
    assert rows
    assert {name: who for name, who in rows} == {k.name: k.read_by for k in KERNEL_KEYS}
    assert len(rows) == len(KERNEL_KEYS) == len(KNOWN_KEYS)


def test_every_key_the_node_reads_has_a_typed_field() -> None:
    fields = {f.name for f in dataclasses.fields(KernelLine)} - {"unknown_keys", "problems"}
    assert fields == {k.name for k in KERNEL_KEYS if "node" in k.read_by}


# -- the kernel line ---------------------------------------------------------------------


def test_kernel_line_typed() -> None:
    line = KernelLine.parse(
        "quiet console=ttyS0 bootpull.repo=http://h/a.git bootpull.repo=http://h/r.git "
        "bootpull.interface=eth1,eth2 bootpull.interface=eth3 bootpull.mac=5254.0000.0001 "
        "bootpull.log=DEBUG bootpull.console=ttyS1,9600 bootpull.dhcp_delay=0 "
        "bootpull.poll=7 bootpull.heartbeat=2.5 bootpull.trust=/t.json "
        "bootpull.build_time=/bt bootpull.report=http://h/ev bootpull.rescue "
        "bootpull.state=/dev/vda bootpull.init.backoff=1")
    assert line == KernelLine(
        repo="http://h/r.git", report="http://h/ev", interface=("eth1", "eth2", "eth3"),
        mac=Mac.parse("52:54:00:00:00:01"), log=Level.DEBUG, console="ttyS1,9600",
        dhcp_delay=0.0, poll=7.0, heartbeat=2.5, trust=Path("/t.json"),
        build_time=Path("/bt"))


def test_kernel_line_defaults_and_empty_values() -> None:
    assert KernelLine.parse("quiet console=ttyS0") == KernelLine()
    line = KernelLine.parse("bootpull.report= bootpull.log= bootpull.console= bootpull.poll= "
                            "bootpull.trust= bootpull.repo=")
    assert line == KernelLine(repo="")  # an empty repo is kept: it is not a URL either
    assert (line.poll, line.heartbeat, line.dhcp_delay) == (DEFAULT_POLL, DEFAULT_HEARTBEAT,
                                                            DEFAULT_DHCP_DELAY)


@pytest.mark.parametrize(("text", "delay"), [
    ("0", 0.0), ("60", 60.0), ("2.5", 2.5), ("61", DEFAULT_DHCP_DELAY),
    ("-1", DEFAULT_DHCP_DELAY), ("soon", DEFAULT_DHCP_DELAY), ("nan", DEFAULT_DHCP_DELAY),
    ("", DEFAULT_DHCP_DELAY),
])
def test_dhcp_delay_outside_0_to_60_is_the_default(text: str, delay: float) -> None:
    line = KernelLine.parse(f"bootpull.dhcp_delay={text}")
    assert line.dhcp_delay == delay and line.problems == ()


def test_bad_values_are_problems_not_errors() -> None:
    line = KernelLine.parse("bootpull.mac=nope bootpull.log=loud bootpull.poll=soon "
                            "bootpull.heartbeat=x")
    assert [(p.key, p.value) for p in line.problems] == [
        ("mac", "nope"), ("log", "loud"), ("poll", "soon"), ("heartbeat", "x")]
    assert (line.mac, line.log, line.poll) == (None, None, DEFAULT_POLL)
    problem = line.problem("log")
    assert problem is not None and "'loud' is not a log level" in problem.message
    assert line.problem("repo") is None


def test_unknown_keys_are_kept_in_order_for_a_warning() -> None:
    line = KernelLine.parse("bootpull.reop=http://h/ bootpull.repo=http://h/r.git "
                            "bootpull.zzz=1 bootpull.reop=again bootpull.init.backoff=3")
    assert line.unknown_keys == ("reop", "zzz")
    assert line.repo == "http://h/r.git"
    warnings = unknown_key_warnings(line.unknown_keys)
    assert warnings == [
        "ignored unknown kernel key bootpull.reop= (did you mean bootpull.repo=?)",
        "ignored unknown kernel key bootpull.zzz="]


@given(st.text(max_size=300))
def test_any_kernel_line_parses(text: str) -> None:
    line = KernelLine.parse(text)
    assert all(p.key in KNOWN_KEYS for p in line.problems)
    assert not set(line.unknown_keys) & KNOWN_KEYS
    assert 0 <= line.dhcp_delay <= 60
    unknown_key_warnings(line.unknown_keys)


# -- node run ----------------------------------------------------------------------------


def test_run_settings_take_the_options_over_the_kernel_line() -> None:
    kernel = KernelLine.parse(
        "bootpull.repo=http://k/r.git bootpull.mac=52:54:00:00:00:01 bootpull.log=debug "
        "bootpull.console=ttyS1 bootpull.interface=eth1 bootpull.trust=/k.json "
        "bootpull.dhcp_delay=0 bootpull.poll=0.01 bootpull.oops=1")
    s = Settings.from_args(run_args(), kernel)
    assert (s.repo_url, s.kernel_repo_url) == (None, "http://k/r.git")
    assert s.mac == Mac.parse("52-54-00-00-00-01") and s.log_level is Level.DEBUG
    assert (s.console_spec, s.interfaces, s.trust_file) == ("ttyS1", ("eth1",),
                                                            Path("/k.json"))
    assert (s.dhcp_delay, s.poll_interval, s.unknown_keys) == (0.0, 0.1, ("oops",))
    s = Settings.from_args(run_args(repo="http://o/r.git", mac="525400000002", log="warn",
                                    console="ttyS0", interface=["eth9"], trust="/o.json",
                                    oneshot=True, state_dir="/s"), kernel)
    assert (s.repo_url, s.kernel_repo_url) == ("http://o/r.git", "http://k/r.git")
    assert s.mac == Mac.parse("52:54:00:00:00:02") and s.log_level is Level.WARN
    assert (s.console_spec, s.interfaces, s.trust_file) == ("ttyS0", ("eth9",),
                                                            Path("/o.json"))
    assert (s.oneshot, s.state_dir) == (True, Path("/s"))
    assert not hasattr(s, "params")


@pytest.mark.parametrize(("cmdline", "options", "message"), [
    ("bootpull.mac=nope", {}, "--mac: 'nope' is not a MAC address"),
    ("", {"mac": "nope"}, "--mac: 'nope' is not a MAC address"),
    ("bootpull.log=loud", {}, "--log: 'loud' is not a log level"),
    ("", {"log": "loud"}, "--log: 'loud' is not a log level"),
    ("bootpull.poll=soon", {}, "bootpull.poll=soon: not a number of seconds"),
    ("bootpull.heartbeat=x", {}, "bootpull.heartbeat=x: not a number of seconds"),
    ("bootpull.heartbeat=x bootpull.log=loud bootpull.mac=nope", {}, "--mac: "),
    ("bootpull.heartbeat=x bootpull.poll=y", {}, "bootpull.poll=y"),
])
def test_run_usage_errors(cmdline: str, options: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        Settings.from_args(run_args(**options), KernelLine.parse(cmdline))
    assert caught.value.what.startswith(message)
    assert caught.value.exit_code == 2


def test_run_options_mend_a_bad_kernel_value() -> None:
    kernel = KernelLine.parse("bootpull.mac=nope bootpull.mac=")
    s = Settings.from_args(run_args(), kernel)  # the last bootpull.mac= is empty: no override
    assert s.mac is None
    kernel = KernelLine.parse("bootpull.mac=nope bootpull.log=loud")
    with pytest.raises(UsageError):
        Settings.from_args(run_args(), kernel)
    s = Settings.from_args(run_args(mac="52:54:00:00:00:03", log="error"), kernel)
    assert s.mac == Mac.parse("525400000003") and s.log_level is Level.ERROR


def test_run_settings_read_the_cmdline_file(tmp_path: Path) -> None:
    path = tmp_path / "cmdline"
    path.write_text("bootpull.report=http://h/ev bootpull.interface=eth7\n")
    s = Settings.from_args(run_args(cmdline=str(path)))
    assert (s.report_url, s.interfaces) == ("http://h/ev", ("eth7",))
    s = Settings.from_args(run_args(cmdline=str(tmp_path / "missing")))
    assert (s.report_url, s.interfaces) == (None, ())


# -- node discover -----------------------------------------------------------------------


def test_discover_settings() -> None:
    kernel = KernelLine.parse("bootpull.repo=http://k/r.git bootpull.mac=52:54:00:00:00:01 "
                              "bootpull.report=http://k/ev bootpull.interface=eth1 "
                              "bootpull.dhcp_delay=0 bootpull.poll=soon bootpull.x=1")
    s = DiscoverSettings.from_args(discover_args(), kernel)
    assert s == DiscoverSettings(
        interfaces=("eth1",), repo_url="http://k/r.git", mac=Mac.parse("525400000001"),
        report_url="http://k/ev", dhcp_delay=0.0, unknown_keys=("x",))
    s = DiscoverSettings.from_args(discover_args(
        interface=["eth2"], timeout=5, no_configure=True, json=True, console="ttyS0",
        log="debug"), kernel)
    assert (s.interfaces, s.discover_timeout, s.configure, s.as_json) == (
        ("eth2",), 5.0, False, True)
    assert (s.console_spec, s.log_level) == ("ttyS0", Level.DEBUG)


def test_discover_keeps_a_bad_mac_for_its_banner_and_refuses_a_bad_level() -> None:
    for text in ("bootpull.mac=nope", "bootpull.mac="):
        s = DiscoverSettings.from_args(discover_args(), KernelLine.parse(text))
        assert s.mac is None and s.mac_error and "is not a MAC address" in s.mac_error
    with pytest.raises(UsageError) as caught:
        DiscoverSettings.from_args(discover_args(), KernelLine.parse("bootpull.log=loud"))
    assert caught.value.what.startswith("'loud' is not a log level")  # no "--log: " here
    with pytest.raises(UsageError):
        DiscoverSettings.from_args(discover_args(log="loud"), KernelLine())


def test_discover_warns_about_unknown_keys(tmp_path: Path) -> None:
    (tmp_path / "cmdline").write_text("bootpull.reop=http://h/r.git bootpull.dhcp_delay=0\n")
    proc = subprocess.run([sys.executable, "-m", "bootpull", "node", "discover", "--json",
                           "--interface", "no-such-if0", "--cmdline",
                           str(tmp_path / "cmdline")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 10, proc.stderr  # no such interface: before any network
    assert ("warn: ignored unknown kernel key bootpull.reop= (did you mean bootpull.repo=?)"
            in proc.stderr)
