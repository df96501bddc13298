"""A role's own user (docs/contract.md §9.6): ``[run] user``, ``group``, ``capabilities``.

Parsed by layout.parse_role; created in a temporary etc directory (never the host's
/etc) with its ids kept in ``<state>/users.json``; and real privilege drops — the CI
runs as root — through the real install, Supervisor and health-check code: a small
script reports ``id -u``, ``id -g``, ``id -G`` and the CapEff/CapAmb lines of
/proc/self/status, and the test compares them with what role.toml declared.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from bootpull import layout, privdrop, role_secrets, role_users
from bootpull.backoff import Counters
from bootpull.bundle import MODE_FILE, Bundle, BundleFile, HealthSpec, RoleSpec
from bootpull.console import Console
from bootpull.errors import HookFailed, InstallError, RunError
from bootpull.install import bundle_id, install
from bootpull.mac import Mac
from bootpull.role_users import RunAs
from bootpull.state import InstallRecord, StateDir
from bootpull.supervise import Identity, Policy, Supervisor, role_env
from fakes import CapturingWriter
from sample_bundles import make_bundle

IDENT = Identity(Mac.parse("52:54:00:12:34:56"), hostname="node-a")
FAST = Policy(tries=3, start_grace=0.3, first_check_spacing=0.1, stop_timeout=5.0)
NET_RAW, NET_ADMIN = 1 << 13, 1 << 12

# what the role, hook and health check report about themselves, into the data dir
REPORT = b"""#!/bin/sh
out="$BOOTPULL_DATA_DIR/${1:-run}"
{ id -u; id -g; id -G; grep -E '^(Cap(Eff|Amb)|NoNewPrivs):' /proc/self/status
  echo "HOME=$HOME"; } > "$out.tmp" 2>&1 && mv "$out.tmp" "$out"
