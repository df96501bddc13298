"""``build_image``: the boot image as a flat list of verb-named steps (as in mkosi).

Each step takes the :class:`~bootpull_image.settings.Context` and decides for itself
whether it applies. The console prints one ``[started]``/``[finished]`` line per step
with its timing, so a slow build shows where the time went.

The result in ``--out``: ``vmlinuz`` (Debian's bzImage, for boot loaders), ``vmlinux``
(the same kernel as an ELF, which QEMU boots through PVH), ``initrd.img`` (an lz4
legacy-format cpio), ``manifest.json`` and, with ``--iso``, ``bootpull.iso``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bootpull import __version__
from bootpull.console import Console
from bootpull.errors import BootpullError

from bootpull_image import cabundle, cpio, debs, iso, kernel, trim
from bootpull_image.settings import (
    BASE_PACKAGES,
    BUILD_TIME_PATH,
    IMAGE_CONF_PATH,
    SITE_PACKAGES,
    TRUST_PATH,
    BuildSettings,
    Context,
)

HERE = Path(__file__).resolve().parent
LIB_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu")
#: kernel modules in the initramfs (the ones that mount the squashfs) and the rest
EARLY_MODULES_DIR = "lib/modules"
USR_MODULES_DIR = "usr/lib/modules"
#: the squashfs of the compiled code Python maps, where the init mounts it, and how it
#: is compressed: zstd (fast to decompress: Python's start touches megabytes of it) in
#: 256 KiB blocks (a page fault decompresses one block)
BINARIES_IMAGE = "lib/bootpull/binaries.sqfs"
BINARIES_DIR = "lib/bootpull/binaries"
SQUASHFS_OPTIONS = ("-comp", "zstd", "-Xcompression-level", "22", "-b", "256K")
#: the squashfs of what is read whole and seldom (the kernel modules, each read once by
#: insmod; mke2fs and the libraries only it needs, for a blank state disk): xz, which
#: packs it a quarter smaller, in 128 KiB blocks (1 MiB blocks were 0.16 MB smaller but
#: cost the init's module loading 0.1 s: each module read decompressed a whole block)
RARE_IMAGE = "lib/bootpull/rare.sqfs"
RARE_DIR = "lib/bootpull/rare"
RARE_SQUASHFS_OPTIONS = ("-comp", "xz", "-Xbcj", "x86", "-b", "128K")
LOADER = "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
PYTHON = "usr/bin/python3.11"
STDLIB_DYNLOAD = "usr/lib/python3.11/lib-dynload/"

#: what the build imports inside the image's own Python to prove nothing needed was
#: trimmed: the node agent and the parts of each dependency the node uses
SMOKE_IMPORTS = (
    "bootpull.cli", "bootpull.node_cli", "bootpull.console", "bootpull.cmdline",
    "bootpull.bundle", "bootpull.events",
    "json", "ssl", "hashlib", "socket", "subprocess", "tomllib", "ipaddress", "zlib",
    "http.client", "urllib.request", "email.utils", "asyncio", "concurrent.futures",
    "logging.handlers", "tarfile", "ctypes", "decimal", "uuid", "secrets", "shlex",
    "scapy.layers.dhcp", "scapy.layers.l2", "scapy.layers.inet", "scapy.sendrecv",
    "scapy.arch.linux",
    "dns.resolver", "dns.rdtypes.IN.SRV", "dns.rdtypes.ANY.TXT",
    "dulwich.client", "dulwich.repo", "dulwich.object_store", "dulwich.dumb",
    "tuf.ngclient", "securesystemslib.signer", "cryptography.hazmat.primitives.asymmetric.ed25519",
    "urllib3", "certifi", "serial", "pyrage",
)


class BuildError(BootpullError):
    stage = "image"


def _run(argv: list[str], *, what: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise BuildError(f"{what} failed (exit {proc.returncode})", why=tail,
                         hint=f"run it by hand to see more: {' '.join(argv)}")
    return proc


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- steps -------------------------------------------------------------------------------


def fetch_packages(ctx: Context) -> None:
    """Download the kernel, busybox and Python .debs (or take them from the cache)."""
    kpkg = debs.resolve_kernel_package()
    found = debs.fetch([kpkg, *BASE_PACKAGES], ctx.settings.cache / "debs")
    ctx.packages = {deb.name: deb.version for deb in found}
    ctx.kernel_version = kpkg.removeprefix("linux-image-")
    unpacked = ctx.work / "unpacked"
    for deb in found:
        debs.extract(deb, ctx.work / "kernel" if deb.name == kpkg else unpacked)


def install_kernel(ctx: Context) -> None:
    """Copy vmlinuz, extract vmlinux for PVH, and pick the modules with their dependencies."""
    kroot = ctx.work / "kernel"
    vmlinuz = kroot / "boot" / f"vmlinuz-{ctx.kernel_version}"
    if not vmlinuz.is_file():
        raise BuildError("the kernel package holds no vmlinuz",
                         why=f"{vmlinuz.relative_to(kroot)} is missing")
    out = ctx.settings.out
    bzimage = vmlinuz.read_bytes()
    (out / "vmlinuz").write_bytes(bzimage)
    (out / "vmlinux").write_bytes(kernel.extract_vmlinux(bzimage))
    files = {kernel.module_name(p.name): p
             for p in (kroot / "lib" / "modules").rglob("*.ko")}
    depends = {}
    for name, path in files.items():
        info = kernel.modinfo(path.read_bytes())
        depends[name] = [d.replace("-", "_") for d in info.get("depends", "").split(",") if d]
    first = kernel.module_order(kernel.EARLY_MODULES, depends)
    groups = [("early", first)]
    extra = tuple(m.replace("-", "_") for m in ctx.settings.modules)
    for group, wanted in (("net", kernel.NET_MODULES), ("usb", kernel.USB_MODULES),
                          ("usbnet", kernel.USB_NET_MODULES), ("disk", kernel.DISK_MODULES),
                          ("extra", extra)):
        taken = {m for _, names in groups for m in names}
        try:
            order = kernel.module_order(wanted, depends)
        except kernel.KernelError as err:
            if group != "extra":
                raise
            raise BuildError(f"--modules: {err.what}", why=err.why,
                             hint="name a module of the kernel package, as in "
                             "--modules mlx4_en (modinfo names: '-' or '_')") from None
        groups.append((group, [m for m in order if m not in taken]))
    ctx.modules = [m for _, names in groups for m in names]
    # loop and squashfs stay in /lib/modules: they mount the squashfs of compiled code
    # that the other modules end up in (see pack_binaries)
    early = ctx.root / EARLY_MODULES_DIR
    later = ctx.root / USR_MODULES_DIR
    early.mkdir(parents=True)
    later.mkdir(parents=True)
    for name in ctx.modules:
        shutil.copyfile(files[name], (early if name in first else later) / f"{name}.ko")
    # "<group> <module> <its dependencies,...>" in load order: the init loads "early"
    # first, then "net", "usb", "usbnet" (after the USB devices show up), "extra", and
    # "disk" only for a state disk. A module only some other needs is in group "dep":
    # the init loads it (dependencies first) just before a module that needs it, so a
    # machine without, say, an Intel 10 GbE NIC loads neither ixgbe nor its mdio.
    tops = set(first) | {m.replace("-", "_") for m in (*kernel.NET_MODULES, *kernel.USB_MODULES,
                                                       *kernel.USB_NET_MODULES,
                                                       *kernel.DISK_MODULES, *extra)}
    lines = []
    for group, names in groups:
        for name in names:
            needs = ",".join(d for d in depends[name] if d in ctx.modules)
            lines.append(f"{group if name in tops else 'dep'} {name} {needs}".rstrip() + "\n")
    (early / "load.list").write_text("".join(lines))
    # claims.sh: which driver claims which device, by the drivers' own ids (PCI, virtio,
    # USB): the init loads a device driver only when a device's modalias matches one
    # (coldplug, as udev would), matching in the shell itself, with no process a driver
    ids = {name: [alias for alias in kernel.aliases(files[name].read_bytes())
                  if alias.startswith(kernel.DEVICE_ALIASES)]
           for name in ctx.modules if name not in first}
    (early / "claims.sh").write_text(kernel.claims_script(ids))
    install_firmware(ctx)


def install_firmware(ctx: Context) -> None:
    """``--firmware DIR``: its files under /lib/firmware, as the kernel's loader looks."""
    source = ctx.settings.firmware
    if source is None:
        return
    if not source.is_dir():
        raise BuildError(f"--firmware {source} is not a directory",
                         hint="pass a directory laid out like /lib/firmware (as in "
                         "rtl_nic/rtl8168h-2.fw), say from Debian's firmware-realtek")
    dest = ctx.root / "lib" / "firmware"
    for path in sorted(source.rglob("*")):
        if path.is_file():
            target = dest / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)


