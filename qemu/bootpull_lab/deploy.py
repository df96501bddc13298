"""The lab's deploy side: a signed repository, its trust anchors, and an image that trusts it.

- :func:`make_repo` copies ``repo-layout/example`` (or, without it, makes a minimal
  repository with ``bootpull repo init/role new/assign``), creates its signing keys
  (outside the repository) and publishes it.
- :func:`ensure_image` builds the boot image with those trust anchors, unless the image
  in that directory already trusts them and carries the node code of this checkout.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bootpull.console import Console
from bootpull.errors import BootpullError

NODE_SITE = "usr/lib/python3/dist-packages/bootpull/"


class DeployError(BootpullError):
    stage = "lab"


@dataclass(frozen=True)
class LabRepo:
    root: Path
    keys: Path

    @property
    def trust(self) -> Path:
        return self.root.parent / "trust.json"

    def bootpull(self, *args: str) -> str:
        """Run ``bootpull repo ARGS`` on this repository with its keys; return stdout."""
        argv = [sys.executable, "-m", "bootpull", "repo", "-C", str(self.root),
                "--keys", str(self.keys), *args]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False,
                              env=_git_env())
        if proc.returncode != 0:
            raise DeployError(f"'bootpull repo {' '.join(args)}' failed",
                              why=(proc.stderr or proc.stdout).strip()[-600:])
        return proc.stdout


def _git_env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env.setdefault("GIT_AUTHOR_NAME", "bootpull lab")
    env.setdefault("GIT_AUTHOR_EMAIL", "lab@bootpull.invalid")
    env.setdefault("GIT_COMMITTER_NAME", "bootpull lab")
    env.setdefault("GIT_COMMITTER_EMAIL", "lab@bootpull.invalid")
    return env


def make_repo(base: Path, name: str = "repo") -> LabRepo:
    """A published repository at ``base/name`` with keys at ``base/name-keys``."""
    repo = LabRepo(base / name, base / f"{name}-keys")
    if (repo.root / ".bootpull").is_dir() and repo.trust.is_file():
        return repo  # made by an earlier run
    base.mkdir(parents=True, exist_ok=True)
    try:
        from bootpull_repo.example import make_example_repo

        make_example_repo(repo.root)
        repo.bootpull("init", "--name", name, str(repo.root))
    except (ImportError, BootpullError):
        if repo.root.exists():
            raise
        repo.root.mkdir(parents=True)
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo.root, check=True)
        repo.bootpull("init", "--name", name, str(repo.root))
        repo.bootpull("role", "new", "web")
        repo.bootpull("assign", "52:54:00:12:34:56", "web")
        repo.bootpull("publish")
    repo.trust.write_text(repo.bootpull("trust"))
    return repo


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def image_is_current(image: Path, trust: Path, node_source: Path) -> tuple[bool, str]:
    """Whether ``image`` trusts ``trust`` and carries this checkout's node code; and why not."""
    manifest_path = image / "manifest.json"
    if not manifest_path.is_file() or not (image / "initrd.img").is_file():
        return False, "no image yet"
    manifest = json.loads(manifest_path.read_text())
    baked = (manifest.get("trust") or {}).get("sha256")
    if baked != _sha256(trust):
        return False, "the image trusts other keys"
    files = manifest.get("files", {})
    from bootpull_image import build

    if files.get("init", {}).get("sha256") != _sha256(build.HERE / "init"):
        return False, "the image's init changed"
    for source in sorted(node_source.rglob("*.py")):
        rel = NODE_SITE + source.relative_to(node_source).as_posix()
        if files.get(rel, {}).get("sha256") != _sha256(source):
            return False, f"the node code changed ({rel.removeprefix(NODE_SITE)})"
    return True, "up to date"


def ensure_image(image: Path, trust: Path, console: Console) -> Path:
    """Build the image into ``image`` unless it is current (see :func:`image_is_current`)."""
    from bootpull_image.build import build_image
    from bootpull_image.settings import BuildSettings

    settings = BuildSettings(out=image, trust=trust)
    current, why = image_is_current(image, trust, settings.node_source)
    if current:
        console.info(f"image {image}: {why}")
        return image
    console.info(f"image {image}: building ({why})")
    build_image(settings, console)
    return image
