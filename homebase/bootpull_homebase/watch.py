"""The change log: every status change, SILENT included, as it happens.

Feeds show SILENT whenever they are read; nothing *happens* at the deadline. This
thread looks every ``interval`` seconds (a cheap query: no event bodies), and for
each node whose status differs from the last look writes one console line and, with
``--syslog``, one RFC 5424 message to the central syslog servers (the node's own
format, :func:`bootpull.report.syslog_message`, with stage ``homebase``) and, with
``--webhook``, queues one JSON POST (:mod:`bootpull_homebase.webhook`). A node falling
silent therefore reaches alerting without anyone reading a feed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from bootpull.console import Console
from bootpull.report import SyslogMirror

from bootpull_homebase.store import SILENT, EventStore, rfc3339
from bootpull_homebase.webhook import Webhook

_SEVERITY = {"OK": "ok", "WARN": "warn", "FAIL": "fail", SILENT: "fail"}


class ChangeLog:
    def __init__(self, store: EventStore, console: Console, *, syslog: tuple[str, ...] = (),
                 interval: float = 5.0, webhook: str = "",
                 after_look: Callable[[], object] | None = None) -> None:
        self.store = store
        self._after_look = after_look  # the home base's periodic chores (forgetting)
        self.console = console
        self.mirror = SyslogMirror(list(syslog), console) if syslog else None
        self.webhook = Webhook(webhook, console) if webhook else None
        self.interval = interval
        self._seen: dict[str, str] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bootpull-changelog",
                                        daemon=True)
        self.changes = 0

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        if self.webhook is not None:  # after the thread: no notify() after this
            self.webhook.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.look()
                if self._after_look is not None:
                    self._after_look()
            except Exception as exc:  # noqa: BLE001 - the change log must not die of one error
                self.console.warn(f"change log: {type(exc).__name__}: {exc}")

    def look(self) -> None:
        """Compare every node's status with the last look; log, mirror and queue the
        webhook for each change."""
        self.store.touch_alive()
        now = self.store.clock()
        rows = self.store.statuses(now=now)
        current = {mac: status for mac, status, _ in rows}
        if self._seen is None:  # the first look only learns (no flood after a restart)
            self._seen = current
            return
        for mac, status, info in rows:
            before = self._seen.get(mac)
            if before == status:
                continue
            self.changes += 1
            word = f"{before} -> {status}" if before else f"new node, {status}"
            message = (f"{info['hostname'] or mac} {info['role']}@{info['version']}: {word}"
                       + (f" (no report since {rfc3339(info['last_report'])})"
                          if status == SILENT else ""))
            self.console.info(f"node {mac}: {message}")
            if self.mirror is not None:
                self.mirror.send(self._event(mac, status, message, info, now))
            if self.webhook is not None:
                self.webhook.notify(self._payload(mac, status, before, message, info, now))
        self._seen = current

    @staticmethod
    def _event(mac: str, status: str, message: str, info: dict[str, Any],
               now: float) -> dict[str, Any]:
        return {"node": mac, "hostname": info["hostname"], "role": info["role"],
                "version": info["version"], "commit": info["commit"],
                "status": _SEVERITY[status], "stage": "homebase", "message": message,
                "time": rfc3339(now)}

    @staticmethod
    def _payload(mac: str, status: str, before: str | None, message: str,
                 info: dict[str, Any], now: float) -> dict[str, Any]:
        """The webhook's JSON (format: :mod:`bootpull_homebase.webhook`)."""
        return {"node": mac, "hostname": info["hostname"], "role": info["role"],
                "version": info["version"], "commit": info["commit"], "status": status,
                "previous": before, "message": message, "time": rfc3339(now),
                "last_report": rfc3339(info["last_report"])}
