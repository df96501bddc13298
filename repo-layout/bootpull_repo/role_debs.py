"""``bootpull repo role from-debs ROLE PKG...``: a role made from Debian packages.

The boot image is busybox and Python; a role that needs real software brings it. This
command makes that role from the Debian archive the image itself comes from:

1. **Resolve.** apt resolves ``PKG...`` and their dependencies as if nothing were
   installed (an empty dpkg status), so the answer does not depend on the admin's
   machine. With a lock file and no ``--update``, the lock's exact versions are used.
2. **Fetch.** ``apt-get download NAME=VERSION`` into the cache; each .deb's SHA-256 is
   checked against the lock.
3. **Keep only what runs.** Every file of the named packages is kept except
   documentation and init-system glue. Their ELF files' ``DT_NEEDED`` libraries are
   followed: a library the image already ships (its ``manifest.json``) is used from
   the image; any other is copied from its package to ``files/debs/lib/<soname>``,
   and followed in turn. A library no package has is an error, before anything is
   written.
4. **Write.** ``files/debs/`` holds the kept tree, ``files/bin/<program>`` a small
   ``sh`` wrapper per program that runs it with the role's libraries
   (``LD_LIBRARY_PATH``), and ``debs.lock`` (next to ``role.toml``, not sent to nodes)
   the packages, versions and SHA-256 sums, and the image libraries relied on.

The result is deterministic: the same lock gives the same bytes, so ``--locked``
rebuilds (the example repository, CI) reproduce the committed role exactly.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tempfile
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from bootpull import layout
from bootpull.bundle import TreeReader
from bootpull.errors import BootpullError, UsageError
from bootpull.layout import Problem

LOCK_FILE = "debs.lock"
DEBS_DIR = "files/debs"
BIN_DIR = "files/bin"
LIB_DIR = "files/debs/lib"
LOCK_FORMAT = 1
#: The first line of every wrapper: how a rebuild tells its own files from the admin's.
WRAPPER_MARK = "# Written by 'bootpull repo role from-debs'"
#: Where programs are, in a package: each one gets a wrapper in files/bin/.
PROGRAM_DIRS = ("usr/bin", "usr/sbin", "bin", "sbin")
#: Where a package's shared libraries are (plus each ELF's own RUNPATH).
LIBRARY_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib", "usr/lib",
                "lib64")
#: What a role never needs from a package: documentation and init-system glue.
DROPPED = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/lintian",
           "usr/share/bug", "usr/share/locale", "usr/share/bash-completion",
           "usr/share/apport", "etc/apparmor.d", "etc/init.d", "etc/systemd",
           "lib/systemd", "usr/lib/systemd", "etc/logrotate.d", "etc/default",
           "usr/lib/tmpfiles.d", "usr/lib/sysusers.d")
#: Image paths whose libraries a role may use (the image's own loader finds them).
IMAGE_LIB_DIRS = ("lib/x86_64-linux-gnu/", "usr/lib/x86_64-linux-gnu/", "lib64/", "lib/")
BINARIES_PREFIX = "lib/bootpull/binaries/"


class DebsError(BootpullError):
    stage = "repo"


@dataclass(frozen=True)
class Pin:
    """One .deb of the lock: what apt gave, and the hash it must keep."""

    name: str
    version: str
    sha256: str = ""
    size: int = 0


@dataclass
class Lock:
    packages: tuple[str, ...]  # what the admin asked for
    release: str  # the Debian release (codename) they come from
    debs: tuple[Pin, ...]  # every .deb apt resolved, used or not
    image_libraries: tuple[str, ...] = ()  # sonames taken from the image
    used: tuple[str, ...] = ()  # the packages that files came from


@dataclass
class Built:
    """What one build wrote: the figures ``from-debs`` prints and the bench records."""

    files: int = 0
    role_bytes: int = 0
    deb_bytes: int = 0  # the .debs of the packages used
    all_deb_bytes: int = 0  # every .deb apt resolved
    programs: list[str] = field(default_factory=list)
    libraries: list[str] = field(default_factory=list)
    from_image: list[str] = field(default_factory=list)
    dropped_bytes: int = 0


# -- the image -------------------------------------------------------------------


def load_manifest(path: Path) -> dict[str, Any]:
    """An image's ``manifest.json`` (``path`` is the file or the build's directory)."""
    file = path / "manifest.json" if path.is_dir() else path
    try:
        manifest: dict[str, Any] = json.loads(file.read_text())
    except FileNotFoundError:
        raise UsageError(f"{file} does not exist",
                         hint="build the image first ('bootpull image build --out DIR') "
                         "and pass --image DIR") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{file} is not an image manifest", why=str(exc),
                         hint="pass the manifest.json that 'bootpull image build' wrote") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise UsageError(f"{file} is not an image manifest", why="it has no 'files' table",
                         hint="pass the manifest.json that 'bootpull image build' wrote")
    return manifest


def image_libraries(manifest: Mapping[str, Any]) -> set[str]:
    """The shared-library file names the image ships where its loader looks."""
    found: set[str] = set()
    for path in manifest.get("files", {}):
        rel = path.removeprefix(BINARIES_PREFIX)
        name = rel.rsplit("/", 1)[-1]
        if ".so" in name and rel.startswith(IMAGE_LIB_DIRS) and rel.count("/") <= 3:
            found.add(name)
    return found


def image_release(manifest: Mapping[str, Any]) -> str | None:
    """The Debian release an image was built from (older manifests: from libc6's version)."""
    release = manifest.get("release")
    if isinstance(release, dict) and isinstance(release.get("codename"), str):
        return str(release["codename"])
    libc = manifest.get("packages", {}).get("debian", {}).get("libc6", "")
    for number, codename in (("deb11", "bullseye"), ("deb12", "bookworm"), ("deb13", "trixie")):
        if number in libc:
            return codename
    return None


def host_release() -> str:
    """This machine's Debian codename: the archive apt downloads from."""
    from bootpull_image.debs import release

    codename = release().get("codename")
    if not codename:
        raise DebsError("this machine's Debian release is unknown",
                        why="/etc/os-release has no VERSION_CODENAME",
                        hint="run from-debs on a Debian machine of the image's release")
    return codename


# -- resolve and fetch -----------------------------------------------------------


def _apt_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"})
    return env


def resolve(names: Iterable[str]) -> tuple[Pin, ...]:
    """What apt installs for ``names`` on an empty system (no recommends), in its order."""
    names = list(names)
    with tempfile.TemporaryDirectory(prefix="bootpull-apt-") as tmp:
        status = Path(tmp) / "status"
        status.write_bytes(b"")
        proc = subprocess.run(
            ["apt-get", "-s", "-q", "-o", f"Dir::State::status={status}",
             "-o", "Debug::NoLocking=1", "install", "--no-install-recommends", *names],
            capture_output=True, text=True, env=_apt_env(), check=False)
    if proc.returncode != 0:
        lines = [line for line in proc.stdout.splitlines() + proc.stderr.splitlines()
                 if line.startswith(("E:", " ")) or "has no installation candidate" in line]
        raise DebsError(f"apt cannot resolve {' '.join(names)}",
                        why="; ".join(lines[-4:]) or f"apt-get exited {proc.returncode}",
                        hint="check the package names ('apt-cache search NAME'); run "
                        "'apt-get update' (as root) and try again")
    pins = []
    for line in proc.stdout.splitlines():
        # Inst libpcap0.8 (1.10.3-1 Debian:12.15/oldstable [amd64])
        if line.startswith("Inst "):
            parts = line.split()
            pins.append(Pin(parts[1], parts[2].lstrip("(")))
    return tuple(pins)


def _deb_name(pin: Pin) -> str:
    return f"{pin.name}_{pin.version.replace(':', '%3a')}_"


def download(pins: Iterable[Pin], cache: Path) -> dict[str, Path]:
    """Each pin's .deb, from ``cache`` or downloaded into it with ``apt-get download``."""
    pins = list(pins)
    cache.mkdir(parents=True, exist_ok=True)

    def cached(pin: Pin) -> Path | None:
        return next(iter(sorted(cache.glob(_deb_name(pin) + "*.deb"))), None)

    missing = [pin for pin in pins if cached(pin) is None]
    if missing:
        proc = subprocess.run(
            ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root",
             *[f"{p.name}={p.version}" for p in missing]],
            cwd=cache, capture_output=True, text=True, env=_apt_env(), check=False)
        if proc.returncode != 0:
            why = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else (
                f"apt-get exited {proc.returncode}")
            raise DebsError(
                f"could not download {', '.join(f'{p.name} {p.version}' for p in missing)}",
                why=why,
                hint="a locked version leaves the archive after a point release: run "
                "with --update to move the lock forward; else check that apt can "
                "reach the mirror ('apt-get update')")
    found = {}
    for pin in pins:
        path = cached(pin)
        if path is None:
            raise DebsError(f"{pin.name} {pin.version} was not downloaded",
                            why=f"no {_deb_name(pin)}*.deb in {cache}")
        found[pin.name] = path
    return found


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hashed(pins: Iterable[Pin], debs: Mapping[str, Path], *, check: bool) -> tuple[Pin, ...]:
    """The pins with their .debs' hashes; with ``check``, refuse any that changed."""
    out = []
    for pin in pins:
        path = debs[pin.name]
        digest, size = _sha256(path), path.stat().st_size
        if check and pin.sha256 and pin.sha256 != digest:
            raise DebsError(
                f"{path.name} does not match the lock",
                why=f"{LOCK_FILE} says sha256 {pin.sha256}, the file has {digest}",
                hint=f"delete {path} and run again; if the archive really changed the "
                "file, run with --update and review the change")
        out.append(Pin(pin.name, pin.version, digest, size))
    return tuple(out)


