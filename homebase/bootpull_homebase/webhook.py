"""``--webhook URL``: one JSON POST per node status change, SILENT included.

The change log (:mod:`bootpull_homebase.watch`) hands every change to
:meth:`Webhook.notify`, which only puts it on a bounded in-memory queue: a slow, hung or
dead receiver never delays ingest or the change log. A worker thread POSTs the payloads
one at a time, in order, each as ``application/json`` with ``User-Agent:
bootpull-homebase``::

    {"node": "52-54-00-00-00-01",           # the node's MAC (canonical)
     "hostname": "web-1", "role": "web", "version": "1.0", "commit": "<sha or ''>",
     "status": "SILENT",                    # OK, WARN, FAIL or SILENT
     "previous": "OK",                      # null: a node the home base had not seen
     "message": "web-1 web@1.0: OK -> SILENT (no report since 2027-01-15T08:00:00Z)",
     "time": "2027-01-15T08:03:20Z",        # when the change was seen (RFC 3339, UTC)
     "last_report": "2027-01-15T08:00:00Z"} # when the node last reported

Any 2xx is delivered. 5xx, 408, 429 (after its ``Retry-After`` seconds, capped),
connection errors and timeouts are retried with full-jitter exponential backoff (1 s
doubling to 60 s) for up to 8 attempts or an hour after the change; other answers (4xx,
a redirect) are permanent and not retried. Every payload given up is one console
warning, never a traceback. When the queue is full (10,000) the oldest waiting change is
dropped, so the newest news wins. Changes still queued when the home base stops are
lost: the status page and feeds remain the record; the webhook is the alarm bell.
"""

from __future__ import annotations

import collections
import http.client
import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from bootpull.console import Console
from bootpull.errors import UsageError

QUEUE_LIMIT = 10_000  # payloads waiting; past that the oldest is dropped
TIMEOUT = 10.0  # seconds for one POST (connect and answer)
ATTEMPTS = 8  # POSTs of one payload at most
MAX_AGE = 3600.0  # seconds after notify() past which a payload is not retried
BASE = 1.0  # first backoff ceiling, seconds; doubles per retry
CAP = 60.0  # backoff ceiling, seconds
RETRY_AFTER_CAP = 300.0  # a receiver's Retry-After is honoured up to this
USER_AGENT = "bootpull-homebase"
_RETRIED_4XX = frozenset({408, 429})


def check_url(url: str) -> str:
    """``url`` if it is an http(s) URL with a host; else UsageError (at startup, not at
    the first change hours later)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--webhook {url!r} is not an http or https URL",
                         hint="use e.g. --webhook https://alerts.example.org/bootpull")
    return url.strip()


def backoff(retry: int, *, base: float = BASE, cap: float = CAP,
            rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry number ``retry`` (1, 2, ...): full jitter, i.e.
    uniform in [0, min(cap, base * 2**(retry-1))], so many home bases (or many
    payloads) hitting one recovering receiver do not retry in lockstep."""
    ceiling = min(cap, base * 2.0 ** min(max(retry - 1, 0), 64))
    return rand() * ceiling


