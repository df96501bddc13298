"""``bootpull node run``: the boot pipeline, console → discover → pull → install → run → report.

:func:`run` is the whole pipeline in one place; each stage is a method of :class:`Node`
(the mutable run context) and prints its own ``[started]``/``[finished]`` lines.

What happens when a stage fails (exit codes: docs/contract.md §6, ``docs/node.md``):

- discover (10): ``--oneshot`` exits; otherwise discovery is retried with backoff.
- fetch (11): with an install on disk, that install runs (a *fallback*, counted and
  reported) and the repository is polled again in the background until it answers;
  without one, ``--oneshot`` exits 11 and the node otherwise keeps trying.
- verify (12): nothing is installed. With an install on disk it keeps running; an admin
  fixes the repository and the next poll picks the fix up. Expired metadata is the one
  verify failure that boots the last-known-good on purpose: it runs what it has and
  reports an alarm (status ``fail``) on every poll until fresh metadata is published.
- not assigned (12): the banner names the exact ``bootpull repo assign`` command; the
  node keeps polling and picks its role up without a reboot.
- install (13): the previous install stays ``current`` and keeps running.
- run (14): the role did not start or failed its first health checks: the install is
  marked bad (``bad.json``: never retried, so no boot loop), ``current`` goes back to
  the last-known-good and that starts instead. A role that later fails its health
  checks ``Policy.tries`` times in a row is handled the same way.

``--oneshot`` stops after the role started and passed its first health check, stops
the role, tries once more to deliver the spooled reports, and exits 0.
Without it the node runs until SIGTERM/SIGINT (then it stops the role and exits 0),
polling the repository every ``bootpull.poll=SECONDS`` (kernel command line; 60 s).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import time
from dataclasses import dataclass, field, replace
from types import FrameType
from typing import TYPE_CHECKING, Any

from bootpull.backoff import Backoff, Counters
from bootpull.console import Console
from bootpull.errors import (
    BootpullError,
    DiscoveryError,
    ExpiredMetadata,
    FetchError,
    RunError,
    VerifyError,
)
from bootpull.install import bundle_id, check_drift, install, recover, revert_to_lkg
from bootpull.report import ReportContext, Reporter, Spool, SyslogMirror
from bootpull.reporturl import origin_events_url as origin_events_url  # the old name
from bootpull.reporturl import resolve as resolve_report_url
from bootpull.schedule import Schedule
from bootpull.settings import Settings
from bootpull.state import Installed, NodeStatus, StateDir
from bootpull.supervise import Identity, Supervisor, contract_env, role_env

if TYPE_CHECKING:
    from bootpull.bundle import Bundle
    from bootpull.discover import Discovery
    from bootpull.pull import PullResult

CONSOLE_LOG_MAX = 4 * 2**20


def command(args: argparse.Namespace) -> int:
    """The handler of ``bootpull node run``."""
    settings = Settings.from_args(args)
    console = Console.open(settings.console_spec, level=settings.log_level)
    try:
        return run(settings, console)
    finally:
        console.close()


def run(settings: Settings, console: Console) -> int:
    """The boot pipeline. Returns the exit code; every failure has printed its banner."""
    try:
        node = Node(settings, console)
    except BootpullError as err:
        console.banner(err)
        err.reported = True
        return err.exit_code
    try:
        with node.stop_on_signals():
            node.discover()
            node.pull_and_install()
            node.start_role_or_wait()
            if settings.oneshot:
                return node.finish_oneshot()
            node.supervise_forever()
        return 0  # stopped by a signal
    except BootpullError as err:
        node.failed(err)
        return err.exit_code
    finally:
        node.close()


class _Stop(Exception):
    """SIGTERM or SIGINT: stop the role and leave cleanly."""


@dataclass
class Node:
    """The run's mutable context. Each stage method says which fields it writes."""

    settings: Settings
    console: Console
    state: StateDir = field(init=False)
    identity: Identity | None = None  # discover
    repo_url: str = ""  # discover
    discovered_report_url: str | None = None  # discover
    discovered_hostname: str | None = None  # discover
    reporter: Reporter | None = None  # discover
    pulled: PullResult | None = None  # pull_and_install
    stale: bool = False  # pull_and_install: running on expired metadata (never report fresh)
    deferred: BootpullError | None = None  # pull_and_install/start_role: --oneshot exits with it
    degraded: str | None = None  # pull_and_install: "fetch" or "verify" while falling back
    supervisor: Supervisor | None = None  # start_role
    stopping: bool = False
    counters: Counters = field(init=False)
    status: NodeStatus = field(init=False)
    _lock_fd: int = field(init=False)
    _banners: set[str] = field(default_factory=set)
    _names: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)  # discover

    def __post_init__(self) -> None:
        self.state = StateDir(self.settings.state_dir)
        self._lock_fd = self.state.lock()
        self._open_console_log()
        recover(self.state, self.console)
        self.counters = self.state.load_counters()
        self.status = self.state.load_status()

    def _open_console_log(self) -> None:
        """Mirror the console's JSON records to ``<state>/console.jsonl`` (one old copy)."""
        log = self.state.console_log
        try:
            if log.exists() and log.stat().st_size > CONSOLE_LOG_MAX:
                log.replace(log.with_name(log.name + ".1"))
            self.console.open_event_log(log)
        except OSError as exc:
            self.console.warn(f"no console log in the state directory: {exc}")

    # -- discover ------------------------------------------------------------------

    def discover(self) -> None:
        """Learn who this node is and where its repository is (writes identity, repo)."""
        s = self.settings
        if s.repo_url and s.mac:
            with self.console.step("discover") as step:
                step.note(f"skipped: --repo and --mac given ({s.mac})")
                self.identity = Identity(s.mac)
                self.repo_url = s.repo_url
                self._start_reporting([])
            return
        backoff = Backoff(base=2.0, cap=min(60.0, s.poll_interval * 4))
        attempt = 0
        found = None
        while found is None:
            try:
                with self.console.step("discover") as step:
                    found = self._discover_once()
                    step.note(f"{found.interface} {found.ip} {found.mac} repo "
                              f"{found.repo_url} ({found.repo_url_source})")
            except DiscoveryError as err:
                if s.oneshot:
                    raise
                self._banner_once(err)
                self.counters.count("retries", "discover")
                self._sleep(backoff.delay(attempt))
                attempt += 1
        self.identity = Identity(found.mac, hostname=found.hostname or "", ip=found.ip)
        self._use_lease_dns(found)
        self.discovered_hostname = found.hostname
        self.discovered_report_url = found.report_url or None
        self.repo_url = s.repo_url or found.repo_url
        self._start_reporting(list(found.log_servers))
        self._report("discover", "ok", f"repository {self.repo_url} via "
                     f"{found.repo_url_source} on {found.interface}",
                     {"discovery": found.to_json()})

    def _use_lease_dns(self, found: Discovery) -> None:
        """Host names in the repository and report URLs: ask the lease's DNS servers."""
        from bootpull.resolver import lease_names

        if found.dns_servers:  # discover runs once per node run
            self._names.enter_context(lease_names(found.dns_servers))
            self.console.info(f"host names resolve through the lease's DNS servers "
                              f"{', '.join(found.dns_servers)}", stage="discover")

    def _discover_once(self) -> Discovery:
        from bootpull.discover import discover

        s = self.settings
        return discover(interfaces=s.interfaces, timeout=s.discover_timeout, configure=True,
                        console=self.console, counters=self.counters,
                        dhcp_delay=s.dhcp_delay, repo_url=s.repo_url or s.kernel_repo_url,
                        mac=s.mac, report_url=s.report_url)

    def _start_reporting(self, log_servers: list[str]) -> None:
        assert self.identity is not None
        self.reporter = Reporter(
            spool=Spool(self.state.spool), context=ReportContext(self.identity.mac),
            console=self.console, counters=self.counters, url=self._report_url(),
            syslog=SyslogMirror(log_servers, self.console) if log_servers else None)
        if self.settings.oneshot:
            self.reporter.timeout = 5.0

    def _report_url(self) -> str | None:
        """docs/contract.md §2.5, as :func:`bootpull.reporturl.resolve` decides it."""
        found = resolve_report_url(
            repo_toml=self.pulled.settings.report_url if self.pulled is not None else None,
            remembered=self.status.report_url, cmdline=self.settings.report_url,
            discovered=self.discovered_report_url, repo_url=self.repo_url)
        return found.url if found is not None else None

    # -- fetch, verify, install ---------------------------------------------------

    def pull_and_install(self) -> bool:
        """Fetch, verify and install what the repository says; True if ``current`` changed.

        A failure with an install on disk is reported and that install keeps running;
        without one the error is raised (``--oneshot``) or waited out by polling.
        """
        while True:
            try:
                return self._update_once()
            except BootpullError as err:
                if self.settings.oneshot:
                    raise
                self._banner_once(err)
                self._report_error(err)
                if self.state.current() is not None:
                    return False  # keep running what is installed
                self._sleep(self.settings.poll_interval)

    def _update_once(self) -> bool:
        current = self.state.current()
        try:
            result = self._pull()
        except ExpiredMetadata as err:
            if current is None:
                raise
            self.stale = True
            self._fallback(err, current, "verify", "fail",
                           "signed metadata expired: running the installed version; "
                           "it is not fresh")
            self.deferred = err
            return False
        except FetchError as err:
            if current is None:
                raise FetchError(err.what, why=err.why, hint=(
                    f"check that the repository at {self.repo_url} is up and reachable "
                    "from this node; it has no last-known-good role to run meanwhile")
                    ) from None
            self._fallback(err, current, "fetch", "warn",
                           "fetch failed: running the installed version")
            return False
        self.stale = False
        self.deferred = None
        if self.degraded is not None:
            self._report(self.degraded, "ok", "the repository answers and verifies again")
            self.degraded = None
        self.pulled = result
        self._follow_redirect(result.repo_url)
        self.status.report_url = result.settings.report_url or ""
        if self.reporter is not None:
            self.reporter.url = self._report_url()
        return self._install(result.bundle)

    def _pull(self) -> PullResult:
        from bootpull.fetch import FetchLimits, GitRemote
        from bootpull.pull import pull
        from bootpull.trust import image_build_time

        assert self.identity is not None
        try:
            trust = self.settings.trust_file.read_bytes()
        except OSError as exc:
            raise VerifyError(f"no trust anchors at {self.settings.trust_file}",
                              why=exc.strerror or str(exc),
                              hint="pass --trust FILE (from 'bootpull repo trust'), or "
                              "build the image with 'bootpull image build --trust FILE'"
                              ) from None
        limits = FetchLimits(deadline=self.settings.fetch_deadline)
        if self.state.current() is not None:  # something to fall back to: do not wait long
            limits = replace(limits, deadline=min(self.settings.fetch_deadline,
                                                  self.settings.fetch_deadline_with_lkg),
                             max_attempts=min(limits.max_attempts, 4))
        remote = GitRemote(self.repo_url, self.state.cache, limits=limits,
                           console=self.console, counters=self.counters)
        try:
            return pull(remote, self.identity.mac, trust_root=trust,
                        state_dir=self.state.root, console=self.console,
                        counters=self.counters,
                        build_time=image_build_time(self.settings.build_time_file))
        finally:
            remote.close()

    def _follow_redirect(self, effective: str | None) -> None:
        """After redirects, the repository's real URL is the one the node names and uses."""
        if effective and effective != self.repo_url.rstrip("/"):
            self.console.info(f"the repository is at {effective} (redirected from "
                              f"{self.repo_url})", stage="fetch")
            self.repo_url = effective

    def _fallback(self, err: BootpullError, current: Installed, stage: str, status: str,
                  message: str) -> None:
        """Run what is installed instead; counted and reported once per outage."""
        self._banner_once(err)
        if self.degraded == stage:
            self.console.warn(f"{message} (still): {err.what}")
            return
        self.degraded = stage
        self.counters.count("fallbacks", stage)
        self.console.warn(f"{message}: {current.role} {current.version}")
        self._report(stage, status, f"{message}: {current.role} {current.version}",
                     {"error": err.what, "why": err.why, "fallback": current.version,
                      "stale": self.stale})

    def _install(self, bundle: Bundle) -> bool:
        assert self.identity is not None
        ident = bundle_id(bundle)
        bad = self.state.bad_ids()
        if ident in bad:
            current = self.state.current()
            message = (f"{bundle.role.name} {bundle.version} failed before "
                       f"({bad[ident]}); not retried")
            self.console.warn(message + "; publish a fixed version")
            self._report("install", "warn", message, {"bad_version": bundle.version})
            if current is None:
                raise RunError(message, hint="publish a fixed version of the role")
            return False
        env = contract_env(role=bundle.role.name, version=bundle.version,
                           commit=bundle.commit, variables=bundle.assignment.vars,
                           identity=self._identity_for(bundle.assignment.hostname))
        with self.console.step(f"install {bundle.role.name} {bundle.version}") as step:
            outcome = install(bundle, self.state, env=env, console=self.console)
            step.note("unchanged: nothing to do" if not outcome.changed
                      else f"{len(bundle.files)} files into {outcome.installed.path}")
        self._set_context(outcome.installed)
        if outcome.repaired:
            self._report("drift", "warn", f"{len(outcome.repaired)} installed file(s) had "
                         "changed on disk: reinstalled from the verified bundle",
                         {"files_changed": list(outcome.repaired), "repaired": True})
        elif outcome.changed:
            self._report("install", "ok", f"installed {bundle.role.name} {bundle.version}",
                         {"previous": outcome.previous.version if outcome.previous else None,
                          "files": len(bundle.files)})
        self._save_status("install", "ok", "installed" if outcome.changed else "unchanged")
        return outcome.changed

    # -- run -----------------------------------------------------------------------

    def start_role_or_wait(self) -> None:
        """Start the role; without --oneshot a failure leaves the node polling for a fix."""
        try:
            self.start_role()
        except RunError as err:
            if self.settings.oneshot:
                raise
            self._banner_once(err)
            self._report_error(err)

    def start_role(self) -> None:
        """Start ``current``; on failure mark it bad, revert to the LKG and start that."""
        for _ in range(3):
            installed = self.state.current()
            if installed is None:
                raise RunError("there is no installed role to run",
                               hint="check the banners above: nothing was installed")
            self._set_context(installed)
            bad = self.state.bad_ids()
            if installed.id in bad:
                err = RunError(f"{installed.role} {installed.version} failed before "
                               f"({bad[installed.id]}); not started again",
                               hint="publish a fixed version of the role")
                if not self._give_up_on(installed, err):
                    raise err
                continue
            sup = Supervisor(installed, role_env(installed, self._identity_for(
                installed.record.assignment.hostname)), console=self.console,
                counters=self.counters, policy=self.settings.policy)
            try:
                with self.console.step(f"run {installed.role} {installed.version}") as step:
                    sup.start()
                    sup.wait_started()
                    step.note("healthy" if installed.record.role.health else "started")
            except RunError as err:
                sup.stop()
                if not self._give_up_on(installed, err):
                    raise
                continue
            self.supervisor = sup
            self._save_status("run", "ok", "running", health="healthy")
            self._report("run", "warn" if self.stale else "ok",
                         f"{installed.role} {installed.version} is running" + (
                             " on expired metadata" if self.stale else ""),
                         {"stale": self.stale})
            return
        raise RunError("no install could be started", hint="see the banners above")

    def _give_up_on(self, installed: Installed, err: BootpullError) -> bool:
        """Mark ``installed`` bad and revert to the LKG; False when there is none."""
        self.state.mark_bad(installed.id, err.what)
        self._banner_once(err)
        lkg = self.state.lkg()
        if lkg is None or lkg.id == installed.id or lkg.id in self.state.bad_ids():
            self._report_error(err)
            return False
        revert_to_lkg(self.state)
        self.counters.count("fallbacks", "health")
        self.deferred = RunError(
            f"{installed.role} {installed.version} failed to start or failed its health "
            "check", why=f"{err.what}; the last-known-good {lkg.version} was started "
            "instead", hint="fix the role and publish a new version; the failed one is "
            "not retried")
        self.console.warn(f"reverted to the last-known-good {lkg.role} {lkg.version}")
        self._report("run", "fail", f"{installed.role} {installed.version} failed "
                     f"({err.what}); reverted to {lkg.version}",
                     {"error": err.what, "why": err.why, "bad_version": installed.version,
                      "fallback": lkg.version})
        return True

    def finish_oneshot(self) -> int:
        """--oneshot: the role started and is healthy; stop it and leave."""
        assert self.supervisor is not None
        self.supervisor.stop()
        self.supervisor = None
        self._save_status("run", "ok", "oneshot: stopped after the first health check",
                          health="stopped")
        if self.deferred is not None:  # the last-known-good ran, but the run failed
            self.console.banner(self.deferred)
            return self.deferred.exit_code
        return 0

    def supervise_forever(self) -> None:
        """Keep the role up, poll the repository, deliver reports; until SIGTERM."""
        s = self.settings
        poll_backoff = Backoff(base=1.0, cap=s.poll_interval)
        plan = Schedule.start(time.monotonic(), poll_interval=s.poll_interval,
                              heartbeat_interval=s.heartbeat_interval)
        while not self.stopping:
            sup = self.supervisor
            for happening in sup.tick() if sup is not None else []:
                assert sup is not None
                self._report("drift" if happening.kind.startswith("drift") else "run",
                             happening.status, happening.message, happening.details)
                if happening.kind == "drift" or happening.kind == "drift-cleared":
                    self.status.drift = list(happening.details.get("files_changed", []))
                    self._save_status("drift", happening.status, happening.message)
                elif happening.kind in ("exited", "restarted"):
                    self._save_status("run", happening.status, happening.message,
                                      health=happening.kind)
                if happening.kind == "unhealthy":
                    sup.stop()
                    self.supervisor = None
                    err = RunError(happening.message, why=str(happening.details))
                    if self._give_up_on(sup.installed, err):
                        self.start_role_or_wait()
                    break
            if plan.poll_due(time.monotonic()):
                before = self.state.current()
                changed = False
                try:
                    changed = self._update_once()
                    failed = self.stale
                except BootpullError as err:
                    self._banner_once(err)
                    self._report_error(err)
                    failed = True
                plan = plan.polled(time.monotonic(), failed=failed,
                                   poll_interval=s.poll_interval, backoff=poll_backoff.delay)
                if changed:
                    self.console.info(f"switching from {before.version if before else '-'} "
                                      "to the new install")
                    if self.supervisor is not None:
                        self.supervisor.stop()
                        self.supervisor = None
                    self.start_role_or_wait()
            if plan.heartbeat_due(time.monotonic()):
                self._heartbeat()
                plan = plan.heartbeat_sent(time.monotonic(),
                                           heartbeat_interval=s.heartbeat_interval)
            if self.reporter is not None and self.reporter.next_due() == 0.0:
                self.reporter.flush()
            also = [x.next_due() for x in (self.supervisor, self.reporter) if x is not None]
            self._sleep(plan.sleep_for(time.monotonic(), *also))

    def _heartbeat(self) -> None:
        """A periodic report: the role's state and a re-verification of its files.

        ``details.files_changed`` lists the installed files whose bytes no longer match
        the signed hashes (empty when all match), so the home base can show drift and
        clear it; the status is ``fail`` on expired metadata or a role that stopped,
        ``warn`` on drift or while the repository cannot be reached, else ``ok``.
        """
        current = self.state.current()
        if current is None:
            return
        files = check_drift(current)
        sup = self.supervisor
        running = sup is not None and (sup.running() or sup.restarting)
        details: dict[str, Any] = {"files_changed": files, "stale": self.stale,
                                   "restarts": self.counters.restarts}
        if self.stale:
            status, message = "fail", "running on expired metadata: not fresh"
        elif not running and not (sup is not None and sup.exit_code == 0):
            status, message = "fail", f"{current.role} {current.version} is not running"
        elif files:
            status = "warn"
            message = f"{len(files)} installed file(s) differ from the signed ones"
        elif self.degraded:
            status, message = "warn", f"running {current.version}; the repository fails"
        else:
            status, message = "ok", f"{current.role} {current.version} is running"
        self._report("heartbeat", status, message, details)

    # -- reporting, status, signals -------------------------------------------------

    def _identity_for(self, hostname: str | None) -> Identity:
        assert self.identity is not None
        name = hostname or self.discovered_hostname or f"node-{self.identity.mac.canonical}"
        return Identity(self.identity.mac, hostname=name, ip=self.identity.ip)

    def _set_context(self, installed: Installed) -> None:
        if self.reporter is None or self.identity is None:
            return
        ctx = self.reporter.context
        ctx.hostname = self._identity_for(installed.record.assignment.hostname).hostname
        ctx.role, ctx.version, ctx.commit = installed.role, installed.version, installed.commit

    def _report(self, stage: str, status: str, message: str,
                details: dict[str, Any] | None = None) -> None:
        self.state.save_counters(self.counters)
        if self.reporter is not None:
            try:
                self.reporter.emit(stage, status, message, details)
            except OSError as exc:
                self.console.error(f"could not spool an event: {exc}")

    def _report_error(self, err: BootpullError) -> None:
        if err.event_sent:
            return
        err.event_sent = True
        self._report(err.stage, "fail", err.what, {"why": err.why, "hint": err.hint,
                                                   "exit_code": err.exit_code})
        self._save_status(err.stage, "fail", err.what)

    def _banner_once(self, err: BootpullError) -> None:
        """A banner per distinct failure (polling prints it once, not every minute)."""
        key = f"{type(err).__name__}:{err.what}"
        if key not in self._banners:
            self._banners.add(key)
            self.console.banner(err)

    def failed(self, err: BootpullError) -> None:
        """The run ends on ``err``: banner, report, status."""
        self._banner_once(err)
        err.reported = True
        self._report_error(err)

    def _save_status(self, stage: str, status: str, message: str,
                     health: str | None = None) -> None:
        st: NodeStatus = self.status
        if self.identity is not None:
            st.node = self.identity.mac.canonical
        cur, lkg = self.state.current(), self.state.lkg()
        if cur is not None:
            st.role, st.version, st.commit = cur.role, cur.version, cur.commit
            st.hostname = self._identity_for(cur.record.assignment.hostname).hostname \
                if self.identity else st.hostname
        st.lkg_version, st.lkg_commit = (lkg.version, lkg.commit) if lkg else ("", "")
        if health is not None:
            st.health = health
        st.last_stage, st.last_status, st.last_message = stage, status, message
        st.stale = self.stale
        try:
            self.state.save_status(st)
            self.state.save_counters(self.counters)
        except OSError as exc:
            self.console.error(f"could not write the status file: {exc}")

    @contextlib.contextmanager
    def stop_on_signals(self) -> Any:
        def handler(signum: int, frame: FrameType | None) -> None:
            del frame
            self.stopping = True
            self.console.info(f"got {signal.Signals(signum).name}: stopping")

        old = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError):  # not the main thread: no handlers
                old[sig] = signal.signal(sig, handler)
        try:
            yield
        except _Stop:
            pass
        finally:
            for sig, previous in old.items():
                signal.signal(sig, previous)

    def _sleep(self, seconds: float) -> None:
        """Sleep, but wake within 0.1 s of a stop signal."""
        end = time.monotonic() + seconds
        while not self.stopping:
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(0.1, left))
        raise _Stop()

    def close(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
            self.supervisor = None
            self._save_status("run", "ok", "stopped", health="stopped")
        if self.reporter is not None:
            with contextlib.suppress(OSError):
                self.reporter.flush(force=True)
            self.reporter.close()
        self._names.close()
        with contextlib.suppress(OSError):
            self.state.save_counters(self.counters)
        os.close(self._lock_fd)

