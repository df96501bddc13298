"""``bootpull repo init DIR``: the layout, the four signing keys, root.json, a first publish.

``init`` works on an empty or missing directory, on a directory of files that is not
yet a git repository (its files become the first commit), and on an existing git
repository (say, a copy of ``repo-layout/example`` already committed): it creates only
what is missing — ``bootpull.toml``, ``hosts/``, ``roles/``, the build of each role that
has a ``debs.lock`` and none (``role from-debs ROLE --locked``) — then the keys (outside
the repository), ``.bootpull/metadata/root.json``, commits, and publishes. The trust
anchors file (the initial root.json, which the node image embeds) is written to
``<key dir>/trust.json``; ``bootpull repo trust`` prints it again at any time.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bootpull import layout
from bootpull.errors import UsageError

from bootpull_repo.context import METADATA_DIR, RepoContext, read_settings
from bootpull_repo.gitcli import Git
from bootpull_repo.keys import ROLES, TRUST_FILE, KeysError, KeyStore, resolve_key_dir
from bootpull_repo.publish import (
    Expiry,
    formatted,
    metadata_bytes,
    new_root,
    publish,
    refuse_dirty_settings,
    write_root,
)

DEFAULT_FORMAT = 2  # a new repository's signed metadata format (docs/repo-format.md)
SETTINGS_TEMPLATE = """\
# The deploy repository's settings (see docs/repo-format.md). format is the signed
# metadata's format: 2 (delegated roles, what a large fleet needs) reads with bootpull
# node images that know format 2; 1 with every image.
format = {format}
# Names the admin's key directory (~/.config/bootpull/keys/<name>/).
name = "{name}"
# Nodes follow this branch.
branch = "main"

# [report]
# url = "http://homebase.example:8080/api/v1/events"
"""


@dataclass(frozen=True)
class Initialised:
    root: Path
    key_dir: Path
    trust_file: Path
    commit: str
    format: int


def init(directory: Path, *, keys_override: str | None = None, name: str | None = None,
         now: datetime | None = None, fmt: int | None = None) -> Initialised:
    """``fmt`` is the signed metadata format: a new ``bootpull.toml`` gets it (default
    :data:`DEFAULT_FORMAT`); an existing one keeps its own unless ``fmt`` is given."""
    now = now or datetime.now(UTC)
    directory.mkdir(parents=True, exist_ok=True)
    git = Git(directory)
    fresh = not (directory / ".git").exists()
    if fresh:  # a new repository takes every file already in DIR (a copied example)
        git.run("init", "-q", "-b", "main")
    settings = read_settings(directory)
    if (directory / layout.SETTINGS_FILE).exists() and settings is None:
        raise UsageError(f"{directory / layout.SETTINGS_FILE} has problems",
                         hint="run 'bootpull repo lint' and fix them, then init again")
    repo_name = name or (settings.name if settings and settings.name else None) \
        or directory.resolve().name
    if layout.check_repo_name(repo_name):
        raise UsageError(f"{repo_name!r} is not a valid repository name",
                         hint="give --name with letters, digits, '.', '_' and '-'")
    metadata = directory / METADATA_DIR
    if (metadata / "root.json").exists():
        raise UsageError(
            f"{directory} is already initialised for signing",
            why=f"{METADATA_DIR}/root.json exists",
            hint="to change keys, rotate them (docs/security.md); to start over, remove "
            f"{METADATA_DIR} and the key directory first")
    key_dir = resolve_key_dir(keys_override, directory, repo_name)
    keys = KeyStore(key_dir)
    if existing := [r for r in ROLES if keys.has(r)]:
        raise KeysError(
            f"{key_dir} already holds keys ({', '.join(existing)})",
            why="init never overwrites a key",
            hint="choose another key directory with --keys, or move the old keys away")
    created: list[str] = []
    settings_path = directory / layout.SETTINGS_FILE
    if settings is None:
        settings_path.write_text(SETTINGS_TEMPLATE.format(
            name=repo_name, format=fmt or DEFAULT_FORMAT))
        created.append(layout.SETTINGS_FILE)
    elif fmt is not None and settings.format != fmt:  # committed below, with root.json
        if not fresh:
            refuse_dirty_settings(git, fmt)
        settings_path.write_bytes(formatted(settings_path.read_bytes(), fmt))
        created.append(layout.SETTINGS_FILE)
    for sub in (layout.HOSTS_DIR, layout.ROLES_DIR):
        folder = directory / sub
        if not folder.is_dir() or not any(folder.iterdir()):
            folder.mkdir(exist_ok=True)
            (folder / ".gitkeep").touch()
            created.append(f"{sub}/.gitkeep")
    # a role with a debs.lock and no build yet (the example's ids and ssh) is built as
    # its lock says, so the first publish has it: 'role from-debs ROLE --locked'
    from bootpull_repo.example import build_debs_roles

    created += [f"{layout.ROLES_DIR}/{role}" for role in build_debs_roles(directory)]
    root_md = new_root(keys, Expiry(), now)
    write_root(metadata, root_md)
    trust_file = key_dir / TRUST_FILE
    trust_file.write_bytes(metadata_bytes(root_md))
    git.commit(f"bootpull repo init: {repo_name}, root v1",
               ["."] if fresh else [*created, METADATA_DIR])
    ctx = RepoContext(directory.resolve(), Git(directory.resolve()), read_settings(directory),
                      str(key_dir))
    done = publish(ctx, now=now)
    return Initialised(directory.resolve(), key_dir, trust_file, done.commit, done.format)


def configure(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "init", help="create the layout, the signing keys and the trust anchors",
        description="Create (or complete) a deploy repository in DIR: bootpull.toml, "
        "hosts/, roles/, the four signing keys (outside the repository), "
        f"{METADATA_DIR}/root.json, and a first publish.")
    parser.add_argument("directory", metavar="DIR")
    parser.add_argument("--name", default=None,
                        help="the repository's name (default: the directory's name)")
    parser.add_argument("--format", type=int, choices=(1, 2), default=None, dest="fmt",
                        help="the signed metadata format: 2 (the default for a new "
                        "bootpull.toml) needs node images that read format 2; 1 reads "
                        "with every image (an existing bootpull.toml keeps its own)")
    parser.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    done = init(Path(args.directory), keys_override=getattr(args, "keys", None),
                name=args.name, fmt=args.fmt)
    print(f"initialised {done.root} (commit {done.commit[:12]}), signed metadata "
          f"format {done.format}")
    print(f"  private keys:   {done.key_dir}/{{root,targets,snapshot,timestamp}}.pem")
    print("                  (move root.pem offline; it is needed only to rotate keys)")
    print(f"  trust anchors:  {done.trust_file}")
    print(f"                  (bake into the image: bootpull image build --trust "
          f"{done.trust_file})")
    return 0
