"""``bootpull serve`` without the ``server`` extra refuses to start, and says what to do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# Run bootpull's CLI in a fresh interpreter where importing a module fails, as it does
# where the module is not installed (None in sys.modules: "import of X halted").
SCRIPT = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None
from bootpull.cli import main
sys.exit(main(sys.argv[2:]))
"""


def bootpull_without(modules: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SCRIPT, modules, *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("hidden", "named"), [
    ("feedgen", "feedgen"), ("lxml", "lxml")])
def test_serve_without_the_server_extra_names_the_pip_command(
        tmp_path: Path, hidden: str, named: str) -> None:
    db = tmp_path / "events.db"
    done = bootpull_without(hidden, "serve", "--repo", str(tmp_path), "--db", str(db),
                            "--listen", "127.0.0.1:0")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "needs the server extra" in done.stderr
    assert f"the module '{named}' cannot be imported" in done.stderr
    assert "pip install 'bootpull[server]'" in done.stderr
    assert "listening" not in done.stdout and not db.exists(), "it started anyway"


def test_serve_help_needs_no_extra() -> None:
    done = bootpull_without("feedgen", "serve", "--help")
    assert done.returncode == 0 and "--repo" in done.stdout, done.stderr