# -- unpack and follow the libraries ---------------------------------------------


def _unpack(deb: Path, dest: Path) -> None:
    proc = subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise DebsError(f"could not unpack {deb.name}", why=proc.stderr.strip(),
                        hint=f"delete {deb} and run again")


def _walk(root: Path) -> Iterable[str]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            yield str(Path(dirpath, name).relative_to(root))


def _dropped(rel: str) -> bool:
    return any(rel == d or rel.startswith(d + "/") for d in DROPPED)


def _inside(root: Path, rel: str, depth: int = 0) -> Path | None:
    """``rel`` under ``root`` with symlinks followed inside ``root``; None if dangling."""
    if depth > 16:
        return None
    path = root / rel
    if path.is_symlink():
        target = str(path.readlink())
        base = PurePosixPath(rel).parent
        joined = PurePosixPath(target.lstrip("/")) if target.startswith("/") else base / target
        parts: list[str] = []
        for part in joined.parts:
            if part == "..":
                if parts:
                    parts.pop()
            elif part != ".":
                parts.append(part)
        return _inside(root, "/".join(parts), depth + 1)
    return path if path.is_file() else None


@dataclass(frozen=True)
class Elf:
    needed: tuple[str, ...]
    runpath: tuple[str, ...]


def read_elf(data: bytes) -> Elf | None:
    """An ELF file's DT_NEEDED and RUNPATH (None when it is not a dynamic ELF)."""
    if not data.startswith(b"\x7fELF"):
        return None
    try:
        from elftools.common.exceptions import ELFError
        from elftools.elf.dynamic import DynamicSection
        from elftools.elf.elffile import ELFFile
    except ImportError:
        raise DebsError("reading ELF files needs pyelftools",
                        hint="pip install 'bootpull[server]' (or pyelftools)") from None

    try:
        elf = ELFFile(io.BytesIO(data))
        needed: list[str] = []
        runpath: list[str] = []
        for section in elf.iter_sections():
            if not isinstance(section, DynamicSection):
                continue
            for tag in section.iter_tags():
                # pyelftools sets these attributes by tag: .needed, .runpath, .rpath
                kind = tag.entry.d_tag
                if kind == "DT_NEEDED":
                    needed.append(getattr(tag, "needed"))  # noqa: B009
                elif kind in ("DT_RUNPATH", "DT_RPATH"):
                    value = getattr(tag, "runpath" if kind == "DT_RUNPATH" else "rpath")
                    runpath += [p for p in str(value).split(":") if p]
    except (ELFError, ValueError, KeyError) as exc:
        raise DebsError("a package holds a broken ELF file", why=str(exc),
                        hint="delete the .debs in the cache and run again; if it "
                        "repeats, the package itself is damaged: report it") from None
    return Elf(tuple(needed), tuple(runpath))


