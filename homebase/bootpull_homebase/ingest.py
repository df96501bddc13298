"""Group commit: many concurrent POSTs, one transaction and one fsync.

Request threads hand their validated events to :class:`Ingest` and wait. One writer
thread takes everything queued so far, stores it with
:meth:`EventStore.append_many` (each request still all-or-nothing), and only then
wakes the requests, which acknowledge. Nothing is acknowledged before it is durable.

After the requests are answered, the same thread runs the store's expiry when it is due
(:meth:`EventStore.expire_due`: at most once an hour, a bounded number of rows), so
retention needs no thread of its own and never delays an acknowledgement.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from bootpull_homebase.store import AppendResult, EventStore, Refused, Signed, StoreError

MAX_GROUP = 256
_Job = tuple[Sequence[dict[str, Any]], Signed | None, "Future[AppendResult]"]


class Ingest:
    def __init__(self, store: EventStore,
                 on_change: Callable[[set[str]], None] | None = None,
                 on_fleet_change: Callable[[], None] | None = None) -> None:
        self.store = store
        self._on_change = on_change
        self._on_fleet_change = on_fleet_change
        self._jobs: queue.Queue[_Job | None]
        self._jobs = queue.Queue()
        #: why the last write failed, until one succeeds again (healthz reports it)
        self.last_failure: str | None = None
        #: why the last expiry run failed (a full disk), until one succeeds
        self.expiry_failure: str | None = None
        self._thread = threading.Thread(target=self._run, name="bootpull-ingest", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, events: Sequence[dict[str, Any]], timeout: float = 60.0, *,
               signed: Signed | None = None) -> AppendResult:
        """Store ``events`` durably, or raise StoreError (:class:`Refused` for a replayed
        signature); blocks until committed."""
        future: Future[AppendResult] = Future()
        self._jobs.put((events, signed, future))
        return future.result(timeout=timeout)

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            group = [job]
            while len(group) < MAX_GROUP:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._jobs.put(None)
                    break
                group.append(more)
            try:
                results = self.store.append_many([events for events, _, _ in group],
                                                 [signed for _, signed, _ in group])
            except Exception as exc:  # noqa: BLE001 - every waiter must hear of the failure
                failure = StoreError("the events could not be stored", why=repr(exc))
                results = [failure for _ in group]
            # Feeds are invalidated before anyone hears "stored", so a client that
            # reads a feed right after its POST sees its own change.
            changed: set[str] = set()
            fleet = False
            for result in results:
                if not isinstance(result, StoreError):
                    changed |= result.roles_changed
                    fleet |= result.fleet_changed
            if changed and self._on_change is not None:
                self._on_change(changed)
            if fleet and self._on_fleet_change is not None:
                self._on_fleet_change()
            # A refused signature (a replay) is the client's fault, not a failing write.
            failures = [r for r in results
                        if isinstance(r, StoreError) and not isinstance(r, Refused)]
            if failures and len(failures) == len(results):
                self.last_failure = str(failures[0])
            else:
                self.last_failure = None
            for (_, _, future), result in zip(group, results, strict=True):
                if isinstance(result, StoreError):
                    future.set_exception(result)
                else:
                    future.set_result(result)
            try:
                self.store.expire_due()
                self.expiry_failure = None
            except Exception as exc:  # noqa: BLE001 - retried when next due; ingest goes on
                self.expiry_failure = repr(exc)
