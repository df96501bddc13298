"""A same-length substitution of every signed kind is refused by its hash, not its size.

Swapping bytes while keeping a file's length is the classic attack on a check that
compares sizes: each case here serves a file whose length matches what was signed and
whose bytes do not, and expects the SHA-256 comparison to refuse it (exit 12, nothing
accepted; see ``refused``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from signed_repo import MAC_WEB, SignedRepo, node_pull
from test_trust_security import RewritingRemote, refused

pytestmark = pytest.mark.formats(1, 2)  # signed metadata format 1 and 2


def same_length_tamper(data: bytes) -> bytes:
    """``data`` with its first letter or digit changed: same length, other bytes."""
    for i, byte in enumerate(data):
        if chr(byte).isalnum():
            swapped = ord("x") if byte != ord("x") else ord("y")
            out = data[:i] + bytes([swapped]) + data[i + 1:]
            assert len(out) == len(data) and out != data
            return out
    raise AssertionError(f"nothing to change in {data!r}")


HOST = f"hosts/{MAC_WEB.canonical}.toml"
KINDS = {
    "role file": "roles/web/files/serve.sh",
    "role spec": "roles/web/role.toml",
    "host file": HOST,
    "repository settings": "bootpull.toml",
}


@pytest.mark.parametrize("path", KINDS.values(), ids=list(KINDS))
def test_a_same_length_substitution_at_the_head_is_refused(signed_repo: SignedRepo,
                                                           tmp_path: Path, path: str) -> None:
    tampered = same_length_tamper((signed_repo.root / path).read_bytes())
    remote = RewritingRemote(signed_repo, replace={path: tampered})
    error = refused(remote, MAC_WEB, tmp_path / "state", trust=signed_repo.trust)
    assert f"{path} does not match its signed hash" in error.what
    size = f"({len(tampered)} B)"
    assert error.expected.endswith(size) and error.got.endswith(size), (error.expected,
                                                                          error.got)
    assert error.expected != error.got


def test_a_same_length_substitution_in_a_release_is_refused(signed_repo: SignedRepo,
                                                            tmp_path: Path) -> None:
    """The node is pinned to release web 1.0: the file is read from the release tag."""
    signed_repo.bootpull("release", "web", "1.0")
    signed_repo.bootpull("assign", MAC_WEB.canonical, "web", "--version", "1.0")
    signed_repo.publish()
    path = "roles/web/files/serve.sh"
    tampered = same_length_tamper((signed_repo.root / path).read_bytes())
    remote = RewritingRemote(signed_repo, replace={path: tampered})
    error = refused(remote, MAC_WEB, tmp_path / "state", trust=signed_repo.trust)
    assert f"{path} does not match its signed hash" in error.what
    assert error.expected.endswith(f"({len(tampered)} B)")
    untouched = node_pull(signed_repo, MAC_WEB, tmp_path / "ok")
    assert untouched.bundle.version == "1.0", "the pinned release is what was read"
