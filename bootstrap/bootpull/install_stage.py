"""The pipeline's install stage: a verified bundle into ``current``, said as events.

:func:`install_bundle` is what ``Node`` calls after a good pull (docs/contract.md §5.1).
A version marked bad (``bad.json``: it failed to start or failed its health checks) is
never installed again; the node says so and keeps what runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bootpull.console import Console
from bootpull.errors import RunError
from bootpull.install import bundle_id, install
from bootpull.narrator import Narrator
from bootpull.state import StateDir
from bootpull.supervise import contract_env

if TYPE_CHECKING:
    from bootpull.bundle import Bundle


def install_bundle(bundle: Bundle, state: StateDir, say: Narrator, console: Console) -> bool:
    """Install ``bundle`` unless it failed before; True if ``current`` changed. A bad
    version with nothing installed raises RunError (there is nothing else to run)."""
    ident = bundle_id(bundle)
    bad = state.bad_ids()
    if ident in bad:
        message = (f"{bundle.role.name} {bundle.version} failed before "
                   f"({bad[ident]}); not retried")
        console.warn(message + "; publish a fixed version")
        say.report("install", "warn", message, {"bad_version": bundle.version})
        if state.current() is None:
            raise RunError(message, hint="publish a fixed version of the role")
        return False
    env = contract_env(role=bundle.role.name, version=bundle.version, commit=bundle.commit,
                       variables=bundle.assignment.vars,
                       identity=say.identity_for(bundle.assignment.hostname))
    with console.step(f"install {bundle.role.name} {bundle.version}") as step:
        outcome = install(bundle, state, env=env, console=console)
        step.note("unchanged: nothing to do" if not outcome.changed
                  else f"{len(bundle.files)} files into {outcome.installed.path}")
    say.set_context(outcome.installed)
    if outcome.repaired:
        say.report("drift", "warn", f"{len(outcome.repaired)} installed file(s) had changed "
                   "on disk: reinstalled from the verified bundle",
                   {"files_changed": list(outcome.repaired), "repaired": True})
    elif outcome.changed:
        say.report("install", "ok", f"installed {bundle.role.name} {bundle.version}",
                   {"previous": outcome.previous.version if outcome.previous else None,
                    "files": len(bundle.files)})
    say.save_status("install", "ok", "installed" if outcome.changed else "unchanged")
    return outcome.changed