class _Trees:
    """The unpacked packages, and where each library file name is found in them."""

    def __init__(self, roots: Mapping[str, Path]) -> None:
        self.roots = dict(roots)
        self._libs: dict[str, tuple[str, str]] = {}  # soname → (package, rel path)
        for package, root in self.roots.items():
            for rel in _walk(root):
                name = rel.rsplit("/", 1)[-1]
                if ".so" in name and rel.rsplit("/", 1)[0] in LIBRARY_DIRS:
                    self._libs.setdefault(name, (package, rel))

    def library(self, soname: str, runpath: Iterable[str] = ()) -> tuple[str, Path] | None:
        for package, root in self.roots.items():
            for directory in runpath:
                rel = directory.replace("$ORIGIN", "").strip("/") + "/" + soname
                if (path := _inside(root, rel)) is not None:
                    return package, path
        found = self._libs.get(soname)
        if found is None:
            return None
        package, rel = found
        path = _inside(self.roots[package], rel)
        return None if path is None else (package, path)


def _closure(trees: _Trees, kept: Mapping[str, Path], image: set[str]
             ) -> tuple[dict[str, tuple[str, Path]], set[str], list[str]]:
    """The libraries the kept files need: soname → (package, file); the image's sonames
    used; and the problems (a library nobody ships)."""
    libs: dict[str, tuple[str, Path]] = {}
    from_image: set[str] = set()
    problems: list[str] = []
    todo = [(rel, path) for rel, path in sorted(kept.items())]
    seen: set[Path] = set()
    while todo:
        rel, path = todo.pop(0)
        if path in seen:
            continue
        seen.add(path)
        elf = read_elf(path.read_bytes())
        if elf is None:
            continue
        for soname in elf.needed:
            if soname in libs:
                continue
            if soname in image:
                from_image.add(soname)
                continue
            found = trees.library(soname, elf.runpath)
            if found is None:
                problems.append(f"{rel} needs {soname}, which neither the image nor the "
                                "resolved packages ship")
                continue
            libs[soname] = found
            todo.append((f"lib/{soname}", found[1]))
    return libs, from_image, problems