def install_mke2fs(ctx: Context) -> None:
    """e2fsprogs' mke2fs as /sbin/mke2fs: a blank state disk becomes ext4 with a journal."""
    src = ctx.work / "unpacked"
    (ctx.root / "sbin").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / "sbin" / "mke2fs", ctx.root / "sbin" / "mke2fs")
    (ctx.root / "sbin" / "mke2fs").chmod(0o755)
    (ctx.root / "etc").mkdir(exist_ok=True)
    shutil.copyfile(src / "etc" / "mke2fs.conf", ctx.root / "etc" / "mke2fs.conf")


def install_busybox(ctx: Context) -> None:
    """busybox-static as /bin/busybox, with a link in /bin for each of its applets."""
    (ctx.root / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ctx.work / "unpacked" / "bin" / "busybox", ctx.root / "bin" / "busybox")
    (ctx.root / "bin" / "busybox").chmod(0o755)
    (ctx.root / "bin" / "sh").symlink_to("busybox")
    # every applet as a link in /bin, made here rather than by 'busybox --install' at
    # every boot: the same links, listed in the manifest, and one step less for the init
    applets = _run([str(ctx.root / "bin" / "busybox"), "--list"],
                   what="listing busybox's applets").stdout.split()
    for applet in sorted(set(applets)):
        link = ctx.root / "bin" / applet
        if "/" not in applet and not link.exists() and not link.is_symlink():
            link.symlink_to("busybox")


