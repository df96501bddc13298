"""What the node is told at boot, parsed once: the kernel command line and the options.

The kernel command line (docs/contract.md §2.6) is read here and nowhere else.
:data:`KERNEL_KEYS` is the one table of ``bootpull.*`` keys; :class:`KernelLine` holds
their typed values; :class:`Settings` (``node run``) and :class:`DiscoverSettings`
(``node discover``) are what each command makes of them and of its own options
(§3.1), an option winning over its key. Later stages get typed values only: no dict of
raw parameters leaves this module.

A value that does not parse is kept in :attr:`KernelLine.problems`, and each command
decides what it means, so that both keep their exit codes (§6):

- ``bootpull.mac=`` that is not a MAC: ``node run`` exits 2 (``--mac: ...``); ``node
  discover`` exits 10 with its banner, once its console is open. An empty
  ``bootpull.mac=`` is no override in ``node run`` and a bad MAC in ``node discover``.
- ``bootpull.log=`` that is not a level: exit 2 in both (``--log: ...`` in ``node run``),
  unless ``--log`` is given.
- ``bootpull.poll=`` or ``bootpull.heartbeat=`` that is not a number: exit 2 in ``node
  run``; ``node discover`` does not read them.
- ``bootpull.dhcp_delay=`` that is not a number from 0 to 60: the default, silently.

Keys that are not in the table are kept in :attr:`KernelLine.unknown_keys`, so that a
typo is warned about (:func:`unknown_key_warnings`) instead of doing nothing. The keys
that only the image's init reads (``state``, ``state_format``, ``state_wait``,
``rescue``, ``init.backoff``) are in the table, so they are not warned about, but the node does
nothing with them: their meaning and their accepted values are the init's
(image-build/bootpull_image/init).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bootpull import cmdline
from bootpull.console import Level
from bootpull.errors import UsageError
from bootpull.mac import Mac, MacError

if TYPE_CHECKING:  # imported when a Settings is made: node discover does without them
    from bootpull.supervise import Policy

#: Where the image keeps the trust anchors (``bootpull image build --trust`` puts them there).
DEFAULT_TRUST = Path("/etc/bootpull/trust.json")
DEFAULT_POLL = 60.0
DEFAULT_HEARTBEAT = 60.0  # well inside the home base's default SILENT deadline (300 s)
#: the upper bound of the random wait before the first DHCPDISCOVER (RFC 2131 §4.4.1)
DEFAULT_DHCP_DELAY = 1.0
MAX_DHCP_DELAY = 60.0
DEFAULT_DISCOVER_TIMEOUT = 30.0
#: ``--oneshot``: how long the node keeps trying to deliver its spool before it exits
DEFAULT_REPORT_DEADLINE = 30.0
MAX_REPORT_DEADLINE = 600.0
#: A file only the boot image has (``bootpull image build`` writes it). Outside the
#: image, DHCP goes out only on interfaces named with ``--interface`` or
#: ``bootpull.interface=`` (:func:`check_dhcp_allowed`); tests point this elsewhere.
IMAGE_MARKER = Path("/etc/bootpull/image.conf")
#: What the state directory's filesystem is read from (docs/security.md, diskless nodes)
MOUNTS_FILE = Path("/proc/mounts")


@dataclass(frozen=True)
class KernelKey:
    """One ``bootpull.KEY=VALUE`` key: a row of the table in docs/contract.md §2.6."""

    name: str
    read_by: str  # "node" (run and discover), "node run", "init", or "init, node"
    meaning: str


KERNEL_KEYS: tuple[KernelKey, ...] = (
    KernelKey("repo", "node", "the repository URL (docs/contract.md §2.1, source 1)"),
    KernelKey("report", "node", "the report URL (docs/contract.md §2.5, order 3)"),
    KernelKey("interface", "node", "only these interfaces, in this order; repeatable"),
    KernelKey("mac", "node", "the identity override, any notation"),
    KernelKey("log", "node", "the console level: debug, info, warn or error"),
    KernelKey("console", "init, node", "the console device, as in ttyS0,115200"),
    KernelKey("dhcp_delay", "node", "the upper bound of the wait before the first DISCOVER"),
    KernelKey("poll", "node run", "seconds between polls of the repository"),
    KernelKey("heartbeat", "node run", "seconds between heartbeat events"),
    KernelKey("trust", "node run", "the trust anchors file, unless --trust is given"),
    KernelKey("build_time", "node run", "the image build time file, the clock floor"),
    KernelKey("ntp", "node run", "NTP servers HOST[:PORT][,HOST...] instead of option 42"),
    KernelKey("require_state", "node run", "1: install nothing without a state disk"),
    KernelKey("report_deadline", "node run",
              "--oneshot: seconds to keep trying to deliver the spool before exiting"),
    KernelKey("state", "init", "an ext4 disk mounted on the state directory"),
    KernelKey("state_format", "init", "'blank': make a blank disk the state disk"),
    KernelKey("state_wait", "init", "seconds the state disk may take to mount"),
    KernelKey("rescue", "init", "a shell on the console instead of retrying"),
    KernelKey("init.backoff", "init", "the first wait before the init runs the node again"),
)
KNOWN_KEYS = frozenset(key.name for key in KERNEL_KEYS)


@dataclass(frozen=True)
class Problem:
    """A known key whose value could not be read: ``bootpull.<key>=<value>``, and why."""

    key: str
    value: str
    message: str

    @property
    def text(self) -> str:
        """``bootpull.poll=soon: not a number of seconds``."""
        return f"bootpull.{self.key}={self.value}: {self.message}"


@dataclass(frozen=True)
class KernelLine:
    """The ``bootpull.*`` keys of one kernel command line, typed.

    A field is named as its key and is ``None`` (or empty) when the key is not given; the
    value given last counts, and ``interface`` adds up. ``repo`` keeps an empty value
    (``bootpull.repo=`` is then a URL that is not one); other empty values count as not
    given.
    """

    repo: str | None = None
    report: str | None = None
    interface: tuple[str, ...] = ()
    mac: Mac | None = None
    log: Level | None = None
    console: str | None = None
    dhcp_delay: float = DEFAULT_DHCP_DELAY
    poll: float = DEFAULT_POLL
    heartbeat: float = DEFAULT_HEARTBEAT
    trust: Path | None = None
    build_time: Path | None = None
    ntp: tuple[str, ...] = ()
    require_state: bool = False
    report_deadline: float = DEFAULT_REPORT_DEADLINE
    unknown_keys: tuple[str, ...] = ()
    problems: tuple[Problem, ...] = ()

    @classmethod
    def parse(cls, text: str) -> KernelLine:
        """The kernel command line ``text`` (as in /proc/cmdline). Never raises."""
        return cls._typed(cmdline.parse(text))

    @classmethod
    def read(cls, path: str | Path | None = None) -> KernelLine:
        """``--cmdline FILE``, or the running kernel's; an unreadable file is empty."""
        return cls._typed(cmdline.read(Path(path)) if path else cmdline.read())

    def problem(self, key: str) -> Problem | None:
        """The problem with ``bootpull.<key>=``, if its value could not be read."""
        return next((p for p in self.problems if p.key == key), None)

    @classmethod
    def _typed(cls, params: dict[str, list[str]]) -> KernelLine:
        problems: list[Problem] = []

        def text(key: str) -> str | None:
            assert key in KNOWN_KEYS, key
            return cmdline.last(params, key)

        mac = None
        mac_text = text("mac")
        if mac_text is not None:
            try:
                mac = Mac.parse(mac_text)
            except MacError as exc:
                problems.append(Problem("mac", mac_text, str(exc)))
        log = None
        log_text = text("log")
        if log_text:
            try:
                log = Level.parse(log_text)
            except ValueError as exc:
                problems.append(Problem("log", log_text, str(exc)))

        def seconds(key: str, default: float) -> float:
            value = text(key)
            try:
                return float(value) if value else default
            except ValueError:
                problems.append(Problem(key, value or "", "not a number of seconds"))
                return default

        def path(key: str) -> Path | None:
            value = text(key)
            return Path(value) if value else None

        poll = seconds("poll", DEFAULT_POLL)
        heartbeat = seconds("heartbeat", DEFAULT_HEARTBEAT)
        report_deadline = seconds("report_deadline", DEFAULT_REPORT_DEADLINE)
        if not 0 <= report_deadline <= MAX_REPORT_DEADLINE:
            problems.append(Problem("report_deadline", text("report_deadline") or "",
                                    f"not from 0 to {MAX_REPORT_DEADLINE:g} seconds"))
            report_deadline = DEFAULT_REPORT_DEADLINE
        require_state = False
        require_text = text("require_state")
        if require_text in ("1", "0"):
            require_state = require_text == "1"
        elif require_text is not None:
            problems.append(Problem("require_state", require_text, "not 1 or 0"))
        return cls(
            repo=text("repo"), report=text("report") or None,
            interface=tuple(params.get("interface", [])), mac=mac, log=log,
            console=text("console") or None, dhcp_delay=_dhcp_delay(text("dhcp_delay")),
            poll=poll, heartbeat=heartbeat, trust=path("trust"),
            build_time=path("build_time"), require_state=require_state,
            ntp=tuple(h.strip() for h in (text("ntp") or "").split(",") if h.strip()),
            report_deadline=report_deadline,
            unknown_keys=tuple(key for key in params if key not in KNOWN_KEYS),
            problems=tuple(problems),
        )


