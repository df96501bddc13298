"""``bootpull repo lint``: golden output on a corpus of broken repositories.

Each corpus entry is the example repository (repo-layout/example, a real git work
tree) with one thing broken; the last one breaks many things at once. The expected
output is exact: ``file:line: what — how to fix``, every problem in one pass, exit 1.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from bootpull import bundle
from bootpull.cli import main
from bootpull_repo.example import git_env, make_example_repo

WEB_HOST = "hosts/52-54-00-12-34-56.toml"
SENSOR_HOST = "hosts/52-54-00-12-34-57.toml"
WEB_ROLE = "roles/web/role.toml"
SENSOR_ROLE = "roles/sensor/role.toml"

Edit = Callable[[Path], None]


def write(path: str, text: str) -> Edit:
    def edit(root: Path) -> None:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return edit


def replace(path: str, old: str, new: str) -> Edit:
    def edit(root: Path) -> None:
        text = (root / path).read_text()
        assert old in text, f"{old!r} is not in {path}"
        (root / path).write_text(text.replace(old, new, 1))
    return edit


def append(path: str, text: str) -> Edit:
    def edit(root: Path) -> None:
        with open(root / path, "a") as f:
            f.write(text)
    return edit


def chmod(path: str, mode: int) -> Edit:
    def edit(root: Path) -> None:
        (root / path).chmod(mode)
    return edit


def git(*args: str) -> Edit:
    def edit(root: Path) -> None:
        subprocess.run(["git", *args], cwd=root, env=git_env(), check=True,
                       capture_output=True)
    return edit


def lint(root: Path, *extra: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["repo", "-C", str(root), "lint", *extra])
    return code, out.getvalue(), err.getvalue()


# One problem each: (edits, the exact output).
CORPUS: dict[str, tuple[list[Edit], str]] = {
    "toml-error": (
        [write(WEB_HOST, 'role = "web"\nhostname = \n')],
        f"{WEB_HOST}:2: is not valid TOML: Invalid value — fix the TOML syntax "
        "(see https://toml.io)\n",
    ),
    "unknown-key": (
        [write(WEB_HOST, 'role = "web"\nhostnme = "web-1"\n')],
        f"{WEB_HOST}:2: unknown key 'hostnme' in the top level — did you mean 'hostname'?\n",
    ),
    "unknown-key-in-table": (
        [replace(WEB_ROLE, "interval = 10", "intervall = 10")],
        f"{WEB_ROLE}:15: unknown key 'intervall' in [health] — did you mean 'interval'?\n",
    ),
    "missing-role": (
        [replace(SENSOR_HOST, 'role = "sensor"', 'role = "camera"')],
        f"{SENSOR_HOST}:2: role 'camera' does not exist — create roles/camera/role.toml "
        "('bootpull repo role new camera'), or assign an existing role\n",
    ),
    "pinned-version-without-tag": (
        [replace(WEB_HOST, 'role = "web"', 'role = "web"\nversion = "2.0"')],
        f"{WEB_HOST}:3: there is no release tag role/web/2.0 — run 'bootpull repo release "
        "web 2.0', or remove the version to follow the deploy branch\n",
    ),
    "command-missing-from-files": (
        [git("rm", "-q", "roles/sensor/files/sensor.sh")],
        f"{SENSOR_ROLE}:5: run.command runs './sensor.sh', which is not in files/ — add "
        "files/sensor.sh to the role, or correct the path (it is relative to the install "
        "directory, which holds the files/ content)\n",
    ),
    "command-not-executable": (
        [chmod("roles/web/files/check.sh", 0o644)],
        f"{WEB_ROLE}:11: install.hooks runs './check.sh', which is not executable — chmod "
        "+x roles/web/files/check.sh and commit it (git keeps the mode)\n",
    ),
    "duplicate-host-notations": (
        [write("hosts/52:54:00:12:34:56.toml", 'role = "sensor"\n')],
        "hosts/52:54:00:12:34:56.toml: describes the same node as "
        f"{WEB_HOST} (52:54:00:12:34:56) — keep one file per node: merge it into "
        f"{WEB_HOST} and 'git rm hosts/52:54:00:12:34:56.toml'\n",
    ),
    "too-large": (
        # above the example's largest role (ids, about 5.4 MB)
        [append("bootpull.toml", "\n[limits]\nmax_bundle_bytes = 6000000\n"),
         write("roles/web/files/blob.bin", "x" * 6_000_000)],
        "roles/web/files: role 'web' is 6004418 bytes, more than the limit of 6000000; the "
        "largest is files/blob.bin (6000000 bytes) — make the role smaller, or raise [limits] "
        "max_bundle_bytes in bootpull.toml\n",
    ),
    "invalid-hostname": (
        [replace(WEB_HOST, 'hostname = "web-1"', 'hostname = "web_1.example"')],
        f"{WEB_HOST}:3: 'web_1.example' is not a valid hostname — use letters, digits and "
        "'-' in dot-separated labels (RFC 1123)\n",
    ),
    "invalid-default": (
        [replace("hosts/default.toml", 'role = "sensor"', "role = 5")],
        "hosts/default.toml:10: 'role' must be a non-empty string — write it as "
        'role = "web"\n',
    ),
    "file-the-node-refuses": (
        [write("roles/web/files/.bootpull/record.json", "{}")],
        "roles/web/files: the node would refuse to install it: refusing to install "
        "'.bootpull/record.json': .bootpull/ is where bootpull keeps its own record of the "
        "install — rename .bootpull/ in the role's files/\n",
    ),
}

MANY = (
    [
        append("bootpull.toml", 'brnach = "main"\n'),
        write(WEB_HOST, 'role = "web"\nhostname = "-web-"\nversion = "9"\nlog_leve = "info"\n'),
        write("hosts/5254.0012.3457.toml", 'role = "sensor"\n'),
        write("hosts/default.toml", 'role = "nothing"\n[vars]\n"1X" = "y"\n'),
        replace(SENSOR_ROLE, 'command = ["./sensor.sh"]', 'command = ["./sensors.sh"]'),
        replace(SENSOR_ROLE, 'restart = "on-failure"', 'restart = "sometimes"'),
        chmod("roles/web/files/health.sh", 0o644),
        write("roles/broken/role.toml", "format = 1\n[run\n"),
    ],
    """\
