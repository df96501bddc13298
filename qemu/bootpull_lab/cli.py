"""``bootpull lab``: boot QEMU nodes against a local home base and stream their consoles.

- ``bootpull lab demo``: the README's main command (see docs/lab.md).
- ``bootpull lab boot --mac MAC [--nics N] ...``: boot one node and stream its console.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from bootpull.console import Console
from bootpull.errors import BootpullError, UsageError
from bootpull.mac import Mac, MacError

DEFAULT_WORKDIR = Path("out") / "lab"
DEMO_MAC = "52:54:00:12:34:56"
#: the console line that says the role is running (the pipeline's run step finished)
ROLE_RUNNING = r"\[finished\] run \S+"
#: any failure banner, the node's or the init's
BANNER = r"BOOTPULL: \S+ FAILED|BOOTPULL: NODE EXITED"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo", help="build, publish, serve and boot one node; print its feeds and status",
        description="Build the image if needed, create and publish the example repository, "
        "start the home base on 127.0.0.1, boot one QEMU node (MAC 52:54:00:12:34:56) "
        "streaming its serial console, and end by printing the feed and status URLs and "
        "the node's status. It exits by itself.")
    demo.add_argument("--workdir", type=Path, default=None, metavar="DIR",
                      help=f"keys, repository, image and logs (default ./{DEFAULT_WORKDIR})")
    demo.add_argument("--timeout", type=float, default=300.0, metavar="S",
                      help="give up after S seconds of booting (default 300)")
    demo.add_argument("--memory", type=int, default=256, metavar="MB")
    demo.add_argument("--port", type=int, default=None, help="home base port (default: free)")
    demo.add_argument("--keep", type=float, default=0.0, metavar="S",
                      help="keep the node and home base up S more seconds at the end")
    demo.set_defaults(func=_demo)

    boot = sub.add_parser(
        "boot", help="boot one QEMU node and stream its serial console",
        description="Boot the image under QEMU (TCG; KVM only where a probe shows it works) "
        "with N NICs on QEMU's restricted user network. The guest reaches 10.0.2.100:8080, "
        "forwarded to 127.0.0.1:PORT, and gets BOOTFILE in the BOOTP file field.")
    boot.add_argument("--mac", required=True, help="the first NIC's MAC (others count up)")
    boot.add_argument("--nics", type=int, default=1, metavar="N")
    boot.add_argument("--image", type=Path, default=DEFAULT_WORKDIR / "image", metavar="DIR")
    boot.add_argument("--port", type=int, default=None,
                      help="forward the guest's 10.0.2.100:8080 to 127.0.0.1:PORT")
    boot.add_argument("--bootfile", default=None, metavar="URL",
                      help="the repository URL handed out by DHCP (BOOTP file field); "
                      "default with --port: http://10.0.2.100:8080/repo.git")
    boot.add_argument("--memory", type=int, default=256, metavar="MB")
    boot.add_argument("--state-disk", type=Path, default=None, metavar="FILE",
                      help="an ext4 disk image for the state dir (made if missing)")
    boot.add_argument("--append", action="append", default=[], metavar="PARAM",
                      help="an extra kernel parameter (repeatable), e.g. bootpull.rescue=1")
    boot.add_argument("--timeout", type=float, default=120.0, metavar="S",
                      help="stop the node after S seconds (default 120)")
    boot.add_argument("--log", type=Path, default=None, metavar="FILE",
                      help="console log (default DIR/../node-MAC.log)")
    boot.set_defaults(func=_boot)


def _macs(first: str, count: int) -> list[Mac]:
    try:
        mac = Mac.parse(first)
    except MacError as exc:
        raise UsageError(str(exc)) from None
    if count < 1 or count > 8:
        raise UsageError(f"--nics {count}: a node has 1 to 8 NICs")
    value = int.from_bytes(mac.octets, "big")
    return [Mac((value + i).to_bytes(6, "big")) for i in range(count)]


def _print_line(line: str) -> None:
    sys.stdout.write(f"node | {line}\n")
    sys.stdout.flush()


def _boot(args: argparse.Namespace) -> int:
    from bootpull_lab.vm import Nic, UserNet, Vm, make_state_disk, user_url

    macs = _macs(args.mac, args.nics)
    bootfile = args.bootfile or (user_url("/repo.git") if args.port else None)
    nics = [Nic(mac, UserNet(port=args.port, bootfile=bootfile)) for mac in macs]
    log = args.log or args.image.parent / f"node-{macs[0].canonical}.log"
    disk = make_state_disk(args.state_disk) if args.state_disk else None
    with Vm(args.image, nics, log=log, memory=args.memory, cmdline=args.append,
            state_disk=disk, echo=_print_line) as vm:
        deadline = time.monotonic() + args.timeout
        try:
            while vm.running and time.monotonic() < deadline:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    print(f"lab: console log in {log}", file=sys.stderr)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from bootpull_lab import deploy
    from bootpull_lab.homebase import HomeBase
    from bootpull_lab.vm import LabError, Nic, UserNet, Vm, user_url

    console = Console()
    workdir = (args.workdir or Path(os.environ.get("BOOTPULL_LAB_DIR", DEFAULT_WORKDIR)))
    workdir = workdir.resolve()
    mac = Mac.parse(DEMO_MAC)
    with console.step("repository: the example, signed and published") as step:
        repo = deploy.make_repo(workdir)
        step.note(str(repo.root))
    with console.step("image: built with the repository's trust anchors") as step:
        deploy.ensure_image(workdir / "image", repo.trust, console)
        step.note(str(workdir / "image"))
    with HomeBase(repo.root, db=workdir / "events.db", log=workdir / "homebase.log",
                  port=args.port) as hb:
        console.info(f"home base {hb.url} (serving {repo.root} at /repo.git)")
        log = workdir / f"node-{mac.canonical}.log"
        console.info(f"booting node {mac.colons}; its console follows (also in {log})")
        nic = Nic(mac, UserNet(port=hb.port, bootfile=user_url("/repo.git")))
        outcome = 0
        with Vm(workdir / "image", [nic], log=log, memory=args.memory,
                echo=_print_line) as vm:
            try:
                match = vm.wait_for(f"{ROLE_RUNNING}|{BANNER}", timeout=args.timeout)
                if "BOOTPULL" in match.group(0):
                    time.sleep(3)  # let the banner finish printing
                    outcome = 1
                else:
                    _wait_for_report(hb, mac, timeout=60)
            except LabError as err:
                console.banner(err)
                outcome = 1
            if args.keep > 0:
                time.sleep(args.keep)
        _summary(hb, mac, repo.root)
    return outcome


def _wait_for_report(hb: object, mac: Mac, timeout: float) -> None:
    from bootpull_lab.homebase import HomeBase

    assert isinstance(hb, HomeBase)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if hb.node(mac.canonical) is not None:
                return
        except (OSError, ValueError):
            pass
        time.sleep(1)


def _summary(hb: object, mac: Mac, repo: Path) -> None:
    from bootpull_lab.homebase import HomeBase

    assert isinstance(hb, HomeBase)
    print()
    print("=" * 72)
    print(f"status page:  {hb.url}/")
    print(f"feeds:        {hb.url}/feeds/all.atom")
    print(f"              {hb.url}/feeds/web.rss   {hb.url}/feeds/web.atom")
    print(f"nodes (JSON): {hb.url}/api/v1/nodes")
    print(f"repository:   {repo}  (edit, 'bootpull repo -C {repo} publish', reboot)")
    try:
        node = hb.node(mac.canonical)
    except (OSError, ValueError, BootpullError) as exc:
        node = None
        print(f"node status:  could not ask the home base ({exc})")
    if node is not None:
        print(f"node status ({mac.canonical}):")
        print(json.dumps(node, indent=2, sort_keys=True))
    else:
        print(f"node status:  {mac.canonical} has not reported")
    print("=" * 72)
