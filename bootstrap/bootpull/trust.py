"""Node-side verification: python-tuf's ngclient over the metadata inside the fetched commit.

The signed metadata lives in the deploy repository under ``.bootpull/metadata/``
(``root.json`` and ``N.root.json``, ``timestamp.json``, ``snapshot.json``,
``targets.json``), committed by ``bootpull repo publish``. ngclient does the metadata
rules (signatures and thresholds, versions, expiry, snapshot consistency, root
rotation); its fetcher here is :class:`TreeFetcher`, which reads those files from the
fetched commit's object store — no HTTP of its own.

On top of ngclient, this module keeps two things ngclient does not (docs/security.md):

- a **version floor** in ``<state>/trust/floor.json``, written atomically and fsynced
  after every fully verified pull, so an older published version is refused even
  when the metadata cache was wiped;
- a **clock floor**: the reference time for expiry is never earlier than the image's
  build time or the last good time stored in the floor.

Target paths (what publish signs, what the node asks for):

- ``head/<path>`` for ``bootpull.toml``, ``hosts/*.toml`` and ``roles/**`` at the
  deploy head;
- ``release/<role>/<version>/<path below roles/<role>/>`` for each release tag.

Every target carries length, sha256 and ``custom.git_mode``. In metadata format 2
(:mod:`bootpull.delegation`) the top-level targets delegate the host files, the node
secrets and each role to named roles whose metadata is in ``.bootpull/delegated/``,
and each delegated target also carries ``custom.git_oid``, the blob to fetch. ngclient
walks those delegations (:meth:`Verifier.signed`); :meth:`Verifier.signed_under` loads
only the delegated roles that can own files under a directory, and keeps only the
targets :class:`bootpull.delegation.Owners` says they own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bootpull.bundle import TreeReader
from bootpull.delegation import DELEGATED_DIR, Owners
from bootpull.errors import BootpullError, ExpiredMetadata, VerifyError
from bootpull.state import write_atomic

if TYPE_CHECKING:
    from tuf.api.metadata import Delegations, TargetFile
    from tuf.ngclient.updater import Updater

METADATA_DIR = ".bootpull/metadata"
HEAD_PREFIX = "head/"
RELEASE_PREFIX = "release/"
FETCH_BASE_URL = "bootpull-tree:///"
ROLES = ("root", "timestamp", "snapshot", "targets")
TOP_ROLES = frozenset(ROLES)
_PUBLISH_HINT = "publish the repository with 'bootpull repo publish' and fetch again"


def head_target(path: str) -> str:
    """The target path of a file at the deploy head: ``head/hosts/<mac>.toml``."""
    return HEAD_PREFIX + path


def release_target(role: str, version: str, path: str) -> str:
    """``release/<role>/<version>/<path>``, ``path`` relative to ``roles/<role>/``."""
    return f"{RELEASE_PREFIX}{role}/{version}/{path}"


@dataclass(frozen=True)
class SignedFile:
    """What the signed targets metadata says about one file."""

    path: str  # the target path
    length: int
    sha256: str
    mode: int  # git mode
    oid: str | None = None  # format 2: the git blob id to fetch it by


@dataclass(frozen=True)
class MetadataVersions:
    root: int
    timestamp: int
    snapshot: int
    targets: int

    def __str__(self) -> str:
        return (f"root v{self.root}, timestamp v{self.timestamp}, "
                f"snapshot v{self.snapshot}, targets v{self.targets}")


@dataclass(frozen=True)
class Floor:
    """The node's own memory of the newest metadata it has accepted, and when."""

    root: int = 0
    timestamp: int = 0
    snapshot: int = 0
    targets: int = 0
    last_good: str = ""  # RFC 3339: the reference time of the last fully verified pull
    branch: str = ""  # the deploy branch that pull came from (where the next one starts)
    #: format 2: the version of each delegated role this node has read (its role's,
    #: its host bin's), so a wiped cache cannot be fed an older one either
    delegated: dict[str, int] = field(default_factory=dict)

    @property
    def last_good_time(self) -> datetime | None:
        if not self.last_good:
            return None
        try:
            moment = datetime.fromisoformat(self.last_good)
        except ValueError:
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def floor_path(state_dir: Path) -> Path:
    return state_dir / "trust" / "floor.json"


