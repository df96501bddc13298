"""The event record, format 1 (docs/contract.md §7): what nodes report to the home base.

The node builds events with :func:`make_event`; the home base checks every posted
one with :func:`validate_event`, which returns a normalized copy or raises
:class:`EventError` naming the field and what is wrong with it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from bootpull.mac import Mac, MacError

FORMAT = 1
STATUSES = ("ok", "warn", "fail")
COUNTERS = ("retries", "restarts", "fallbacks")
MAX_TEXT = 4096
MAX_DETAILS_BYTES = 64 * 1024
_STRING_FIELDS = {
    "hostname": 253, "role": 128, "version": 128, "commit": 64, "stage": 64,
    "message": MAX_TEXT,
}
_COMMIT = re.compile(r"^([0-9a-f]{40}|[0-9a-f]{64})?$")
FIELDS = ("format", "node", "hostname", "role", "version", "commit", "stage", "status",
          "message", "time", "counters", "details")


class EventError(ValueError):
    """A posted event that is not a valid format-1 event."""


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """An RFC 3339 timestamp with a zone, as a UTC datetime."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise EventError(f"time: {text[:40]!r} is not an RFC 3339 timestamp") from None
    if value.tzinfo is None:
        raise EventError("time: the timestamp needs a zone, as in 2026-01-01T00:00:00Z")
    return value.astimezone(UTC)


def make_event(
    *,
    node: Mac,
    stage: str,
    status: str,
    message: str,
    hostname: str = "",
    role: str = "",
    version: str = "",
    commit: str = "",
    counters: dict[str, int] | None = None,
    details: dict[str, Any] | None = None,
    time: str | None = None,
) -> dict[str, Any]:
    """A valid format-1 event, ready for JSON."""
    event: dict[str, Any] = {
        "format": FORMAT, "node": node.canonical, "hostname": hostname, "role": role,
        "version": version, "commit": commit, "stage": stage, "status": status,
        "message": message[:MAX_TEXT], "time": time or now_rfc3339(),
        "counters": {k: int((counters or {}).get(k, 0)) for k in COUNTERS},
        "details": details or {},
    }
    return validate_event(event)


def validate_event(obj: object) -> dict[str, Any]:
    """Check one posted event and return it normalized; raise EventError if it is wrong."""
    import json

    if not isinstance(obj, dict):
        raise EventError(f"an event is a JSON object, not {type(obj).__name__}")
    unknown = sorted(set(obj) - set(FIELDS))
    if unknown:
        raise EventError(f"unknown field(s) {', '.join(map(repr, unknown))}; "
                         f"format 1 has {', '.join(FIELDS)}")
    fmt = obj.get("format")
    if type(fmt) is not int:
        raise EventError("format: required, the number 1")
    if fmt != FORMAT:
        raise EventError(f"format: {fmt} is not supported; this home base takes format 1")
    node = obj.get("node")
    if not isinstance(node, str):
        raise EventError("node: required, the node's MAC address as a string")
    try:
        mac = Mac.parse(node)
    except MacError as exc:
        raise EventError(f"node: {exc}") from None
    out: dict[str, Any] = {"format": FORMAT, "node": mac.canonical}
    for name, limit in _STRING_FIELDS.items():
        value = obj.get(name, "")
        if not isinstance(value, str):
            raise EventError(f"{name}: must be a string, not {type(value).__name__}")
        if len(value) > limit:
            raise EventError(f"{name}: {len(value)} characters is over the limit of {limit}")
        if "\x00" in value:
            raise EventError(f"{name}: must not contain NUL characters")
        if not _encodable(value):
            raise EventError(f"{name}: holds a lone UTF-16 surrogate; send valid Unicode text")
        out[name] = value
    if not _COMMIT.match(out["commit"]):
        raise EventError("commit: must be a full hex git object id, or empty")
    status = obj.get("status")
    if status not in STATUSES:
        raise EventError(f"status: {status!r} is not one of {', '.join(STATUSES)}")
    out["status"] = status
    when = obj.get("time")
    if not isinstance(when, str):
        raise EventError("time: required, an RFC 3339 timestamp string")
    out["time"] = parse_time(when).isoformat(timespec="seconds").replace("+00:00", "Z")
    counters = obj.get("counters", {})
    if not isinstance(counters, dict):
        raise EventError("counters: must be an object {retries, restarts, fallbacks}")
    extra = sorted(set(counters) - set(COUNTERS))
    if extra:
        raise EventError(f"counters: unknown key(s) {', '.join(map(repr, extra))}")
    out["counters"] = {}
    for key in COUNTERS:
        value = counters.get(key, 0)
        if type(value) is not int or not 0 <= value < 2**53:
            raise EventError(f"counters.{key}: must be a non-negative integer")
        out["counters"][key] = value
    details = obj.get("details", {})
    if not isinstance(details, dict):
        raise EventError("details: must be an object")
    if not _encodable(json.dumps(details, ensure_ascii=False)):
        raise EventError("details: holds a lone UTF-16 surrogate; send valid Unicode text")
    if len(json.dumps(details)) > MAX_DETAILS_BYTES:
        raise EventError(f"details: larger than {MAX_DETAILS_BYTES} bytes as JSON")
    out["details"] = details
    return out


def _encodable(text: str) -> bool:
    """False for text holding lone surrogates ("\\ud800"): JSON allows them, UTF-8 cannot."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
