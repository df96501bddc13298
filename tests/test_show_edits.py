"""The commands that change the repository: ``repo role new`` and ``repo unassign``.

Each makes one ordinary git commit with a clear message, touching only its own files;
what it makes passes lint and shows up in ``repo show``.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess

import pytest
from bootpull.cli import main
from bootpull.mac import Mac
from signed_repo import SignedRepo

SENSOR = Mac.parse("52-54-00-12-34-57")


def run(repo: SignedRepo, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["repo", "-C", str(repo.root), "--keys", str(repo.keys), *args])
    return code, out.getvalue(), err.getvalue()


def last_commit(repo: SignedRepo) -> tuple[str, list[str]]:
    message = repo.git("log", "-1", "--format=%s")
    files = repo.git("show", "--name-only", "--format=", "HEAD").splitlines()
    return message, sorted(files)


def test_role_new_makes_a_template_that_lint_accepts(example_repo: SignedRepo) -> None:
    code, out, _ = run(example_repo, "role", "new", "camera")
    assert code == 0, out
    assert last_commit(example_repo) == ("role camera: new role from the template",
                                         ["roles/camera/files/start.sh",
                                          "roles/camera/role.toml"])
    mode = example_repo.git("ls-tree", "HEAD", "roles/camera/files/start.sh").split()[0]
    assert mode == "100755"
    assert example_repo.git("status", "--porcelain") == ""
    assert run(example_repo, "lint")[0] == 0
    # Assign it, publish, and show: the node would get exactly the template.
    example_repo.bootpull("assign", "02:00:00:00:00:07", "camera")
    example_repo.publish()
    code, out, _ = run(example_repo, "show", "02:00:00:00:00:07", "--json")
    view = json.loads(out)
    assert code == 0 and view["role"] == "camera" and view["accepted"] is True
    assert [f["path"] for f in view["files"]] == ["start.sh"]


def test_role_new_template_runs_under_busybox(example_repo: SignedRepo) -> None:
    run(example_repo, "role", "new", "camera")
    files = example_repo.root / "roles" / "camera" / "files"
    proc = subprocess.Popen(["busybox", "sh", "./start.sh"], cwd=files, text=True,
                            stdout=subprocess.PIPE, env={"BOOTPULL_HOSTNAME": "cam-1",
                                                         "BOOTPULL_VERSION": "head-x",
                                                         "PATH": "/usr/bin:/bin"})
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("camera: started on cam-1, version head-x")
        assert proc.poll() is None  # it keeps running
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize(("name", "fragment"), [
    ("web", "already exists"),
    ("Camera", "lowercase only"),
    ("../x", "is not a valid role name"),
    ("a b", "is not a valid role name"),
])
def test_role_new_refuses(example_repo: SignedRepo, name: str, fragment: str) -> None:
    before = example_repo.git("rev-parse", "HEAD")
    code, _, err = run(example_repo, "role", "new", name)
    assert code == 2
    assert fragment in err
    assert example_repo.git("rev-parse", "HEAD") == before


def test_role_new_takes_dash_c_last(example_repo: SignedRepo) -> None:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["repo", "role", "new", "relay", "-C", str(example_repo.root)])
    assert code == 0, err.getvalue()
    assert (example_repo.root / "roles/relay/role.toml").is_file()


@pytest.mark.parametrize("notation", ["52:54:00:12:34:57", "5254.0012.3457", "525400123457",
                                      "52-54-00-12-34-57:"])
def test_unassign_commits_the_removal(example_repo: SignedRepo, notation: str) -> None:
    code, out, _ = run(example_repo, "unassign", notation)
    assert code == 0
    assert "it now gets hosts/default.toml (role sensor)" in out
    assert last_commit(example_repo) == ("unassign 52-54-00-12-34-57 (was sensor)",
                                         ["hosts/52-54-00-12-34-57.toml"])
    example_repo.publish()
    code, out, _ = run(example_repo, "show", SENSOR.colons, "--json")
    assert json.loads(out)["source"] == "hosts/default.toml"


def test_unassign_removes_duplicates_in_other_notations(example_repo: SignedRepo) -> None:
    example_repo.write("hosts/52:54:00:12:34:57.toml", b'role = "web"\n')
    example_repo.commit("a duplicate, by hand")
    assert run(example_repo, "lint")[0] == 1
    code, _, _ = run(example_repo, "unassign", SENSOR.canonical)
    assert code == 0
    message, files = last_commit(example_repo)
    assert message == "unassign 52-54-00-12-34-57 (was sensor)"
    assert files == ["hosts/52-54-00-12-34-57.toml", "hosts/52:54:00:12:34:57.toml"]
    assert run(example_repo, "lint")[0] == 0


def test_unassign_without_default_says_the_node_will_stop(example_repo: SignedRepo) -> None:
    example_repo.git("rm", "-q", "hosts/default.toml")
    example_repo.commit("no default")
    code, out, _ = run(example_repo, "unassign", SENSOR.colons)
    assert code == 0
    assert "it will stop at boot with 'not assigned'" in out


@pytest.mark.parametrize(("mac", "fragment"), [
    ("02:00:00:00:00:99", "has no host file"),
    ("52:54:00:12:34", "is not a MAC address"),
    ("default", "is not a MAC address"),
])
def test_unassign_refuses_and_changes_nothing(example_repo: SignedRepo, mac: str,
                                              fragment: str) -> None:
    before = example_repo.git("rev-parse", "HEAD")
    code, _, err = run(example_repo, "unassign", mac)
    assert code == 2 and fragment in err
    assert example_repo.git("rev-parse", "HEAD") == before


def test_assign_takes_the_mac_as_the_banner_prints_it(example_repo: SignedRepo) -> None:
    """Enrollment: the console banner's own command line works as printed."""
    from bootpull import layout
    from bootpull.errors import NotAssignedError

    mac = Mac.parse("52:54:00:aa:bb:cc")
    with pytest.raises(NotAssignedError) as info:
        layout.select(mac, None, None)
    hint = info.value.hint
    assert hint == "run 'bootpull repo assign 52:54:00:aa:bb:cc ROLE' and publish"
    banner_command = hint.split("'")[1].split()  # bootpull repo assign MAC ROLE
    code, _, err = run(example_repo, *banner_command[2:-1], "web")
    assert code == 0, err
    assert last_commit(example_repo)[1] == ["hosts/52-54-00-aa-bb-cc.toml"]