# -- write the role --------------------------------------------------------------


def _wrapper(role: str, program: str, package: Pin) -> str:
    return (f"{WRAPPER_MARK} ({layout.ROLES_DIR}/{role}/{LOCK_FILE}).\n"
            f"# Runs {program} of {package.name} {package.version} with the role's own\n"
            "# libraries (debs/lib) before the image's.\n"
            'd=$(cd "$(dirname "$0")/.." && pwd)\n'
            'LD_LIBRARY_PATH="$d/debs/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" '
            f'exec "$d/debs/{program}" "$@"\n')


def _clear(role_dir: Path) -> None:
    """Remove what an earlier build wrote (files/debs/, and the wrappers in files/bin/)."""
    shutil.rmtree(role_dir / DEBS_DIR, ignore_errors=True)
    bin_dir = role_dir / BIN_DIR
    if bin_dir.is_dir():
        for path in bin_dir.iterdir():
            try:
                ours = path.is_file() and path.read_text(errors="replace").startswith(
                    "#!/bin/sh\n" + WRAPPER_MARK)
            except OSError:
                ours = False
            if ours:
                path.unlink()
        if not any(bin_dir.iterdir()):
            bin_dir.rmdir()


def build(role: str, role_dir: Path, lock: Lock, debs: Mapping[str, Path],
          image: set[str], *, expect_image: set[str] | None = None) -> Built:
    """Write files/debs and files/bin of ``role`` from the lock's .debs. Nothing is
    written when a library is missing, or when ``expect_image`` is given and the role
    would rely on other image libraries than those."""
    built = Built(all_deb_bytes=sum(p.size for p in lock.debs))
    pins = {p.name: p for p in lock.debs}
    for name in lock.packages:
        if name not in pins:
            raise DebsError(f"{LOCK_FILE} has no .deb for {name}",
                            hint="run with --update to resolve the packages again")
    with tempfile.TemporaryDirectory(prefix="bootpull-debs-") as tmp:
        roots: dict[str, Path] = {}
        for pin in lock.debs:
            roots[pin.name] = Path(tmp, pin.name)
            _unpack(debs[pin.name], roots[pin.name])
        trees = _Trees(roots)
        kept: dict[str, Path] = {}  # rel under files/debs → source file
        links: dict[str, str] = {}  # rel under files/debs → link target
        origin: dict[str, str] = {}
        for name in lock.packages:
            root = roots[name]
            for rel in _walk(root):
                path = root / rel
                if _dropped(rel):
                    built.dropped_bytes += 0 if path.is_symlink() else path.stat().st_size
                    continue
                if path.is_symlink():
                    target = str(path.readlink())
                    # only a relative link to a file of the same package: the node
                    # refuses links that leave the role
                    resolved = _inside(root, rel)
                    if (not target.startswith("/") and resolved is not None
                            and not _dropped(str(resolved.relative_to(root)))):
                        links[rel] = target
                elif path.is_file():
                    kept[rel] = path
                origin[rel] = name
        libs, from_image, problems = _closure(trees, kept, image)
        if problems:
            raise DebsError(f"role {role}: {problems[0]}",
                            why="; ".join(problems[1:4]) or "the library closure is open",
                            hint="add the package that ships it to the command line, or "
                            "rebuild the image with it")
        if expect_image is not None and from_image != expect_image:
            raise DebsError("the rebuilt role needs other image libraries than its lock names",
                            why=f"now {', '.join(sorted(from_image))}; the lock says "
                            f"{', '.join(sorted(expect_image))}",
                            hint="pass --image DIR to check it against the image")
        _clear(role_dir)
        out = role_dir / DEBS_DIR
        for rel, src in sorted(kept.items()):
            dest = out / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
            dest.chmod(0o755 if src.stat().st_mode & stat.S_IXUSR else 0o644)
            built.files += 1
            built.role_bytes += dest.stat().st_size
        for rel, target in sorted(links.items()):
            dest = out / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.symlink_to(target)
            built.files += 1
        for soname, (_, src) in sorted(libs.items()):
            dest = role_dir / LIB_DIR / soname
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
            dest.chmod(0o644)
            built.files += 1
            built.role_bytes += dest.stat().st_size
            built.libraries.append(soname)
        for rel, src in sorted(kept.items()):
            directory, _, program = rel.rpartition("/")
            if directory in PROGRAM_DIRS and src.stat().st_mode & stat.S_IXUSR:
                wrapper = role_dir / BIN_DIR / program
                wrapper.parent.mkdir(parents=True, exist_ok=True)
                wrapper.write_text("#!/bin/sh\n" + _wrapper(role, rel, pins[origin[rel]]))
                wrapper.chmod(0o755)
                built.files += 1
                built.role_bytes += wrapper.stat().st_size
                built.programs.append(f"bin/{program}")
    used = sorted(set(lock.packages) | {package for package, _ in libs.values()})
    built.deb_bytes = sum(pins[name].size for name in used)
    built.from_image = sorted(from_image)
    lock.used = tuple(used)
    lock.image_libraries = tuple(sorted(from_image))
    return built


