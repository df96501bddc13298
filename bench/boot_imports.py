"""The import cost of each node dependency inside the VM (TCG), from the image's own Python.

    .venv/bin/python bench/boot_imports.py [--runs 3] [--workdir DIR]

Adds a role ``imports`` to the bench repository (once), assigns it to a bench MAC and
boots that node: the role runs, in the VM, one fresh ``python3`` per module and prints
``IMPORT <module> <seconds>`` lines on the console, which this script reads. The
reference for the ratios is ``python3 -c pass`` measured the same way in the same VM.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bootpull.console import Console
from bootpull.mac import Mac
from bootpull_lab.deploy import ensure_image, make_repo
from bootpull_lab.homebase import HomeBase
from bootpull_lab.vm import Nic, UserNet, Vm, user_url

MAC = Mac.parse("52:54:00:00:00:42")
MODULES = ("pass", "bootpull.cli", "bootpull.pipeline", "scapy.layers.dhcp", "scapy.all",
           "dns.resolver", "dulwich.client", "dulwich.repo", "tuf.ngclient",
           "securesystemslib.signer", "cryptography.hazmat.primitives.asymmetric.ed25519",
           "requests", "urllib3", "serial")

SCRIPT = """#!/bin/sh
# bench: the wall time of one fresh interpreter per module ('pass': the bare interpreter)
python3 - {runs} {modules} <<'END'
import subprocess, sys, time
runs, modules = int(sys.argv[1]), sys.argv[2:]
for _ in range(runs):
    for name in modules:
        code = "pass" if name == "pass" else "import " + name
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        print(f"IMPORT {{name}} {{time.perf_counter() - t0:.4f}}", flush=True)
print("IMPORTS DONE", flush=True)
END
exec sleep 100000
"""


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=bench",
                    "-c", "user.email=bench@bootpull.invalid", *args], check=True,
                   capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("out") / "bench")
    args = parser.parse_args()
    repo = make_repo(args.workdir)
    role = repo.root / "roles" / "imports"
    (role / "files").mkdir(parents=True, exist_ok=True)
    (role / "role.toml").write_text('format = 1\ndescription = "bench: import costs"\n\n'
                                    '[run]\ncommand = ["./imports.sh"]\nrestart = "never"\n')
    script = role / "files" / "imports.sh"
    script.write_text(SCRIPT.format(runs=args.runs, modules=" ".join(MODULES)))
    script.chmod(0o755)
    (repo.root / "hosts" / f"{MAC.canonical}.toml").write_text('role = "imports"\n')
    _git(repo.root, "add", "-A", "roles/imports", "hosts")
    if subprocess.run(["git", "-C", str(repo.root), "diff", "--cached", "--quiet"],
                      check=False).returncode:
        _git(repo.root, "commit", "-q", "-m", "bench: imports role")
        repo.bootpull("publish")
    image = ensure_image(args.workdir / "image", repo.trust, Console())
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp, \
            HomeBase(repo.root, db=Path(tmp) / "e.db", log=Path(tmp) / "hb.log") as hb:
        nic = Nic(MAC, UserNet(port=hb.port, bootfile=user_url("/repo.git")))
        with Vm(image, [nic], log=Path(tmp) / "node.log", cmdline=["bootpull.poll=600"]) as vm:
            vm.wait_for("IMPORTS DONE", 300 + 60 * args.runs)
            for _t, line in vm.lines:
                match = re.search(r"IMPORT (\S+) ([\d.]+)", line)
                if match:
                    times.setdefault(match.group(1), []).append(float(match.group(2)))
    best = {name: min(values) for name, values in times.items()}
    ref = best["pass"]
    print(f"| module (best of {args.runs}, fresh python3 in the VM, TCG) | seconds | "
          "× python3 -c pass |")
    print("|---|---:|---:|")
    for name in MODULES:
        label = "python3 -c pass (reference)" if name == "pass" else f"import {name}"
        print(f"| {label} | {best[name]:.2f} | {best[name] / ref:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
