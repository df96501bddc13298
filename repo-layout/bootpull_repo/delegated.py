"""Metadata format 2 for ``bootpull repo publish``: place, sign and keep delegated roles.

:mod:`bootpull.delegation` says which role owns which path; this module builds the
top-level ``targets.json`` (its own few files and the delegations) and one metadata
file per delegated role in ``.bootpull/delegated/``. A role whose files are exactly
what it already signs, whose signature verifies under the current targets key, and
which has at least half of its lifetime left is kept as it is: a one-host change
re-signs one bin, the snapshot and the timestamp.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from bootpull import delegation
from bootpull.delegation import DELEGATED_DIR, Owners

if TYPE_CHECKING:
    from tuf.api.metadata import DelegatedRole, Metadata, Targets

    from bootpull_repo.publish import Signed

RENEW_SHARE = 0.5  # re-sign a file once less than this share of its lifetime is left


@dataclass
class Plan:
    """What a format-2 publish writes: new metadata, files to remove, every version."""

    top: Metadata[Targets]
    top_changed: bool
    write: dict[str, Metadata[Targets]] = field(default_factory=dict)  # role name → new
    remove: list[str] = field(default_factory=list)  # role names whose file goes
    versions: dict[str, int] = field(default_factory=dict)  # "<role>.json" → version

    @property
    def changed(self) -> bool:
        return self.top_changed or bool(self.write) or bool(self.remove)


def delegated_dir(root: Path) -> Path:
    return root / DELEGATED_DIR


@dataclass(frozen=True)
class Committed:
    """One committed delegated role file, read as plain JSON: what publish compares
    with the files it would place there. python-tuf parses the file only when its
    signature has to be checked (:meth:`metadata`)."""

    data: bytes
    version: int
    expires: datetime
    targets: Mapping[str, Any]  # target path → its entry, as in the file

    def metadata(self) -> Metadata[Targets]:
        from tuf.api.metadata import Metadata

        return cast("Metadata[Targets]", Metadata.from_bytes(self.data))

    @classmethod
    def parse(cls, data: bytes) -> Committed | None:
        """None for a file that is not a delegated targets role's metadata."""
        try:
            signed = json.loads(data)["signed"]
            version, targets = signed["version"], signed["targets"]
            expires = datetime.strptime(signed["expires"], "%Y-%m-%dT%H:%M:%SZ")
        except (ValueError, KeyError, TypeError, RecursionError):
            return None
        if (signed.get("_type") != "targets" or type(version) is not int
                or not isinstance(targets, dict)):
            return None
        return cls(data, version, expires.replace(tzinfo=UTC), targets)


def read_delegated(root: Path, signer: Any,
                   verified: Mapping[str, str] | None = None) -> dict[str, Committed]:
    """The committed delegated roles that carry a valid signature by ``signer``'s key,
    by name. ``verified`` (what :func:`load_verified` returns for that key) names the
    files already known to: their signature is not checked again. Any other file (one
    that does not parse, signed by another key, or edited by hand) is left out, so it
    is signed anew and none of its hashes is believed."""
    out: dict[str, Committed] = {}
    directory = delegated_dir(root)
    if not directory.is_dir():
        return out
    verified = verified or {}
    for path in sorted(directory.glob("*.json")):
        name = path.name[:-len(".json")]
        try:
            found = Committed.parse(path.read_bytes())
        except OSError:
            continue
        if found is not None and (verified.get(name) == hashlib.sha256(found.data).hexdigest()
                                  or _committed_verifies(found, signer)):
            out[name] = found
    return out


def known_digests(existing: Mapping[str, Committed]) -> dict[str, tuple[int, str]]:
    """blob id → (length, sha256) of every file the committed roles sign: the blobs a
    publish does not need to read and hash again."""
    out: dict[str, tuple[int, str]] = {}
    for committed in existing.values():
        for info in committed.targets.values():
            try:
                oid, sha, length = (info["custom"]["git_oid"], info["hashes"]["sha256"],
                                    info["length"])
            except (KeyError, TypeError):
                continue
            if isinstance(oid, str) and isinstance(sha, str) and type(length) is int:
                out[oid] = (length, sha)
    return out