# -- the lock file ---------------------------------------------------------------


def _q(value: str) -> str:
    return json.dumps(value)  # a TOML basic string, for the ASCII these values are


def lock_text(lock: Lock) -> str:
    lines = [
        f"# Written by 'bootpull repo role from-debs'; it makes {' '.join(lock.packages)}",
        "# reproducible. Rebuild with --locked; move it forward with --update.",
        f"format = {LOCK_FORMAT}",
        f"release = {_q(lock.release)}",
        f"packages = [{', '.join(_q(p) for p in lock.packages)}]",
        "# The libraries this role takes from the image: an image without one of them",
        "# cannot run it ('bootpull repo lint' checks the role's own).",
        f"image_libraries = [{', '.join(_q(s) for s in lock.image_libraries)}]",
    ]
    for pin in lock.debs:
        lines += ["", "[[deb]]", f"name = {_q(pin.name)}", f"version = {_q(pin.version)}",
                  f"sha256 = {_q(pin.sha256)}", f"size = {pin.size}",
                  f"used = {'true' if pin.name in lock.used else 'false'}"]
    return "\n".join(lines) + "\n"


def parse_lock(data: bytes, path: str) -> tuple[Lock | None, list[Problem]]:
    """A ``debs.lock``, and every problem with it."""
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return None, [Problem(path, 0, f"is not valid UTF-8 TOML: {exc}",
                              "rebuild it: 'bootpull repo role from-debs ROLE --update'")]
    problems: list[Problem] = []

    def bad(what: str) -> None:
        problems.append(Problem(path, 0, what, "rebuild it with 'bootpull repo role "
                                "from-debs ROLE --update' instead of editing it"))

    if doc.get("format") != LOCK_FORMAT:
        bad(f"format {doc.get('format')!r} is not {LOCK_FORMAT}")
    release = doc.get("release")
    if not isinstance(release, str) or not release:
        bad("'release' must name a Debian release, as in \"bookworm\"")
    packages = doc.get("packages")
    if not isinstance(packages, list) or not packages or not all(
            isinstance(p, str) and p for p in packages):
        bad("'packages' must be a non-empty list of package names")
        packages = []
    libraries = doc.get("image_libraries", [])
    if not isinstance(libraries, list) or not all(isinstance(s, str) for s in libraries):
        bad("'image_libraries' must be a list of library names")
        libraries = []
    pins: list[Pin] = []
    used: list[str] = []
    entries = doc.get("deb", [])
    if not isinstance(entries, list):
        bad("[[deb]] must be an array of tables")
        entries = []
    for entry in entries:
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in (
                "name", "version", "sha256")) or not isinstance(entry.get("size"), int):
            bad("each [[deb]] needs name, version, sha256 (strings) and size (an integer)")
            continue
        if len(entry["sha256"]) != 64 or any(c not in "0123456789abcdef"
                                              for c in entry["sha256"]):
            bad(f"[[deb]] {entry['name']}: sha256 is not a SHA-256 in hex")
            continue
        pins.append(Pin(entry["name"], entry["version"], entry["sha256"], entry["size"]))
        if entry.get("used") is True:
            used.append(entry["name"])
    names = {p.name for p in pins}
    for name in packages:
        if name not in names:
            bad(f"package {name!r} has no [[deb]] entry")
    if problems or not isinstance(release, str):
        return None, problems
    return Lock(tuple(packages), release, tuple(pins), tuple(libraries), tuple(used)), []


