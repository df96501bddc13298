"""The build's settings (frozen) and its mutable context, apart (as in mkosi)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

#: where the image's init and node look for the baked-in trust anchors
TRUST_PATH = "etc/bootpull/trust.json"
#: the image's own settings, read by the init (shell ``KEY=value`` lines)
IMAGE_CONF_PATH = "etc/bootpull/image.conf"
#: where dependencies go: Debian's python3.11 puts this directory on sys.path
SITE_PACKAGES = "usr/lib/python3/dist-packages"

#: Debian packages unpacked into the image besides the kernel
BASE_PACKAGES = (
    "busybox-static",
    "python3.11-minimal",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "libc6",
    "libexpat1",
    "zlib1g",
    "libssl3",
    "libffi8",
    "libgcc-s1",
)


def default_cache() -> Path:
    """``./cache`` at the top of the checkout (gitignored), or ``$BOOTPULL_CACHE``."""
    env = os.environ.get("BOOTPULL_CACHE")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "cache"


def default_epoch() -> int:
    """``SOURCE_DATE_EPOCH`` if set, else 0: every timestamp in the image."""
    text = os.environ.get("SOURCE_DATE_EPOCH", "0")
    try:
        return int(text)
    except ValueError:
        return 0


@dataclass(frozen=True)
class BuildSettings:
    out: Path
    trust: Path | None = None
    console: str = "ttyS0,115200"
    iso: bool = False
    cache: Path = field(default_factory=default_cache)
    source_date_epoch: int = field(default_factory=default_epoch)
    #: where the bootpull package is copied from (the checkout's bootstrap/bootpull)
    node_source: Path = field(
        default_factory=lambda: Path(__file__).resolve().parents[2] / "bootstrap" / "bootpull")
    #: lz4 level for the initramfs (legacy frame format, which the kernel reads)
    lz4_level: int = 9


@dataclass
class Context:
    """What the steps pass along: the staging tree and what went into it."""

    settings: BuildSettings
    work: Path
    root: Path
    kernel_version: str = ""
    packages: dict[str, str] = field(default_factory=dict)
    python_packages: dict[str, str] = field(default_factory=dict)
    modules: list[str] = field(default_factory=list)
    removed: dict[str, list[str]] = field(default_factory=dict)
    removed_bytes: int = 0
