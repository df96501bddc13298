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
the role, keeps trying to deliver the spooled reports up to ``bootpull.report_deadline=``
(30 s), and exits 0, or 15 when events remain (it prints how many and where).
Without it the node runs until SIGTERM/SIGINT (then it stops the role and exits 0),
polling the repository every ``bootpull.poll=SECONDS`` (kernel command line; 60 s).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bootpull import diskless
from bootpull.backoff import Backoff
from bootpull.console import Console
from bootpull.errors import (
    BootpullError,
    ExpiredMetadata,
    FetchError,
    IdentityError,
    RunError,
)
from bootpull.health import RepoHealth
from bootpull.install import recover
from bootpull.install_stage import install_bundle
from bootpull.narrator import Narrator, open_console_log
from bootpull.reporturl import origin_events_url as origin_events_url  # the old name
from bootpull.reporturl import resolve as resolve_report_url
from bootpull.runner import RoleRunner
from bootpull.schedule import Schedule
from bootpull.settings import Settings, check_dhcp_allowed, unknown_key_warnings
from bootpull.state import StateDir
from bootpull.stopper import Stopper
from bootpull.supervise import Happening, Identity

if TYPE_CHECKING:
    from bootpull.discover import Discovery
    from bootpull.lease_keeper import LeaseKeeper, LeaseNews
    from bootpull.lldp import Listener
    from bootpull.pull import PullResult


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
        if not (settings.repo_url and settings.mac):  # DHCP: only where it may be sent
            check_dhcp_allowed("node run", settings.interfaces)
        node = Node(settings, console)
    except BootpullError as err:
        console.banner(err)
        err.reported = True
        return err.exit_code
    try:
        with node.stopper.on_signals():
            node.discover()
            node.check_clock()
            node.pull_and_install()
            node.start_role_or_wait()
            if settings.oneshot:
                return node.finish_oneshot()
            node.supervise_forever()
        return 0  # stopped by a signal
    except BootpullError as err:
        node.say.failed(err)
        return err.exit_code
    finally:
        node.close()