[ "$1" = "" ] && exec sleep 60
exit 0
"""


def role_toml(run: str) -> bytes:
    return f'format = 1\ndescription = "d"\n\n[run]\ncommand = ["./run.sh"]\n{run}\n'.encode()


def parse(run: str) -> tuple[RoleSpec | None, list[str]]:
    spec, problems = layout.parse_role(role_toml(run), "capture")
    return spec, [str(p) for p in problems]


# -- parsing ----------------------------------------------------------------------


def test_user_group_and_capabilities_parse_in_any_spelling() -> None:
    spec, problems = parse('user = "tcpdump"\ncapabilities = ["CAP_NET_RAW", "Net_Admin", '
                           '"net_raw"]')
    assert problems == []
    assert spec is not None
    assert (spec.user, spec.group, spec.capabilities) == (
        "tcpdump", "tcpdump", ("net_admin", "net_raw"))  # the group: the user's name
    spec, problems = parse('user = "web-1"\ngroup = "www_data"')
    assert problems == [] and spec is not None
    assert (spec.user, spec.group, spec.capabilities) == (
        "web-1", "www_data", ())
    spec, _ = parse("")
    assert spec is not None
    assert (spec.user, spec.group, spec.capabilities) == (None, None, ())


def test_an_unknown_capability_is_refused_with_the_close_name() -> None:
    _, problems = parse('user = "tcpdump"\ncapabilities = ["net_rwa"]')
    assert problems == ["roles/capture/role.toml:7: unknown capability 'net_rwa' — did you "
                        "mean 'net_raw'?"]
    _, problems = parse('user = "tcpdump"\ncapabilities = ["frobnicate"]')
    assert len(problems) == 1 and "capabilities(7)" in problems[0]
    _, problems = parse('user = "tcpdump"\ncapabilities = "net_raw"')
    assert problems and "must be a list" in problems[0]


def test_capabilities_without_a_user_are_refused_with_a_hint() -> None:
    _, problems = parse('capabilities = ["net_raw"]')
    assert len(problems) == 1
    assert "runs as root, which has every capability already" in problems[0]
    assert 'add user = "name" under [run]' in problems[0]
    _, problems = parse('group = "pcap"')
    assert len(problems) == 1 and "without 'run.user'" in problems[0]


@pytest.mark.parametrize("name", ["Tcpdump", "1pcap", "pc.ap", "a" * 33, "", "root"])
def test_a_bad_user_or_group_name_is_refused(name: str) -> None:
    for key in ("user", "group"):
        run = f'{key} = "{name}"' + ('\nuser = "ok"' if key == "group" else "")
        _, problems = parse(run)
        assert len(problems) == 1, (key, problems)
        assert (f"'{key} = \"root\"' is not allowed" if name == "root"
                else "name" if name else "non-empty") in problems[0]


def test_the_user_changes_the_install_id_and_survives_the_install_record() -> None:
    plain = make_bundle("1.0")
    spec = replace(plain.role, user="tcpdump", group="pcap", capabilities=("net_raw",))
    with_user = replace(plain, role=spec)
    assert bundle_id(with_user) != bundle_id(plain)
    record = InstallRecord(role=spec, assignment=plain.assignment, version="1.0",
                           commit=plain.commit, installed_at="x", files=(), ident="i")
    assert InstallRecord.from_json(record.to_json()).role == spec
    bare = InstallRecord(role=plain.role, assignment=plain.assignment, version="1.0",
                         commit=plain.commit, installed_at="x", files=(), ident="i").to_json()
    for key in ("user", "group", "capabilities"):  # a record written before the keys
        del bare["role"][key]
    assert InstallRecord.from_json(bare).role == plain.role


# -- /etc/passwd and /etc/group -----------------------------------------------------


PASSWD = (b"root:x:0:0:root:/root:/bin/sh\n# a comment\nbroken-line\n"
          b"daemon:x:1:1:daemon:/:/bin/false\nodd:x:two:2:::\nlast:x:200:2::/:/bin/false")
GROUP = b"root:x:0:\nbad group line\nstaff:x:200:\n"


@pytest.fixture
def etc(tmp_path: Path) -> Path:
    path = tmp_path / "etc"
    path.mkdir()
    (path / "passwd").write_bytes(PASSWD)
    (path / "group").write_bytes(GROUP)
    (path / "passwd").chmod(0o644)
    return path


def spec_for(user: str, role: str = "capture", group: str | None = None,
             caps: tuple[str, ...] = ()) -> RoleSpec:
    return replace(make_bundle(role=role).role, user=user, group=group or user,
                   capabilities=caps)


def test_a_new_user_is_appended_and_every_line_is_kept(tmp_path: Path, etc: Path) -> None:
    state = StateDir(tmp_path / "state")
    said: list[str] = []
    run_as = role_users.ensure_user(spec_for("tcpdump"), state, etc=etc,
                                    say=said.append)
    assert run_as is not None
    # 200 is taken (uid of 'last', gid of 'staff'): the next free ids of the range
    assert (run_as.uid, run_as.gid) == (201, 201)
    home = state.data_dir("capture")
    assert (etc / "passwd").read_bytes() == PASSWD + (
        f"\ntcpdump:!:201:201:bootpull role capture:{home}:/bin/false\n").encode()
    assert (etc / "group").read_bytes() == GROUP + b"tcpdump:!:201:\n"
    assert stat.S_IMODE((etc / "passwd").stat().st_mode) == 0o644
    assert sorted(p.name for p in etc.iterdir()) == ["group", "passwd"]  # no temp left
    assert said == [f"created group tcpdump (gid 201) and user tcpdump (uid 201) for role "
                    f"capture in {etc}"]
    again = role_users.ensure_user(spec_for("tcpdump"), state, etc=etc)
    assert again == run_as
    assert (etc / "passwd").read_bytes().count(b"tcpdump:") == 1


def test_ids_stay_across_reboots_through_the_state_record(tmp_path: Path, etc: Path) -> None:
    state = StateDir(tmp_path / "state")
    first = role_users.ensure_user(spec_for("tcpdump"), state, etc=etc)
    other = role_users.ensure_user(spec_for("web", role="web"), state, etc=etc)
    assert first is not None and other is not None
    assert (other.uid, other.gid) == (202, 202)
    # a reboot: /etc is the image's again (in RAM), the state disk kept users.json
    fresh = tmp_path / "etc-after-reboot"
    fresh.mkdir()
    (fresh / "passwd").write_bytes(b"root:x:0:0:root:/root:/bin/sh\n")
    (fresh / "group").write_bytes(b"root:x:0:\n")
    for spec, before in ((spec_for("web", role="web"), other), (spec_for("tcpdump"), first)):
        after = role_users.ensure_user(spec, state, etc=fresh)
        assert after is not None and (after.uid, after.gid) == (before.uid, before.gid)
    assert b"web:!:202:202:" in (fresh / "passwd").read_bytes()


def test_a_recorded_id_taken_by_another_name_is_not_reused(tmp_path: Path, etc: Path) -> None:
    state = StateDir(tmp_path / "state")
    first = role_users.ensure_user(spec_for("tcpdump"), state, etc=etc)
    assert first is not None and first.uid == 201
    fresh = tmp_path / "etc2"
    fresh.mkdir()
    (fresh / "passwd").write_bytes(b"root:x:0:0::/:/bin/sh\nsomeone:x:201:201::/:/bin/sh\n")
    (fresh / "group").write_bytes(b"root:x:0:\nsomeone:x:201:\n")
    said: list[str] = []
    moved = role_users.ensure_user(spec_for("tcpdump"), state, etc=fresh,
                                   say=said.append)
    assert moved is not None and (moved.uid, moved.gid) == (200, 200)
    assert any("201 recorded for tcpdump is taken" in line for line in said)
    assert b"someone:x:201:201::/:/bin/sh\ntcpdump:!:200:200:" in (fresh / "passwd").read_bytes()


def test_an_existing_user_is_used_as_it_is(tmp_path: Path, etc: Path) -> None:
    state = StateDir(tmp_path / "state")
    run_as = role_users.ensure_user(spec_for("daemon", group="staff"), state,
                                    etc=etc)
    assert run_as is not None and (run_as.uid, run_as.gid) == (1, 200)
    assert (etc / "passwd").read_bytes() == PASSWD and (etc / "group").read_bytes() == GROUP


def test_a_malformed_line_of_the_user_or_a_root_id_is_an_install_error(
        tmp_path: Path, etc: Path) -> None:
    state = StateDir(tmp_path / "state")
    with pytest.raises(InstallError) as err:
        role_users.ensure_user(spec_for("odd"), state, etc=etc)
    assert "the line of odd" in err.value.what and "fix or remove" in err.value.hint
    (etc / "passwd").write_bytes(PASSWD + b"\ntoor:x:0:0::/:/bin/sh\n")
    with pytest.raises(InstallError) as err:
        role_users.ensure_user(spec_for("toor"), state, etc=etc)
    assert "uid 0" in err.value.what
    (etc / "passwd").write_bytes(PASSWD)
    (etc / "group").unlink()  # a file that cannot be read: said, not a traceback
    (etc / "group").mkdir()
    with pytest.raises(InstallError) as err:
        role_users.ensure_user(spec_for("newbie"), state, etc=etc)
    assert "cannot create the user newbie" in err.value.what and err.value.hint
    assert (etc / "passwd").read_bytes() == PASSWD


# -- real processes (as root) ---------------------------------------------------------


@pytest.fixture
def base() -> Iterator[Path]:
    """A directory every user may pass through (pytest's tmp_path is 0700, root's)."""
    path = Path(tempfile.mkdtemp(prefix="bootpull-users-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def node_etc(base: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    etc = base / "etc"
    etc.mkdir()
    (etc / "passwd").write_bytes(b"root:x:0:0:root:/root:/bin/sh\n")
    (etc / "group").write_bytes(b"root:x:0:\n")
    monkeypatch.setenv(role_users.ETC_ENV, str(etc))  # never the host's /etc
    return etc


@pytest.fixture
def extra_groups() -> Iterator[list[int]]:
    """The node agent (this test) in supplementary groups, which the role must not keep."""
    before = os.getgroups()
    os.setgroups([0, 4242, 4343])
    try:
        yield os.getgroups()
    finally:
        os.setgroups(before)


def user_bundle(user: str | None = "tcpdump", caps: tuple[str, ...] = (),
                **kwargs: object) -> Bundle:
    kwargs.setdefault("files", {"run.sh": REPORT})
    bundle = make_bundle("1.0", role="capture", **kwargs)  # type: ignore[arg-type]
    return replace(bundle, role=replace(bundle.role, user=user, group=user,
                                        capabilities=caps))


def reported(state: StateDir, name: str = "run", timeout: float = 10.0) -> dict[str, str]:
    path = state.data_dir("capture") / name
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} was never written"
        time.sleep(0.02)
    lines = path.read_text().splitlines()
    out = {"uid": lines[0], "gid": lines[1], "groups": lines[2]}
    for line in lines[3:]:
        key, _, value = line.partition(":" if line.startswith(("Cap", "NoNew")) else "=")
        out[key] = value.strip()
    return out


def started(state: StateDir, bundle: Bundle, etc: Path) -> Supervisor:
    """Install (hooks run then), set up the user as the runner does, and start the role."""
    hook_env = {"PATH": "/usr/bin:/bin", "BOOTPULL_DATA_DIR": str(state.data_dir("capture"))}
    inst = install(bundle, state, env=hook_env, console=Console(CapturingWriter()),
                   etc=etc).installed
    run_as = role_users.ensure_user(inst.record.role, state, etc=etc, error=RunError)
    env = role_env(inst, IDENT, {"PATH": "/usr/bin:/bin"}, data_dir=state.data_dir("capture"))
    sup = Supervisor(inst, env, console=Console(CapturingWriter()), counters=Counters(),
                     policy=FAST, run_as=run_as)
    sup.start()
    return sup


def test_the_role_runs_as_its_user_with_exactly_the_declared_capabilities(
        base: Path, node_etc: Path, extra_groups: list[int]) -> None:
    assert 4242 in extra_groups
    state = StateDir(base / "state")
    sup = started(state, user_bundle(caps=("net_raw", "net_admin")), node_etc)
    try:
        seen = reported(state)
        assert sup.proc is not None
        # the wrapper exec'd the role: the pid the supervisor signals is the role's own
        cmdline = Path(f"/proc/{sup.proc.pid}/cmdline")
        deadline = time.monotonic() + 5
        while cmdline.read_bytes().split(b"\0")[0] != b"sleep":
            assert time.monotonic() < deadline, cmdline.read_bytes()
            time.sleep(0.02)
    finally:
        sup.stop()
    assert (seen["uid"], seen["gid"], seen["groups"]) == ("200", "200", "200")
    assert int(seen["CapEff"], 16) == int(seen["CapAmb"], 16) == NET_RAW | NET_ADMIN
    assert seen["NoNewPrivs"] == "1"  # no setuid program gives it more
    assert seen["HOME"] == str(state.data_dir("capture"))
    data = state.data_dir("capture")
    st = data.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (200, 200, 0o700)
    assert (data / "run").stat().st_uid == 200  # the role wrote there, as its user
    assert b"tcpdump:!:200:200:bootpull role capture:" in (node_etc / "passwd").read_bytes()


def test_a_user_without_capabilities_has_none(base: Path, node_etc: Path) -> None:
    state = StateDir(base / "state")
    sup = started(state, user_bundle(), node_etc)
    try:
        seen = reported(state)
    finally:
        sup.stop()
    assert (seen["uid"], seen["gid"], seen["groups"]) == ("200", "200", "200")
    assert int(seen["CapEff"], 16) == 0 and int(seen["CapAmb"], 16) == 0


def test_a_role_without_user_still_runs_as_root(base: Path, node_etc: Path) -> None:
    state = StateDir(base / "state")
    bundle = user_bundle(user=None)
    state.ensure_data_dir("capture")
    sup = started(state, bundle, node_etc)
    try:
        seen = reported(state)
        assert sup.proc is not None
        # no wrapper: Popen ran the role's own argv
        assert b"privdrop" not in Path(f"/proc/{sup.proc.pid}/cmdline").read_bytes()
    finally:
        sup.stop()
    assert seen["uid"] == "0"
    assert int(seen["CapEff"], 16) != 0
    assert (node_etc / "passwd").read_bytes() == b"root:x:0:0:root:/root:/bin/sh\n"
    assert not (state.root / role_users.USERS_FILE).exists()


def test_hooks_and_health_checks_run_as_the_user(base: Path, node_etc: Path,
                                                 extra_groups: list[int]) -> None:
    state = StateDir(base / "state")
    bundle = user_bundle(caps=("net_bind_service",), hooks=(("./run.sh", "hook"),),
                         health=HealthSpec(("./run.sh", "health"), interval=1, timeout=5))
    sup = started(state, bundle, node_etc)
    try:
        sup.wait_started()  # the first health check passed
        health = reported(state, "health")
    finally:
        sup.stop()
    hook = reported(state, "hook")
    for seen in (hook, health):
        assert (seen["uid"], seen["gid"], seen["groups"]) == ("200", "200", "200")
        assert int(seen["CapEff"], 16) == int(seen["CapAmb"], 16) == 1 << 10


def test_a_role_that_cannot_drop_fails_with_why_and_hint(
        base: Path, node_etc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = StateDir(base / "state")
    monkeypatch.setattr(role_users, "_status_mask", lambda field: 0)  # the agent lacks it
    with pytest.raises(RunError) as err:
        started(state, user_bundle(caps=("net_raw",)), node_etc)
    assert "cannot get the capability net_raw" in err.value.what
    assert "remove it from [run] capabilities" in err.value.hint
    with pytest.raises(InstallError) as failed:  # the hook's drop is checked the same way
        install(user_bundle(caps=("net_raw",), hooks=(("./run.sh", "hook"),)),
                StateDir(base / "state2"), env={}, console=Console(CapturingWriter()),
                etc=node_etc)
    assert "install hooks of capture cannot get the capability" in failed.value.what


def test_a_program_the_user_cannot_run_is_a_role_failure(base: Path, node_etc: Path) -> None:
    state = StateDir(base / "state")
    bundle = user_bundle(command=("/nonexistent/capture",))
    sup = started(state, bundle, node_etc)
    try:
        with pytest.raises(RunError) as err:
            sup.wait_started()
    finally:
        sup.stop()
    assert err.value.what == "role capture 1.0 could not run as user tcpdump"
    assert "cannot run /nonexistent/capture as user tcpdump" in err.value.why
    assert "What runs as root" in err.value.hint
    with pytest.raises(HookFailed) as hook:
        install(user_bundle(hooks=(("/nonexistent/hook",),)), StateDir(base / "state2"),
                env={}, console=Console(CapturingWriter()), etc=node_etc)
    assert "could not run as user tcpdump" in hook.value.what
    assert "/nonexistent/hook" in hook.value.why


def test_the_wrapper_says_why_a_drop_fails() -> None:
    argv = [*role_users.wrap(["/bin/true"], RunAs("x", "x", 300, 300), {})[0]]
    argv[argv.index("--") - 2] = str(1 << 63)  # a capability no kernel has
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == privdrop.DROP_FAILED
    why = role_users.drop_failure(done.returncode, done.stderr)
    assert why is not None and why.startswith("cannot run as user x (uid 300, gid 300")
    # the kernel drops the unknown bit at capset; raising it as ambient is refused
    assert why.endswith("prctl(PR_CAP_AMBIENT_RAISE, 63): Invalid argument")


def test_the_data_dir_follows_a_changed_uid(base: Path) -> None:
    data = base / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "f").write_text("x")
    (data / "link").symlink_to("/etc/passwd")
    role_users.own_tree(data, RunAs("a", "a", 300, 300))
    assert {(p.lstat().st_uid, p.lstat().st_gid) for p in [data, *data.rglob("*")]} == {
        (300, 300)}
    role_users.own_tree(data, RunAs("a", "a", 301, 302))
    assert {(p.lstat().st_uid, p.lstat().st_gid) for p in [data, *data.rglob("*")]} == {
        (301, 302)}
    assert Path("/etc/passwd").stat().st_uid == 0  # a link is changed, not what it names


def test_secrets_belong_to_the_user_only(base: Path) -> None:
    root = base / "secrets"
    plain = [role_secrets.Plain("token", "roles/capture/secrets/token.age", b"s3cret")]
    owner = RunAs("tcpdump", "tcpdump", 300, 300)
    placed = role_secrets.place(plain, "capture", root, owner=(300, 300))
    placed.done()
    directory = (root / "capture").resolve()
    st, fst = directory.stat(), (directory / "token").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (300, 300, 0o700)
    assert (fst.st_uid, stat.S_IMODE(fst.st_mode)) == (300, 0o400)
    assert stat.S_IMODE(root.stat().st_mode) == 0o711

    def cat(run_as: RunAs) -> subprocess.CompletedProcess[str]:
        argv, env = role_users.wrap(["/bin/cat", str(root / "capture" / "token")], run_as,
                                    {"PATH": "/usr/bin:/bin"})
        return subprocess.run(argv, env=env, capture_output=True, text=True, check=False)

    assert cat(owner).stdout == "s3cret"
    assert cat(RunAs("other", "other", 301, 301)).returncode != 0
    # the same secrets for another owner are written again, for it
    role_secrets.place(plain, "capture", root, owner=(301, 301)).done()
    assert (root / "capture" / "token").stat().st_uid == 301
    # a role without user: root's again, the root 0700 as before
    role_secrets.place(plain, "capture", root).done()
    assert (root / "capture" / "token").stat().st_uid == os.geteuid()
    assert stat.S_IMODE(root.stat().st_mode) == 0o700


def test_the_node_installs_and_starts_a_user_role_again_after_a_reboot(
        base: Path, node_etc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """install_bundle (the user, its secrets, its data dir) and RoleRunner (the user made
    again from users.json when /etc is the image's again), as ``node run`` calls them."""
    import pyrage
    from bootpull.install_stage import install_bundle
    from bootpull.narrator import Narrator
    from bootpull.runner import RoleRunner

    monkeypatch.setenv(role_secrets.ROOT_ENV, str(base / "run-secrets"))
    key = pyrage.x25519.Identity.generate()
    secret = pyrage.encrypt(b"s3cret", [key.to_public()])
    reads = REPORT.replace(b"id -u;", b'cat "$BOOTPULL_SECRETS_DIR/token"; echo; id -u;')
    bundle = user_bundle(caps=("net_raw",), files={"run.sh": reads})
    bundle = replace(bundle, secrets=(BundleFile("roles/capture/secrets/token.age",
                                                 MODE_FILE, secret),))
    state = StateDir(base / "state")
    (state.data_dir("capture") / "old").mkdir(parents=True)  # from before the user

    def boot(pull: bool) -> tuple[dict[str, str], RoleRunner]:
        console = Console(CapturingWriter())
        say = Narrator(console, state, stale=lambda: False)
        say.start(IDENT, url=None, log_servers=[], oneshot=True)
        if pull:
            install_bundle(bundle, state, say, console, age_identity=key)
        runner = RoleRunner(state, say, console, FAST, on_identity=lambda name: None)
        (state.data_dir("capture") / "run").unlink(missing_ok=True)
        runner.start(stale=False)
        path = state.data_dir("capture") / "run"
        deadline = time.monotonic() + 10
        while not path.exists():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        lines = path.read_text().splitlines()
        runner.stop()
        say.close()
        return {"secret": lines[0], "uid": lines[1], "gid": lines[2], "groups": lines[3],
                "CapAmb": lines[5].split()[1]}, runner

    first, _ = boot(pull=True)
    assert first == {"secret": "s3cret", "uid": "200", "gid": "200", "groups": "200",
                     "CapAmb": f"{NET_RAW:016x}"}
    token = (base / "run-secrets" / "capture" / "token").stat()
    assert (token.st_uid, stat.S_IMODE(token.st_mode)) == (200, 0o400)
    assert (state.data_dir("capture") / "old").stat().st_uid == 200  # the tree, too
    # a reboot without the repository (a fallback: no install): the image's /etc again,
    # and the runner makes the user again, with the ids of users.json
    (node_etc / "passwd").write_bytes(b"root:x:0:0:root:/root:/bin/sh\n")
    (node_etc / "group").write_bytes(b"root:x:0:\n")
    again, _ = boot(pull=False)
    assert again == first
    assert b"tcpdump:!:200:200:" in (node_etc / "passwd").read_bytes()
