"""Named fakes for pure-logic unit tests, in one place (acceptance tests use real parts).

- :class:`CapturingWriter`: a console writer that keeps every line written to it, so a
  test can read what :class:`bootpull.console.Console` printed.
- :class:`DictTree`: a :class:`bootpull.bundle.TreeReader` over a dict, a commit
  without git.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field

from bootpull.bundle import TreeEntry
from bootpull.console import Console


class CapturingWriter:
    """A console writer that keeps the text: ``Console(CapturingWriter())``."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text

    def close(self) -> None:
        pass


def capturing_console() -> Console:
    """A Console whose output is kept in memory (and shown nowhere)."""
    return Console(CapturingWriter())


@dataclass
class DictTree:
    """A TreeReader over a dict: path → (git mode, bytes)."""

    files: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    commit: str = "0" * 40

    def read(self, path: str) -> bytes | None:
        found = self.files.get(path)
        return None if found is None else found[1]

    def list(self, prefix: str) -> builtins.list[TreeEntry]:
        prefix = prefix.strip("/")
        return [TreeEntry(p, m, "") for p, (m, _) in sorted(self.files.items())
                if p.startswith(prefix + "/")]

    def read_many(self, paths: builtins.list[str]) -> dict[str, bytes]:
        return {p: self.files[p][1] for p in paths if p in self.files}