def read_lock(role_dir: Path) -> Lock | None:
    path = role_dir / LOCK_FILE
    if not path.exists():
        return None
    lock, problems = parse_lock(path.read_bytes(), str(path))
    if problems:
        raise DebsError(f"{problems[0].file}: {problems[0].what}", hint=problems[0].fix)
    return lock


# -- lint ------------------------------------------------------------------------


def lint_role(tree: TreeReader, role: str) -> list[Problem]:
    """What lint says of a role with a ``debs.lock``: the lock parses, the build is
    there, and every ELF file's libraries are in the role or named in the lock as the
    image's."""
    base = f"{layout.ROLES_DIR}/{role}"
    data = tree.read(f"{base}/{LOCK_FILE}")
    if data is None:
        return []
    lock, problems = parse_lock(data, f"{base}/{LOCK_FILE}")
    if lock is None:
        return problems
    rebuild = f"run 'bootpull repo role from-debs {role} --locked' and commit"
    paths = sorted(e.path for e in tree.list(f"{base}/{DEBS_DIR}"))
    if not paths:
        return [Problem(f"{base}/{DEBS_DIR}", 0, "is missing, but the role has a "
                        f"{LOCK_FILE}", rebuild)]
    libs = {p.rsplit("/", 1)[-1] for p in paths if p.startswith(f"{base}/{LIB_DIR}/")}
    have = libs | set(lock.image_libraries)
    data_of = tree.read_many(paths)
    for path in paths:
        blob = data_of.get(path)
        if blob is None or not blob.startswith(b"\x7fELF"):
            continue
        try:
            elf = read_elf(blob)
        except DebsError as err:
            problems.append(Problem(path, 0, f"is a broken ELF file: {err.why}", rebuild))
            continue
        for soname in elf.needed if elf else ():
            if soname not in have:
                problems.append(Problem(
                    path, 0, f"needs {soname}, which is neither in {base}/{LIB_DIR}/ nor "
                    f"an image library the lock names", rebuild))
    return problems