def retry_after(value: str | None, cap: float = RETRY_AFTER_CAP) -> float | None:
    """A ``Retry-After`` in seconds, capped; None if absent or an HTTP date (then the
    ordinary backoff applies)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if not seconds >= 0:  # NaN and negatives
        return None
    return min(seconds, cap)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a hop: urllib would turn the POST into a GET."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _Outcome:
    """What one POST came to: delivered, retry (after ``wait`` if the receiver said), or
    permanent failure; ``error`` is the one-line reason."""

    def __init__(self, kind: str, error: str = "", wait: float | None = None) -> None:
        self.kind = kind
        self.error = error
        self.wait = wait


class Webhook:
    """A queue and a worker thread that POST payloads to one URL (module docstring)."""

    def __init__(self, url: str, console: Console, *, timeout: float = TIMEOUT,
                 attempts: int = ATTEMPTS, max_age: float = MAX_AGE, base: float = BASE,
                 cap: float = CAP, retry_after_cap: float = RETRY_AFTER_CAP,
                 limit: int = QUEUE_LIMIT,
                 rand: Callable[[], float] = random.random) -> None:
        self.url = check_url(url)
        self.console = console
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.max_age = max_age
        self.base = base
        self.cap = cap
        self.retry_after_cap = retry_after_cap
        self.limit = max(1, limit)
        self.rand = rand
        self.sent = 0  # payloads delivered (2xx)
        self.retries = 0  # POSTs repeated after a retryable failure
        self.failed = 0  # payloads given up: permanent answer, attempts or age exhausted
        self.dropped = 0  # payloads dropped unsent because the queue was full
        self.last_error: str | None = None
        self._queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self._busy = False  # a payload is out of the queue and being delivered
        self._warned_drops = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._opener = urllib.request.build_opener(_NoRedirect())
        self._thread = threading.Thread(target=self._run, name="bootpull-webhook",
                                        daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        """Payloads not yet settled: waiting, plus the one being delivered."""
        return len(self._queue) + (1 if self._busy else 0)

    def notify(self, payload: dict[str, Any]) -> None:
        """Queue ``payload`` for delivery; never waits for the network."""
        body = json.dumps(payload, sort_keys=True).encode()
        with self._cond:
            if len(self._queue) >= self.limit:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append((time.monotonic(), body))
            self._cond.notify()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker: a backoff wait ends at once, a POST in flight within its
        own timeout at worst (the thread is a daemon; ``timeout`` bounds this call)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stop.is_set():
                    self._cond.wait()
                if self._stop.is_set():
                    return
                queued_at, body = self._queue.popleft()
                self._busy = True
            try:
                self._warn_drops()
                self._deliver(queued_at, body)
            except Exception as exc:  # noqa: BLE001 - the worker must not die of one payload
                self._give_up(f"{type(exc).__name__}: {exc}")
            finally:
                self._busy = False

    def _warn_drops(self) -> None:
        """One line per burst of drops, from the worker (notify() never writes)."""
        dropped = self.dropped
        if dropped > self._warned_drops:
            self.console.warn(f"webhook: queue full ({self.limit}); dropped "
                              f"{dropped - self._warned_drops} oldest change(s), "
                              f"{dropped} in all")
            self._warned_drops = dropped

    def _deliver(self, queued_at: float, body: bytes) -> None:
        attempt = 1
        while True:
            outcome = self._post(body)
            if outcome.kind == "ok":
                self.sent += 1
                return
            self.last_error = outcome.error
            if outcome.kind == "permanent":
                self._give_up(outcome.error, permanent=True)
                return
            wait = (outcome.wait if outcome.wait is not None
                    else backoff(attempt, base=self.base, cap=self.cap, rand=self.rand))
            age = time.monotonic() - queued_at
            if attempt >= self.attempts or age + wait > self.max_age:
                self._give_up(f"{outcome.error}; gave up after {attempt} attempt(s)")
                return
            self.console.debug(f"webhook: {outcome.error}; retry in {wait:.1f} s")
            if self._stop.wait(wait):
                return
            self.retries += 1
            attempt += 1

    def _give_up(self, error: str, *, permanent: bool = False) -> None:
        self.failed += 1
        self.last_error = error
        hint = " (not retried: fix the URL or the receiver)" if permanent else ""
        self.console.warn(f"webhook {self.url}: change not delivered: {error}{hint}")

    def _post(self, body: bytes) -> _Outcome:
        request = urllib.request.Request(  # noqa: S310 - http(s) only: check_url()
            self.url, data=body, method="POST",
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT})
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                response.read(64 * 1024)  # let the receiver finish its answer
            return _Outcome("ok")
        except urllib.error.HTTPError as exc:
            exc.close()
            code = exc.code
            error = f"HTTP {code} {exc.reason}".rstrip()
            if code >= 500 or code in _RETRIED_4XX:
                wait = (retry_after(exc.headers.get("Retry-After"), self.retry_after_cap)
                        if code in (429, 503) else None)
                return _Outcome("retry", error, wait)
            return _Outcome("permanent", error)
        except urllib.error.URLError as exc:
            return _Outcome("retry", f"cannot reach the receiver: {exc.reason}")
        except (OSError, http.client.HTTPException) as exc:  # timeouts, resets, garbage
            return _Outcome("retry", f"{type(exc).__name__}: {exc}".rstrip(": "))
