"""What the node tells the world: banners on the console, events, the status file.

The pipeline decides; the :class:`Narrator` says. It owns the :class:`Reporter` (the
spool and the POSTs to the home base, docs/contract.md §7), the banners (one per
distinct failure, so polling does not print the same one every minute), the status
file (``bootpull node status``) and the counters' persistence. Nothing here changes
what the node does next: a state disk too full or failing for the status file, the
counters, the bad-version list or the spool is an error on the console (once, until it
is written again), never the end of the run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bootpull.backoff import Backoff, Counters
from bootpull.console import Console
from bootpull.errors import BootpullError, UndeliveredError
from bootpull.health import RepoHealth
from bootpull.install import check_drift
from bootpull.report import ReportContext, Reporter, Spool, SyslogMirror
from bootpull.state import DiskTrouble, Installed, NodeStatus, StateDir
from bootpull.supervise import Happening, Identity, Supervisor

if TYPE_CHECKING:
    from bootpull.identity import NodeIdentity

CONSOLE_LOG_MAX = 4 * 2**20
ONESHOT_REPORT_TIMEOUT = 5.0
#: ``--oneshot``'s waits between delivery tries before it exits (full jitter)
ONESHOT_BACKOFF = Backoff(base=0.5, cap=4.0)


def open_console_log(console: Console, state: StateDir) -> None:
    """Mirror the console's JSON records to ``<state>/console.jsonl`` (one old copy)."""
    log = state.console_log
    try:
        if log.exists() and log.stat().st_size > CONSOLE_LOG_MAX:
            log.replace(log.with_name(log.name + ".1"))
        console.open_event_log(log)
    except OSError as exc:
        console.warn(f"no console log in the state directory: {exc}")


