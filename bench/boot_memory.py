"""The memory floor: the smallest ``-m`` at which the happy path reaches "role running".

    .venv/bin/python bench/boot_memory.py [--sizes 256,192,160,128] [--workdir DIR]

Boots the example's web node once per size (TCG), largest first; a boot passes when
the console shows the role running within the timeout, and fails early on an
out-of-memory kill, a kernel panic or the node exiting. The reference for the ratio is
the boot time at the largest size, measured in the same run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from bootpull.console import Console
from bootpull.mac import Mac
from bootpull_lab.deploy import ensure_image, make_repo
from bootpull_lab.homebase import HomeBase
from bootpull_lab.vm import LabError, Nic, UserNet, Vm, user_url

MAC = Mac.parse("52:54:00:12:34:56")
OUTCOME = (r"\[finished\] run web|Out of memory|Kernel panic|NODE EXITED|"
           r"Killed process|MemoryError")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="256,192,160,128")
    parser.add_argument("--workdir", type=Path, default=Path("out") / "bench")
    parser.add_argument("--timeout", type=float, default=180)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    repo = make_repo(args.workdir)
    image = ensure_image(args.workdir / "image", repo.trust, Console())
    results: list[tuple[int, bool, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            with HomeBase(repo.root, db=Path(tmp) / f"e{size}.db",
                          log=Path(tmp) / "hb.log") as hb:
                nic = Nic(MAC, UserNet(port=hb.port, bootfile=user_url("/repo.git")))
                with Vm(image, [nic], log=Path(tmp) / f"node-{size}.log", memory=size,
                        cmdline=["bootpull.poll=600"]) as vm:
                    try:
                        match = vm.wait_for(OUTCOME, args.timeout)
                        ok = match.group(0).startswith("[finished]")
                        took = vm.lines[-1][0] if ok else 0.0
                        why = "role running" if ok else match.group(0)
                    except LabError:
                        ok, took, why = False, 0.0, f"nothing within {args.timeout:g}s"
            results.append((size, ok, took, why))
            print(f"-m {size}: {'pass' if ok else 'FAIL'} ({why})", file=sys.stderr)
    ref = results[0][2] or 1.0
    print("| -m (MB) | happy path | seconds to role running | × largest |")
    print("|---:|---|---:|---:|")
    for size, ok, took, why in results:
        ratio = f"{took / ref:.2f}" if ok else "—"
        print(f"| {size} | {'pass' if ok else 'FAIL: ' + why} | "
              f"{took:.1f} | {ratio} |" if ok else f"| {size} | FAIL: {why} | — | — |")
    passing = [size for size, ok, _, _ in results if ok]
    print(f"\nfloor: {min(passing) if passing else 'none'} MB "
          f"(192 must pass: {'yes' if 192 in passing else 'no'}; stretch 128)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