# -- the command -----------------------------------------------------------------


def from_debs(root: Path, role: str, packages: list[str], *, cache: Path,
              manifest: Mapping[str, Any] | None, update: bool = False,
              locked: bool = False, say: Any = print) -> tuple[Lock, Built]:
    """Make (or rebuild) ``roles/<role>`` from Debian packages; return the lock written."""
    if why := layout.check_role_name(role):
        raise UsageError(why, hint="pick another name, as in 'ids' or 'ssh'")
    role_dir = root / layout.ROLES_DIR / role
    old = read_lock(role_dir)
    release = host_release()
    if manifest is not None:
        wanted = image_release(manifest)
        if wanted is not None and wanted != release:
            raise DebsError(
                f"the image is Debian {wanted}, but this machine's apt is {release}",
                why="a role must come from its image's release, or its libraries clash",
                hint=f"run from-debs on a Debian {wanted} machine")
    if old is None:
        if locked:
            raise UsageError(f"role {role} has no {LOCK_FILE}",
                             hint=f"run 'bootpull repo role from-debs {role} PKG...' first")
        if not packages:
            raise UsageError("name the packages: from-debs ROLE PKG...",
                             hint="as in 'bootpull repo role from-debs ids tcpdump'")
    elif packages and tuple(packages) != old.packages and not update:
        raise UsageError(
            f"role {role} is locked to {' '.join(old.packages)}",
            hint=f"pass --update to change its packages to {' '.join(packages)}")
    if old is not None and old.release != release:
        raise DebsError(f"{role}'s lock is for Debian {old.release}, this machine is {release}",
                        hint=f"run on a Debian {old.release} machine, or --update "
                        "to move the role to this release (and its image with it)")
    names = tuple(packages) if packages else old.packages if old else ()
    if old is None or update:
        say(f"resolving {' '.join(names)} with apt ({release})")
        pins = resolve(names)
        check = False
    else:
        pins = old.debs
        check = True
    debs = download(pins, cache)
    pins = hashed(pins, debs, check=check)
    lock = Lock(names, release, pins)
    if manifest is not None:
        image = image_libraries(manifest)
    elif old is not None:
        image = set(old.image_libraries)
    else:
        raise UsageError("from-debs needs the image's manifest.json to know its libraries",
                         hint="pass --image DIR (the output of 'bootpull image build')")
    # without the manifest, the lock's image libraries are all that is known of the image
    expect = set(old.image_libraries) if old is not None and manifest is None else None
    built = build(role, role_dir, lock, debs, image, expect_image=expect)
    (role_dir / LOCK_FILE).write_text(lock_text(lock))
    if not (role_dir / "role.toml").exists():
        (role_dir / "role.toml").write_text(_role_toml(role, names, built))
    return lock, built


