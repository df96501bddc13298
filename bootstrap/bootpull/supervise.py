"""Run and supervise the installed role.

- The role's ``[run] command`` starts in its install directory (also its working
  directory) in a session of its own, with the contract environment
  (:func:`role_env`): ``BOOTPULL_MAC``, ``BOOTPULL_ROLE``, ``BOOTPULL_VERSION``,
  ``BOOTPULL_COMMIT``, ``BOOTPULL_HOSTNAME``, ``BOOTPULL_IP``, ``BOOTPULL_SECRETS_DIR``
  and one ``BOOTPULL_VAR_<NAME>`` (upper-cased) per host-file ``[vars]`` entry.
- ``restart``: ``always`` restarts on any exit, ``on-failure`` on a non-zero exit or a
  signal, ``never`` not at all. Restarts wait a full-jitter backoff, are counted in
  ``Counters.restarts`` and said on the console; a run that lasts
  ``Policy.stable_after`` seconds resets the backoff.
- ``[health]``: the command runs every ``interval`` seconds with a ``timeout``. The
  role is *started* once a check passes within ``tries × interval`` seconds of its
  start (checked again after 50 ms, then twice as long each time up to
  ``Policy.first_check_spacing`` seconds), or, without a
  health check, once it is still up after ``Policy.start_grace`` or has exited 0.
  Later, ``Policy.tries`` failures in a row, or that many crashes in a row before the
  role ever ran stably, make it
  *unhealthy*: the pipeline then reverts to the last-known-good and marks the version
  bad so no boot retries it (no boot loop).
- Every ``Policy.drift_interval`` seconds the installed files are hashed again and
  compared with the SHA-256 recorded from the verified bundle; a change is reported.
- The role's stdout and stderr pass through to the node's own (the console sees them
  as before), and :class:`OutputTail` keeps their last ``TAIL_LINES`` lines (at most
  ``TAIL_BYTES``): a role that fails says why in its failure event
  (``details.output``, and the banner's *why*), not only on the serial console.

The supervisor never sleeps on its own: :meth:`Supervisor.tick` does what is due and
says when it next needs to run, so the pipeline's one loop can also deliver reports.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bootpull import role_secrets
from bootpull.backoff import Backoff, Counters
from bootpull.console import Console
from bootpull.errors import RunError
from bootpull.install import check_drift
from bootpull.mac import Mac
from bootpull.processes import resolve_command, run_bounded
from bootpull.role_users import DROP_HINT, RunAs, check_can_drop, drop_failure, wrap
from bootpull.state import Installed

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Identity:
    """Who this node is, as the role sees it."""

    mac: Mac
    hostname: str = ""
    ip: str = ""


def contract_env(*, role: str, version: str, commit: str, variables: Mapping[str, str],
                 identity: Identity, base: Mapping[str, str] | None = None,
                 secrets_dir: Path | None = None,
                 data_dir: Path | None = None) -> dict[str, str]:
    """The role's environment: a small base (PATH, HOME, LANG, TZ) plus the contract's.

    ``BOOTPULL_DATA_DIR`` is ``data_dir`` (``<state>/data/<role>``), when given.

    ``BOOTPULL_SECRETS_DIR`` is ``secrets_dir``, by default the role's directory under
    the secrets root (:func:`bootpull.role_secrets.secrets_dir`); it exists only when
    the role has secrets.
    """
    source = os.environ if base is None else base
    env = {k: source[k] for k in ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TERM")
           if k in source}
    env.setdefault("PATH", DEFAULT_PATH)
    env.update({
        "BOOTPULL_MAC": identity.mac.canonical,
        "BOOTPULL_ROLE": role,
        "BOOTPULL_VERSION": version,
        "BOOTPULL_COMMIT": commit,
        "BOOTPULL_HOSTNAME": identity.hostname,
        "BOOTPULL_IP": identity.ip,
        role_secrets.ENV: str(secrets_dir if secrets_dir is not None
                              else role_secrets.secrets_dir(role)),
    })
    if data_dir is not None:
        env["BOOTPULL_DATA_DIR"] = str(data_dir)
    for name, value in sorted(variables.items()):
        env[f"BOOTPULL_VAR_{name.upper()}"] = value
    return env


def role_env(installed: Installed, identity: Identity,
             base: Mapping[str, str] | None = None,
             data_dir: Path | None = None) -> dict[str, str]:
    """:func:`contract_env` for an install."""
    r = installed.record
    return contract_env(role=r.role.name, version=r.version, commit=r.commit,
                        variables=r.assignment.vars, identity=identity, base=base,
                        data_dir=data_dir)


@dataclass(frozen=True)
class Policy:
    tries: int = 3  # failed health checks (or early crashes) in a row → unhealthy
    start_grace: float = 0.5  # without a health check: up this long = started
    first_check_spacing: float = 1.0  # checks until the first pass, at most this far apart
    backoff: Backoff = field(default_factory=lambda: Backoff(base=1.0, cap=60.0))
    stable_after: float = 60.0
    drift_interval: float = 300.0
    stop_timeout: float = 10.0
    start_timeout: float = 120.0  # the longest wait for a first healthy check


TAIL_LINES = 20
TAIL_BYTES = 4096
_LINE_BYTES = 1024  # a longer line is kept in pieces


class OutputTail:
    """A role's output: passed through to the node's stdout and stderr, its last lines
    kept for the failure event. One thread per stream; daemon threads, so a role that
    never closes its output never holds the node."""

    def __init__(self) -> None:
        self._lines: collections.deque[bytes] = collections.deque(maxlen=TAIL_LINES)
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def follow(self, pipe: Any, fd: int) -> None:
        thread = threading.Thread(target=self._pump, args=(pipe, fd), daemon=True,
                                  name="bootpull-role-output")
        thread.start()
        self._threads.append(thread)

    def _pump(self, pipe: Any, fd: int) -> None:
        with contextlib.suppress(OSError, ValueError), pipe:
            while line := pipe.readline(_LINE_BYTES):
                _write_all(fd, line)
                with self._lock:
                    self._lines.append(line)

    def text(self, wait: float = 1.0) -> str:
        """The last lines (after up to ``wait`` s for what the role wrote as it exited)."""
        deadline = time.monotonic() + wait
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._lock:
            data = b"".join(self._lines)
        return data[-TAIL_BYTES:].decode("utf-8", "replace").strip()


def _write_all(fd: int, data: bytes) -> None:
    """Pass output on; a console that is gone (EPIPE, a closed fd) only drops it."""
    with contextlib.suppress(OSError):
        while data:
            data = data[os.write(fd, data):]


@dataclass(frozen=True)
class Happening:
    """Something the pipeline should report: a restart, an exit, unhealthiness, drift."""

    kind: str  # restarted / exited / unhealthy / drift / drift-cleared
    status: str  # ok / warn / fail
    message: str
    details: dict[str, Any] = field(default_factory=dict)


class Supervisor:
    def __init__(self, installed: Installed, env: Mapping[str, str], *, console: Console,
                 counters: Counters, policy: Policy | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 run_as: RunAs | None = None) -> None:
        self.installed = installed
        self.env = dict(env)
        #: who the role's command and health check run as (bootpull.role_users); None for
        #: a role without [run] user, which runs with the agent's user (root), as before
        self.run_as = run_as
        self.console = console
        self.counters = counters
        self.policy = policy or Policy()
        self._clock = clock
        self._sleep = sleep
        self.proc: subprocess.Popen[bytes] | None = None
        self.output = OutputTail()  # the running role's (replaced at each start)
        self._pgid: int | None = None
        self.started_at = 0.0
        self.exit_code: int | None = None  # of the last exit, while not restarted
        self.done = False  # exited and will not be restarted
        self.healthy = False
        self.restarts = 0
        self._attempt = 0  # backoff step
        self._crashes = 0  # crashes in a row without a stable run
        self._failures = 0  # failed health checks in a row
        self._restart_at: float | None = None
        now = clock()
        spec = installed.record.role.health
        self._health_at = now + (spec.interval if spec else 0.0)
        self._drift_at = now + self.policy.drift_interval
        self._drift: list[str] = []

    # -- process ---------------------------------------------------------------

    @property
    def role_name(self) -> str:
        return self.installed.record.role.name

    def start(self) -> None:
        spec = self.installed.record.role
        if not spec.command:
            raise RunError(f"role {spec.name} has an empty [run] command",
                           hint="set [run] command in role.toml and publish")
        argv = [resolve_command(self.installed.path, spec.command[0]), *spec.command[1:]]
        argv, env = self._as_user(argv, f"role {spec.name}")
        if self._pgid is not None:  # what the last run left behind goes before a restart
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._pgid, signal.SIGKILL)
            self._pgid = None
        try:
            self.proc = subprocess.Popen(argv, cwd=self.installed.path, env=env,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            raise RunError(f"role {spec.name} {self.installed.version} could not start",
                           why=f"{' '.join(spec.command)}: {exc.strerror or exc}",
                           hint="check [run] command in role.toml (a path relative to "
                           "the role's files, with its executable bit) and publish") from None
        self.output = OutputTail()
        self.output.follow(self.proc.stdout, 1)
        self.output.follow(self.proc.stderr, 2)
        self._pgid = self.proc.pid  # start_new_session: the role leads its own group
        self.started_at = self._clock()
        self.exit_code = None
        self.done = False
        self.console.info(f"role {spec.name} {self.installed.version} started "
                          f"(pid {self.proc.pid}"
                          + (f", as {self.run_as.user}" if self.run_as else "") + ")")

    def _as_user(self, argv: list[str], what: str) -> tuple[list[str], dict[str, str]]:
        """``argv`` and the environment, wrapped to run as the role's user (§9.6)."""
        spec = self.installed.record.role
        if spec.user is None:
            return argv, self.env
        if self.run_as is None:  # never root by mistake
            raise RunError(f"{what} declares [run] user {spec.user}, but no user was set "
                           "up for it", hint="start it through the node agent (bootpull "
                           "node run), which creates the user")
        check_can_drop(self.run_as, error=RunError, what=what)
        return wrap(argv, self.run_as, self.env)

    @property
    def restarting(self) -> bool:
        """Exited, with a restart scheduled."""
        return self._restart_at is not None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM to the role's whole session, then SIGKILL after ``stop_timeout``.

        The group is signalled even when its leader already exited, so a daemon the
        role left behind does not outlive it.
        """
        proc, self.proc = self.proc, None
        pgid, self._pgid = self._pgid, None
        if pgid is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=self.policy.stop_timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        self.console.info(f"role {self.role_name} stopped")

    # -- health ----------------------------------------------------------------

    def check_health(self) -> tuple[bool, str]:
        """Run the health command once: (passed, why not)."""
        spec = self.installed.record.role.health
        if spec is None:
            return self.running() or self.exit_code == 0, "the role is not running"
        argv = [resolve_command(self.installed.path, spec.command[0]), *spec.command[1:]]
        try:
            argv, env = self._as_user(argv, f"the health check of {self.role_name}")
        except RunError as err:
            return False, f"{err.what}: {err.why}" if err.why else err.what
        try:
            done = run_bounded(argv, cwd=self.installed.path, env=env, timeout=spec.timeout)
        except OSError as exc:
            return False, f"the health check could not start: {exc.strerror or exc}"
        if why := drop_failure(done.returncode, done.output):
            return False, f"the health check could not run as the role's user: {why}"
        if done.returncode is None:
            return False, f"the health check took longer than {spec.timeout:g}s"
        if done.returncode == 0:
            return True, ""
        tail = done.output.strip()[-200:]
        return False, f"the health check exited with {done.returncode}" + (
            f": {tail}" if tail else "")

    def wait_started(self) -> None:
        """Return once the role is started (see the module doc); raise RunError if not."""
        spec = self.installed.record.role.health
        deadline = self._clock() + self.policy.start_timeout
        if spec is None:
            until = self._clock() + self.policy.start_grace
            while self._clock() < until:
                if self.proc is not None and self.proc.poll() is not None:
                    break
                self._sleep(0.02)
            self._reap_for_start()
            self.healthy = True
            return
        # A role may take a while to come up: its first check may pass any time within
        # ``tries`` intervals; checked 50 ms after a failed check, then twice as long
        # each time, up to first_check_spacing (a quick role is seen up quickly).
        longest = min(spec.interval, self.policy.first_check_spacing)
        spacing = min(0.05, longest)
        window = min(spec.interval * self.policy.tries, self.policy.start_timeout)
        deadline = self._clock() + window
        checks = 0
        while True:
            self._reap_for_start()
            ok, why = self.check_health()
            checks += 1
            if ok:
                self.healthy = True
                self._health_at = self._clock() + spec.interval
                self.console.info(f"role {self.role_name} passed its health check")
                return
            if checks == 1:
                self.console.warn(f"health check not passing yet: {why}; trying for up "
                                  f"to {window:g}s")
            else:
                self.console.debug(f"health check {checks} failed: {why}")
            if self._clock() + spacing > deadline:
                break
            self._sleep(spacing)
            spacing = min(spacing * 2, longest)
        raise RunError(f"role {self.role_name} {self.installed.version} did not pass its "
                       f"health check within {window:g}s ({checks} checks)", why=why,
                       hint="fix the role or its [health] command and publish a new "
                       "version; this one will not be retried")

    def _reap_for_start(self) -> None:
        if self.proc is None:
            return
        code = self.proc.poll()
        if code is None:
            return
        self.exit_code = code
        if code != 0:
            self.proc = None
            tail = self.output.text()
            if self.run_as is not None and (why := drop_failure(code, tail)):
                raise RunError(f"role {self.role_name} {self.installed.version} could not "
                               f"run as user {self.run_as.user}", why=why, output=tail,
                               hint=DROP_HINT)
            raise RunError(f"role {self.role_name} {self.installed.version} exited with "
                           f"{_describe(code)} as it started",
                           why=tail[-400:] or "it printed nothing", output=tail,
                           hint="run the role's command by hand on a test node, fix it "
                           "and publish a new version; this one will not be retried")

    # -- the loop --------------------------------------------------------------

    def tick(self) -> list[Happening]:
        """Do whatever is due now; return what happened."""
        out: list[Happening] = []
        now = self._clock()
        if self.proc is not None and (code := self.proc.poll()) is not None:
            out += self._exited(code, now)
        if self._restart_at is not None and now >= self._restart_at and not self.done:
            self._restart_at = None
            self.start()
            out.append(Happening("restarted", "warn",
                                 f"role {self.role_name} restarted (restart "
                                 f"{self.restarts})", {"exit_code": self.exit_code}))
        if self.proc is not None and now - self.started_at >= self.policy.stable_after:
            self._attempt = 0
            self._crashes = 0
        spec = self.installed.record.role.health
        if spec is not None and self.running() and now >= self._health_at:
            self._health_at = now + spec.interval
            ok, why = self.check_health()
            if ok:
                self._failures = 0
                self._crashes = 0
                self.healthy = True
            else:
                self._failures += 1
                self.console.warn(f"health check failed ({self._failures}/"
                                  f"{self.policy.tries}): {why}")
                if self._failures >= self.policy.tries:
                    self.healthy = False
                    out.append(Happening("unhealthy", "fail",
                                         f"role {self.role_name} failed its health check "
                                         f"{self._failures} times", {"why": why}))
        if now >= self._drift_at:
            self._drift_at = now + self.policy.drift_interval
            out += self.check_drift()
        return out

    def check_drift(self) -> list[Happening]:
        changed = check_drift(self.installed)
        if changed == self._drift:
            return []
        self._drift = changed
        if changed:
            self.console.warn(f"{len(changed)} installed file(s) differ from the signed "
                              f"ones: {', '.join(changed[:5])}")
            return [Happening("drift", "warn",
                              f"{len(changed)} installed file(s) changed on disk",
                              {"files_changed": changed})]
        return [Happening("drift-cleared", "ok", "installed files match the signed ones",
                          {"files_changed": []})]

    def next_due(self) -> float:
        """Seconds until :meth:`tick` has something to do (at most 1 s, to notice exits)."""
        now = self._clock()
        times = [self._drift_at, now + 1.0]
        if self._restart_at is not None:
            times.append(self._restart_at)
        if self.installed.record.role.health is not None and self.running():
            times.append(self._health_at)
        return max(0.0, min(times) - now)

    def _exited(self, code: int, now: float) -> list[Happening]:
        self.proc = None
        self.exit_code = code
        ran = now - self.started_at
        restart = self.installed.record.role.restart
        failed = code != 0
        if failed and ran < self.policy.stable_after:
            self._crashes += 1
        if failed and self._crashes >= self.policy.tries:
            self.done = True
            self.console.warn(f"role {self.role_name} crashed {self._crashes} times in a "
                              "row: giving up on this version")
            return [Happening("unhealthy", "fail", f"role {self.role_name} crashed "
                              f"{self._crashes} times in a row",
                              {"exit_code": code, "output": self.output.text()})]
        if restart == "never" or (restart == "on-failure" and not failed):
            self.done = True
            status = "fail" if failed else "ok"
            (self.console.warn if failed else self.console.info)(
                f"role {self.role_name} exited with {_describe(code)}; "
                f"restart={restart}: not restarting")
            details: dict[str, Any] = {"exit_code": code}
            if failed:
                details["output"] = self.output.text()
            return [Happening("exited", status, f"role {self.role_name} exited with "
                              f"{_describe(code)}", details)]
        if ran >= self.policy.stable_after:
            self._attempt = 0
        delay = self.policy.backoff.delay(self._attempt)
        self._attempt += 1
        self.restarts += 1
        self.counters.count("restarts", f"exit {code}")
        self._restart_at = now + delay
        self.console.warn(f"role {self.role_name} exited with {_describe(code)}; "
                          f"restarting in {delay:.1f}s (restart {self.restarts}, "
                          f"restart={restart})")
        return []


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"
