"""``bootpull repo role from-debs``: real Debian packages from this machine's apt, checked
against the session image's real manifest.json.

The .debs come from apt (the Debian archive this machine uses, the same one the image
is built from) into ./cache/debs, so only the first run on a machine downloads.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from bootpull_repo import role_debs
from bootpull_repo.example import example_dir, git_env
from bootpull_repo.lint import lint_repo
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.slow

CACHE = role_debs.default_cache()


def _repo(path: Path) -> Path:
    path.mkdir(parents=True)
    shutil.copyfile(example_dir() / "bootpull.toml", path / "bootpull.toml")
    for argv in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                 ["git", "commit", "-q", "-m", "settings"]):
        subprocess.run(argv, cwd=path, check=True, env=git_env(), capture_output=True)
    return path


def _bootpull(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / "bootpull"), *args],
                          cwd=cwd, capture_output=True, text=True, env=git_env(),
                          timeout=600, check=False)


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            digest.update(f"L {rel} {path.readlink()}\n".encode())
        elif path.is_file():
            digest.update(f"F {rel} {path.stat().st_mode:o} ".encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def tcpdump_role(tmp_path_factory: pytest.TempPathFactory, lab_image_dir: Path
                 ) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One repository with role 'cap' made from tcpdump by the CLI, and its output."""
    root = _repo(tmp_path_factory.mktemp("debs") / "repo")
    proc = _bootpull("repo", "role", "from-debs", "cap", "tcpdump", "--image",
                     str(lab_image_dir), cwd=root)
    return root, proc


def test_from_debs_keeps_the_program_and_only_the_libraries_the_image_lacks(
        tcpdump_role: tuple[Path, subprocess.CompletedProcess[str]],
        lab_manifest: dict[str, Any]) -> None:
    root, proc = tcpdump_role
    assert proc.returncode == 0, proc.stderr
    role = root / "roles" / "cap"
    lock, problems = role_debs.parse_lock((role / "debs.lock").read_bytes(), "debs.lock")
    assert lock is not None, problems
    assert lock.packages == ("tcpdump",) and lock.release == "bookworm"
    # every .deb is pinned by the hash of the file apt downloaded
    for pin in lock.debs:
        deb = next(CACHE.glob(f"{pin.name}_{pin.version.replace(':', '%3a')}_*.deb"))
        assert hashlib.sha256(deb.read_bytes()).hexdigest() == pin.sha256
        assert deb.stat().st_size == pin.size
    # the version apt's own policy picks
    policy = subprocess.run(["apt-cache", "policy", "tcpdump"], capture_output=True,
                            text=True, check=True).stdout
    assert f"Candidate: {next(p.version for p in lock.debs if p.name == 'tcpdump')}" in policy
    libs = sorted(p.name for p in (role / "files/debs/lib").iterdir())
    assert "libpcap.so.0.8" in libs
    image = role_debs.image_libraries(lab_manifest)
    assert "libc.so.6" in image and "libcrypto.so.3" in image
    assert not set(libs) & image  # nothing the image ships is copied
    assert set(lock.image_libraries) <= image and "libc.so.6" in lock.image_libraries
    assert (role / "files/debs/usr/bin/tcpdump").stat().st_mode & 0o111
    assert not (role / "files/debs/usr/share/doc").exists()  # documentation is dropped
    # the packages that were not needed are in the lock, marked unused
    assert "adduser" in {p.name for p in lock.debs} and "adduser" not in lock.used
    role_bytes = sum(p.stat().st_size for p in role.rglob("*") if p.is_file())
    assert role_bytes < sum(p.size for p in lock.debs) * 2
    assert "role cap:" in proc.stdout and "libpcap.so.0.8" in proc.stdout
    log = subprocess.run(["git", "log", "--format=%s", "-1"], cwd=root, capture_output=True,
                         text=True, check=True).stdout
    assert log.startswith("role cap: tcpdump from Debian bookworm (")
    assert not subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True,
                              text=True, check=True).stdout  # all of it committed