def _dhcp_delay(text: str | None) -> float:
    """0 to 60 seconds; anything else (not a number, out of range) is the default."""
    try:
        value = float(text) if text is not None else DEFAULT_DHCP_DELAY
    except ValueError:
        return DEFAULT_DHCP_DELAY
    return value if 0 <= value <= MAX_DHCP_DELAY else DEFAULT_DHCP_DELAY


def unknown_key_warnings(keys: Sequence[str]) -> list[str]:
    """One console line per unknown ``bootpull.*`` key, naming the key it may be a typo of."""
    from difflib import get_close_matches

    lines = []
    for key in keys:
        close = get_close_matches(key, sorted(KNOWN_KEYS), n=1)
        guess = f" (did you mean bootpull.{close[0]}=?)" if close else ""
        lines.append(f"ignored unknown kernel key bootpull.{key[:40]}={guess}")
    return lines


def _level(option: str | None, kernel: KernelLine, label: str) -> Level:
    """``--log``, else ``bootpull.log=``, else info; a bad level is a usage error."""
    if option:
        try:
            return Level.parse(option)
        except ValueError as exc:
            raise UsageError(f"{label}{exc}") from None
    problem = kernel.problem("log")
    if problem is not None:
        raise UsageError(f"{label}{problem.message}")
    return kernel.log or Level.INFO


