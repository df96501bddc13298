"""The CLI skeleton: help works, heavy imports stay lazy."""

from __future__ import annotations

import subprocess
import sys

from bootpull.cli import main


def test_help_does_not_import_scapy_or_dulwich() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from bootpull.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try: main(['--help'])\n"
        "    except SystemExit: pass\n"
        "    try: main(['node', '--help'])\n"
        "    except SystemExit: pass\n"
        "heavy = [m for m in ('scapy', 'dulwich', 'dns', 'tuf', 'requests') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_unknown_command_is_a_usage_error() -> None:
    proc = subprocess.run([sys.executable, "-m", "bootpull", "frobnicate"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr


def test_group_without_subcommand_prints_help_and_exits_2() -> None:
    assert main(["node"]) == 2
