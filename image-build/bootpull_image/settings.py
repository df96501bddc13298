"""The build's settings (frozen) and its mutable context, apart (as in mkosi)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from bootpull_image.cabundle import SiteCA

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
    # mke2fs, to prepare a blank state disk (bootpull.state_format=blank) as ext4 with a
    # journal (busybox's makes ext2 only)
    "e2fsprogs",
    "libext2fs2",
    "libcom-err2",
    "libblkid1",
    "libuuid1",
)


def default_cache() -> Path:
    """``./cache`` at the top of the checkout (gitignored), or ``$BOOTPULL_CACHE``."""
    env = os.environ.get("BOOTPULL_CACHE")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "cache"


CHECKOUT = Path(__file__).resolve().parents[2]
#: the image's build time (RFC 3339 UTC), the floor of the node's clock for expiry
BUILD_TIME_PATH = "etc/bootpull/build-time"


def default_epoch(env: dict[str, str] | None = None, checkout: Path = CHECKOUT,
                  sources: Path | None = None) -> int:
    """Every timestamp in the image, and its build time: ``SOURCE_DATE_EPOCH`` if set;
    else the committer time of the checkout's HEAD (``git log -1 --format=%ct``); else
    (not a git checkout, or no git) the newest mtime of the node sources
    (``bootstrap/bootpull``). The same sources give the same image, and the build time
    is never 1970 (it is the nodes' clock floor)."""
    import subprocess

    text = (os.environ if env is None else env).get("SOURCE_DATE_EPOCH", "").strip()
    if text:
        try:
            return int(text)
        except ValueError:
            pass
    try:
        proc = subprocess.run(["git", "-C", str(checkout), "log", "-1", "--format=%ct"],
                              capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode == 0 and proc.stdout.strip().isdigit():
            return int(proc.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    where = sources if sources is not None else checkout / "bootstrap" / "bootpull"
    newest = 0.0
    for path in where.rglob("*"):
        if "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        try:
            newest = max(newest, path.stat().st_mtime)
        except OSError:
            continue
    return int(newest)


@dataclass(frozen=True)
class BuildSettings:
    out: Path
    trust: Path | None = None
    #: --ca FILE...: PEM CA certificates the image's https trusts besides certifi's
    ca: tuple[Path, ...] = ()
    console: str = "ttyS0,115200"
    iso: bool = False
    cache: Path = field(default_factory=default_cache)
    source_date_epoch: int = field(default_factory=default_epoch)
    #: where the bootpull package is copied from (the checkout's bootstrap/bootpull)
    node_source: Path = field(
        default_factory=lambda: Path(__file__).resolve().parents[2] / "bootstrap" / "bootpull")
    #: lz4 level for the initramfs (legacy frame format, which the kernel reads)
    lz4_level: int = 12
    #: --modules NAME...: kernel modules to add (with what they need), loaded by coldplug
    modules: tuple[str, ...] = ()
    #: --firmware DIR: files copied under /lib/firmware (as rtl_nic/rtl8168h-2.fw)
    firmware: Path | None = None


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
    site_cas: tuple[SiteCA, ...] = ()  # the --ca certificates, read before the first step