def load_floor(state_dir: Path) -> Floor:
    """The stored floor; a missing file is an empty floor, a corrupt one is refused."""
    path = floor_path(state_dir)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Floor()
    except OSError as exc:
        raise VerifyError("the node's version floor cannot be read", why=str(exc),
                          hint=f"check the state directory {state_dir}") from None
    try:
        doc = json.loads(raw)
        delegated = doc.get("delegated", {})
        if not isinstance(delegated, dict) or not all(
                isinstance(k, str) and type(v) is int for k, v in delegated.items()):
            raise TypeError("'delegated' is not a map of role names to versions")
        return Floor(**{k: doc[k] for k in ("root", "timestamp", "snapshot", "targets")},
                     last_good=str(doc.get("last_good", "")),
                     branch=str(doc.get("branch", "")), delegated=dict(delegated))
    except (ValueError, KeyError, TypeError) as exc:
        raise VerifyError(
            "the node's version floor is unreadable", why=f"{path}: {exc}",
            hint=f"if the state directory was damaged, remove {path} (this forgets "
            "rollback protection until the next good pull)") from None


def save_floor(state_dir: Path, floor: Floor) -> None:
    """Write the floor atomically (:func:`bootpull.state.write_atomic`), readable by root
    only: what this node has accepted is nobody else's business."""
    data = json.dumps({"format": 1, **asdict(floor)}, indent=2, sort_keys=True).encode()
    write_atomic(floor_path(state_dir), data, mode=0o600)


BUILD_TIME_FILE = Path("/etc/bootpull/build-time")


def image_build_time(path: Path = BUILD_TIME_FILE) -> datetime | None:
    """The image's build time: ``path`` holds seconds since the epoch or RFC 3339.

    None when the file is absent or unreadable (the clock floor then rests on the
    last good time alone).
    """
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    try:
        return datetime.fromtimestamp(int(text), UTC)
    except (ValueError, OverflowError, OSError):
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def reference_time(now: datetime | None, build_time: datetime | None,
                   floor: Floor) -> datetime:
    """The clock to judge expiry by: never earlier than the build or the last good time."""
    candidates = [now or datetime.now(UTC)]
    if build_time is not None:
        candidates.append(build_time if build_time.tzinfo else build_time.replace(tzinfo=UTC))
    if (last := floor.last_good_time) is not None:
        candidates.append(last)
    return max(candidates)


def _tree_fetcher(tree: TreeReader) -> Any:
    """A ngclient fetcher that reads ``.bootpull/metadata/<name>`` from ``tree``: the
    top-level roles (and ``N.root.json``); a delegated role's from ``.bootpull/delegated/``."""
    from tuf.api.exceptions import DownloadHTTPError
    from tuf.ngclient.fetcher import FetcherInterface

    class TreeFetcher(FetcherInterface):
        def __init__(self) -> None:
            self.fetched: list[str] = []

        def _fetch(self, url: str) -> Iterator[bytes]:
            if not url.startswith(FETCH_BASE_URL):
                raise DownloadHTTPError(f"{url} is outside the repository", 404)
            name = url[len(FETCH_BASE_URL):]
            if "/" in name or name.startswith("."):
                raise DownloadHTTPError(f"{name!r} is not a metadata file name", 404)
            self.fetched.append(name)
            role = name.removesuffix(".json")
            top = role in TOP_ROLES or role.removesuffix(".root").isdigit()
            where = f"{METADATA_DIR if top else DELEGATED_DIR}/{name}"
            data = tree.read(where)
            if data is None:
                raise DownloadHTTPError(f"{where} is not in the commit", 404)
            return iter([data])

    return TreeFetcher()


