"""The MAC argument of ``repo show``, ``history`` and ``unassign``, as a person gives it.

Any notation :class:`bootpull.mac.Mac` accepts, and also a MAC pasted with the text
around it from the console banner: ``node 52-54-00-12-34-56:``, ``'52:54:00:12:34:56'``
or the whole ``node 52-54-00-12-34-56 is not assigned`` (when exactly one word in it
is a MAC).
"""

from __future__ import annotations

from bootpull.errors import UsageError
from bootpull.mac import Mac, MacError

_AROUND = "'\"`.,;:()[]<>"


def parse_mac(text: str) -> Mac:
    try:
        return Mac.parse(text.strip().strip(_AROUND))
    except MacError as exc:
        problem = exc
    found = set()
    for word in text.split():
        try:
            found.add(Mac.parse(word.strip(_AROUND)))
        except MacError:
            continue
    if len(found) == 1:
        return found.pop()
    raise UsageError(str(problem), hint="copy the MAC from the node's console banner, as in "
                     "52:54:00:12:34:56") from None
