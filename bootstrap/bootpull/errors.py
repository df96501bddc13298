"""Errors are values with a remedy.

Every error bootpull raises says what happened (``what``), why (``why``) and what a
person can do about it (``hint``). Library code raises; only the CLI entry point prints
an error and picks the exit code. The exit codes are docs/contract.md §6 (``node run``).
"""

from __future__ import annotations

from typing import ClassVar


class BootpullError(Exception):
    """Base of every error bootpull reports to a person."""

    exit_code: ClassVar[int] = 1
    stage: ClassVar[str] = "bootpull"
    #: its banner is on the console already (the CLI entry point prints no second one)
    reported: bool
    #: its ``fail`` event is spooled already (a failure is reported once, not per retry)
    event_sent: bool

    def __init__(self, what: str, *, why: str = "", hint: str = "") -> None:
        super().__init__(what)
        self.what = what
        self.why = why
        self.hint = hint
        self.reported = False
        self.event_sent = False

    def __str__(self) -> str:
        parts = [self.what]
        if self.why:
            parts.append(f"because {self.why}")
        return ": ".join(parts) if len(parts) == 1 else f"{parts[0]} ({parts[1]})"


class UsageError(BootpullError):
    exit_code = 2
    stage = "usage"


class DiscoveryError(BootpullError):
    """No network identity, or no repository found (exit 10)."""

    exit_code = 10
    stage = "discover"


class FetchError(BootpullError):
    """The transport failed: the repository could not be read (exit 11)."""

    exit_code = 11
    stage = "fetch"


class NotFound(FetchError):
    """The server answered 404: no repository (or no such file of a dumb one) there."""


class TlsError(FetchError):
    """The TLS handshake failed in a way no retry mends: an untrusted, expired or not yet
    valid certificate, one for another name, no TLS at all (exit 11, never retried).
    Its hint is the fix: a CA, a name, a clock."""


class VerifyError(BootpullError):
    """The repository is wrong: content did not verify; nothing was installed (exit 12)."""

    exit_code = 12
    stage = "verify"

    def __init__(
        self,
        what: str,
        *,
        why: str = "",
        hint: str = "",
        expected: str = "",
        got: str = "",
    ) -> None:
        super().__init__(what, why=why, hint=hint)
        self.expected = expected
        self.got = got


class InstallError(BootpullError):
    """The install failed; the previous version is kept (exit 13)."""

    exit_code = 13
    stage = "install"


class HookFailed(InstallError):
    """An install hook of the bundle failed (it exited non-zero, ran too long, or could
    not start): the same bundle would fail again, so its version is marked bad."""

    def __init__(self, what: str, *, hook: str, output: str, why: str = "",
                 hint: str = "") -> None:
        super().__init__(what, why=why, hint=hint)
        self.hook = hook
        self.output = output  # the hook's last lines of stdout and stderr


class RunError(BootpullError):
    """The role failed to start, or failed its health check (exit 14). ``output``: the
    role's last lines of stdout and stderr, when it exited."""

    def __init__(self, what: str, *, why: str = "", hint: str = "", output: str = "") -> None:
        super().__init__(what, why=why, hint=hint)
        self.output = output

    exit_code = 14
    stage = "run"


class UndeliveredError(BootpullError):
    """``--oneshot``: the role ran, but events are still in the spool after the report
    deadline (exit 15); they stay there and go out on the next run."""

    exit_code = 15
    stage = "report"


class LayoutError(BootpullError):
    """A repository file is malformed. ``path`` and ``line`` say where."""

    exit_code = 12
    stage = "layout"

    def __init__(self, what: str, *, path: str, line: int = 0, hint: str = "") -> None:
        super().__init__(what, hint=hint)
        self.path = path
        self.line = line

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.what}" + (f" — {self.hint}" if self.hint else "")


class ExpiredMetadata(VerifyError):
    """The signed metadata is valid but expired (or the clock is wrong).

    The pipeline boots the last-known-good with an alarm instead of failing outright,
    and never reports itself fresh.
    """


class NotAssignedError(LayoutError):
    """The repository has neither ``hosts/<mac>.toml`` nor ``hosts/default.toml``."""


class IdentityError(InstallError):
    """The node's key files in the state directory (``identity.key``, ``identity.age``)
    cannot be read or do not parse. The hint says which file and what to do. The
    pipeline says it on the console and goes on with an ephemeral key (docs/node.md
    "The node's key")."""

    stage = "identity"


class IdentityUnwritable(IdentityError):
    """A new key could not be written to the state directory (a full, failing or
    read-only disk); nothing half-written is left. The caller goes on with an
    ephemeral key."""


class KeyRefused(UndeliveredError):
    """The home base answered 401: the key pinned for this node's MAC is another one.
    The events stay in the spool; the banner names ``bootpull repo enroll``."""