class Verifier:
    """One verification session: refresh the metadata from a tree, then check files."""

    def __init__(self, trust_root: bytes, state_dir: Path, *, now: datetime | None = None,
                 build_time: datetime | None = None) -> None:
        self.state_dir = state_dir
        self.floor = load_floor(state_dir)
        self.reference_time = reference_time(now, build_time, self.floor)
        self.versions: MetadataVersions | None = None
        self._trust_root = trust_root
        self._updater: Updater | None = None
        self._commit = ""
        self._targets: dict[str, SignedFile] = {}
        self._delegations: Delegations | None = None
        self._owners: Owners | None = None
        self._read_delegated: dict[str, int] = {}  # delegated role → version read

    @property
    def cache_dir(self) -> Path:
        return self.state_dir / "trust" / "metadata"

    def refresh(self, tree: TreeReader) -> MetadataVersions:
        """Load and verify the metadata in ``tree`` (ngclient), then check the floor."""
        from tuf.api import exceptions as tuf_errors
        from tuf.ngclient.config import UpdaterConfig
        from tuf.ngclient.updater import Updater

        config = UpdaterConfig(prefix_targets_with_hash=False)
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            updater = Updater(str(self.cache_dir), FETCH_BASE_URL, fetcher=_tree_fetcher(tree),
                              config=config, bootstrap=self._trust_root)
        except OSError as exc:
            raise VerifyError("the metadata cache could not be written", why=str(exc),
                              hint=f"check the state directory {self.state_dir}") from None
        except (tuf_errors.RepositoryError, ValueError, TypeError, KeyError) as exc:
            raise VerifyError(
                "the trust anchors are not a valid signed root", why=str(exc),
                hint="give the file that 'bootpull repo trust' prints (--trust FILE, or "
                "rebuild the image with it)") from None
        # Deviation from ngclient (docs/security.md): its reference time is "now" at
        # construction; we raise it to the clock floor before any expiry check runs.
        # python-tuf 7 has no public way to set it, so this writes a private attribute:
        # pyproject.toml pins tuf's major version, and tests/test_trust_tuf.py fails
        # if a release renames it or stops judging expiry by it.
        trusted = updater._trusted_set
        trusted.reference_time = self.reference_time
        with self._tuf_errors(tree.commit):
            updater.refresh()
        versions = MetadataVersions(
            root=trusted.root.version, timestamp=trusted.timestamp.version,
            snapshot=trusted.snapshot.version, targets=trusted.targets.version)
        self._check_floor(versions)
        self._updater = updater
        self._commit = tree.commit
        self.versions = versions
        self._targets = {path: _signed_file(path, info)
                         for path, info in trusted.targets.targets.items()}
        self._delegations = trusted.targets.delegations
        self._owners = None
        self._read_delegated = {}
        if self._delegations is not None:
            if self._delegations.roles is None:
                raise VerifyError(
                    "the signed targets use hashed-bin delegations, which bootpull does "
                    "not publish", why="targets.json has succinct_roles",
                    hint="publish with 'bootpull repo publish' of this bootpull version")
            self._owners = Owners((name, role.paths or [])
                                  for name, role in self._delegations.roles.items())
        return versions

    @property
    def delegated(self) -> bool:
        """True for metadata format 2: the top-level targets delegate (bootpull.delegation)."""
        self._require()
        return self._delegations is not None

    @contextlib.contextmanager
    def _tuf_errors(self, commit: str) -> Iterator[None]:
        """ngclient's exceptions as bootpull's, each with what to do."""
        from tuf.api import exceptions as tuf_errors

        try:
            yield
        except tuf_errors.ExpiredMetadataError as exc:
            renew = ("renew it with 'bootpull repo renew-root' (root key)" if "root" in str(exc)
                     else "re-sign it with 'bootpull repo publish' (or let the home base "
                     "run 'bootpull repo publish --freshness')")
            raise ExpiredMetadata(
                "the signed metadata has expired", why=f"{exc} (judged at "
                f"{self.reference_time.isoformat(timespec='seconds')})",
                hint=f"{renew}; check the node's clock") from None
        except tuf_errors.DownloadError as exc:
            if isinstance(exc.__cause__, BootpullError):  # the transport failed mid-read
                raise exc.__cause__ from None
            raise VerifyError(
                f"the commit {commit[:12]} carries no complete signed metadata",
                why=str(exc), hint=_PUBLISH_HINT) from None
        except tuf_errors.RepositoryError as exc:
            raise VerifyError(
                f"the signed metadata in commit {commit[:12]} does not verify",
                why=f"{type(exc).__name__}: {exc}",
                hint="the repository was signed with keys this image does not trust, or "
                "was tampered with: publish with the repository's own keys, or rebuild "
                "the image with the trust anchors from 'bootpull repo trust'") from None
        except OSError as exc:
            raise VerifyError("the metadata cache could not be written", why=str(exc),
                              hint=f"check the state directory {self.state_dir}") from None

    def _check_floor(self, versions: MetadataVersions) -> None:
        for role in ROLES:
            have = getattr(versions, role)
            floor = getattr(self.floor, role)
            if have < floor:
                raise self._rollback(role, have, floor, "")

    def signed(self, target: str) -> SignedFile | None:
        """What is signed for ``target``: in the top-level targets, or (format 2) where
        ngclient's walk of the delegations finds it."""
        self._require()
        if (found := self._targets.get(target)) is not None or self._delegations is None:
            return found
        assert self._updater is not None and self._owners is not None
        with self._tuf_errors(self._commit):
            info = self._updater.get_targetinfo(target)
        if (owner := self._owners.owner(target)) is not None:
            self._check_delegated_floor(owner)
        return None if info is None else _signed_file(target, info)

    def _check_delegated_floor(self, name: str) -> None:
        """The delegated role ``name``, if ngclient loaded it, is not older than the one
        this node last accepted (ngclient's own check needs its cached snapshot)."""
        assert self._updater is not None
        try:
            version = self._updater._trusted_set[name].version
        except KeyError:
            return
        floor = self.floor.delegated.get(name, 0)
        if version < floor:
            raise self._rollback(name, version, floor, " of a delegated role")
        self._read_delegated[name] = version

    def _rollback(self, role: str, have: int, floor: int, what: str) -> VerifyError:
        return VerifyError(
            f"rollback refused: the repository offers {role} v{have}, but this node "
            f"already accepted v{floor}",
            why=f"an older published version{what} is being served",
            hint="serve the current repository (check the mirror or home base); "
            "if the repository was re-created on purpose, clear "
            f"{floor_path(self.state_dir)} on the node",
            expected=f">= {floor}", got=str(have))

    def signed_under(self, prefix: str) -> dict[str, SignedFile]:
        """Every signed target whose path starts with ``prefix`` (a directory, ending in
        ``/``, or ``""``): format 2 loads only the delegated roles whose paths can hold
        such a file, and keeps only the targets each one owns."""
        self._require()
        out = {p: f for p, f in self._targets.items() if p.startswith(prefix)}
        if self._delegations is None or self._delegations.roles is None:
            return out
        assert self._updater is not None and self._owners is not None
        for name, role in self._delegations.roles.items():
            if not any(_could_hold(prefix, pattern) for pattern in role.paths or []):
                continue
            with self._tuf_errors(self._commit):
                delegated = self._updater._load_targets(name, "targets")
            self._check_delegated_floor(name)
            for path, info in delegated.targets.items():
                if (path.startswith(prefix) and path not in self._targets
                        and self._owners.owner(path) == name):
                    out[path] = _signed_file(path, info)
        return out

    def check(self, target: str, data: bytes | None, mode: int | None,
              *, path: str = "") -> bytes | None:
        """Check that ``data`` (None: absent from the commit) is exactly what is signed.

        Absent and unsigned is fine (returns None); any other disagreement raises.
        """
        signed = self.signed(target)
        where = path or target
        if signed is None:
            if data is None:
                return None
            raise VerifyError(
                f"{where} is in the commit but not in the signed metadata",
                why="the change was committed but not published",
                hint=_PUBLISH_HINT, expected="absent", got="present")
        if data is None:
            raise VerifyError(
                f"{where} is signed but missing from the commit",
                why="the served commit does not match the published one",
                hint=_PUBLISH_HINT, expected=signed.sha256, got="absent")
        digest = hashlib.sha256(data).hexdigest()
        if len(data) != signed.length or digest != signed.sha256:
            raise VerifyError(
                f"{where} does not match its signed hash",
                why="its bytes differ from what was published (an unpublished change, "
                "or tampering)",
                hint=_PUBLISH_HINT, expected=f"sha256:{signed.sha256} ({signed.length} B)",
                got=f"sha256:{digest} ({len(data)} B)")
        if mode is not None and mode != signed.mode:
            raise VerifyError(
                f"{where} has mode {mode:o}, but {signed.mode:o} was signed",
                why="the file's mode changed after publishing", hint=_PUBLISH_HINT,
                expected=f"{signed.mode:o}", got=f"{mode:o}")
        return data

    def forget_cache(self) -> None:
        """Drop ngclient's metadata cache (the floor stays): before verifying another
        branch, whose metadata may be older than the branch just read."""
        shutil.rmtree(self.cache_dir, ignore_errors=True)

    def record_success(self, branch: str = "") -> Floor:
        """Raise the floor to what was just verified (call only after every check)."""
        versions = self._require()
        floor = Floor(
            root=max(self.floor.root, versions.root),
            timestamp=max(self.floor.timestamp, versions.timestamp),
            snapshot=max(self.floor.snapshot, versions.snapshot),
            targets=max(self.floor.targets, versions.targets),
            last_good=self.reference_time.isoformat(timespec="seconds"),
            branch=branch or self.floor.branch,
            delegated={**self.floor.delegated, **{
                name: max(version, self.floor.delegated.get(name, 0))
                for name, version in self._read_delegated.items()}},
        )
        try:
            save_floor(self.state_dir, floor)
        except OSError as exc:  # fail closed: unrecorded means rollback is not guarded
            raise VerifyError("the node's version floor could not be saved", why=str(exc),
                              hint=f"check the state directory {self.state_dir} (space, "
                              "permissions)") from None
        self.floor = floor
        return floor

    def _require(self) -> MetadataVersions:
        if self.versions is None:
            raise RuntimeError("Verifier.refresh() must succeed first")
        return self.versions


def _signed_file(path: str, info: TargetFile) -> SignedFile:
    """A target's length, sha256, git mode and (format 2) blob id; refused without them."""
    custom = info.custom if isinstance(info.custom, dict) else {}
    mode = custom.get("git_mode")
    oid = custom.get("git_oid")
    sha = info.hashes.get("sha256")
    if (not isinstance(mode, int) or not isinstance(sha, str)
            or not (oid is None or _is_oid(oid))):
        raise VerifyError(
            f"signed target {path} has no git mode or sha256, or a bad blob id",
            hint="publish with 'bootpull repo publish' of this bootpull version")
    return SignedFile(path, info.length, sha, mode, oid)


def _is_oid(value: object) -> bool:
    return (isinstance(value, str) and len(value) == 40
            and all(c in "0123456789abcdef" for c in value))


def _could_hold(prefix: str, pattern: str) -> bool:
    """Whether ``pattern`` can match some path below the directory ``prefix``."""
    parts = [p for p in prefix.split("/") if p]
    globs = pattern.split("/")
    return len(globs) > len(parts) and all(
        fnmatchcase(part, glob) for part, glob in zip(parts, globs, strict=False))
