"""The admin tools' git: the plain git CLI, so every change is an ordinary commit.

Admins use ordinary git on the same repository; these helpers run the same ``git``
they do, with arguments as a list (never a shell).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bootpull.errors import BootpullError


class GitError(BootpullError):
    """A git command failed; ``why`` carries what git said."""

    stage = "git"


@dataclass(frozen=True)
class LsEntry:
    mode: int
    kind: str  # "blob", "tree" or "commit" (a submodule)
    oid: str
    path: str


class Git:
    """Run git in one repository."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def run(self, *args: str, input: bytes | None = None, check: bool = True) -> bytes:
        try:
            proc = subprocess.run(["git", "-C", str(self.root), *args], input=input,
                                  capture_output=True, check=False, timeout=300)
        except FileNotFoundError:
            raise GitError("git is not installed", hint="install git (apt install git)") from None
        if check and proc.returncode != 0:
            raise GitError(f"'git {' '.join(args)}' failed",
                           why=proc.stderr.decode(errors="replace").strip(),
                           hint="fix what git says, then run the command again")
        return proc.stdout

    def text(self, *args: str) -> str:
        return self.run(*args).decode().strip()

    def ok(self, *args: str) -> bool:
        return subprocess.run(["git", "-C", str(self.root), *args], capture_output=True,
                              check=False, timeout=300).returncode == 0

    def has_commits(self) -> bool:
        return self.ok("rev-parse", "-q", "--verify", "HEAD^{commit}")

    def rev(self, ref: str) -> str | None:
        """The commit ``ref`` names, or None."""
        out = subprocess.run(["git", "-C", str(self.root), "rev-parse", "-q", "--verify",
                              f"{ref}^{{commit}}"], capture_output=True, check=False,
                             timeout=300)
        return out.stdout.decode().strip() if out.returncode == 0 else None

    def ls_tree(self, treeish: str, path: str = "") -> list[LsEntry]:
        """Every file (recursively) of ``treeish``, or under directory ``path`` in it."""
        args = ["ls-tree", "-r", "-z", "--full-tree", treeish]
        if path:
            args += ["--", path]
        out: list[LsEntry] = []
        for record in self.run(*args).split(b"\0"):
            if not record:
                continue
            meta, _, name = record.partition(b"\t")
            mode, kind, oid = meta.decode().split()
            out.append(LsEntry(int(mode, 8), kind, oid, name.decode("utf-8", "surrogateescape")))
        return out

    def blobs(self, oids: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        """The contents of many blobs, one at a time, through one ``git cat-file --batch``."""
        if not oids:
            return
        proc = subprocess.Popen(["git", "-C", str(self.root), "cat-file", "--batch"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
        assert proc.stdin is not None and proc.stdout is not None
        try:
            for oid in oids:
                proc.stdin.write(f"{oid}\n".encode())
                proc.stdin.flush()
                header = proc.stdout.readline().decode().split()
                if len(header) != 3:
                    raise GitError(f"git cat-file could not read {oid}", why=" ".join(header),
                                   hint="check the repository with 'git fsck'")
                size = int(header[2])
                data = proc.stdout.read(size)
                proc.stdout.read(1)  # the newline after each object
                if len(data) != size:
                    raise GitError(f"git cat-file stopped in the middle of {oid}")
                yield oid, data
        finally:
            proc.stdin.close()
            proc.stdout.close()
            proc.kill()
            proc.wait(timeout=30)

    def tags(self, prefix: str = "") -> list[str]:
        refs = self.text("for-each-ref", "--format=%(refname)", f"refs/tags/{prefix}")
        return [r[len("refs/tags/"):] for r in refs.splitlines() if r]

    def commit(self, message: str, paths: Sequence[str]) -> str:
        """Stage ``paths`` and commit only them; return the new commit id."""
        self.run("add", "-A", "--", *paths)
        if not self.has_commits() or not self.ok("diff", "--cached", "--quiet", "--", *paths):
            self.run("commit", "-q", "-m", message, "--", *paths)
        return self.text("rev-parse", "HEAD")
