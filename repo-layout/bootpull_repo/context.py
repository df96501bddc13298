"""What every ``bootpull repo`` command starts from: the repository and its key directory."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from bootpull import layout
from bootpull.bundle import RepoSettings
from bootpull.errors import UsageError

from bootpull_repo.gitcli import Git
from bootpull_repo.keys import KeyStore, resolve_key_dir

METADATA_DIR = ".bootpull/metadata"


@dataclass(frozen=True)
class RepoContext:
    root: Path  # the work tree's top directory
    git: Git
    settings: RepoSettings | None  # the work tree's bootpull.toml, when it parses
    key_override: str | None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RepoContext:
        """The repository at ``-C DIR`` (default: the current directory)."""
        start = Path(getattr(args, "repo_dir", None) or ".")
        if not start.is_dir():
            raise UsageError(f"{start} is not a directory", hint="give -C the repository")
        git = Git(start)
        if not git.ok("rev-parse", "--show-toplevel"):
            raise UsageError(
                f"{start.resolve()} is not inside a git repository",
                hint="run this in the deploy repository, or give -C DIR; "
                "create one with 'bootpull repo init DIR'")
        root = Path(git.text("rev-parse", "--show-toplevel"))
        return cls(root, Git(root), read_settings(root), getattr(args, "keys", None))

    @property
    def metadata_dir(self) -> Path:
        return self.root / METADATA_DIR

    @property
    def name(self) -> str:
        return (self.settings.name if self.settings and self.settings.name
                else self.root.name)

    def keys(self) -> KeyStore:
        return KeyStore(resolve_key_dir(self.key_override, self.root, self.name))


def read_settings(root: Path) -> RepoSettings | None:
    try:
        data = (root / layout.SETTINGS_FILE).read_bytes()
    except OSError:
        return None
    settings, _problems = layout.parse_settings(data)
    return settings
