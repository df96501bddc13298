"""Mutation check: break the code on purpose, one line at a time, and see a test fail.

Each :class:`Mutant` names a single-line breaking change in a security-critical module
(the exact text to find, which must occur once, and what to put in its place) and the
tests that claim to cover that behaviour. For each mutant the check copies the
checkout to a temporary directory, applies the change there, and runs those tests
against the copy: the mutant is *caught* when pytest reports a failing test (exit 1).
The working tree is never touched, so the check can run beside other work.

    .venv/bin/python tests/mutation.py            # every mutant, then the summary
    .venv/bin/python tests/mutation.py --list     # the mutants and their tests
    .venv/bin/python tests/mutation.py --only trust.hash-is-length-only

It exits 0 only when every mutant is caught and the unmutated tests pass.
``tests/test_mutants.py`` checks in CI that every mutant still applies to the code.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Where the importable packages live (pyproject's [tool.setuptools.packages.find]).
PACKAGE_DIRS = ("bootstrap", "repo-layout", "homebase", "qemu", "image-build")

NODE = "bootstrap/bootpull"
HB = "homebase/bootpull_homebase"
TRUST_T = "tests/test_trust_security.py"
SAME_T = "tests/test_trust_same_length.py"
INSTALL_T = "tests/test_install.py"
CRASH_T = "tests/test_install_crash.py"
DHCP_T = "tests/test_dhcp.py"
FEEDS_T = "tests/test_homebase_feeds.py"
STORE_T = "tests/test_homebase_store.py"
API_T = "tests/test_homebase_api.py"
FLEET_T = "tests/test_homebase_fleet.py"
SCALE_T = "tests/test_homebase_scale.py"
METRICS_T = "tests/test_homebase_metrics.py"
IDENTITY_T = "tests/test_homebase_identity.py"
USERS_T = "tests/test_role_users.py"
GROUPS_T = "tests/test_groups_vars.py"
DEBS_T = "tests/test_role_debs.py"


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # relative to the checkout
    find: str  # exact text; must occur exactly once in the file
    replace: str
    tests: tuple[str, ...]  # pytest arguments: files or node ids
    breaks: str  # the behaviour the change breaks, in words


MUTANTS: tuple[Mutant, ...] = (
    # -- trust: what is signed is what is used -------------------------------------
    Mutant("trust.hash-is-length-only", f"{NODE}/trust.py",
           "if len(data) != signed.length or digest != signed.sha256:",
           "if len(data) != signed.length:",
           (SAME_T,), "a same-length substitution is accepted"),
    Mutant("trust.mode-ignored", f"{NODE}/trust.py",
           "if mode is not None and mode != signed.mode:", "if False:",
           (TRUST_T,), "a file whose mode changed after publishing is accepted"),
    Mutant("trust.unsigned-file-accepted", f"{NODE}/trust.py",
           "            if data is None:\n                return None\n",
           "            return data\n",
           (TRUST_T,), "a file present in the commit but not signed is accepted"),
    Mutant("trust.one-version-rollback", f"{NODE}/trust.py",
           "if have < floor:", "if have < floor - 1:",
           (TRUST_T,), "metadata one version older than the floor is accepted"),
    Mutant("trust.clock-ignores-last-good", f"{NODE}/trust.py",
           "        candidates.append(last)\n", "        pass\n",
           (TRUST_T,), "a clock behind the last good time judges expiry"),
    Mutant("trust.clock-ignores-build-time", f"{NODE}/trust.py",
           "candidates.append(build_time if build_time.tzinfo else "
           "build_time.replace(tzinfo=UTC))", "pass",
           (TRUST_T,), "a clock behind the image's build time judges expiry"),
    # -- pull: the role is exactly the signed set -----------------------------------
    Mutant("pull.extra-file-accepted", f"{NODE}/pull.py",
           "if extra := sorted(set(entries) - set(signed)):",
           "if extra := sorted(set(entries) - set(signed) - set(entries)):",
           (TRUST_T,), "a role file committed but not published is installed"),
    Mutant("pull.limits-ignored", f"{NODE}/pull.py",
           "if len(signed) > limits.max_files or total > limits.max_bundle_bytes:",
           "if False:",
           ("tests/test_pull_limits.py",), "a role over the repository's limits is fetched"),
    Mutant("pull.unsigned-release-fetched", f"{NODE}/pull.py",
           "if not verifier.signed_under(prefix):", "if False:",
           ("tests/test_pull.py", TRUST_T), "a pinned release with no signature is used"),
    # -- install: nothing outside the root, nothing special -------------------------
    Mutant("install.absolute-path", f"{NODE}/install.py",
           '    if path.startswith("/"):\n        raise _hostile(path, "the path is absolute")',
           '    if False:\n        raise _hostile(path, "the path is absolute")',
           (INSTALL_T,), "an absolute path in a bundle is written"),
    Mutant("install.dotdot-component", f"{NODE}/install.py",
           'if part in ("", ".", ".."):', 'if part in ("", "."):',
           (INSTALL_T,), "a '..' component escapes the install directory"),
    Mutant("install.setuid-kept", f"{NODE}/install.py",
           "elif entry.mode & 0o7000:", "elif False:",
           (INSTALL_T,), "a setuid file is installed"),
    Mutant("install.absolute-symlink", f"{NODE}/install.py",
           '    if target.startswith("/"):\n        raise _hostile(path, f"the symlink points',
           '    if False:\n        raise _hostile(path, f"the symlink points',
           (INSTALL_T,), "a symlink to an absolute path is installed"),
    # A file below a symlink of the same bundle is refused first as "both a file and a
    # directory"; the later "below a symlink" check is a second guard, so breaking it
    # alone changes nothing (an equivalent mutant) and it is not listed.
    Mutant("install.file-and-dir", f"{NODE}/install.py",
           "for name in sorted(seen & dirs):", "for name in sorted(seen & dirs - seen):",
           (INSTALL_T,), "a file is written through a symlink, or a path is file and dir"),
    Mutant("install.head-named-by-commit", f"{NODE}/install.py",
           "    if follows_head(bundle):\n        return", "    if False:\n        return",
           (f"{INSTALL_T}::test_a_head_commit_that_changes_nothing_here_is_the_same_install",),
           "every commit reinstalls and restarts every node that follows the head"),
    # -- state: all or nothing, even across a crash -----------------------------------
    Mutant("state.current-unlink-then-link", f"{NODE}/state.py",
           "    tmp.symlink_to(target)\n    tmp.replace(link)\n",
           "    with contextlib.suppress(FileNotFoundError):\n        link.unlink()\n"
           "    link.symlink_to(target)\n",
           ("tests/test_state.py", CRASH_T), "a crash while switching leaves no current"),
    Mutant("state.write-in-place", f"{NODE}/state.py",
           '    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")\n    try:\n'
           "        fd = os.open(tmp,",
           "    tmp = path\n    try:\n        fd = os.open(tmp,",
           ("tests/test_state.py", TRUST_T), "a failed write leaves a cut-short file"),
    # -- dhcp: hostile bytes are refused with a reason --------------------------------
    Mutant("dhcp.option-overrun-by-one", f"{NODE}/dhcp.py",
           "        if i + 2 + length > n:\n", "        if i + 2 + length > n + 1:\n",
           (DHCP_T,), "an option one byte past its area is read cut short"),
    Mutant("dhcp.suboption-overrun-by-one", f"{NODE}/dhcp.py",
           "        if i + 2 + length > len(raw):\n",
           "        if i + 2 + length > len(raw) + 1:\n",
           (DHCP_T,), "an option-43 sub-option one byte past its end is read"),
    Mutant("dhcp.no-end-marker", f"{NODE}/dhcp.py",
           '    if where == "options":\n        raise MalformedDhcp("the options have no END',
           '    if False:\n        raise MalformedDhcp("the options have no END',
           (DHCP_T,), "options without an END marker are accepted"),
    Mutant("dhcp.overload-file-ignored", f"{NODE}/dhcp.py",
           "        if flag[0] & 1:\n", "        if False:\n",
           (DHCP_T,), "options overloaded into the file field are lost"),
    Mutant("dhcp.any-bootfile-url", f"{NODE}/dhcp.py",
           'if not re.match(r"^https?://[^/\\s?#]+", text, re.IGNORECASE) or any(\n'
           "            c.isspace() for c in text):",
           "if False:",
           (DHCP_T, "tests/test_locate.py"), "a bootfile that is not an http(s) URL is used"),
    Mutant("dhcp.url-port-unchecked", f"{NODE}/dhcp.py",
           "        parts.port  # noqa: B018 - raises ValueError for a port that is not one\n",
           "        pass\n",
           ("tests/test_locate.py",), "a URL with a port out of range is found, then crashes"),
    # -- sntp, clock: an answer counts only for our request, never below the floor -----
    Mutant("sntp.originate-unchecked", f"{NODE}/sntp.py",
           "    if reply.originate != sent:\n", "    if False:\n",
           ("tests/test_sntp.py",), "a reply to another request (or a forged one) sets the clock"),
    Mutant("clock.floor-ignored", f"{NODE}/clock.py",
           "    if floor is not None and new < floor.timestamp():\n", "    if False:\n",
           ("tests/test_clock.py",), "an NTP answer before the image's build time is stepped to"),
    # -- store: a change is a change, and a batch is all or nothing -------------------
    Mutant("store.every-report-is-a-change", f"{HB}/store.py",
           "        changed = word != previous\n", "        changed = True\n",
           (STORE_T, FEEDS_T), "a repeated status moves the feed item's date"),
    Mutant("store.silence-not-recorded", f"{HB}/store.py",
           "        if received > silent_at:\n", "        if False:\n",
           (FEEDS_T, STORE_T), "a SILENT spell is missing from the history"),
    Mutant("store.silent-late", f"{HB}/store.py",
           "        if now > silent_at:\n", "        if now > silent_at + 60:\n",
           (FEEDS_T,), "a node turns SILENT a minute after its deadline"),
    Mutant("store.duplicate-stored-twice", f"{HB}/store.py",
           '"INSERT OR IGNORE INTO events', '"INSERT OR REPLACE INTO events',
           (API_T, STORE_T), "a resent event is counted again"),
    Mutant("store.batch-not-atomic", f"{HB}/store.py",
           '                        conn.execute("ROLLBACK TO batch")\n',
           "                        pass\n",
           (STORE_T, API_T), "a failing batch stores part of itself"),
    # -- feeds: dates follow changes, text is escaped ---------------------------------
    Mutant("feeds.rss-date-is-the-feeds-newest", f"{HB}/feeds.py",
           "entry.pubDate(_dt(item.date))", "entry.pubDate(_dt(newest))",
           (FEEDS_T,), "an RSS item's date moves with any other node's change"),
    Mutant("feeds.atom-date-is-the-feeds-newest", f"{HB}/feeds.py",
           "entry.updated(_dt(item.date))", "entry.updated(_dt(newest))",
           (FEEDS_T,), "an Atom entry's date moves with any other node's change"),
    Mutant("feeds.date-is-last-report", f"{HB}/feeds.py",
           "status=node.status, date=start.received,",
           "status=node.status, date=node.last_report,",
           (FEEDS_T,), "an item's date moves with every report"),
    Mutant("feeds.message-unescaped", f"{HB}/feeds.py",
           "                f\"{esc(str(event.get('message', '')))}</p>\")",
           "                f\"{event.get('message', '')}</p>\")",
           (FEEDS_T,), "markup in an event message reaches the feed as markup"),
    Mutant("feeds.control-characters-kept", f"{HB}/feeds.py",
           '    return _NOT_XML.sub("\\ufffd", text)', "    return text",
           (FEEDS_T,), "a control character makes the feed invalid XML"),
    Mutant("feeds.cache-outlives-silence", f"{HB}/feeds.py",
           'valid_until=min(pending, default=float("inf")))',
           'valid_until=float("inf"))',
           (FEEDS_T,), "a cached feed hides a node that fell SILENT"),
    # -- drift: a failed re-verification is drift -------------------------------------
    Mutant("drift.verify-fail-ignored", f"{HB}/drift.py",
           "if isinstance(verify, str) and verify.lower() in BAD_VERIFY:", "if False:",
           (STORE_T,), "a failed re-verification is not drift"),
    Mutant("drift.changed-files-ignored", f"{HB}/drift.py",
           "if isinstance(changed, list) and changed:", "if False:",
           (STORE_T,), "changed installed files are not drift"),
    # -- the fleet: what the page, drift and /healthz read -------------------------------
    Mutant("fleet.snapshot-ignores-changes", f"{HB}/fleet.py",
           "return (fleet is not None and key == wanted", "return (fleet is not None",
           (FLEET_T, SCALE_T), "a posted change is not on the page, drift or /healthz"),
    Mutant("fleet.snapshot-outlives-silence", f"{HB}/fleet.py",
           "and self.store.clock() < fleet.valid_until", "",
           (FLEET_T, METRICS_T), "a node that fell SILENT is not counted"),
    Mutant("fleet.rebuilt-per-request", f"{HB}/fleet.py",
           "and time.monotonic() - fleet.built_at < self.max_age)", "and False)",
           (SCALE_T,), "/healthz and drift walk every node per request"),
    Mutant("fleet.never-seen-hidden", f"{HB}/fleet.py",
           "    for mac in names.named_nodes():", "    for mac in ():",
           (FLEET_T,), "assigned nodes that never reported are invisible"),
    Mutant("fleet.assigned-nodes-forgotten", f"{HB}/fleet.py",
           "if intent is not None and not intent.role and grace > 0:",
           "if grace > 0:",
           (FLEET_T,), "an assigned node that is silent past the grace period is forgotten"),
    Mutant("store.item-event-expires", f"{HB}/store.py",
           '                        "UNION SELECT item_event_id FROM nodes "',
           '                        "UNION SELECT NULL FROM nodes "',
           ("tests/test_homebase_retention.py",),
           "expiry and a restart give a reader the same change under a new id"),
    # -- identity: a report is from the node whose key signed it -------------------------
    Mutant("httpsig.signature-not-checked", f"{NODE}/httpsig.py",
           "        Ed25519PublicKey.from_public_bytes(raw).verify(signature.value, base)",
           "        pass",
           ("tests/test_httpsig.py", IDENTITY_T), "any signature verifies"),
    Mutant("httpsig.body-digest-not-checked", f"{NODE}/httpsig.py",
           "if not secrets.compare_digest(sha256.value, hashlib.sha256(body).digest()):",
           "if False:",
           ("tests/test_httpsig.py", IDENTITY_T), "a signed request's body can be changed"),
    Mutant("homebase.other-key-accepted", f"{HB}/server.py",
           "if pinned is not None and pinned != verified.key:", "if False:",
           (IDENTITY_T,), "an enrolled node's reports are taken from another key"),
    Mutant("homebase.unsigned-accepted", f"{HB}/server.py",
           "                if pinned is not None:", "                if False:",
           (IDENTITY_T,), "an enrolled node's reports are taken unsigned"),
    Mutant("store.replay-accepted", f"{HB}/store.py",
           '            conn.execute("INSERT INTO nonces (key, nonce, created, received) "',
           '            conn.execute("INSERT OR IGNORE INTO nonces (key, nonce, created, '
           'received) "',
           (IDENTITY_T,), "a captured signed request is stored again"),
    # -- failure reasons reach the home base ----------------------------------------------
    Mutant("supervise.output-dropped", f"{NODE}/supervise.py",
           "                    self._lines.append(line)", "                    pass",
           ("tests/test_pipeline.py::test_a_role_that_fails_as_it_starts_says_why_in_its_event",),
           "a failing role's reason stays on the serial console"),
    Mutant("install.hook-failure-retried", f"{NODE}/install_stage.py",
           "            say.mark_bad(ident, err.what, bundle.version)", "            pass",
           ("tests/test_pipeline.py::test_a_failing_install_hook_marks_its_version_bad_and_is_"
            "not_retried",), "a failing install hook runs again at every poll (flapping)"),
    # -- roles that ship real software ------------------------------------------------------
    Mutant("privdrop.groups-kept", f"{NODE}/privdrop.py",
           "        os.setgroups([])", "        pass",
           (USERS_T,), "a role keeps the agent's supplementary groups"),
    Mutant("privdrop.no-ambient-caps", f"{NODE}/privdrop.py",
           "                prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE, cap, 0, 0)",
           "                pass",
           (USERS_T,), "a declared capability is lost at the role's exec"),
    Mutant("groups.group-wins-over-host", f"{NODE}/layout.py",
           "                continue  # the host file's own value wins", "                pass",
           (GROUPS_T,), "a group's variable overrides the host file's own"),
    Mutant("pull.group-file-unverified", f"{NODE}/pull.py",
           "    data = files.head(head, sorted(paths.values()))",
           "    data = {p: head.read(p) for p in sorted(paths.values())}",
           (GROUPS_T,), "a group file changed after publish is used"),
    Mutant("debs.image-library-copied", "repo-layout/bootpull_repo/role_debs.py",
           "            if soname in image:", "            if False:",
           (f"{DEBS_T}::test_from_debs_keeps_the_program_and_only_the_libraries_the_image_"
            "lacks",), "a role copies libraries the image already ships"),
    Mutant("debs.lock-hash-unchecked", "repo-layout/bootpull_repo/role_debs.py",
           "        if check and pin.sha256 and pin.sha256 != digest:", "        if False:",
           (f"{DEBS_T}::test_a_deb_that_differs_from_its_lock_is_refused",),
           "a .deb that differs from its lock is used"),
)


class MutantError(Exception):
    """A mutant that no longer applies: the code moved, so the list must follow."""


def apply(mutant: Mutant, text: str) -> str:
    count = text.count(mutant.find)
    if count != 1:
        raise MutantError(f"{mutant.name}: {mutant.find!r} occurs {count} times in "
                          f"{mutant.path} (must be once): update tests/mutation.py")
    return text.replace(mutant.find, mutant.replace)


def _copy_checkout(dest: Path) -> None:
    """The tracked and untracked (not ignored) files as they are in the work tree."""
    listing = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True, capture_output=True).stdout.split(b"\0")
    for name in filter(None, listing):
        src = ROOT / os.fsdecode(name)
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the work tree
        target = dest / os.fsdecode(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            target.symlink_to(src.readlink())
        else:
            shutil.copy2(src, target)


def _environment(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    # The copy's packages come before the editable install of the real checkout.
    env["PYTHONPATH"] = os.pathsep.join(str(copy / d) for d in PACKAGE_DIRS)
    env.pop("CI", None)
    return env


def _pytest(copy: Path, tests: tuple[str, ...], timeout: float) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
           "-p", "no:randomly", *tests]
    try:
        proc = subprocess.run(cmd, cwd=copy, env=_environment(copy), capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {timeout:.0f} s"
    tail = [line for line in proc.stdout.splitlines() if line.strip()][-1:]
    return proc.returncode, (tail[0] if tail else proc.stderr.strip()[-200:])


def _check_imports_come_from(copy: Path) -> None:
    probe = ("import bootpull, bootpull_homebase; "
             "print(bootpull.__file__); print(bootpull_homebase.__file__)")
    out = subprocess.run([sys.executable, "-c", probe], env=_environment(copy), check=True,
                         capture_output=True, text=True).stdout.split()
    for path in out:
        if not Path(path).resolve().is_relative_to(copy.resolve()):
            raise SystemExit(f"mutation: {path} is imported instead of the copy's module; "
                             "the check would test the unmutated code")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="run only this mutant (again for more)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per test run")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.only or m.name in args.only]
    if unknown := set(args.only) - {m.name for m in MUTANTS}:
        parser.error(f"no mutant named {', '.join(sorted(unknown))} (see --list)")
    if args.list:
        for m in chosen:
            print(f"{m.name:36} {m.path}: {m.breaks}\n{'':36} tests: {' '.join(m.tests)}")
        return 0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bootpull-mutation-") as tmp:
        copy = Path(tmp) / "checkout"
        _copy_checkout(copy)
        _check_imports_come_from(copy)
        originals = {m.path: (copy / m.path).read_text() for m in chosen}
        for m in chosen:
            apply(m, originals[m.path])  # every mutant must apply before any runs
        baseline = tuple(sorted({t for m in chosen for t in m.tests}))
        code, tail = _pytest(copy, baseline, args.timeout * 4)
        if code != 0:
            print(f"mutation: the unmutated tests do not pass ({tail}); fix them first")
            return 2
        print(f"mutation: baseline passes ({len(baseline)} test files, "
              f"{time.monotonic() - started:.0f} s)")
        survivors, errors = [], []
        for m in chosen:
            began = time.monotonic()
            target = copy / m.path
            target.write_text(apply(m, originals[m.path]))
            try:
                code, tail = _pytest(copy, m.tests, args.timeout)
            finally:
                target.write_text(originals[m.path])
            verdict = {1: "caught"}.get(code, "SURVIVED" if code == 0 else f"error {code}")
            print(f"  {verdict:9} {m.name:36} {time.monotonic() - began:5.1f} s  {tail}")
            if code == 0:
                survivors.append(m)
            elif code != 1:
                errors.append(m)
    caught = len(chosen) - len(survivors) - len(errors)
    print(f"mutation: {caught}/{len(chosen)} mutants caught in "
          f"{time.monotonic() - started:.0f} s")
    for m in survivors:
        print(f"  survived: {m.name} ({m.path}): {m.breaks}; no test in {' '.join(m.tests)} "
              "noticed")
    for m in errors:
        print(f"  error: {m.name}: the tests did not run to a verdict (see above)")
    return 0 if caught == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