@dataclass
class Node:
    """The run's mutable context. Each stage method says which fields it writes; what
    is said about it (console banners, events, the status file) goes through ``say``."""

    settings: Settings
    console: Console
    state: StateDir = field(init=False)
    say: Narrator = field(init=False)
    stopper: Stopper = field(init=False)
    repo_url: str = ""  # discover; the URL in effect after a redirect (pull)
    discovered: Discovery | None = None  # discover
    pulled: PullResult | None = None  # pull_and_install
    health: RepoHealth = field(default_factory=RepoHealth)  # pull_and_install
    runner: RoleRunner = field(init=False)  # start_role: the role and its supervisor
    lease: LeaseKeeper | None = None  # discover: renews the DHCP lease (not with --repo --mac)
    lldp: Listener | None = None  # discover: the switch port, if one is heard (bootpull.lldp)
    _lock_fd: int = field(init=False)
    _names: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)  # discover

    def __post_init__(self) -> None:
        self.state = StateDir(self.settings.state_dir)
        self._lock_fd = self.state.lock()
        open_console_log(self.console, self.state)
        for warning in unknown_key_warnings(self.settings.unknown_keys):
            self.console.warn(warning)
        recover(self.state, self.console)
        self.say = Narrator(self.console, self.state, stale=lambda: self.health.stale,
                            ca_files=self.settings.ca_files)
        self.stopper = Stopper(self.console)
        self.runner = RoleRunner(self.state, self.say, self.console, self.settings.policy,
                                 on_identity=lambda name: self._apply_names(self.discovered,
                                                                            name))
        # whether the version floor survives a reboot: said at boot and in every event
        self.say.rollback_protection, unsafe = diskless.rollback_protection(
            self.state.root, self.settings.mounts_file)
        if unsafe:
            self.console.warn(unsafe)
        self._load_key()

    def _load_key(self) -> None:
        """The node's key (bootpull.identity): kept in the state directory when it is on
        a disk, made for this boot when it is in memory (diskless) or when the files
        cannot be read or written (said on the console; the node goes on)."""
        from bootpull import identity

        persistent = self.say.rollback_protection != "none"
        try:
            key = identity.load_or_create(self.state.root, persistent=persistent,
                                          warn=self.console.warn)
        except IdentityError as err:
            self.console.error(f"{err}; {err.hint}", stage="identity")
            self.say.key_problem = err.what
            key = identity.generate(kind="ephemeral")
        self.say.key = key
        self.console.info(f"identity {key.describe()}", stage="identity")

    # -- discover ------------------------------------------------------------------

    def discover(self) -> None:
        """Learn who this node is and where its repository is (writes repo_url)."""
        s = self.settings
        if s.repo_url and s.mac:
            with self.console.step("discover") as step:
                step.note(f"skipped: --repo and --mac given ({s.mac})")
                self.repo_url = s.repo_url
                self.say.start(Identity(s.mac), url=None, log_servers=[], oneshot=s.oneshot)
                self.say.retarget(self._report_url())
            return
        from bootpull.discover import until_found

        found = until_found(self._discover_once, console=self.console,
                            counters=self.say.counters, oneshot=s.oneshot,
                            poll_interval=s.poll_interval, sleep=self.stopper.sleep,
                            banner=self.say.banner_once)
        self._use_lease_dns(found)
        self.discovered = found
        self.repo_url = s.repo_url or found.repo_url
        self.say.start(Identity(found.mac, hostname=found.hostname or "", ip=found.ip),
                       url=None, log_servers=list(found.log_servers), oneshot=s.oneshot,
                       hostname=found.hostname)
        self.say.retarget(self._report_url())
        from bootpull.lldp import Listener

        self.lldp = Listener(found.interface, debug=self.console.debug).start()
        self.say.report("discover", "ok", f"repository {self.repo_url} via "
                        f"{found.repo_url_source} on {found.interface}",
                        {"discovery": found.to_json()})
        if found.lease is not None and not s.oneshot:
            from bootpull.lease_keeper import LeaseKeeper

            self.lease = LeaseKeeper(found.interface, found.lease, state_dir=self.state.root,
                                     console=self.console, counters=self.say.counters,
                                     rediscover=self._discover_once)

    def _use_lease_dns(self, found: Discovery) -> None:
        """Host names in the repository and report URLs: ask the lease's DNS servers."""
        from bootpull import names

        self._names.enter_context(names.use_lease(found, self.console))
        self._apply_names(found, found.hostname
                          or f"node-{(self.settings.mac or found.mac).canonical}")

    def _apply_names(self, found: Discovery | None, hostname: str) -> None:
        """In the image: /etc/resolv.conf and /etc/hosts for the role (bootpull.names)."""
        from bootpull import names

        names.apply_said(found, hostname, self.console)

    def check_clock(self) -> None:
        """Before verification: ask NTP (bootpull.ntp=, else option 42) and step the
        clock when it is more than clock.STEP_THRESHOLD off; a step is an event."""
        from bootpull import clock

        s, found = self.settings, self.discovered
        outcome = clock.check(clock.servers(s.ntp_servers, found.lease if found else None),
                              setter=s.clock_setter, build_time_file=s.build_time_file,
                              state_root=self.state.root, console=self.console)
        if outcome is not None and outcome.status is not None:
            if outcome.status != "ok":
                self.console.warn(outcome.message, stage="clock")
            self.say.report("clock", outcome.status, outcome.message, outcome.details())

    def _discover_once(self) -> Discovery:
        from bootpull.discover import discover

        s = self.settings
        return discover(interfaces=s.interfaces, timeout=s.discover_timeout, configure=True,
                        console=self.console, counters=self.say.counters,
                        dhcp_delay=s.dhcp_delay, repo_url=s.repo_url or s.kernel_repo_url,
                        mac=s.mac, report_url=s.report_url)

    def _report_url(self) -> str | None:
        """docs/contract.md §2.5, as :func:`bootpull.reporturl.resolve` decides it."""
        lease = self.discovered
        found = resolve_report_url(
            repo_toml=self.pulled.settings.report_url if self.pulled is not None else None,
            remembered=self.say.status.report_url, cmdline=self.settings.report_url,
            dhcp_43=lease.report_url if lease and lease.report_url_source == "dhcp-43"
            else None, repo_url=self.repo_url)
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
                self.say.banner_once(err)
                self.say.report_error(err)
                if self.state.current() is not None:
                    return False  # keep running what is installed
                from bootpull.lease_keeper import sleep_renewing

                sleep_renewing(self.lease, self.settings.poll_interval,
                               sleep=self.stopper.sleep, on_news=self._on_lease_news)

    def _update_once(self) -> bool:
        """One poll (writes pulled, health, repo_url)."""
        if self.settings.require_state:  # exit 12 unless the floor survives a reboot
            diskless.require_persistent_floor(self.say.rollback_protection or "unknown",
                                              self.state.root, self.settings.mounts_file)
        current = self.state.current()
        try:
            result = self._pull()
        except ExpiredMetadata as err:
            if current is None:
                raise
            before, self.health = self.health, self.health.expired(err)
            self.say.fallback(self.health, before, current, "fail", "signed metadata "
                              "expired: running the installed version; it is not fresh")
            return False
        except FetchError as err:
            if current is None:  # the hint of the error behind it, and what that means
                first = err.hint or f"check that the repository at {self.repo_url} is up"
                err.hint = f"{first}; this node has no last-known-good role to run meanwhile"
                raise
            before, self.health = self.health, self.health.fetch_failed(err)
            self.say.fallback(self.health, before, current, "warn",
                              "fetch failed: running the installed version")
            return False
        before, self.health = self.health, self.health.verified()
        if stage := self.health.recovered_from(before):
            self.say.report(stage, "ok", "the repository answers and verifies again")
        self.pulled = result
        if result.repo_url and result.repo_url != self.repo_url.rstrip("/"):
            self.console.info(f"the repository is at {result.repo_url} (redirected from "
                              f"{self.repo_url})", stage="fetch")
            self.repo_url = result.repo_url
        self.say.status.report_url = result.settings.report_url or ""
        self.say.retarget(self._report_url())
        self.say.fetched_over(result.fetch)
        key = self.say.key
        return install_bundle(result.bundle, self.state, self.say, self.console,
                              age_identity=key.age if key is not None else None,
                              settings=result.settings)

    def _pull(self) -> PullResult:
        from bootpull.pull import pull_url

        s = self.settings
        assert self.say.identity is not None
        quick = self.state.current() is not None  # something to fall back to: do not wait
        return pull_url(self.repo_url, self.say.identity.mac, trust_file=s.trust_file,
                        cache_dir=self.state.cache, state_dir=self.state.root,
                        deadline=min(s.fetch_deadline, s.fetch_deadline_with_lkg) if quick
                        else s.fetch_deadline, max_attempts=4 if quick else None,
                        console=self.console, counters=self.say.counters,
                        build_time_file=s.build_time_file, ca_files=s.ca_files)

    # -- run -----------------------------------------------------------------------

    def start_role_or_wait(self) -> None:
        """Start the role; without --oneshot a failure leaves the node polling for a fix."""
        try:
            self.runner.start(stale=self.health.stale)
        except RunError as err:
            if self.settings.oneshot:
                raise
            self.say.banner_once(err)
            self.say.report_error(err)

    def finish_oneshot(self) -> int:
        """--oneshot: the role started and is healthy; stop it, deliver the spool (up to
        the report deadline) and leave. The exit code is the reason the last-known-good
        runs (a failed start, expired metadata), else 15 if events remain, else 0."""
        assert self.runner.supervisor is not None
        self.runner.stop()
        self.say.save_status("run", "ok", "oneshot: stopped after the first health check",
                             health="stopped")
        deferred = self.runner.reverted or (self.health.error if self.health.stale else None)
        self._neighbour_news()
        left = self.say.deliver_spool(self.settings.report_deadline)
        err = deferred or (self.say.undelivered(left, self.settings.report_deadline)
                           if left else None)
        if err is None:
            return 0
        self.console.banner(err)
        return err.exit_code

    # -- the long run --------------------------------------------------------------

    def supervise_forever(self) -> None:
        """Keep the role up, poll the repository, deliver reports; until SIGTERM."""
        s = self.settings
        poll_backoff = Backoff(base=1.0, cap=s.poll_interval)
        plan = Schedule.start(time.monotonic(), poll_interval=s.poll_interval,
                              heartbeat_interval=s.heartbeat_interval)
        while not self.stopper.stopping:
            sup = self.runner.supervisor
            for happening in sup.tick() if sup is not None else []:
                if not self._on_happening(happening):
                    break
            for news in self.lease.tick() if self.lease is not None else []:
                self._on_lease_news(news)
            self._neighbour_news()
            if plan.poll_due(time.monotonic()):
                plan = plan.polled(time.monotonic(), failed=self._poll(),
                                   poll_interval=s.poll_interval, backoff=poll_backoff.delay)
            if plan.heartbeat_due(time.monotonic()):
                self.say.heartbeat(self.state.current(), self.runner.supervisor, self.health)
                plan = plan.heartbeat_sent(time.monotonic(),
                                           heartbeat_interval=s.heartbeat_interval)
            reporter = self.say.reporter
            if reporter is not None and reporter.next_due() == 0.0:
                reporter.flush()
            also = [x.next_due() for x in (self.runner.supervisor, reporter, self.lease)
                    if x is not None]
            self.stopper.sleep(plan.sleep_for(time.monotonic(), *also))

    def _neighbour_news(self) -> None:
        """The LLDP neighbour, once heard: the identity event again, with it."""
        if self.lldp is not None and self.lldp.neighbour is not None:
            self.say.announce_key(neighbour=self.lldp.neighbour)
            self.lldp = None

    def _on_happening(self, happening: Happening) -> bool:
        """Report what the supervisor saw; False once the role was given up on."""
        self.say.happening(happening)
        if happening.kind != "unhealthy":
            return True
        sup = self.runner.supervisor
        assert sup is not None
        self.runner.stop()
        if self.runner.give_up_on(sup.installed, RunError(happening.message,
                                                          why=str(happening.details))):
            self.start_role_or_wait()
        return False

    def _on_lease_news(self, news: LeaseNews) -> None:
        """A renewal, a lost lease, a new one; after a new discovery a repository from the
        network is adopted (--repo and bootpull.repo= stay)."""
        found = news.discovery
        if found is not None:
            self.discovered = found
            url = self.settings.repo_url or found.repo_url
            if url != self.repo_url:
                self.console.info(f"the repository is now {url} (was {self.repo_url})",
                                  stage="lease")
                news.details["repo_url"] = {"previous": self.repo_url, "now": url}
                self.repo_url = url
            self.say.retarget(self._report_url())
            if self.say.identity is not None:  # names follow the new lease
                current = self.state.current()
                self._apply_names(found, self.say.identity_for(
                    current.record.assignment.hostname if current else None).hostname)
        self.say.report("lease", news.status, news.message, news.details)

    def _poll(self) -> bool:
        """Poll the repository and switch to a new install; True if the poll failed."""
        before = self.state.current()
        try:
            changed = self._update_once()
        except BootpullError as err:
            self.say.banner_once(err)
            self.say.report_error(err)
            return True
        if changed:
            self.console.info(f"switching from {before.version if before else '-'} "
                              "to the new install")
            self.runner.stop()
            self.start_role_or_wait()
        elif self.say.relabelled:  # the home base sees the new head now, with the status
            self.say.heartbeat(self.state.current(), self.runner.supervisor, self.health)
        return self.health.stale

    def close(self) -> None:
        if self.lldp is not None:
            self.lldp.stop()
        if self.runner.supervisor is not None:
            self.runner.stop()
            self.say.save_status("run", "ok", "stopped", health="stopped")
        self.say.close()
        self._names.close()
        os.close(self._lock_fd)