bootpull.toml:11: unknown key 'brnach' in the top level — did you mean 'branch'?
hosts/52-54-00-12-34-56.toml:2: '-web-' is not a valid hostname — use letters, digits \
and '-' in dot-separated labels (RFC 1123)
hosts/52-54-00-12-34-56.toml:3: there is no release tag role/web/9 — run 'bootpull repo \
release web 9', or remove the version to follow the deploy branch
hosts/52-54-00-12-34-56.toml:4: unknown key 'log_leve' in the top level — did you mean \
'log_level'?
hosts/5254.0012.3457.toml: describes the same node as hosts/52-54-00-12-34-57.toml \
(52:54:00:12:34:57) — keep one file per node: merge it into hosts/52-54-00-12-34-57.toml \
and 'git rm hosts/5254.0012.3457.toml'
hosts/default.toml:1: role 'nothing' does not exist — create roles/nothing/role.toml \
('bootpull repo role new nothing'), or assign an existing role
hosts/default.toml:3: '1X' cannot be an environment variable name — use letters, digits \
and '_', not starting with a digit
roles/broken/role.toml:2: is not valid TOML: Expected ']' at the end of a table \
declaration — fix the TOML syntax (see https://toml.io)
roles/sensor/role.toml:5: run.command runs './sensors.sh', which is not in files/ — add \
files/sensors.sh to the role, or correct the path (it is relative to the install \
directory, which holds the files/ content)
roles/sensor/role.toml:6: restart must be one of always, on-failure, never, not \
'sometimes' — write restart = "on-failure"
roles/web/role.toml:14: health.command runs './health.sh', which is not executable — \
chmod +x roles/web/files/health.sh and commit it (git keeps the mode)
""",
)


def broken_repo(tmp_path: Path, edits: list[Edit]) -> Path:
    root = make_example_repo(tmp_path / "repo")
    for edit in edits:
        edit(root)
    return root


def test_the_example_repository_is_clean(tmp_path: Path) -> None:
    root = make_example_repo(tmp_path / "repo")
    assert lint(root) == (0, "", "bootpull repo lint: no problems\n")


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_one_problem(tmp_path: Path, name: str) -> None:
    edits, expected = CORPUS[name]
    code, out, err = lint(broken_repo(tmp_path, edits))
    assert out == expected
    assert code == 1
    assert err == "bootpull repo lint: 1 problem in 1 file\n"


def test_many_problems_in_one_pass(tmp_path: Path) -> None:
    edits, expected = MANY
    code, out, err = lint(broken_repo(tmp_path, edits))
    assert out == expected
    assert code == 1
    assert err == "bootpull repo lint: 11 problems in 7 files\n"


def test_every_line_is_file_line_what_fix(tmp_path: Path) -> None:
    edits, _ = MANY
    _code, out, _err = lint(broken_repo(tmp_path, edits))
    for line in out.splitlines():
        where, _, rest = line.partition(": ")
        assert where.split(":")[0] and " — " in rest, line


def test_lint_reads_the_work_tree_not_only_commits(tmp_path: Path) -> None:
    """An untracked file is linted (git add -A would take it); an ignored one is not."""
    root = make_example_repo(tmp_path / "repo")
    (root / ".gitignore").write_text("scratch/\n")
    (root / "hosts" / "00-11-22-33-44-55.toml").write_text('role = "ghost"\n')
    (root / "scratch").mkdir()
    (root / "scratch" / "x.toml").write_text("not toml [")
    code, out, _ = lint(root)
    assert code == 1
    assert out.startswith("hosts/00-11-22-33-44-55.toml:1: role 'ghost' does not exist")
    assert "scratch" not in out


def test_rev_lints_a_commit_and_sees_release_tags(tmp_path: Path) -> None:
    root = make_example_repo(tmp_path / "repo")
    env = git_env()
    subprocess.run(["git", "tag", "-a", "role/web/1", "-m", "release web 1"], cwd=root,
                   env=env, check=True)
    replace(WEB_HOST, 'role = "web"', 'role = "web"\nversion = "1"')(root)
    assert lint(root)[0] == 0  # the pin names a tag that exists
    subprocess.run(["git", "commit", "-qam", "pin"], cwd=root, env=env, check=True)
    write(WEB_HOST, "role = \n")(root)  # broken in the work tree only
    assert lint(root)[0] == 1
    assert lint(root, "--rev", "HEAD")[0] == 0
    assert lint(root, "--rev", "HEAD~1")[0] == 0


def test_a_broken_pinned_release_is_reported(tmp_path: Path) -> None:
    root = make_example_repo(tmp_path / "repo")
    env = git_env()
    subprocess.run(["git", "rm", "-q", "roles/web/files/web.sh"], cwd=root, env=env,
                   check=True)
    subprocess.run(["git", "commit", "-qm", "oops"], cwd=root, env=env, check=True)
    subprocess.run(["git", "tag", "-a", "role/web/bad", "-m", "bad"], cwd=root, env=env,
                   check=True)
    subprocess.run(["git", "revert", "--no-edit", "HEAD"], cwd=root, env=env, check=True,
                   capture_output=True)
    replace(WEB_HOST, 'role = "web"', 'role = "web"\nversion = "bad"')(root)
    code, out, _ = lint(root)
    assert code == 1
    assert out == (
        f"{WEB_HOST}:3: release role/web/bad is broken: {WEB_ROLE}:6: run.command runs "
        "'./web.sh', which is not in files/ — add files/web.sh to the role, or correct the "
        "path (it is relative to the install directory, which holds the files/ content) — "
        "release a fixed version ('bootpull repo release web V') and pin that\n"
    )


def test_not_a_git_repository_is_linted_as_plain_files(tmp_path: Path) -> None:
    import shutil

    from bootpull_repo.example import build_debs_roles, example_dir

    root = tmp_path / "plain"
    shutil.copytree(example_dir(), root)
    # the source tree has the lock of each role made from .debs, not the build
    code, out, _ = lint(root)
    assert code == 1 and out.splitlines()[0] == (
        "roles/ids/files/debs: is missing, but the role has a debs.lock — run 'bootpull "
        "repo role from-debs ids --locked' and commit")
    assert build_debs_roles(root) == ["ids", "ssh"]
    assert lint(root)[0] == 0
    (root / SENSOR_HOST).write_text('role = "x y"\n')
    code, out, _ = lint(root)
    assert code == 1 and out.startswith(f"{SENSOR_HOST}:1: 'x y' is not a valid role name")
    assert lint(root, "--rev", "HEAD")[0] == 1  # no git: a clear error, exit 1


def test_uppercase_role_names_the_installer_refuses(tmp_path: Path) -> None:
    root = make_example_repo(tmp_path / "repo")
    (root / "roles" / "sensor").rename(root / "roles" / "Sensor")
    for path in (SENSOR_HOST, "hosts/default.toml"):
        replace(path, 'role = "sensor"', 'role = "Sensor"')(root)
    code, out, _ = lint(root)
    assert code == 1
    why = "'Sensor' is not a valid role name: role names are lowercase only (as in 'sensor')"
    assert out == (f"{SENSOR_HOST}:2: {why} — name a directory under roles/\n"
                   f"hosts/default.toml:10: {why} — name a directory under roles/\n"
                   f"roles/Sensor/role.toml:1: {why} — rename the role's directory\n")


def test_lint_from_a_subdirectory_lints_the_whole_repository(tmp_path: Path) -> None:
    root = make_example_repo(tmp_path / "repo")
    write(SENSOR_HOST, 'role = "camera"\n')(root)
    code, out, _ = lint(root / "roles" / "web" / "files")
    assert code == 1
    assert out.startswith(f"{SENSOR_HOST}:1: role 'camera' does not exist")


def test_lint_a_missing_directory_is_a_usage_error(tmp_path: Path) -> None:
    code, out, err = lint(tmp_path / "nowhere")
    assert (code, out) == (2, "")
    assert "is not a directory" in err


def test_a_file_larger_than_a_node_fetches_is_reported(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Nodes refuse a git object past bootpull.bundle.MAX_FILE_BYTES (32 MiB): lint says
    so at commit time (the cap is lowered here so the test stays small)."""
    monkeypatch.setattr(bundle, "MAX_FILE_BYTES", 4 * 2**20)
    root = broken_repo(tmp_path, [write("roles/web/files/big.bin", "x" * (4 * 2**20 + 1)),
                                  write("roles/web/files/small.bin", "x" * (4 * 2**20))])
    code, out, _ = lint(root)
    assert code == 1
    assert out == ("roles/web/files/big.bin: it is 4194305 bytes, more than a node fetches "
                   "as one file (4 MiB): nodes would refuse the role — split it into smaller "
                   "files (split -b 16M, and join them in an install hook), or fetch it from "
                   "elsewhere in an install hook and check its hash\n")
