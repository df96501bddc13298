"""``bootpull.ntp=HOST[,HOST]``: the NTP servers of the clock stage, instead of option 42."""

from __future__ import annotations

import argparse
from pathlib import Path

from bootpull.settings import KERNEL_KEYS, KernelLine, Settings


def test_the_key_is_read_by_node_run() -> None:
    assert {k.name: k.read_by for k in KERNEL_KEYS}["ntp"] == "node run"


def test_servers_in_order_last_key_wins() -> None:
    line = KernelLine.parse("bootpull.ntp=a.test bootpull.ntp=10.0.0.1,ntp.lab.test:1123,,")
    assert line.ntp == ("10.0.0.1", "ntp.lab.test:1123")
    assert KernelLine.parse("quiet").ntp == ()
    assert KernelLine.parse("bootpull.ntp=").ntp == ()
    assert not line.unknown_keys and not line.problems


def test_node_run_settings_take_them(tmp_path: Path) -> None:
    args = argparse.Namespace(state_dir=str(tmp_path), repo=None, mac=None, trust=None,
                              oneshot=True, interface=None, console=None, log=None,
                              cmdline=None, ca=[])
    settings = Settings.from_args(args, KernelLine.parse("bootpull.ntp=10.0.0.1,10.0.0.2"))
    assert settings.ntp_servers == ("10.0.0.1", "10.0.0.2")
    assert settings.clock_setter is None  # the system clock, in the image only