def _default_policy() -> Policy:
    from bootpull.supervise import Policy

    return Policy()


def _build_time_file() -> Path:
    from bootpull.trust import BUILD_TIME_FILE

    return BUILD_TIME_FILE


@dataclass(frozen=True)
class Settings:
    """``node run``: what its options and the kernel command line say; never changes in a run."""

    state_dir: Path
    repo_url: str | None  # --repo; with --mac, no DHCP at all (bootpull.repo=: kernel_repo_url)
    mac: Mac | None  # --mac, else bootpull.mac=
    trust_file: Path
    oneshot: bool
    interfaces: tuple[str, ...] = ()
    console_spec: str | None = None
    log_level: Level = Level.INFO
    report_url: str | None = None  # bootpull.report= on the kernel command line
    poll_interval: float = DEFAULT_POLL
    heartbeat_interval: float = DEFAULT_HEARTBEAT
    discover_timeout: float = DEFAULT_DISCOVER_TIMEOUT
    fetch_deadline: float = 300.0  # for one fetch, across its retries
    #: with an install on disk, a fetch gives up this soon and the install runs
    #: (the repository is retried in the background)
    fetch_deadline_with_lkg: float = 30.0
    policy: Policy = field(default_factory=_default_policy)
    #: the image's build time (RFC 3339 or epoch seconds), the floor of the clock that
    #: metadata expiry is judged by; ``bootpull.build_time=PATH`` moves it (tests)
    build_time_file: Path = field(default_factory=_build_time_file)
    #: ``bootpull.repo=``: the ``cmdline`` source when ``--repo`` is not given
    kernel_repo_url: str | None = None
    dhcp_delay: float = DEFAULT_DHCP_DELAY  # bootpull.dhcp_delay=
    unknown_keys: tuple[str, ...] = ()  # bootpull.* keys not in KERNEL_KEYS
    ntp_servers: tuple[str, ...] = ()  # bootpull.ntp=; else the lease's option 42
    #: what sets the clock (tests); None: the system clock, as root in the image only
    clock_setter: Callable[[float], None] | None = None
    #: bootpull.require_state=1: install nothing unless the version floor persists
    require_state: bool = False
    #: --oneshot: seconds to keep trying to deliver the spool (bootpull.report_deadline=)
    report_deadline: float = DEFAULT_REPORT_DEADLINE
    #: where the state directory's filesystem type is read (tests point it elsewhere)
    mounts_file: Path = MOUNTS_FILE
    #: --ca FILE...: PEM CA certificates https trusts besides the system's (the image's
    #: bundle, which ``bootpull image build --ca`` extends); checked when parsed
    ca_files: tuple[Path, ...] = ()

    @classmethod
    def from_args(cls, args: argparse.Namespace, kernel: KernelLine | None = None) -> Settings:
        """``node run``'s options over ``kernel`` (default: ``--cmdline FILE`` or /proc/cmdline).

        A bad MAC, log level, ``bootpull.poll=`` or ``bootpull.heartbeat=``, or a ``--ca``
        file that is not a PEM certificate is a :class:`UsageError` (exit 2), checked in
        that order.
        """
        kernel = kernel if kernel is not None else KernelLine.read(args.cmdline)
        mac = kernel.mac
        problem = kernel.problem("mac")
        try:
            if args.mac:
                mac = Mac.parse(args.mac)
            elif problem is not None and problem.value:
                raise MacError(problem.message)
        except MacError as exc:
            raise UsageError(f"--mac: {exc}") from None
        level = _level(args.log, kernel, "--log: ")
        if args.repo is not None:
            _check_repo_option(args.repo)
        for key in ("poll", "heartbeat", "require_state", "report_deadline"):
            problem = kernel.problem(key)
            if problem is not None:
                raise UsageError(problem.text)
        ca_files = tuple(Path(f) for f in args.ca or ())
        if ca_files:  # a file that is not a PEM certificate: exit 2 now, not at the fetch
            from bootpull.fetch_http import tls_context

            tls_context(ca_files)
        return cls(
            state_dir=Path(args.state_dir),
            repo_url=args.repo,
            mac=mac,
            trust_file=Path(args.trust) if args.trust else kernel.trust or DEFAULT_TRUST,
            oneshot=bool(args.oneshot),
            interfaces=tuple(args.interface or kernel.interface),
            console_spec=args.console or kernel.console,
            log_level=level,
            report_url=kernel.report,
            poll_interval=max(0.1, kernel.poll),
            heartbeat_interval=max(0.1, kernel.heartbeat),
            build_time_file=kernel.build_time or _build_time_file(),
            kernel_repo_url=kernel.repo,
            dhcp_delay=kernel.dhcp_delay,
            unknown_keys=kernel.unknown_keys,
            ntp_servers=kernel.ntp,
            require_state=kernel.require_state,
            report_deadline=kernel.report_deadline,
            ca_files=ca_files,
        )