def test_the_wrapper_runs_the_program_with_the_roles_own_libraries(
        tcpdump_role: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    role = tcpdump_role[0] / "roles" / "cap" / "files"
    run = subprocess.run([str(role / "bin" / "tcpdump"), "--version"], capture_output=True,
                         text=True, timeout=30, check=False)
    assert run.returncode == 0, run.stderr
    assert "libpcap version 1.10" in run.stdout + run.stderr
    # the loader takes libpcap from the role, whatever this machine has installed
    proc = subprocess.Popen([str(role / "bin" / "tcpdump"), "-n", "-Z", "root", "-i", "lo",
                             "-c", "100000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        maps = ""
        for _ in range(100):
            maps = Path(f"/proc/{proc.pid}/maps").read_text()
            if "libpcap" in maps:
                break
            time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait()
    pcap = {line.split()[-1] for line in maps.splitlines() if "libpcap" in line}
    assert pcap == {str(role / "debs" / "lib" / "libpcap.so.0.8")}, maps


def test_lint_accepts_the_role_and_names_a_missing_library(
        tcpdump_role: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    root = tmp_path / "repo"
    shutil.copytree(tcpdump_role[0], root, symlinks=True)
    report = lint_repo(root)
    assert report.ok, str(report)
    (root / "roles/cap/files/debs/lib/libpcap.so.0.8").unlink()
    report = lint_repo(root)
    text = str(report)
    assert "roles/cap/files/debs/usr/bin/tcpdump" in text and "needs libpcap.so.0.8" in text
    assert "from-debs cap --locked" in text
    shutil.rmtree(root / "roles/cap/files/debs")
    assert "files/debs: is missing, but the role has a debs.lock" in str(lint_repo(root))


def test_a_locked_rebuild_gives_the_same_bytes_and_update_is_needed_to_change(
        tcpdump_role: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    root = tmp_path / "repo"
    shutil.copytree(tcpdump_role[0], root, symlinks=True)
    before = _tree_digest(root / "roles" / "cap")
    proc = _bootpull("repo", "role", "from-debs", "cap", "--locked", cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert _tree_digest(root / "roles" / "cap") == before
    assert "resolving" not in proc.stdout  # the lock's versions, not apt's resolver
    refused = _bootpull("repo", "role", "from-debs", "cap", "tcpdump", "dropbear-bin",
                        cwd=root)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "--update" in refused.stderr and "locked to tcpdump" in refused.stderr


def test_a_deb_that_differs_from_its_lock_is_refused(
        tcpdump_role: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    root = tmp_path / "repo"
    shutil.copytree(tcpdump_role[0], root, symlinks=True)
    lock = role_debs.read_lock(root / "roles" / "cap")
    assert lock is not None
    cache = tmp_path / "cache"
    cache.mkdir()
    for pin in lock.debs:
        src = next(CACHE.glob(f"{pin.name}_{pin.version.replace(':', '%3a')}_*.deb"))
        shutil.copyfile(src, cache / src.name)
    victim = next(cache.glob("libpcap0.8_*.deb"))
    victim.write_bytes(victim.read_bytes() + b"\0")
    before = _tree_digest(root / "roles" / "cap")
    with pytest.raises(role_debs.DebsError) as err:
        role_debs.from_debs(root, "cap", [], cache=cache, manifest=None, locked=True)
    assert "does not match the lock" in err.value.what and victim.name in err.value.what
    assert _tree_digest(root / "roles" / "cap") == before  # nothing was touched


def test_a_library_no_package_ships_stops_the_build_before_it_writes(tmp_path: Path) -> None:
    pins = role_debs.hashed([p for p in role_debs.resolve(["tcpdump"]) if p.name == "tcpdump"],
                            role_debs.download(role_debs.resolve(["tcpdump"]), CACHE),
                            check=False)
    debs = role_debs.download(pins, CACHE)
    role_dir = tmp_path / "roles" / "cap"
    (role_dir / "files").mkdir(parents=True)
    (role_dir / "files" / "keep").write_text("the admin's file\n")
    lock = role_debs.Lock(("tcpdump",), "bookworm", pins)
    with pytest.raises(role_debs.DebsError) as err:
        role_debs.build("cap", role_dir, lock, debs, {"libc.so.6"})
    said = f"{err.value.what}; {err.value.why}"
    assert "usr/bin/tcpdump needs libpcap.so.0.8, which neither" in said
    assert "usr/bin/tcpdump needs libc.so.6" not in said  # the image has that one
    assert "add the package that ships it" in (err.value.hint or "")
    assert sorted(p.name for p in (role_dir / "files").iterdir()) == ["keep"]


def test_an_unknown_package_is_an_apt_error_not_a_traceback(tmp_path: Path) -> None:
    root = _repo(tmp_path / "repo")
    proc = _bootpull("repo", "role", "from-debs", "x", "no-such-package-bootpull",
                     "--image", str(tmp_path), cwd=root)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "manifest.json does not exist" in proc.stderr  # the image is checked first
    (tmp_path / "manifest.json").write_text('{"files": {}, "release": {"codename": "bookworm"}}')
    proc = _bootpull("repo", "role", "from-debs", "x", "no-such-package-bootpull",
                     "--image", str(tmp_path), cwd=root)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "apt cannot resolve no-such-package-bootpull" in proc.stderr
    assert "apt-cache search" in proc.stderr


def test_an_image_of_another_release_is_refused(tmp_path: Path) -> None:
    manifest = {"files": {}, "release": {"codename": "trixie"}}
    with pytest.raises(role_debs.DebsError) as err:
        role_debs.from_debs(_repo(tmp_path / "r"), "x", ["tcpdump"], cache=CACHE,
                            manifest=manifest)
    assert "the image is Debian trixie" in err.value.what


def test_the_image_release_comes_from_the_manifest_or_libc(lab_manifest: dict[str, Any]
                                                           ) -> None:
    assert role_debs.image_release(lab_manifest) == "bookworm"
    assert lab_manifest["release"]["codename"] == "bookworm"
    old = {"files": {}, "packages": {"debian": {"libc6": "2.36-9+deb12u14"}}}
    assert role_debs.image_release(old) == "bookworm"
    assert role_debs.image_release({"files": {}}) is None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_a_lock_file_of_any_bytes_parses_or_says_what_is_wrong(data: bytes) -> None:
    lock, problems = role_debs.parse_lock(data, "roles/x/debs.lock")
    assert (lock is None) == bool(problems)
    assert all(p.file == "roles/x/debs.lock" and p.fix for p in problems)


def test_a_lock_round_trips_and_a_bad_hash_is_refused() -> None:
    lock = role_debs.Lock(("a",), "bookworm", (role_debs.Pin("a", "1:2.0-1", "ab" * 32, 10),
                                               role_debs.Pin("b", "3", "cd" * 32, 20)),
                          ("libc.so.6",), ("a",))
    parsed, problems = role_debs.parse_lock(role_debs.lock_text(lock).encode(), "l")
    assert parsed == lock and not problems
    bad = role_debs.lock_text(lock).replace("ab" * 32, "xyz").encode()
    parsed, problems = role_debs.parse_lock(bad, "l")
    assert parsed is None and "sha256 is not a SHA-256" in problems[0].what


def test_elf_reading_of_a_real_program_and_of_junk() -> None:
    elf = role_debs.read_elf(Path("/usr/bin/git").read_bytes())
    assert elf is not None and "libc.so.6" in elf.needed
    assert role_debs.read_elf(b"#!/bin/sh\n") is None
    with pytest.raises(role_debs.DebsError):
        role_debs.read_elf(b"\x7fELF" + b"\xff" * 60)
