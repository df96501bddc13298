"""Image size: compressed kernel + initramfs against the target, and what each part weighs.

    .venv/bin/python bench/image_size.py [--image DIR]

Builds the image into a temporary directory (downloads cached in ./cache) unless
--image names a built one. The reference for the ratios is the unpacked image (the sum
of its files, those packed in its squashfs included), measured in the same run from
the manifest.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

TARGET = 30_000_000
STRETCH = 24_000_000


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--image", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        image = args.image
        if image is None:
            image = Path(tmp) / "image"
            subprocess.run([sys.executable, "-m", "bootpull", "image", "build", "--out",
                            str(image)], check=True, capture_output=True)
        manifest = json.loads((image / "manifest.json").read_text())
        unpacked = sum(part["size"] for part in manifest["components"].values())
        vmlinuz = manifest["outputs"]["vmlinuz"]["size"]
        initrd = manifest["outputs"]["initrd.img"]["size"]
        total = vmlinuz + initrd
        files = manifest["files"]
        print("| what | MB | × unpacked image |")
        print("|---|---:|---:|")
        print(f"| unpacked image (reference) | {unpacked / 1e6:.1f} | 1.00 |")
        for path, record in files.items():  # each squashfs: what it holds, and its size
            if "holds" not in record:
                continue
            packed = sum(r.get("size", 0) for p, r in files.items()
                         if p.startswith(record["holds"]))
            name = path.rsplit("/", 1)[-1]
            options = manifest.get(name.removesuffix(".sqfs"), {}).get("options", ["", "?"])
            print(f"| packed in {name} | {packed / 1e6:.1f} | {packed / unpacked:.2f} |")
            print(f"| {name} ({options[1]}) | {record['size'] / 1e6:.1f} | "
                  f"{record['size'] / unpacked:.2f} |")
        print(f"| initrd.img (lz4 -l, the squashfs inside) | {initrd / 1e6:.1f} | "
              f"{initrd / unpacked:.2f} |")
        print(f"| vmlinuz | {vmlinuz / 1e6:.1f} | {vmlinuz / unpacked:.2f} |")
        print(f"| **vmlinuz + initrd.img** | **{total / 1e6:.1f}** | {total / unpacked:.2f} |")
        print(f"| target / stretch | {TARGET / 1e6:.0f} / {STRETCH / 1e6:.0f} | |")
        print()
        print("| component (unpacked) | MB | share |")
        print("|---|---:|---:|")
        parts = sorted(manifest["components"].items(), key=lambda kv: -kv[1]["size"])
        for name, part in parts[:10]:
            print(f"| {name} | {part['size'] / 1e6:.1f} | {part['size'] / unpacked:.0%} |")
        print(f"\nremoved by the trim: {manifest['removed']['bytes'] / 1e6:.1f} MB")
        print(f"verdict: {'MET' if total <= TARGET else 'NOT MET'} (target {TARGET / 1e6:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
