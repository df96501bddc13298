"""The node holds a role to the repository's [limits] itself, not only lint and publish.

A publisher that skipped lint (an older tool, a hand-signed repository) can sign a
role over the limits its own bootpull.toml sets; the node must still refuse it before
it fetches a byte of the role's files.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from signed_repo import MAC_WEB, SignedRepo
from test_trust_security import refused

WEB_FILES = 5  # role.toml, serve.sh, check.sh, www/index.html, www/home.html


@pytest.mark.parametrize(("limits", "why"), [
    ("max_files = 4", f"{WEB_FILES} files"),
    ("max_bundle_bytes = 40", "bytes; the limits are"),
])
def test_a_signed_role_over_the_limits_is_refused(signed_repo: SignedRepo, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  limits: str, why: str) -> None:
    import bootpull_repo.publish

    settings = (signed_repo.root / "bootpull.toml").read_text()
    signed_repo.write("bootpull.toml", f"{settings}\n[limits]\n{limits}\n".encode())
    signed_repo.commit("tight limits")
    monkeypatch.setattr(bootpull_repo.publish, "validate", lambda ctx, head: None)
    signed_repo.publish()  # signed without lint's check
    monkeypatch.undo()
    error = refused(signed_repo, MAC_WEB, tmp_path / "state")
    assert error.what == "role 'web' is larger than this repository's limits"
    assert why in error.why, error.why
    assert "[limits]" in error.hint
