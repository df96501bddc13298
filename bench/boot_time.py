"""Boot to "role running" under TCG, split into kernel, init → Python, each node stage, role start.

    .venv/bin/python bench/boot_time.py [--runs N] [--memory MB] [--workdir DIR]
                                        [--against DIR]

Boots the example's web node (52:54:00:12:34:56) against a local home base, as the
demo does, and reads the serial console: every line carries its arrival time since
QEMU was launched, and every node stage prints its own duration. The reference for
the ratios is the kernel's part (QEMU launch → the init's first line), measured in
the same run. The image is built (once, cached in the work dir) with the example
repository's trust anchors.

``--against DIR`` also boots another work dir's image and repository (an earlier
build, say) alternately with this one, and adds a column with its medians and the
ratio: this machine's speed varies by a quarter from one minute to the next, so two
images are compared only when their boots interleave.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
from pathlib import Path

from bootpull.console import Console
from bootpull.mac import Mac
from bootpull_lab.deploy import ensure_image, make_repo
from bootpull_lab.homebase import HomeBase
from bootpull_lab.vm import Nic, UserNet, Vm, user_url

MAC = Mac.parse("52:54:00:12:34:56")
STAGE = re.compile(r"\[finished\] (discover|fetch|verify signed metadata|verify role|install|run)"
                   r"\b.*?\((\d+\.\d+)s\)")


def one_boot(image: Path, hb: HomeBase, memory: int, log: Path,
             timeout: float = 300) -> dict[str, float]:
    nic = Nic(MAC, UserNet(port=hb.port, bootfile=user_url("/repo.git")))
    with Vm(image, [nic], log=log, memory=memory, cmdline=["bootpull.poll=600"]) as vm:
        vm.wait_for(r"\[finished\] run web", timeout)
        lines = vm.lines
    def first(pattern: str) -> float:
        regex = re.compile(pattern)
        return next(t for t, line in lines if regex.search(line))

    init = first(r"\[init [\d.]+\] bootpull image")
    node_start = first(r"starting: bootpull node run")
    python = first(r"\[started\] discover")
    running = first(r"\[finished\] run web")
    split = {"kernel (QEMU launch → /init)": init,
             "init: modules, lo, state (→ node start)": node_start - init,
             "node start → Python running": python - node_start}
    for _t, line in lines:
        match = STAGE.search(line)
        if match:
            key = f"stage: {match.group(1)}"
            split[key] = split.get(key, 0.0) + float(match.group(2))
    staged = sum(v for k, v in split.items() if k.startswith("stage"))
    split["between stages (reports, reading state)"] = running - python - staged
    split["total: QEMU launch → role running"] = running
    return split


def boots(workdir: Path, image: Path, runs: int, memory: int, tmp: Path,
          tag: str) -> list[dict[str, float]]:
    out = []
    for n in range(runs):
        with HomeBase(workdir / "repo", db=tmp / f"events-{tag}{n}.db",
                      log=tmp / "hb.log") as hb:
            out.append(one_boot(image, hb, memory, tmp / f"node-{tag}{n}.log"))
    return out


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r.get(key, 0.0) for r in runs)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--memory", type=int, default=256)
    parser.add_argument("--workdir", type=Path, default=Path("out") / "bench")
    parser.add_argument("--against", type=Path, default=None,
                        help="another work dir (image/ and repo/) to boot alternately")
    args = parser.parse_args()
    console = Console()
    repo = make_repo(args.workdir)
    image = ensure_image(args.workdir / "image", repo.trust, console)
    runs: list[dict[str, float]] = []
    other: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(args.runs):
            runs += boots(args.workdir, image, 1, args.memory, Path(tmp), f"a{n}")
            if args.against is not None:
                other += boots(args.against, args.against / "image", 1, args.memory,
                               Path(tmp), f"b{n}")
    keys = list(runs[0])
    ref = median(runs, keys[0])
    head = f"| part (median of {args.runs}, -m {args.memory}, TCG) | seconds | × kernel |"
    if other:
        head += f" {args.against} | this ÷ that |"
    print(head)
    print("|---|---:|---:|" + ("---:|---:|" if other else ""))
    for key in keys:
        row = f"| {key} | {median(runs, key):.2f} | {median(runs, key) / ref:.2f} |"
        if other:
            theirs = median(other, key)
            row += f" {theirs:.2f} | {median(runs, key) / theirs:.2f} |" if theirs else " — | — |"
        print(row)
    total = median(runs, "total: QEMU launch → role running")
    print(f"\nverdict: {'MET' if total <= 20 else 'NOT MET'} (target 20 s, stretch 12 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
