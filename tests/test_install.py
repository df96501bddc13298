"""Install: staging, hooks, atomic switch, last-known-good, hostile paths, drift."""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest
from bootpull.bundle import MODE_EXEC, MODE_FILE, MODE_SYMLINK, Bundle, BundleFile
from bootpull.console import Console
from bootpull.errors import InstallError
from bootpull.install import bundle_id, check_drift, install, recover, revert_to_lkg
from bootpull.state import DiskTrouble, StateDir
from fakes import CapturingWriter
from hypothesis import given, settings
from hypothesis import strategies as st
from sample_bundles import make_bundle, process_gone


def console() -> Console:
    return Console(CapturingWriter())


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every entry under root: path → (mode, content or link target)."""
    out: dict[str, tuple[int, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st_ = p.lstat()
            if stat.S_ISLNK(st_.st_mode):
                out[str(p.relative_to(root))] = (st_.st_mode, str(p.readlink()).encode())
            elif stat.S_ISREG(st_.st_mode):
                out[str(p.relative_to(root))] = (st_.st_mode, p.read_bytes())
            else:
                out[str(p.relative_to(root))] = (st_.st_mode, b"")
    return out


def test_install_writes_files_with_modes_and_switches_current(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    outcome = install(make_bundle("1.0"), state, env={}, console=console())
    assert outcome.changed and outcome.previous is None
    cur = state.current()
    assert cur is not None and cur.version == "1.0" and cur.role == "web"
    assert cur.path == state.roles / "web" / outcome.installed.id
    assert (state.root / "current").is_symlink()
    run = cur.path / "run.sh"
    assert stat.S_IMODE(run.stat().st_mode) == 0o755
    assert stat.S_IMODE((cur.path / "www/index.html").stat().st_mode) == 0o644
    assert (cur.path / "www/index.html").read_bytes() == b"hi 1.0\n"
    assert str((cur.path / "www/current").readlink()) == "index.html"
    assert (cur.path / ".bootpull/role.toml").read_bytes().startswith(b"format = 1")
    assert state.lkg() is None
    assert check_drift(cur) == []


def test_unchanged_version_reinstalls_nothing(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    first = install(make_bundle("1.0"), state, env={}, console=console())
    before = snapshot(state.root / "roles")
    inode = (first.installed.path / "run.sh").stat().st_ino
    again = install(make_bundle("1.0"), state, env={}, console=console())
    assert not again.changed
    assert again.installed.path == first.installed.path
    assert (first.installed.path / "run.sh").stat().st_ino == inode
    assert snapshot(state.root / "roles") == before


def test_a_changed_install_of_the_same_version_is_replaced_by_a_fresh_copy(
        tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    install(make_bundle("1.0"), state, env={}, console=console())
    first = install(make_bundle("2.0"), state, env={}, console=console()).installed
    (first.path / "run.sh").write_bytes(b"#!/bin/sh\necho tampered\n")
    out = install(make_bundle("2.0"), state, env={}, console=console())
    assert out.changed and out.repaired == ("run.sh",)
    cur, lkg = state.current(), state.lkg()
    assert cur is not None and cur.path != first.path and check_drift(cur) == []
    assert (cur.path / "run.sh").read_bytes() == make_bundle("2.0").files[0].data
    assert lkg is not None and lkg.version == "1.0"  # the LKG is still the other version
    assert not first.path.exists()
    again = install(make_bundle("2.0"), state, env={}, console=console())
    assert not again.changed and again.installed.path == cur.path


def test_new_version_keeps_previous_as_lkg_and_prunes_older(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    one = install(make_bundle("1.0"), state, env={}, console=console()).installed
    two = install(make_bundle("2.0"), state, env={}, console=console())
    assert two.previous is not None and two.previous.version == "1.0"
    lkg, cur = state.lkg(), state.current()
    assert lkg is not None and lkg.version == "1.0" and cur is not None and cur.version == "2.0"
    install(make_bundle("3.0"), state, env={}, console=console())
    lkg, cur = state.lkg(), state.current()
    assert lkg is not None and lkg.version == "2.0" and cur is not None and cur.version == "3.0"
    assert not one.path.exists()  # neither current nor lkg: pruned
    assert sorted(p.name for p in (state.roles / "web").iterdir()) == sorted(
        [lkg.id, cur.id])
    back = revert_to_lkg(state)
    assert back is not None and back.version == "2.0"
    cur = state.current()
    assert cur is not None and cur.version == "2.0"


def test_changed_vars_on_the_same_version_is_a_new_install(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    a = make_bundle("1.0", vars={"COLOR": "red"})
    b = make_bundle("1.0", vars={"COLOR": "blue"})
    assert bundle_id(a) != bundle_id(b)
    install(a, state, env={}, console=console())
    out = install(b, state, env={}, console=console())
    assert out.changed and out.installed.record.assignment.vars == {"COLOR": "blue"}


def test_hooks_run_in_the_staging_dir_with_the_role_env(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    hook = b'#!/bin/sh\npwd > hook-ran\necho "$BOOTPULL_ROLE" >> hook-ran\n'
    bundle = make_bundle("1.0", files={"run.sh": b"#!/bin/sh\n", "setup.sh": hook},
                         hooks=(("./setup.sh",),))
    env = {"PATH": "/usr/bin:/bin", "BOOTPULL_ROLE": "web"}
    out = install(bundle, state, env=env, console=console())
    text = (out.installed.path / "hook-ran").read_text().splitlines()
    assert ".staging-" in text[0] and text[1] == "web"


def test_failing_hook_keeps_the_previous_version(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    install(make_bundle("1.0"), state, env={}, console=console())
    bad = make_bundle("2.0", files={"run.sh": b"#!/bin/sh\n",
                                    "setup.sh": b"#!/bin/sh\necho no disk >&2\nexit 3\n"},
                      hooks=(("./setup.sh",),))
    with pytest.raises(InstallError) as err:
        install(bad, state, env={"PATH": "/usr/bin:/bin"}, console=console())
    assert "exited with 3" in err.value.what and "no disk" in err.value.why
    assert err.value.exit_code == 13
    cur = state.current()
    assert cur is not None and cur.version == "1.0"
    assert [p.name for p in (state.roles / "web").iterdir()] == [cur.id]  # no staging left


def test_missing_hook_is_an_install_error(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    bundle = make_bundle("1.0", hooks=(("./nope.sh",),))
    with pytest.raises(InstallError, match="could not start"):
        install(bundle, state, env={}, console=console())
    assert state.current() is None


def test_drift_reports_changed_missing_and_chmodded_files(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    cur = install(make_bundle("1.0"), state, env={}, console=console()).installed
    (cur.path / "www/index.html").write_bytes(b"defaced\n")
    (cur.path / "run.sh").chmod(0o777)
    (cur.path / "www/current").unlink()
    (cur.path / "www/current").symlink_to("../run.sh")
    (cur.path / "marker").write_text("a file the role wrote is not drift\n")
    assert sorted(check_drift(cur)) == ["run.sh", "www/current", "www/index.html"]
    (cur.path / "health.sh").unlink()
    assert "health.sh" in check_drift(cur)


# -- hostile bundles -------------------------------------------------------------------

HOSTILE: dict[str, dict[str, bytes | tuple[int, bytes]]] = {
    "dotdot": {"../escape": b"x"},
    "dotdot-inside": {"a/../../escape": b"x"},
    "absolute": {"/tmp/escape": b"x"},
    "empty-component": {"a//b": b"x"},
    "dot-component": {"./a": b"x"},
    "trailing-slash": {"a/": b"x"},
    "control-char": {"a\nb": b"x"},
    "symlink-absolute": {"link": (MODE_SYMLINK, b"/etc/passwd")},
    "symlink-escapes": {"link": (MODE_SYMLINK, b"../../outside")},
    "symlink-escapes-deep": {"a/b/link": (MODE_SYMLINK, b"../../../outside")},
    "write-through-symlinked-dir": {"d": (MODE_SYMLINK, b"sub"), "d/x": b"x",
                                    "sub/y": b"y"},
    "write-through-escaping-dir": {"d": (MODE_SYMLINK, b".."), "d/x": b"x"},
    "chained-links-escape": {"d/up": (MODE_SYMLINK, b".."),
                             "d/l1": (MODE_SYMLINK, b"up/..")},
    "link-loop": {"a": (MODE_SYMLINK, b"b/x"), "b": (MODE_SYMLINK, b"a/x")},
    "char-device": {"dev": (0o020644, b"")},
    "block-device": {"dev": (0o060644, b"")},
    "fifo": {"fifo": (0o010644, b"")},
    "socket": {"sock": (0o140644, b"")},
    "gitlink": {"sub": (0o160000, b"")},
    "directory-mode": {"dir": (0o040755, b"")},
    "setuid": {"su": (0o104755, b"#!/bin/sh\n")},
    "file-and-dir": {"a": b"x", "a/b": b"y"},
    "reserved-meta": {".bootpull/record.json": b"{}"},
}

#: What each hostile bundle is refused for (the reason after the path).
REFUSED_FOR: dict[str, str] = {
    "absolute": 'the path is absolute',
    "block-device": 'mode 60644 is not a regular file or a symlink',
    "chained-links-escape": "the symlink target 'up/..' leaves the install directory",
    "char-device": 'mode 20644 is not a regular file or a symlink',
    "control-char": 'the path contains a control character',
    "directory-mode": 'mode 40755 is not a regular file or a symlink',
    "dot-component": "the path has a '.' component",
    "dotdot": "the path has a '..' component",
    "dotdot-inside": "the path has a '..' component",
    "empty-component": "the path has a 'empty' component",
    "fifo": 'mode 10644 is not a regular file or a symlink',
    "file-and-dir": 'the path is both a file and a directory of another entry',
    "gitlink": 'mode 160000 is not a regular file or a symlink',
    "link-loop": 'the symlink is part of a loop',
    "reserved-meta": '.bootpull/ is where bootpull keeps its own record of the install',
    "setuid": 'mode 104755 sets setuid, setgid or sticky',
    "socket": 'mode 140644 is not a regular file or a symlink',
    "symlink-absolute": "the symlink points at the absolute path '/etc/passwd'",
    "symlink-escapes": "the symlink target '../../outside' leaves the install directory",
    "symlink-escapes-deep": "the symlink target '../../../outside' leaves the install directory",
    "trailing-slash": "the path has a 'empty' component",
    "write-through-escaping-dir": 'the path is both a file and a directory of another entry',
    "write-through-symlinked-dir": 'the path is both a file and a directory of another entry',
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_bundle_is_refused_and_nothing_is_written(tmp_path: Path, name: str) -> None:
    state = StateDir(tmp_path / "root" / "state")
    install(make_bundle("1.0"), state, env={}, console=console())
    before = snapshot(tmp_path)
    files = {"run.sh": b"#!/bin/sh\n", **HOSTILE[name]}
    with pytest.raises(InstallError) as err:
        install(make_bundle("2.0", files=files), state, env={}, console=console())
    assert err.value.exit_code == 13 and "refusing to install" in err.value.what
    assert err.value.what.split("': ", 1)[1].startswith(REFUSED_FOR[name]), err.value.what
    assert snapshot(tmp_path) == before
    cur = state.current()
    assert cur is not None and cur.version == "1.0"


def test_duplicate_path_is_refused(tmp_path: Path) -> None:
    bundle = make_bundle("1.0")
    dup = BundleFile("run.sh", MODE_FILE, b"again")
    state = StateDir(tmp_path / "state")
    from dataclasses import replace

    with pytest.raises(InstallError, match="twice"):
        install(replace(bundle, files=(*bundle.files, dup)), state, env={}, console=console())
    assert not (state.roles / "web").exists() or not any((state.roles / "web").iterdir())


def test_hostile_role_name_is_refused(tmp_path: Path) -> None:
    from dataclasses import replace

    bundle = make_bundle("1.0")
    bad = replace(bundle, role=replace(bundle.role, name="../../etc"))
    with pytest.raises(InstallError):
        install(bad, StateDir(tmp_path / "state"), env={}, console=console())
    assert snapshot(tmp_path) == {}


def test_internal_links_and_nested_dirs_are_fine(tmp_path: Path) -> None:
    files: dict[str, bytes | tuple[int, bytes]] = {
        "run.sh": b"#!/bin/sh\n", "a/b/c.txt": b"c", "a/link": (MODE_SYMLINK, b"b/c.txt"),
        "up": (MODE_SYMLINK, b"a/b/../b/c.txt"), "dangling": (MODE_SYMLINK, b"nothere"),
        "chain": (MODE_SYMLINK, b"a/link"),
    }
    state = StateDir(tmp_path / "state")
    cur = install(make_bundle("1.0", files=files), state, env={}, console=console()).installed
    assert (cur.path / "chain").read_bytes() == b"c"
    assert check_drift(cur) == []


# -- property tests of the path checks ----------------------------------------------

CLEAN = st.lists(st.sampled_from(["a", "b", "d", "c.txt"]), min_size=1,
                 max_size=3).map("/".join)
HOSTILE_PATHS = st.lists(st.sampled_from(["a", "..", ".", "", ".bootpull"]), min_size=1,
                         max_size=4).map("/".join) | st.sampled_from(["/abs", "/"])
PATHS = st.one_of(CLEAN, CLEAN, CLEAN, HOSTILE_PATHS)  # mostly clean, so links get checked
TARGETS = st.lists(st.sampled_from(["a", "b", "..", "..", ".", "d", "c.txt"]), min_size=1,
                   max_size=5).map("/".join) | st.just("/etc")
MODES = st.sampled_from([MODE_FILE, MODE_EXEC, MODE_SYMLINK, MODE_SYMLINK, 0o020644])
ENTRIES = st.lists(st.tuples(PATHS, MODES, TARGETS), min_size=1, max_size=5,
                   unique_by=lambda e: e[0])


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


@settings(max_examples=300)
@given(entries=ENTRIES)
def test_property_install_never_writes_outside_its_root(
        tmp_path_factory: pytest.TempPathFactory,
        entries: list[tuple[str, int, str]]) -> None:
    base = tmp_path_factory.mktemp("prop")
    (base / "sentinel").write_text("untouched")
    state = StateDir(base / "state")
    files = tuple(BundleFile(p, m, t.encode() if m == MODE_SYMLINK else b"data")
                  for p, m, t in entries)
    from dataclasses import replace

    bundle = replace(make_bundle("1.0"), files=files)
    try:
        out = install(bundle, state, env={}, console=console())
    except InstallError:
        assert state.current() is None
        assert not list(state.root.rglob(".staging-*"))
    else:
        root = os.path.realpath(out.installed.path)
        for f in files:
            parts = f.path.split("/")
            assert ".." not in parts and "" not in parts and not f.path.startswith("/")
            assert _inside(os.path.realpath(out.installed.path / f.path), root)
        for dirpath, dirnames, filenames in os.walk(out.installed.path):
            for name in dirnames + filenames:
                assert _inside(os.path.realpath(Path(dirpath) / name), root)
    assert sorted(p.name for p in base.iterdir()) == ["sentinel", "state"] or \
        sorted(p.name for p in base.iterdir()) == ["sentinel"]
    assert (base / "sentinel").read_text() == "untouched"


@given(path=st.text(min_size=0, max_size=30))
def test_property_any_accepted_path_is_relative_and_clean(path: str) -> None:
    from bootpull.install import check_files

    try:
        check_files([BundleFile(path, MODE_FILE, b"")])
    except InstallError:
        return
    parts = path.split("/")
    assert path and not path.startswith("/")
    assert all(p not in ("", ".", "..") for p in parts)
    assert parts[0] != ".bootpull"


def test_recover_removes_leftovers_and_repairs_a_broken_current(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    install(make_bundle("1.0"), state, env={}, console=console())
    install(make_bundle("2.0"), state, env={}, console=console())
    (state.roles / "web" / ".staging-3.0-x.123").mkdir()
    (state.roles / "web" / ".staging-3.0-x.123" / "half").write_text("x")
    (state.roles / "web" / ".trash-old.1.2").mkdir()
    (state.root / ".current.tmp-99").symlink_to("roles/web/nothing")
    cur = state.current()
    assert cur is not None
    import shutil

    shutil.rmtree(cur.path)  # as if the disk lost it
    done = recover(state, console())
    assert any("staging" in d for d in done) and any("lkg" in d for d in done)
    assert sorted(p.name for p in (state.roles / "web").iterdir()) == [
        p.name for p in (state.roles / "web").iterdir() if not p.name.startswith(".")]
    back = state.current()
    assert back is not None and back.version == "1.0"
    assert not (state.root / ".current.tmp-99").is_symlink()


def test_a_hook_that_leaves_a_daemon_neither_hangs_nor_leaves_it(tmp_path: Path) -> None:
    import time

    hook = b"#!/bin/sh\nsleep 300 &\necho $! > daemon.pid\necho started\n"
    bundle = make_bundle("1.0", files={"run.sh": b"#!/bin/sh\n", "setup.sh": hook},
                         hooks=(("./setup.sh",),))
    t0 = time.monotonic()
    out = install(bundle, StateDir(tmp_path / "state"), env={"PATH": "/usr/bin:/bin"},
                  console=console())
    assert time.monotonic() - t0 < 30
    assert process_gone(int((out.installed.path / "daemon.pid").read_text()))


def test_a_hook_past_its_time_limit_is_killed(tmp_path: Path) -> None:
    hook = b"#!/bin/sh\necho waiting\nexec sleep 300\n"
    bundle = make_bundle("1.0", files={"run.sh": b"#!/bin/sh\n", "setup.sh": hook},
                         hooks=(("./setup.sh",),))
    state = StateDir(tmp_path / "state")
    with pytest.raises(InstallError) as err:
        install(bundle, state, env={"PATH": "/usr/bin:/bin"}, console=console(),
                hook_timeout=0.5)
    assert "longer than" in err.value.what and "waiting" in err.value.why
    assert state.current() is None


def test_install_ids_of_bundles_without_new_keys_never_change() -> None:
    # An install id is also the key of the bad-version list: a change to the digest of a
    # bundle that uses none of the newer keys (silent_after, [run] user, host groups)
    # would make every node reinstall and forget its bad versions. These are the ids the
    # releases before those keys gave.
    assert bundle_id(make_bundle("1.0")) == "1.0-e8dc057d3346-183b55ba"
    assert bundle_id(make_bundle("2.0", role="sensor")) == "2.0-70142f66475a-f5d68fc7"


def head_bundle(commit: str, **kwargs: object) -> Bundle:
    """The sample bundle as a node following the deploy head gets it at ``commit``."""
    base = make_bundle("1.0", **kwargs)  # type: ignore[arg-type]
    files = tuple(f if f.path != "www/index.html" else replace(f, data=b"same\n")
                  for f in base.files)
    return replace(base, version=f"head-{commit[:12]}", commit=commit, files=files)


def test_a_head_commit_that_changes_nothing_here_is_the_same_install(
        tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    first = install(head_bundle("a" * 40), state, env={}, console=console())
    assert first.changed and first.installed.id == bundle_id(head_bundle("a" * 40))
    assert first.installed.id.startswith("head-") and "a" * 12 not in first.installed.id
    out = CapturingWriter()
    again = install(head_bundle("b" * 40), state, env={}, console=Console(out))
    assert not again.changed and again.relabelled == f"head-{'a' * 12}"
    assert again.installed.path == first.installed.path  # nothing written beside it
    cur = state.current()
    assert cur is not None and (cur.version, cur.commit) == (f"head-{'b' * 12}", "b" * 40)
    assert cur.record.installed_at == first.installed.record.installed_at
    assert state.lkg() is None and check_drift(cur) == []
    # the same commit again: nothing to relabel
    assert install(head_bundle("b" * 40), state, env={}, console=console()).relabelled is None
    # a change of what this node gets is a new install, as before
    changed = install(head_bundle("c" * 40, vars={"k": "v"}), state, env={},
                      console=console())
    assert changed.changed and changed.installed.id != first.installed.id
    lkg = state.lkg()
    assert lkg is not None and lkg.version == f"head-{'b' * 12}"


def test_a_head_commit_back_to_the_lkg_content_switches_to_it_under_the_new_name(
        tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    install(head_bundle("a" * 40), state, env={}, console=console())
    install(head_bundle("b" * 40, vars={"k": "v"}), state, env={}, console=console())
    back = install(head_bundle("c" * 40), state, env={}, console=console())
    assert back.changed  # the role restarts: what it runs changed
    cur, lkg = state.current(), state.lkg()
    assert cur is not None and (cur.version, cur.commit) == (f"head-{'c' * 12}", "c" * 40)
    assert lkg is not None and lkg.version == f"head-{'b' * 12}"
    assert check_drift(cur) == []


def test_pinned_versions_keep_their_commit_in_the_install_id() -> None:
    pinned = make_bundle("1.0")
    assert bundle_id(pinned) != bundle_id(replace(pinned, commit="f" * 40))
    # "head-" as a pinned version is a release name like any other
    named = replace(pinned, version="head-1",
                    assignment=replace(pinned.assignment, version="head-1"))
    assert bundle_id(named) != bundle_id(replace(named, commit="f" * 40))


def test_a_disk_that_refuses_the_relabel_keeps_the_install_and_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bootpull.install as install_module

    state = StateDir(tmp_path / "state")
    install(head_bundle("a" * 40), state, env={}, console=console())

    def full(path: Path, obj: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(install_module, "write_json", full)
    out = CapturingWriter()
    again = install(head_bundle("b" * 40), state, env={}, console=Console(out))
    assert not again.changed and again.relabelled is None
    assert "keeps the name head-aaaaaaaaaaaa instead of head-bbbbbbbbbbbb" in out.text
    cur = state.current()
    assert cur is not None and cur.version == f"head-{'a' * 12}"
    # the node's own disk trouble says it once, however many polls fail the same way
    out = CapturingWriter()
    trouble = DiskTrouble(Console(out), state.root)
    for _ in range(3):
        install(head_bundle("b" * 40), state, env={}, console=Console(out), trouble=trouble)
    assert out.text.count("could not write the install record of") == 1, out.text
    monkeypatch.undo()
    install(head_bundle("b" * 40), state, env={}, console=Console(out), trouble=trouble)
    assert "writing the install record of" in out.text and "works again" in out.text
    cur = state.current()
    assert cur is not None and cur.version == f"head-{'b' * 12}"


def test_the_lkg_content_back_again_with_files_changed_on_disk_is_a_fresh_copy(
        tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    first = install(head_bundle("a" * 40), state, env={}, console=console()).installed
    install(head_bundle("b" * 40, vars={"k": "v"}), state, env={}, console=console())
    (first.path / "run.sh").write_bytes(b"#!/bin/sh\necho tampered\n")
    out = CapturingWriter()
    back = install(head_bundle("c" * 40), state, env={}, console=Console(out))
    assert back.changed and back.installed.path != first.path
    assert back.installed.id == first.id and back.installed.version == f"head-{'c' * 12}"
    assert check_drift(back.installed) == []
    assert (back.installed.path / "run.sh").read_bytes() != b"#!/bin/sh\necho tampered\n"
    assert "changed on disk (run.sh): installing a fresh copy" in out.text
    assert not first.path.exists()  # neither current nor lkg: pruned
