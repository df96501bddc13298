"""The pipeline's install stage: a verified bundle into ``current``, said as events.

:func:`install_bundle` is what ``Node`` calls after a good pull (docs/contract.md §5.1).
A version marked bad (``bad.json``: it failed to start or failed its health checks) is
never installed again; the node says so and keeps what runs. The role's secrets are
decrypted and placed here too (:mod:`bootpull.role_secrets`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from bootpull import role_secrets, role_users
from bootpull.console import Console
from bootpull.errors import HookFailed, RunError
from bootpull.install import bundle_id, install
from bootpull.narrator import Narrator
from bootpull.state import StateDir
from bootpull.supervise import contract_env

if TYPE_CHECKING:
    from bootpull.bundle import Bundle, RepoSettings
    from bootpull.state import Installed


def install_bundle(bundle: Bundle, state: StateDir, say: Narrator, console: Console, *,
                   age_identity: Any = None, settings: RepoSettings | None = None) -> bool:
    """Install ``bundle`` unless it failed before; True if ``current`` changed. A bad
    version with nothing installed raises RunError (there is nothing else to run).

    The bundle's secrets are decrypted with ``age_identity`` (a ``pyrage.x25519.Identity``,
    the node's ``identity.age``) before anything is written, and placed in the role's
    ``$BOOTPULL_SECRETS_DIR`` before its hooks run (:mod:`bootpull.role_secrets`). A
    secret it cannot decrypt, or secrets and no identity, is an InstallError: nothing is
    written and the previous install keeps running. When the install fails the previous
    secrets are put back.
    """
    ident = bundle_id(bundle)
    bad = state.bad_ids()
    if ident in bad:
        message = (f"{bundle.role.name} {bundle.version} failed before "
                   f"({bad[ident]}); not retried")
        if say.first_time(f"bad:{ident}"):  # once per run: polling must not flap
            console.warn(message + "; publish a fixed version")
            say.report("install", "warn", message, {"bad_version": bundle.version})
        if state.current() is None:
            raise RunError(message, hint="publish a fixed version of the role")
        return False
    current = state.current()
    if settings is not None and current is not None and current.id != ident and (
            settings.held(bundle.role.name) or settings.held(current.role)):
        _hold(bundle, current, settings, say, console)
        return False
    say.held = None
    role = bundle.role.name
    secrets_dir = role_secrets.secrets_dir(role)
    data_dir = _data_dir(state, role, say, console)
    env = contract_env(role=role, version=bundle.version, commit=bundle.commit,
                       variables=bundle.assignment.vars,
                       identity=say.identity_for(bundle.assignment.hostname),
                       secrets_dir=secrets_dir, data_dir=data_dir)
    with console.step(f"install {role} {bundle.version}") as step:
        plain = role_secrets.decrypt(bundle.secrets, age_identity, role=role,
                                     who=_who(say, age_identity))
        # [run] user: made now, so that its secrets and data directory are given to it
        run_as = role_users.ensure_user(bundle.role, state, say=console.info)
        placed = role_secrets.place(plain, role, secrets_dir.parent, warn=console.warn,
                                    owner=(run_as.uid, run_as.gid) if run_as else None)
        try:
            outcome = install(bundle, state, env=env, console=console, run_as=run_as,
                              trouble=say.disk)
        except HookFailed as err:
            placed.undo()
            # The same bundle would fail the same way at every poll: never again.
            say.mark_bad(ident, err.what, bundle.version)
            say.report("install", "fail", err.what, {
                "why": err.why, "hint": err.hint, "hook": err.hook, "output": err.output,
                "bad_version": bundle.version, "exit_code": err.exit_code})
            say.save_status("install", "fail", err.what)
            err.event_sent = True
            raise
        except BaseException:
            placed.undo()
            raise
        placed.done()
        secrets = f", {len(plain)} secrets into {secrets_dir}" if plain else ""
        if outcome.relabelled:
            step.note(f"changes nothing this node installs since {outcome.relabelled}: "
                      f"the same install{secrets}")
        else:
            step.note(f"unchanged: nothing to do{secrets}" if not outcome.changed
                      else f"{len(bundle.files)} files into {outcome.installed.path}"
                      f"{secrets}")
    say.set_context(outcome.installed)
    if outcome.repaired:
        say.report("drift", "warn", f"{len(outcome.repaired)} installed file(s) had changed "
                   "on disk: reinstalled from the verified bundle",
                   {"files_changed": list(outcome.repaired), "repaired": True})
    elif outcome.relabelled:  # said by the next heartbeat, sent at once (Node._poll)
        say.relabelled = outcome.relabelled
    elif outcome.changed:
        details: dict[str, Any] = {
            "previous": outcome.previous.version if outcome.previous else None,
            "files": len(bundle.files)}
        if plain:
            details["secrets"] = sorted(p.name for p in plain)  # the names, never the bytes
        say.report("install", "ok", f"installed {role} {bundle.version}", details)
    say.save_status("install", "ok", "installed" if outcome.changed else "unchanged")
    return outcome.changed


def _who(say: Narrator, age_identity: Any) -> str:
    """``node 52-54-… (key SHA256:…, age age1…)``: this node, as an admin enrolls it."""
    identity = getattr(say, "identity", None)
    mac = identity.mac.canonical if identity is not None else "this node"
    parts = []
    key = getattr(say, "key", None)
    if key is not None:
        parts.append(f"key {key.fingerprint}")
    if age_identity is not None:
        parts.append(f"age {age_identity.to_public()}")
    return f"node {mac}" + (f" ({', '.join(parts)})" if parts else "")


def _data_dir(state: StateDir, role: str, say: Narrator, console: Console) -> Path:
    """The role's data directory, made before its hooks run; said once when it cannot
    survive a reboot (a diskless node)."""
    with say.disk.writing(f"the data directory of {role}", "the role starts without it"):
        state.ensure_data_dir(role)
    path = state.data_dir(role)
    if say.rollback_protection == "none" and say.first_time(f"data:{role}"):
        console.warn(f"the data directory of role {role} ({path}) is in RAM: this node "
                     "has no state disk, so what the role keeps there is lost at every "
                     "reboot (bootpull.state= names a disk)")
    return path


def _hold(bundle: Bundle, current: Installed, settings: RepoSettings, say: Narrator,
          console: Console) -> None:
    """The repository holds the rollout (``bootpull.toml`` ``[hold]``): keep what runs,
    and say so once per version that waits (the heartbeats stay ``warn`` meanwhile)."""
    reason = settings.hold_reason or "no reason given"
    message = (f"held by the repository ({reason}): keeps {current.role} "
               f"{current.version}, does not move to {bundle.role.name} {bundle.version}")
    say.held = message
    if say.first_time(f"hold:{bundle_id(bundle)}"):
        console.warn(message + " until 'bootpull repo unhold'")
        say.report("hold", "warn", message, {"held": True, "reason": reason,
                                             "available": bundle.version,
                                             "running": current.version})