def _role_toml(role: str, names: tuple[str, ...], built: Built) -> str:
    program = built.programs[0] if built.programs else "bin/PROGRAM"
    return (f'format = 1\ndescription = "{role}: {" ".join(names)} from Debian"\n\n'
            "[run]\n"
            f"# {', '.join(built.programs) or 'no programs'}: wrappers that run the\n"
            "# package's programs with the role's libraries (files/bin/).\n"
            f'command = ["{program}"]\nrestart = "on-failure"\n')


def configure(role_parsers: Any) -> None:
    """Adds ``role from-debs`` under ``repo role`` (role_new.configure calls this)."""
    parser = role_parsers.add_parser(
        "from-debs", help="make or rebuild roles/ROLE from Debian packages",
        description="Resolve PKG... with apt for the image's Debian release, keep their "
        "programs and the shared libraries the image does not ship, write "
        "roles/ROLE/files/debs/, files/bin/ wrappers and roles/ROLE/debs.lock, and "
        "commit. With a lock, its exact versions are used (checked by SHA-256).")
    parser.add_argument("role", metavar="ROLE")
    parser.add_argument("packages", metavar="PKG", nargs="*")
    parser.add_argument("--image", metavar="DIR", type=Path,
                        default=Path(os.environ["BOOTPULL_IMAGE"])
                        if os.environ.get("BOOTPULL_IMAGE") else None,
                        help="the image build's directory or its manifest.json (default: "
                        "$BOOTPULL_IMAGE); with a lock and no --update it may be left out")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--update", action="store_true",
                      help="resolve again and move the lock to the archive's versions")
    mode.add_argument("--locked", action="store_true",
                      help="rebuild exactly what the lock names (fails without a lock)")
    parser.add_argument("--cache", metavar="DIR", type=Path, default=None,
                        help="where .debs are kept (default: $BOOTPULL_CACHE/debs, else "
                        "./cache/debs of the checkout)")
    parser.add_argument("--no-commit", action="store_true", help="write, but do not commit")
    parser.add_argument("-C", dest="repo_dir", metavar="DIR", default=argparse.SUPPRESS,
                        help="the repository (default: the current directory)")
    parser.set_defaults(func=command)


def default_cache() -> Path:
    env = os.environ.get("BOOTPULL_CACHE")
    base = Path(env) if env else Path(__file__).resolve().parents[2] / "cache"
    return base / "debs"


def command(args: argparse.Namespace) -> int:
    from bootpull_repo.context import RepoContext

    ctx = RepoContext.from_args(args)
    manifest = load_manifest(args.image) if args.image is not None else None
    lock, built = from_debs(ctx.root, args.role, args.packages,
                            cache=args.cache or default_cache(), manifest=manifest,
                            update=args.update, locked=args.locked)
    used = [p for p in lock.debs if p.name in lock.used]
    print(f"role {args.role}: {built.files} files, {built.role_bytes} bytes from "
          f"{len(used)} of {len(lock.debs)} .debs ({built.deb_bytes} of "
          f"{built.all_deb_bytes} bytes)")
    print(f"  programs: {', '.join(built.programs) or 'none'}")
    print(f"  its own libraries: {', '.join(built.libraries) or 'none'}")
    print(f"  from the image: {', '.join(built.from_image) or 'none'}")
    if not args.no_commit:
        base = f"{layout.ROLES_DIR}/{args.role}"
        ctx.git.commit(f"role {args.role}: {' '.join(lock.packages)} from Debian "
                       f"{lock.release} ({', '.join(f'{p.name} {p.version}' for p in used)})",
                       [base])
        print(f"committed {base}/; next: 'bootpull repo lint', then publish")
    return 0