def install_python(ctx: Context) -> None:
    """Python 3.11 from Debian's packages: the interpreter and its standard library."""
    src = ctx.work / "unpacked"
    (ctx.root / "usr" / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(src / PYTHON, ctx.root / PYTHON)
    (ctx.root / "usr" / "bin" / "python3").symlink_to("python3.11")
    shutil.copytree(src / "usr" / "lib" / "python3.11", ctx.root / "usr" / "lib" / "python3.11",
                    symlinks=True)
    for link in (ctx.root / "usr" / "lib" / "python3.11").glob("*customize.py"):
        if link.is_symlink():
            link.unlink()  # Debian points these at /etc/python3.11, which the image lacks


def install_node(ctx: Context) -> None:
    """pip-install the pinned node dependencies and copy the bootpull package."""
    pins = tomllib.loads((HERE / "pins.toml").read_text())["pins"]
    ctx.python_packages = dict(sorted(pins.items()))
    target = ctx.root / SITE_PACKAGES
    wheels = ctx.settings.cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    specs = [f"{name}=={version}" for name, version in ctx.python_packages.items()]
    where = ["--only-binary=:all:", "--no-deps", "--python-version", "3.11",
             "--implementation", "cp", "--abi", "cp311", "--abi", "abi3", "--abi", "none",
             "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
             "--platform", "manylinux2014_x86_64", "--platform", "any"]
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    offline = [*pip, "install", "--no-index", "--find-links", str(wheels), "--target",
               str(target), "--no-compile", *where, *specs]
    if subprocess.run(offline, capture_output=True, check=False).returncode != 0:
        _run([*pip, "download", "--dest", str(wheels), *where, *specs],
             what="downloading the node's Python packages")
        _run(offline, what="installing the node's Python packages")
    shutil.copytree(ctx.settings.node_source, target / "bootpull",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    ctx.python_packages["bootpull"] = __version__
    wrapper = ctx.root / "usr" / "bin" / "bootpull"
    # a Python script, not 'sh -c python3 -m bootpull': no shell, and no runpy (whose
    # imports cost a quarter of a second at boot under TCG)
    wrapper.write_text("#!/usr/bin/python3.11\n\"\"\"bootpull's command line.\"\"\"\nimport sys\n\n"
                       "from bootpull.cli import main\n\nsys.exit(main())\n")
    wrapper.chmod(0o755)


def tune_scapy(ctx: Context) -> None:
    """Empty scapy's MAC-vendor and Bluetooth-company tables, which it loads on import."""
    # manuf (900 KB) halves scapy's import time and memory; bluetoothids costs 0.2 s
    # of boot under TCG. The node never prints a vendor or a Bluetooth company.
    libs = ctx.root / SITE_PACKAGES / "scapy" / "libs"
    for name, empty in (("manuf.py", 'DATA = ""'), ("bluetoothids.py", "DATA = {}")):
        if (libs / name).is_file():
            (libs / name).write_text('"""Emptied by the bootpull image build."""\n'
                                     f"{empty}\n")


def trim_tree(ctx: Context) -> None:
    """Remove tests, docs, unused stdlib modules and encodings (see trim.py)."""
    for dirpath, dirnames, filenames in os.walk(ctx.root, topdown=True):
        base = Path(dirpath)
        for name in sorted(dirnames):
            path = base / name
            rel = path.relative_to(ctx.root).as_posix()
            reason = trim.reason_to_drop(rel)
            if reason is not None and not path.is_symlink():
                ctx.removed_bytes += sum(p.stat().st_size for p in path.rglob("*")
                                         if p.is_file() and not p.is_symlink())
                ctx.removed.setdefault(reason, []).append(rel + "/")
                shutil.rmtree(path)
                dirnames.remove(name)
        for name in filenames:
            path = base / name
            rel = path.relative_to(ctx.root).as_posix()
            reason = trim.reason_to_drop(rel)
            if reason is not None:
                ctx.removed_bytes += path.lstat().st_size
                ctx.removed.setdefault(reason, []).append(rel)
                path.unlink()


def _needed(elf: Path) -> list[str]:
    """The library names an ELF file lists as DT_NEEDED."""
    out = _run(["readelf", "-dW", str(elf)], what=f"reading {elf.name}'s dependencies").stdout
    return [line.rsplit("[", 1)[-1].rstrip("]") for line in out.splitlines()
            if "(NEEDED)" in line]


def link_libraries(ctx: Context) -> None:
    """Copy exactly the shared libraries the ELF files in the image need (DT_NEEDED)."""
    src = ctx.work / "unpacked"
    available: dict[str, Path] = {}
    for libdir in LIB_DIRS:
        for path in sorted((src / libdir).glob("*.so*")):
            available.setdefault(path.name, path)
    wanted = [ctx.root / PYTHON, ctx.root / "sbin" / "mke2fs",
              *sorted((ctx.root / "usr" / "lib").rglob("*.so"))]
    seen: set[str] = set()
    while wanted:
        elf = wanted.pop()
        for name in _needed(elf):
            if name in seen or name not in available:
                continue  # wheels bundle their own libraries next to them (RPATH)
            seen.add(name)
            source = available[name]
            rel = source.relative_to(src)
            dest = ctx.root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source.resolve(), dest)
            dest.chmod(0o755)
            wanted.append(dest)
    loader = ctx.root / LOADER
    loader.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile((src / LOADER).resolve(), loader)
    loader.chmod(0o755)
    (ctx.root / "lib64").mkdir(exist_ok=True)
    (ctx.root / "lib64" / "ld-linux-x86-64.so.2").symlink_to(
        "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")


def build_time(epoch: int) -> str:
    """``SOURCE_DATE_EPOCH`` as RFC 3339 UTC: what /etc/bootpull/build-time holds."""
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def configure(ctx: Context) -> None:
    """Write the init, the image settings, the trust anchors and the few /etc files."""
    root = ctx.root
    shutil.copyfile(HERE / "init", root / "init")
    (root / "init").chmod(0o755)
    for d in ("proc", "sys", "dev", "run", "tmp", "root", "var/lib/bootpull", "etc/bootpull",
              "sbin", "usr/sbin"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    etc = root / "etc"
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\n")
    (etc / "hosts").write_text("127.0.0.1\tlocalhost\n::1\tlocalhost\n")
    (etc / "hostname").write_text("bootpull\n")
    node_command = "run" if (root / SITE_PACKAGES / "bootpull" / "pipeline.py").exists() \
        else "discover"
    conf = {
        "IMAGE_VERSION": __version__,
        "IMAGE_CONSOLE": ctx.settings.console,
        "KERNEL_VERSION": ctx.kernel_version,
        "NODE_COMMAND": node_command,
        "TRUST": "/" + TRUST_PATH,
    }
    (root / IMAGE_CONF_PATH).write_text("".join(f"{k}={v}\n" for k, v in conf.items()))
    (root / BUILD_TIME_PATH).write_text(build_time(ctx.settings.source_date_epoch) + "\n")
    if ctx.settings.trust is not None:
        data = ctx.settings.trust.read_bytes()
        try:
            json.loads(data)
        except ValueError as exc:
            raise BuildError(f"{ctx.settings.trust} is not a trust anchors file",
                             why=f"it is not JSON ({exc})",
                             hint="make it with 'bootpull repo trust > trust.json'") from None
        (root / TRUST_PATH).write_bytes(data)


def install_ca_bundle(ctx: Context) -> None:
    """Write the CA bundle, certifi's CAs and the --ca ones; certifi's file links to it."""
    certifi = ctx.root / cabundle.CERTIFI_PATH
    if not certifi.is_file():
        raise BuildError("certifi's CA bundle is not in the image",
                         why=f"{cabundle.CERTIFI_PATH} is missing",
                         hint="keep certifi in image-build/bootpull_image/pins.toml")
    target = ctx.root / cabundle.BUNDLE_PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(cabundle.bundle(certifi.read_bytes(), ctx.site_cas))
    certifi.unlink()
    certifi.symlink_to("/" + cabundle.BUNDLE_PATH)


def _image_python(ctx: Context) -> tuple[list[str], dict[str, str]]:
    """Run the image's own Python on the build host, through the image's own loader."""
    root = ctx.root
    libs = ":".join(str(root / d) for d in LIB_DIRS)
    argv = [str(root / LOADER), "--library-path", libs, str(root / PYTHON)]
    env = {"PYTHONHOME": str(root / "usr"), "PYTHONHASHSEED": "0", "PATH": "/usr/bin:/bin",
           "SOURCE_DATE_EPOCH": str(ctx.settings.source_date_epoch), "LC_ALL": "C.UTF-8",
           "PYTHONPATH": str(root / SITE_PACKAGES)}
    return argv, env


def compile_bytecode(ctx: Context) -> None:
    """Precompile every module (Debian ships no .pyc): deterministic, hash-based pyc."""
    argv, env = _image_python(ctx)
    # Only compileall writes bytecode: a .pyc the import system writes for a module the
    # compiler itself has loaded marshals live objects, whose reference counts vary.
    env = {**env, "PYTHONDONTWRITEBYTECODE": "1"}
    # no_debug_ranges: no column tables in the bytecode (tracebacks keep file and
    # line, lose the ^^^ under the expression): 8 % smaller, and 1.9 MB off the
    # compressed image, as the tables compress badly
    _run([*argv, "-X", "no_debug_ranges", "-m", "compileall", "-q", "-f", "-j", "0",
          "--invalidation-mode",
          "unchecked-hash",
          "-s", str(ctx.root), "-p", "/",
          str(ctx.root / "usr" / "lib" / "python3.11"), str(ctx.root / SITE_PACKAGES)],
         what="compiling bytecode with the image's Python", env=env)


def smoke_test(ctx: Context) -> None:
    """Import the node and the parts of each dependency it uses, in the image's Python."""
    argv, env = _image_python(ctx)
    code = ("import importlib, sys\n"
            "for name in sys.argv[1:]:\n"
            "    importlib.import_module(name)\n")
    env = {**env, "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(ctx.work)}
    _run([*argv, "-c", code, *SMOKE_IMPORTS], what="importing the node inside the image",
         env=env)


def drop_sources(ctx: Context) -> None:
    """Keep only the bytecode of the stdlib and the dependencies (bootpull keeps its .py)."""
    keep_source = ctx.root / SITE_PACKAGES / "bootpull"
    for base in (ctx.root / "usr" / "lib" / "python3.11", ctx.root / SITE_PACKAGES):
        for cache in sorted(base.rglob("__pycache__")):
            if cache.parent == keep_source or keep_source in cache.parents:
                continue
            for pyc in sorted(cache.glob("*.cpython-311.pyc")):
                source = cache.parent / (pyc.name.removesuffix(".cpython-311.pyc") + ".py")
                if source.is_file() and not source.is_symlink():
                    ctx.removed_bytes += source.stat().st_size
                    source.unlink()
                    pyc.rename(cache.parent / (source.stem + ".pyc"))
            if not any(cache.iterdir()):
                cache.rmdir()
    ctx.removed.setdefault("sources of precompiled modules (tracebacks keep file and line; "
                           "bootpull's own sources stay)", []).append("**/*.py")


def strip_binaries(ctx: Context) -> None:
    """Strip symbol tables from the wheels' shared objects (Debian's are stripped already)."""
    if shutil.which("strip") is None:
        return
    for so in sorted((ctx.root / SITE_PACKAGES).rglob("*.so*")):
        if so.is_file() and not so.is_symlink():
            before = so.stat().st_size
            _run(["strip", "--strip-unneeded", str(so)], what=f"stripping {so.name}")
            ctx.removed_bytes += before - so.stat().st_size


def _is_elf(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def pack_binaries(ctx: Context) -> None:
    """Move the compiled code into two squashfs by how it is read, leaving links."""
    # The split follows how each file is read, and how often. The interpreter and its
    # loader (exec'd at every start, read almost whole), the standard extension modules
    # and the several hundred small .pyc files Python reads whole stay in the lz4
    # initramfs, which the kernel unpacks fastest. The rest is mapped, often only in
    # part, or not used on a given machine: in a squashfs only the blocks touched are
    # decompressed. What Python maps (the libraries, the dependencies' extensions,
    # OpenSSL) goes into a zstd squashfs, the kernel modules and mke2fs into an xz one:
    # xz packs a quarter smaller but decompresses several times slower, which cost
    # Python's start a second under TCG, and costs an insmod almost nothing.
    if shutil.which("mksquashfs") is None:
        raise BuildError("mksquashfs is not installed",
                         why="the image keeps its compiled code in a squashfs",
                         hint="apt install squashfs-tools")
    root = ctx.root
    startup = {PYTHON, LOADER}  # exec'd at every start, and read almost whole
    packed = [rel for rel in (p.relative_to(root).as_posix() for p in sorted(root.rglob("*")))
              if not (root / rel).is_symlink() and (root / rel).is_file()
              and rel not in startup and rel != "init"
              and not rel.startswith(("bin/", EARLY_MODULES_DIR + "/", STDLIB_DYNLOAD))
              and _is_elf(root / rel)]
    rare = _rare(root, packed)
    for image, mount, options, names in (
            (BINARIES_IMAGE, BINARIES_DIR, SQUASHFS_OPTIONS, [r for r in packed if r not in rare]),
            (RARE_IMAGE, RARE_DIR, RARE_SQUASHFS_OPTIONS, [r for r in packed if r in rare])):
        if names:
            _squash(ctx, names, image, mount, options)


def _rare(root: Path, packed: list[str]) -> set[str]:
    """Of the files to pack, those read whole and seldom: the kernel modules, and mke2fs
    with the libraries that nothing else needs."""
    rare = {rel for rel in packed if rel.startswith(USR_MODULES_DIR + "/")}
    if "sbin/mke2fs" not in packed:
        return rare
    where = {rel.rsplit("/", 1)[-1]: rel for rel in packed if rel.startswith(LIB_DIRS)}
    needed_by: dict[str, set[str]] = {}
    for rel in packed:
        if rel not in rare:
            for name in _needed(root / rel):
                needed_by.setdefault(name, set()).add(rel)
    mine = {"sbin/mke2fs"}
    while True:  # mke2fs, and each library only mke2fs and its own libraries need
        more = {where[name] for name, users in needed_by.items()
                if name in where and users <= mine} - mine
        if not more:
            return rare | mine
        mine |= more


def _squash(ctx: Context, names: list[str], image: str, mount: str,
            options: tuple[str, ...]) -> None:
    """Move these files into a squashfs at ``image``, each replaced by a link into
    ``mount``, where the init mounts it."""
    root = ctx.root
    tree = ctx.work / Path(image).stem
    for rel in names:
        dest = tree / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        (root / rel).rename(dest)
        (root / rel).symlink_to(f"/{mount}/{rel}")
    (root / mount).mkdir(parents=True)  # the mount point
    epoch = str(ctx.settings.source_date_epoch)
    # -all-root and the fixed times make it depend on the tree alone (mksquashfs refuses
    # SOURCE_DATE_EPOCH beside -mkfs-time); it sorts directories itself and keeps its
    # output order with several threads
    _run(["mksquashfs", str(tree), str(root / image), "-noappend", "-quiet",
          "-no-progress", "-all-root", "-no-xattrs", "-mkfs-time", epoch, "-all-time", epoch,
          *options], what=f"packing compiled code as the squashfs {image}",
         env={k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"})


def write_initramfs(ctx: Context) -> None:
    """Pack the tree as a sorted newc cpio and compress it with lz4 (legacy format)."""
    archive = cpio.encode(cpio.walk(ctx.root), ctx.settings.source_date_epoch)
    (ctx.work / "initrd.cpio").write_bytes(archive)
    out = ctx.settings.out / "initrd.img"
    _run(["lz4", "-l", f"-{ctx.settings.lz4_level}", "-f", "-q", str(ctx.work / "initrd.cpio"),
          str(out)], what="compressing the initramfs with lz4")


def _component(rel: str) -> str:
    """Which part of the image a file belongs to, for the manifest's summary."""
    if rel.startswith(SITE_PACKAGES + "/"):
        top = rel[len(SITE_PACKAGES) + 1:].split("/", 1)[0]
        top = top.split(".", 1)[0] if top.endswith(".so") else top
        return f"python:{top}"
    if rel.startswith("usr/lib/python3.11/"):
        return "python:stdlib"
    if rel.startswith((EARLY_MODULES_DIR + "/", USR_MODULES_DIR + "/")):
        return "kernel-modules"
    if rel.startswith(LIB_DIRS):
        return "shared-libraries"
    if rel in ("bin/busybox", "bin/sh"):
        return "busybox"
    if rel.startswith("usr/bin/python"):
        return "python:interpreter"
    return "bootpull-config"


def write_manifest(ctx: Context) -> None:
    """manifest.json: every output and every file in the initramfs, with size and SHA-256."""
    out = ctx.settings.out
    outputs = {}
    for name in ("vmlinuz", "vmlinux", "initrd.img", "bootpull.iso"):
        path = out / name
        if path.exists():
            data = path.read_bytes()
            outputs[name] = {"size": len(data), "sha256": _sha256(data)}
    files: dict[str, dict[str, Any]] = {}
    summary: dict[str, dict[str, int]] = {}
    entries = list(cpio.walk(ctx.root))
    images = {BINARIES_IMAGE: BINARIES_DIR, RARE_IMAGE: RARE_DIR}
    for image, mount in images.items():
        packed = ctx.work / Path(image).stem
        if packed.is_dir():  # what each squashfs holds, listed where the node sees it
            entries += [cpio.Entry(f"{mount}/{e.path}", e.mode, e.data)
                        for e in cpio.walk(packed)]
    for entry in sorted(entries, key=lambda e: e.path):
        if not stat.S_ISREG(entry.mode) and not stat.S_ISLNK(entry.mode):
            continue
        record: dict[str, Any] = {"size": len(entry.data), "sha256": _sha256(entry.data),
                                  "mode": oct(stat.S_IMODE(entry.mode))}
        if stat.S_ISLNK(entry.mode):
            record = {"link": entry.data.decode()}
        files[entry.path] = record
        if entry.path in images:
            record["holds"] = images[entry.path] + "/"  # its files are listed under there
            continue
        if "size" not in record:
            continue  # a link: the file it names is counted where it is
        real = entry.path.removeprefix(BINARIES_DIR + "/").removeprefix(RARE_DIR + "/")
        part = summary.setdefault(_component(real), {"files": 0, "size": 0})
        part["files"] += 1
        part["size"] += len(entry.data)
    trust = ctx.root / TRUST_PATH
    ca_bundle = ctx.root / cabundle.BUNDLE_PATH
    manifest = {
        "format": 1,
        "bootpull": __version__,
        "source_date_epoch": ctx.settings.source_date_epoch,
        # the Debian release the packages came from: 'repo role from-debs' takes a
        # role's packages from the same one
        "release": debs.release(),
        "kernel": {"version": ctx.kernel_version, "modules": ctx.modules,
                   "cmdline": iso.kernel_cmdline(ctx.settings.console)},
        "console": ctx.settings.console,
        "outputs": outputs,
        "packages": {"debian": dict(sorted(ctx.packages.items())),
                     "python": ctx.python_packages},
        "trust": ({"path": "/" + TRUST_PATH, "sha256": _sha256(trust.read_bytes())}
                  if trust.exists() else None),
        "ca_bundle": (cabundle.manifest_entry(ca_bundle.read_bytes(),
                                              ctx.python_packages.get("certifi", ""),
                                              ctx.site_cas)
                      if ca_bundle.exists() else None),
        "build_time": {"path": "/" + BUILD_TIME_PATH,
                       "time": build_time(ctx.settings.source_date_epoch)},
        "components": dict(sorted(summary.items())),
        "binaries": {"path": "/" + BINARIES_IMAGE, "mounted_at": "/" + BINARIES_DIR,
                     "filesystem": "squashfs", "options": list(SQUASHFS_OPTIONS)},
        "rare": {"path": "/" + RARE_IMAGE, "mounted_at": "/" + RARE_DIR,
                 "filesystem": "squashfs", "options": list(RARE_SQUASHFS_OPTIONS)},
        "files": files,
        "removed": {"bytes": ctx.removed_bytes,
                    "by_reason": {reason: sorted(paths)
                                  for reason, paths in sorted(ctx.removed.items())}},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def make_iso(ctx: Context) -> None:
    """bootpull.iso (with --iso): BIOS (isolinux) and UEFI (shim → GRUB) from CD or USB."""
    if not ctx.settings.iso:
        return
    iso.make(ctx.settings.out, ctx.work / "iso", ctx.settings.console,
             ctx.settings.source_date_epoch, cache=ctx.settings.cache, packages=ctx.packages)


STEPS: tuple[Callable[[Context], None], ...] = (
    fetch_packages,
    install_kernel,
    install_busybox,
    install_mke2fs,
    install_python,
    install_node,
    tune_scapy,
    trim_tree,
    strip_binaries,
    link_libraries,
    configure,
    install_ca_bundle,
    compile_bytecode,
    drop_sources,
    smoke_test,
    pack_binaries,
    write_initramfs,
    make_iso,
    write_manifest,
)


def build_image(settings: BuildSettings, console: Console | None = None) -> dict[str, Any]:
    """Build the image into ``settings.out``; return the manifest."""
    console = console or Console()
    site_cas = cabundle.load(settings.ca)  # a bad --ca file: exit 2 before any download
    for ca in cabundle.expired_by(site_cas, settings.source_date_epoch):
        console.warn(f"--ca {ca.file}: {ca.subject} expired at {ca.not_after}, before this "
                     "image's build time: no node of this image will trust it")
    settings.out.mkdir(parents=True, exist_ok=True)
    if settings.trust is None:
        console.warn("no --trust given: the image has no trust anchors, so its nodes "
                     "will refuse every repository (make them with 'bootpull repo trust')")
    with tempfile.TemporaryDirectory(prefix="bootpull-image-") as tmp:
        ctx = Context(settings, Path(tmp), Path(tmp) / "root", site_cas=site_cas)
        ctx.root.mkdir()
        for step in STEPS:
            summary = (step.__doc__ or step.__name__).strip().splitlines()[0].rstrip(".")
            with console.step(f"{step.__name__}: {summary}"):
                step(ctx)
    manifest: dict[str, Any] = json.loads((settings.out / "manifest.json").read_text())
    return manifest
