"""Debian packages: downloaded with ``apt-get download`` into a cache, unpacked with ``dpkg -x``.

Nothing is installed on the build host. The cache is keyed by the file name apt
chooses (package, version, architecture), so a new point release downloads once and
an unchanged one never again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bootpull.errors import BootpullError


class PackageError(BootpullError):
    stage = "image"


@dataclass(frozen=True)
class Deb:
    name: str
    version: str
    path: Path


def candidate_versions(names: list[str]) -> dict[str, str]:
    """The version ``apt-get download NAME`` would fetch, for each name (one apt-cache call)."""
    out = subprocess.run(["apt-cache", "policy", *names], capture_output=True, text=True,
                         check=False).stdout
    found: dict[str, str] = {}
    current = ""
    for line in out.splitlines():
        if line and not line[0].isspace() and line.endswith(":"):
            current = line[:-1]
            continue
        key, _, value = line.strip().partition(":")
        if key == "Candidate" and current and value.strip() not in ("", "(none)"):
            found[current] = value.strip()
    for name in names:
        if name not in found:
            raise PackageError(f"Debian package {name!r} is not available",
                               why="apt-cache has no candidate version for it",
                               hint="run 'apt-get update' (as root) and build again")
    return found


def release(os_release: Path = Path("/etc/os-release")) -> dict[str, str]:
    """The Debian release apt fetches from (this machine's): id, version_id, codename."""
    try:
        text = os_release.read_text()
    except OSError:
        return {}
    fields = dict(line.partition("=")[::2] for line in text.splitlines() if "=" in line)
    out = {"id": fields.get("ID", ""), "version_id": fields.get("VERSION_ID", ""),
           "codename": fields.get("VERSION_CODENAME", "")}
    return {key: value.strip('"') for key, value in out.items() if value}


def resolve_kernel_package() -> str:
    """The versioned kernel package behind the ``linux-image-amd64`` meta-package."""
    out = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True,
                         text=True, check=False).stdout
    for line in out.splitlines():
        key, _, value = line.strip().partition(":")
        if key == "Depends" and value.strip().startswith("linux-image-"):
            return value.strip()
    raise PackageError("no Debian kernel package found",
                       why="apt-cache knows no 'linux-image-amd64' dependency",
                       hint="run 'apt-get update' (as root) and build again")


def _field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True,
                          text=True, check=True).stdout.strip()


def _cached(cache: Path, name: str, version: str) -> Path | None:
    # apt writes an epoch "1:" as "1%3a" in the file name.
    quoted = version.replace(":", "%3a")
    for candidate in sorted(cache.glob(f"{name}_*.deb")):
        if candidate.name.startswith(f"{name}_{quoted}_"):
            return candidate
    return None


def fetch(names: list[str], cache: Path) -> list[Deb]:
    """Each package's .deb, from the cache or downloaded into it."""
    cache.mkdir(parents=True, exist_ok=True)
    wanted = candidate_versions(names)
    missing = [name for name, version in wanted.items() if _cached(cache, name, version) is None]
    if missing:
        # apt drops privileges to _apt for downloads; let it write into the cache.
        if os.geteuid() == 0 and _user_exists("_apt"):
            shutil.chown(cache, user="_apt")
        proc = subprocess.run(["apt-get", "download", "-q", *missing], cwd=cache,
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise PackageError(f"could not download {', '.join(missing)}",
                               why=proc.stderr.strip().splitlines()[-1] if proc.stderr else
                               f"apt-get exited {proc.returncode}",
                               hint="check that apt can reach the Debian mirror; "
                               "run 'apt-get update' and build again")
    debs = []
    for name, version in wanted.items():
        path = _cached(cache, name, version)
        if path is None:
            raise PackageError(f"{name} {version} was not downloaded",
                               why=f"no {name}_*.deb in {cache}")
        debs.append(Deb(name, _field(path, "Version"), path))
    return debs


def _user_exists(user: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


def extract(deb: Deb, dest: Path) -> None:
    """Unpack the package's files (not its scripts) under ``dest``."""
    subprocess.run(["dpkg-deb", "-x", str(deb.path), str(dest)], check=True)
