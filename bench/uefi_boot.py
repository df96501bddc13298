"""bootpull.iso: seconds from QEMU launch to the image's banner, per firmware and medium.

    .venv/bin/python bench/uefi_boot.py [--runs N] [--workdir DIR] [--memory MB]

Builds the image (once, cached in the work dir, with the example repository's trust
anchors) and its ISO, then boots the ISO as a BIOS CD, a UEFI CD, a UEFI USB stick and
a Secure Boot USB stick (OVMF with Microsoft's keys), one VM at a time and the four
interleaved in each round (this machine's speed drifts from one minute to the next).
Each boot is timed to the init's first line (``bootpull image ... up``, the serial
console's arrival time since QEMU was launched) and stopped at its firmware line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from bootpull.console import Console
from bootpull.mac import Mac
from bootpull_image import iso
from bootpull_lab import accel
from bootpull_lab.deploy import ensure_image, make_repo
from bootpull_lab.vm import Nic, UserNet, Vm

MAC = Mac.parse("52:54:00:12:34:56")
#: (label, firmware, boot)
CASES = (("BIOS, CD", "bios", "cdrom"), ("UEFI, CD", "uefi", "cdrom"),
         ("UEFI, USB stick", "uefi", "usb"),
         ("UEFI Secure Boot, USB stick", "uefi-secure", "usb"))


def one_boot(image: Path, media: Path, firmware: str, boot: str, memory: int,
             log: Path) -> tuple[float, str]:
    with Vm(image, [Nic(MAC, UserNet())], log=log, firmware=firmware, boot=boot,
            media=media, memory=memory) as vm:
        vm.wait_for(r"\[init [\d.]+\] bootpull image \S+: kernel \S+ up", 300)
        said = vm.wait_for(r"\[init [\d.]+\] firmware: (.*)$", 30).group(1)
        banner = next(t for t, line in vm.lines if "bootpull image" in line and " up" in line)
    return banner, said.strip()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--memory", type=int, default=512,
                        help="MB for every boot (GRUB under OVMF needs more than 256)")
    parser.add_argument("--workdir", type=Path, default=Path("out") / "bench")
    args = parser.parse_args()
    console = Console()
    repo = make_repo(args.workdir)
    image = ensure_image(args.workdir / "image", repo.trust, console)
    times: dict[str, list[float]] = {label: [] for label, _, _ in CASES}
    said: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        out.mkdir()
        for name in ("vmlinuz", "initrd.img"):
            (out / name).symlink_to(image.resolve() / name)
        manifest = json.loads((image / "manifest.json").read_text())
        media = iso.make(out, Path(tmp) / "work", manifest["console"],
                         manifest["source_date_epoch"])
        size = media.stat().st_size
        for n in range(args.runs):
            for label, firmware, boot in CASES:
                seconds, said[label] = one_boot(image, media, firmware, boot, args.memory,
                                                Path(tmp) / f"{firmware}-{boot}-{n}.log")
                times[label].append(seconds)
    name = accel.choose(image / "vmlinux")
    print(f"bootpull.iso: {size} bytes ({size / 2**20:.1f} MiB)\n")
    print(f"| boot (median of {args.runs}, -m {args.memory}, {name}) | seconds to the "
          "banner | × BIOS CD | the console says |")
    print("|---|---:|---:|---|")
    ref = statistics.median(times[CASES[0][0]])
    for label, _, _ in CASES:
        med = statistics.median(times[label])
        print(f"| {label} | {med:.1f} | {med / ref:.2f} | firmware: {said[label]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