def current_bins(md: Metadata[Targets] | None) -> int:
    """How many host bins the committed top-level targets delegate to (0: none)."""
    if md is None or md.signed.delegations is None or md.signed.delegations.roles is None:
        return 0
    return sum(1 for name in md.signed.delegations.roles
               if name.startswith(delegation.HOST_BIN_PREFIX))


def delegations_for(collected: Mapping[str, Signed], bins: int) -> dict[str, list[str]]:
    """Every delegated role (bins first, then roles by name) and its path patterns."""
    roles: dict[str, list[str]] = dict(delegation.bins(bins))
    depths: dict[str, list[int]] = {}
    for path in collected:
        parts = path.split("/")
        if path.startswith("head/roles/") and len(parts) > 3:
            depths.setdefault(parts[2], [0, 0])[0] = max(depths.get(parts[2], [0, 0])[0],
                                                       len(parts) - 3)
        elif path.startswith("release/") and len(parts) > 3:
            depths.setdefault(parts[1], [0, 0])[1] = max(depths.get(parts[1], [0, 0])[1],
                                                       len(parts) - 3)
    for role in sorted(depths):
        head, release = depths[role]
        roles[delegation.ROLE_PREFIX + role] = delegation.role_patterns(role, head, release)
    return roles


def fresh(md: Metadata[Any] | Committed, days: int, now: datetime) -> bool:
    lifetime = timedelta(days=days)
    expires = md.expires if isinstance(md, Committed) else md.signed.expires
    left: timedelta = expires - now
    return lifetime * RENEW_SHARE <= left <= lifetime


def _same_targets(md: Metadata[Targets], files: Mapping[str, Signed]) -> bool:
    signed = {p: (tf.length, tf.hashes, tf.unrecognized_fields)
              for p, tf in md.signed.targets.items()}
    return signed == {p: (s.length, {"sha256": s.sha256}, {"custom": s.custom(oid=True)})
                      for p, s in files.items()}


def _same_entries(committed: Committed, files: Mapping[str, Signed]) -> bool:
    """The committed role signs exactly ``files`` (its entries as the file has them)."""
    targets = committed.targets
    if len(targets) != len(files):
        return False
    for path, s in files.items():
        entry = targets.get(path)
        if entry != {"length": s.length, "hashes": {"sha256": s.sha256},
                     "custom": s.custom(oid=True)}:
            return False
    return True


def plan(root: Path, old_top: Metadata[Targets] | None, signer: Any,
         collected: Mapping[str, Signed], listed: Mapping[str, int], days: int,
         now: datetime, *, top_version: int, force: bool = False,
         existing: Mapping[str, Committed] | None = None) -> Plan:
    """Place every collected file, and sign what changed.

    ``listed`` is the highest version of each metadata file that any snapshot lists
    (on any branch), and ``top_version`` the next version above any branch's
    ``targets.json``: what is kept must be at least that high (a node that switched
    from a branch with higher versions would see a rollback), and new versions go
    above it. ``force`` re-signs everything. ``existing`` is what
    :func:`read_delegated` returns for ``signer`` (read here when not given): the
    committed roles known to carry its valid signature.
    """
    from tuf.api.metadata import DelegatedRole, Delegations, Metadata, Targets

    from bootpull_repo.publish import expires_in, target_file

    if existing is None:  # the caller may have read them already
        existing = read_delegated(root, signer)
    host_files = sum(1 for p in collected if p.startswith("head/hosts/"))
    count = delegation.bin_count(host_files, current_bins(old_top))
    patterns = delegations_for(collected, count)
    owners = Owners(patterns)
    placed: dict[str, dict[str, Signed]] = {name: {} for name in patterns}
    top_files: dict[str, Signed] = {}
    for path, signed in collected.items():
        owner = delegation.host_bin(path, count) or owners.owner(path)
        if owner is None:
            top_files[path] = signed
        else:
            placed[owner][path] = signed

    keyid = signer.public_key.keyid
    result_versions: dict[str, int] = {}
    write: dict[str, Metadata[Targets]] = {}
    for name, files in placed.items():
        old = existing.get(name)
        if (not force and old is not None and _same_entries(old, files)
                and old.version >= listed.get(f"{name}.json", 0)
                and fresh(old, days, now)):
            result_versions[f"{name}.json"] = old.version
            continue
        version = max(listed.get(f"{name}.json", 0),
                      old.version if old is not None else 0) + 1
        md = Metadata(Targets(version=version, expires=expires_in(days, now), targets={
            p: target_file(p, s.length, s.sha256, s.custom(oid=True))
            for p, s in sorted(files.items())}))
        md.sign(signer)
        write[name] = md
        result_versions[f"{name}.json"] = version

    roles: dict[str, DelegatedRole] = {
        name: DelegatedRole(name, [keyid], 1, True, paths=paths)
        for name, paths in patterns.items()}
    delegations = Delegations(keys={keyid: signer.public_key}, roles=roles)
    top_same = (not force and old_top is not None and old_top.signed.version >= top_version - 1
                and _same_targets(old_top, top_files)
                and _same_delegations(old_top, delegations) and fresh(old_top, days, now)
                and _verifies(old_top, signer))
    if top_same:
        assert old_top is not None
        top = old_top
    else:
        top = Metadata(Targets(
            version=top_version, expires=expires_in(days, now),
            targets={p: target_file(p, s.length, s.sha256, s.custom(oid=True))
                     for p, s in sorted(top_files.items())},
            delegations=delegations))
        top.sign(signer)
    directory = delegated_dir(root)  # every file, those left out of existing too
    on_disk = {path.name[:-len(".json")] for path in directory.glob("*.json")}
    remove = sorted(on_disk - set(patterns))
    return Plan(top, not top_same, write, remove, result_versions)