def in_boot_image() -> bool:
    """True in the boot image: :data:`IMAGE_MARKER` exists."""
    return IMAGE_MARKER.is_file()


def check_dhcp_allowed(command: str, interfaces: Sequence[str]) -> None:
    """Outside the boot image, DHCP only on interfaces named with ``--interface`` or
    ``bootpull.interface=``: an admin's workstation must not send DISCOVERs on every one
    of its interfaces. A :class:`UsageError` (exit 2), raised before any packet."""
    if interfaces or in_boot_image():
        return
    skip = (" or give --repo URL and --mac MAC, which do no DHCP at all"
            if command == "node run" else "")
    raise UsageError(
        f"{command}: no --interface given, and this is not the boot image",
        why=f"{IMAGE_MARKER} does not exist, so this looks like an admin's machine; "
        "without --interface it would send DHCP DISCOVERs on every one of its interfaces",
        hint="name the interface(s) to get a lease on: --interface IF (repeatable) or "
        f"bootpull.interface=IF on the kernel command line{skip}")


def _check_repo_option(url: str) -> None:
    """``--repo`` must be a URL the fetch can use: a typo is a usage error (exit 2) at
    once, not a traceback or a node that retries a URL that can never work."""
    from bootpull.dhcp import MalformedDhcp, check_url

    try:
        check_url(url, "--repo")
    except MalformedDhcp as exc:
        raise UsageError(f"{exc}; give the repository as http://HOST[:PORT]/PATH") from None


@dataclass(frozen=True)
class DiscoverSettings:
    """``node discover``: its options over the kernel command line (docs/contract.md §3.1)."""

    interfaces: tuple[str, ...] = ()
    discover_timeout: float = DEFAULT_DISCOVER_TIMEOUT  # --timeout
    configure: bool = True  # not --no-configure
    as_json: bool = False  # --json
    console_spec: str | None = None
    log_level: Level = Level.INFO
    repo_url: str | None = None  # bootpull.repo=
    mac: Mac | None = None  # bootpull.mac=
    #: why ``bootpull.mac=`` is not a MAC: discover fails on it (exit 10) once its
    #: console is open, so that the banner says so
    mac_error: str | None = None
    report_url: str | None = None  # bootpull.report=
    dhcp_delay: float = DEFAULT_DHCP_DELAY
    unknown_keys: tuple[str, ...] = ()

    @classmethod
    def from_args(cls, args: argparse.Namespace,
                  kernel: KernelLine | None = None) -> DiscoverSettings:
        """A bad log level is a :class:`UsageError` (exit 2), before the console opens."""
        kernel = kernel if kernel is not None else KernelLine.read(args.cmdline)
        problem = kernel.problem("mac")
        return cls(
            interfaces=tuple(args.interface or kernel.interface),
            discover_timeout=float(args.timeout),
            configure=not args.no_configure,
            as_json=bool(args.json),
            console_spec=args.console or kernel.console,
            log_level=_level(args.log, kernel, ""),
            repo_url=kernel.repo,
            mac=kernel.mac,
            mac_error=problem.message if problem is not None else None,
            report_url=kernel.report,
            dhcp_delay=kernel.dhcp_delay,
            unknown_keys=kernel.unknown_keys,
        )