class Narrator:
    """Created once the state directory is recovered: it loads the counters and the
    status file from it."""

    def __init__(self, console: Console, state: StateDir, *,
                 stale: Callable[[], bool], ca_files: tuple[Path, ...] = ()) -> None:
        self.console = console
        self.ca_files = ca_files  # node run --ca: for an https home base too
        self.state = state
        self.disk = DiskTrouble(console, state.root)
        self.counters: Counters = state.load_counters()
        self.status: NodeStatus = state.load_status()
        self.reporter: Reporter | None = None
        self.identity: Identity | None = None
        self.discovered_hostname: str | None = None
        self._stale = stale
        self._banners: set[str] = set()
        #: ``state-disk``, ``none`` (diskless: the version floor is in RAM) or ``unknown``
        self.rollback_protection: str | None = None
        #: why the node keeps its install although a newer version waits (a hold)
        self.held: str | None = None
        #: the name the install had before the last install stage renamed it after a
        #: head that changes nothing it installs (the next heartbeat says so, at once)
        self.relabelled: str | None = None
        #: the node's key (bootpull.identity): signs the reports, named in every event
        self.key: NodeIdentity | None = None
        self.key_problem: str | None = None  # why the key is ephemeral on a state disk
        self._key_announced = False
        self._rung: str | None = None  # the fetch ladder's rung last said

    def start(self, identity: Identity, *, url: str | None, log_servers: list[str],
              oneshot: bool, hostname: str | None = None) -> None:
        """From discovery on, events have a sender: open the spool and the reporter."""
        self.identity = identity
        self.discovered_hostname = hostname
        self.reporter = Reporter(
            spool=Spool(self.state.spool), context=ReportContext(identity.mac),
            console=self.console, counters=self.counters, url=url,
            syslog=SyslogMirror(log_servers, self.console) if log_servers else None,
            disk=self.disk, ca_files=self.ca_files, identity=self.key)
        if oneshot:
            self.reporter.timeout = ONESHOT_REPORT_TIMEOUT
        self.announce_key()

    def announce_key(self, *, root: Path = Path("/"),
                     neighbour: dict[str, Any] | None = None) -> None:
        """The ``identity`` event, once per run and first: the key, its age recipient
        and the hardware facts an admin checks before enrolling it (docs/node.md);
        again, with ``facts.lldp``, when the LLDP neighbour is heard (bootpull.lldp)."""
        if self.key is None or self.reporter is None:
            return
        if self._key_announced and neighbour is None:
            return
        self._key_announced = True
        from bootpull import facts

        key = self.key
        found = facts.collect(root)
        message = f"identity {key.describe()}"
        if neighbour is not None:
            found["lldp"] = neighbour
            where = neighbour.get("system_name") or neighbour.get("chassis")
            message += f"; plugged into {where} port {neighbour.get('port')} (LLDP)"
            self.console.info(f"LLDP: plugged into {where} port {neighbour.get('port')}")
        details: dict[str, Any] = {"public_key": key.public, "age": key.recipient,
                                   "facts": found}
        if self.key_problem:
            details["problem"] = self.key_problem
        self.report("identity", "warn" if self.key_problem else "ok", message, details)

    def retarget(self, url: str | None) -> None:
        if self.reporter is not None:
            self.reporter.url = url

    # -- who the node is, as roles and reports see it ------------------------------

    def identity_for(self, hostname: str | None) -> Identity:
        """The identity with the host file's hostname, else DHCP's, else node-<mac>."""
        assert self.identity is not None
        name = hostname or self.discovered_hostname or f"node-{self.identity.mac.canonical}"
        return Identity(self.identity.mac, hostname=name, ip=self.identity.ip)

    def set_context(self, installed: Installed) -> None:
        """Events from now on name this install's role, version and commit."""
        if self.reporter is None or self.identity is None:
            return
        ctx = self.reporter.context
        ctx.hostname = self.identity_for(installed.record.assignment.hostname).hostname
        ctx.role, ctx.version, ctx.commit = installed.role, installed.version, installed.commit

    # -- events, banners, status ------------------------------------------------------

    def report(self, stage: str, status: str, message: str,
               details: dict[str, Any] | None = None) -> None:
        self.save_counters()
        if self.rollback_protection is not None:  # on every event (docs/contract.md §7.3)
            details = {**(details or {}), "rollback_protection": self.rollback_protection}
        if self.key is not None:  # on every event too: which key, kept or per boot
            details = {**(details or {}), "identity": self.key.kind,
                       "key": self.key.fingerprint}
        if self.reporter is not None:
            with self.disk.writing("events to the spool", "they are not sent while it "
                                   "cannot be written; the role keeps running"):
                self.reporter.emit(stage, status, message, details)

    def save_counters(self) -> None:
        with self.disk.writing("the counters", "they are kept in memory meanwhile"):
            self.state.save_counters(self.counters)

    def mark_bad(self, ident: str, why: str, version: str = "") -> None:
        """Never retry ``ident`` (in this run also when ``bad.json`` cannot be written).
        ``version`` starts the reason when the id does not name it (a head install's id
        names its content, not its commit)."""
        if version and not ident.startswith(version):
            why = f"{version}: {why}"
        with self.disk.writing("the list of bad versions", f"{ident} is not retried in "
                               "this run, but may be tried once more after a reboot"):
            self.state.mark_bad(ident, why)

    def report_error(self, err: BootpullError) -> None:
        """A ``fail`` event and status for ``err``, once however often it is raised."""
        if err.event_sent:
            return
        err.event_sent = True
        output = getattr(err, "output", "")  # a role's or a hook's last lines
        self.report(err.stage, "fail", err.what, {"why": err.why, "hint": err.hint,
                                                  "exit_code": err.exit_code,
                                                  **({"output": output} if output else {})})
        self.save_status(err.stage, "fail", err.what)

    def first_time(self, key: str) -> bool:
        """True the first time ``key`` is asked about in this run (say it once)."""
        if key in self._banners:
            return False
        self._banners.add(key)
        return True

    def banner_once(self, err: BootpullError) -> None:
        """A banner per distinct failure (polling prints it once, not every minute)."""
        key = f"{type(err).__name__}:{err.what}"
        if key not in self._banners:
            self._banners.add(key)
            self.console.banner(err)

    def fallback(self, health: RepoHealth, before: RepoHealth, current: Installed,
                 status: str, message: str) -> None:
        """``current`` runs instead of a fresh pull (``health`` says why, ``before`` was
        the health until now): a banner per failure, counted and reported once per
        outage, a console line on every poll."""
        err, stage = health.error, health.fallback_stage
        assert err is not None and stage is not None
        self.banner_once(err)
        if not health.is_new_outage(before):
            self.console.warn(f"{message} (still): {err.what}")
            return
        self.counters.count("fallbacks", stage)
        self.console.warn(f"{message}: {current.role} {current.version}")
        self.report(stage, status, f"{message}: {current.role} {current.version}",
                    {"error": err.what, "why": err.why, "fallback": current.version,
                     "stale": health.stale})

    def fetched_over(self, fetch: dict[str, Any] | None) -> None:
        """Which rung of the fetch ladder the pull took and what it costs: said on the
        console and as a ``fetch`` event when it is new in this run (docs/node.md)."""
        if fetch is None or fetch.get("rung") == self._rung:
            return
        from bootpull.fetch_ladder import describe

        self._rung = fetch.get("rung")
        line = describe(str(fetch["rung"]), str(fetch["cost"]), fetch.get("enable") or "")
        self.console.info(line, stage="fetch")
        self.report("fetch", "ok", line, {"fetch": fetch})

    def failed(self, err: BootpullError) -> None:
        """The run ends on ``err``: banner, report, status."""
        self.banner_once(err)
        err.reported = True
        self.report_error(err)

    def save_status(self, stage: str, status: str, message: str,
                    health: str | None = None) -> None:
        st = self.status
        if self.identity is not None:
            st.node = self.identity.mac.canonical
        cur, lkg = self.state.current(), self.state.lkg()
        if cur is not None:
            st.role, st.version, st.commit = cur.role, cur.version, cur.commit
            st.hostname = self.identity_for(cur.record.assignment.hostname).hostname \
                if self.identity else st.hostname
        st.lkg_version, st.lkg_commit = (lkg.version, lkg.commit) if lkg else ("", "")
        if health is not None:
            st.health = health
        st.last_stage, st.last_status, st.last_message = stage, status, message
        st.stale = self._stale()
        with self.disk.writing("the status file", "'bootpull node status' shows older "
                               "news meanwhile; the role keeps running"):
            self.state.save_status(st)
        self.save_counters()

    def undelivered(self, left: int, deadline: float) -> UndeliveredError:
        """--oneshot ends with ``left`` events still spooled: say how many and where (on
        stdout, for scripts) and give the error to exit with (docs/contract.md §6)."""
        spool = self.state.spool
        print(f"bootpull: {left} event(s) not delivered, kept in {spool}", flush=True)
        return UndeliveredError(
            f"the role ran, but {left} event(s) were not delivered",
            why=f"the home base did not take them within {deadline:g} s; they are kept "
            f"in {spool}", hint="check that the report URL is up; the next node run "
            "sends them first (bootpull.report_deadline=S waits longer)")

    def happening(self, happening: Happening) -> None:
        """What the supervisor saw: an event, and the status file where it says more."""
        self.report("drift" if happening.kind.startswith("drift") else "run",
                    happening.status, happening.message, happening.details)
        if happening.kind in ("drift", "drift-cleared"):
            self.status.drift = list(happening.details.get("files_changed", []))
            self.save_status("drift", happening.status, happening.message)
        elif happening.kind in ("exited", "restarted"):
            self.save_status("run", happening.status, happening.message,
                             health=happening.kind)

    def heartbeat(self, current: Installed | None, supervisor: Supervisor | None,
                  health: RepoHealth) -> None:
        """A periodic report: the role's state and a re-verification of its files.

        ``details.files_changed`` lists the installed files whose bytes no longer match
        the signed hashes (empty when all match), so the home base can show drift and
        clear it; :func:`heartbeat_status` picks the status. After the install was
        renamed (:attr:`relabelled`), ``details.unchanged`` is true and
        ``details.previous`` its name before.
        """
        if current is None:
            return
        files = check_drift(current)
        sup = supervisor
        running = sup is not None and (sup.running() or sup.restarting or sup.exit_code == 0)
        status, message = heartbeat_status(
            role=current.role, version=current.version, stale=health.stale, running=running,
            files_changed=files, repository_failing=health.fallback_stage is not None,
            held=self.held)
        renamed, self.relabelled = self.relabelled, None
        self.report("heartbeat", status, message, {
            "files_changed": files, "stale": health.stale, "restarts": self.counters.restarts,
            **({"held": True} if self.held else {}),
            **({"unchanged": True, "previous": renamed} if renamed else {})})

    def deliver_spool(self, seconds: float) -> int:
        """``--oneshot``: keep trying to deliver the spool for up to ``seconds``; the
        number of events still in it (they stay for the next run)."""
        if self.reporter is None:
            return 0
        self.reporter.flush_until(seconds, backoff=ONESHOT_BACKOFF)
        return len(self.reporter.spool)

    def close(self) -> None:
        if self.reporter is not None:
            self.reporter.flush(force=True)
            self.reporter.close()
        self.save_counters()


def heartbeat_status(*, role: str, version: str, stale: bool, running: bool,
                     files_changed: list[str], repository_failing: bool,
                     held: str | None = None) -> tuple[str, str]:
    """A heartbeat's status and message (docs/contract.md §5.3): ``fail`` on expired
    metadata or a role that is not running, ``warn`` on drift or while the repository
    cannot be reached, else ``ok``."""
    if stale:
        return "fail", "running on expired metadata: not fresh"
    if not running:
        return "fail", f"{role} {version} is not running"
    if files_changed:
        return "warn", f"{len(files_changed)} installed file(s) differ from the signed ones"
    if repository_failing:
        return "warn", f"running {version}; the repository fails"
    if held:
        return "warn", held
    return "ok", f"{role} {version} is running"
