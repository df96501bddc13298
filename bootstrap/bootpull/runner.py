"""Running the installed role: start it, and give a failing one up for the last-known-good.

The pipeline's run stage (docs/contract.md §5.2): ``current`` starts under a
:class:`~bootpull.supervise.Supervisor`. An install that does not start, or fails its
first health checks, is marked bad (``bad.json``: never retried, so no boot loop),
``current`` goes back to the last-known-good, and that starts instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from bootpull import role_users
from bootpull.console import Console
from bootpull.errors import BootpullError, RunError
from bootpull.install import revert_to_lkg
from bootpull.narrator import Narrator
from bootpull.state import Installed, StateDir
from bootpull.supervise import Policy, Supervisor, role_env


class RoleRunner:
    def __init__(self, state: StateDir, say: Narrator, console: Console, policy: Policy,
                 *, on_identity: Callable[[str], None]) -> None:
        self.state = state
        self.say = say
        self.console = console
        self.policy = policy
        self.on_identity = on_identity  # the role's hostname is known: /etc/hosts
        self.supervisor: Supervisor | None = None
        #: the last-known-good runs because this failed; --oneshot exits with it
        self.reverted: RunError | None = None

    def start(self, *, stale: bool) -> None:
        """Start ``current``; on failure mark it bad, revert to the LKG and start that.
        ``stale``: the install rests on expired metadata (said in the run event)."""
        for _ in range(3):
            installed = self.state.current()
            if installed is None:
                raise RunError("there is no installed role to run",
                               hint="check the banners above: nothing was installed")
            self.say.set_context(installed)
            bad = self.state.bad_ids()
            if installed.id in bad:
                err = RunError(f"{installed.role} {installed.version} failed before "
                               f"({bad[installed.id]}); not started again",
                               hint="publish a fixed version of the role")
                if not self.give_up_on(installed, err):
                    raise err
                continue
            identity = self.say.identity_for(installed.record.assignment.hostname)
            self.on_identity(identity.hostname)  # the host file's name, for /etc/hosts
            with contextlib.suppress(OSError):  # made at install; a wiped one comes back
                self.state.ensure_data_dir(installed.role)
            env = role_env(installed, identity, data_dir=self.state.data_dir(installed.role))
            try:  # /etc of the boot image is in RAM: the user comes back at every boot
                run_as = role_users.ensure_user(installed.record.role, self.state,
                                                error=RunError, say=self.console.info)
                if run_as is not None:
                    role_users.own_tree(self.state.data_dir(installed.role), run_as,
                                        error=RunError)
            except RunError as err:
                if not self.give_up_on(installed, err):
                    raise
                continue
            sup = Supervisor(installed, env, console=self.console,
                             counters=self.say.counters, policy=self.policy, run_as=run_as)
            try:
                with self.console.step(f"run {installed.role} {installed.version}") as step:
                    sup.start()
                    sup.wait_started()
                    step.note("healthy" if installed.record.role.health else "started")
            except RunError as err:
                sup.stop()
                if not self.give_up_on(installed, err):
                    raise
                continue
            self.supervisor = sup
            self.say.save_status("run", "ok", "running", health="healthy")
            self.say.report("run", "warn" if stale else "ok",
                            f"{installed.role} {installed.version} is running"
                            + (" on expired metadata" if stale else ""), {"stale": stale})
            return
        raise RunError("no install could be started", hint="see the banners above")

    def give_up_on(self, installed: Installed, err: BootpullError) -> bool:
        """Mark ``installed`` bad and revert to the LKG (writes reverted); False when
        there is none."""
        self.say.mark_bad(installed.id, err.what, installed.version)
        self.say.banner_once(err)
        lkg = self.state.lkg()
        if lkg is None or lkg.id == installed.id or lkg.id in self.state.bad_ids():
            self.say.report_error(err)
            return False
        revert_to_lkg(self.state)
        self.say.counters.count("fallbacks", "health")
        self.reverted = RunError(
            f"{installed.role} {installed.version} failed to start or failed its health "
            "check", why=f"{err.what}; the last-known-good {lkg.version} was started "
            "instead", hint="fix the role and publish a new version; the failed one is "
            "not retried")
        self.console.warn(f"reverted to the last-known-good {lkg.role} {lkg.version}")
        self.say.report("run", "fail", f"{installed.role} {installed.version} failed "
                        f"({err.what}); reverted to {lkg.version}",
                        {"error": err.what, "why": err.why, "bad_version": installed.version,
                         "fallback": lkg.version, **_output(err)})
        return True

    def stop(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
            self.supervisor = None


def _output(err: BootpullError) -> dict[str, str]:
    """``{"output": ...}``: the role's last lines, when the error carries them."""
    output = getattr(err, "output", "")
    return {"output": output} if output else {}
