"""TCG or KVM: use KVM only where a probe shows it boots our kernel.

On the machines this lab runs on, ``/dev/kvm`` exists but cannot boot a stock kernel:
QEMU hangs silently or aborts with "failed to set MSR 0x10a". So the probe boots the
image's kernel under KVM with no initramfs and waits, with a timeout, for the kernel
banner on the serial port; anything else means TCG. ``BOOTPULL_LAB_ACCEL=tcg|kvm``
skips the probe. The probe waits for the end of the kernel's own start-up (with no
initramfs it panics, unable to mount a root), not just its banner, since a broken KVM
can print the banner and then hang.
"""

from __future__ import annotations

import os
import subprocess
import time
from functools import cache
from pathlib import Path

PROBE_TIMEOUT = 10.0


@cache
def choose(kernel: Path) -> str:
    """``kvm`` if KVM boots ``kernel`` to its banner within the timeout, else ``tcg``."""
    forced = os.environ.get("BOOTPULL_LAB_ACCEL", "").strip().lower()
    if forced in ("tcg", "kvm"):
        return forced
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    return "kvm" if probe_kvm(kernel) else "tcg"


def probe_kvm(kernel: Path, timeout: float = PROBE_TIMEOUT) -> bool:
    """Boot ``kernel`` under KVM; True if it gets through its start-up in time."""
    argv = ["qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-m", "128",
            "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
            "-no-reboot", "-kernel", str(kernel),
            "-append", "console=ttyS0 panic=-1 earlyprintk=ttyS0"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            chunk = proc.stdout.read() or b""
            seen += chunk
            if b"Unable to mount root" in seen or b"Kernel panic" in seen:
                return True
            if proc.poll() is not None and not chunk:
                return False
            time.sleep(0.1)
        return False
    finally:
        proc.kill()
        proc.wait()