def _same_delegations(md: Metadata[Targets], delegations: Any) -> bool:
    old = md.signed.delegations
    return old is not None and old.to_dict() == delegations.to_dict()


def _committed_verifies(committed: Committed, signer: Any) -> bool:
    """:func:`_verifies` for a committed file: one python-tuf cannot read does not verify."""
    try:
        md = committed.metadata()
    except Exception:  # noqa: BLE001 - any file python-tuf refuses is signed anew
        return False
    return _verifies(md, signer)


def _verifies(md: Metadata[Any], signer: Any) -> bool:
    """The metadata carries a valid signature by ``signer``'s key (a rotated key: no; nor
    metadata edited into something with no canonical form, such as a float)."""
    from securesystemslib.exceptions import UnverifiedSignatureError
    from tuf.api.serialization import SerializationError
    from tuf.api.serialization.json import CanonicalJSONSerializer

    key = signer.public_key
    signature = md.signatures.get(key.keyid)
    if signature is None:
        return False
    try:
        key.verify_signature(signature, CanonicalJSONSerializer().serialize(md.signed))
    except (UnverifiedSignatureError, SerializationError):
        return False
    return True


def load_verified(cache: Path, keyid: str) -> dict[str, str]:
    """Role → sha256 of the file that publish last wrote or verified with ``keyid``'s
    key (``cache``: a JSON file in the git directory; empty for another key)."""
    try:
        doc = json.loads(cache.read_text())
        files = doc["files"] if doc["keyid"] == keyid else {}
        return {str(k): str(v) for k, v in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def save_verified(cache: Path, root: Path, keyid: str) -> None:
    """Remember every delegated role's bytes as signed by ``keyid`` (after a publish
    wrote or verified them all); only a cache, so a failure to write is ignored."""
    files = {path.name[:-len(".json")]: hashlib.sha256(path.read_bytes()).hexdigest()
             for path in sorted(delegated_dir(root).glob("*.json"))}
    with contextlib.suppress(OSError):
        cache.parent.mkdir(exist_ok=True)
        cache.write_text(json.dumps({"keyid": keyid, "files": files}))


def write_plan(root: Path, done: Plan, metadata_bytes: Any) -> None:
    """Write the changed delegated roles and remove those no longer delegated to."""
    directory = delegated_dir(root)
    directory.mkdir(parents=True, exist_ok=True)
    for name, md in done.write.items():
        (directory / f"{name}.json").write_bytes(metadata_bytes(md))
    for name in done.remove:
        (directory / f"{name}.json").unlink(missing_ok=True)


def snapshot_listing(data: bytes) -> dict[str, int]:
    """"<role>.json" → version, as one snapshot.json lists them (empty if unreadable)."""
    try:
        meta = json.loads(data)["signed"]["meta"]
        return {name: int(info["version"]) for name, info in meta.items()}
    except (ValueError, KeyError, TypeError):
        return {}
