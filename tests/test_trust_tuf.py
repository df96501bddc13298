"""The one private python-tuf attribute bootpull writes, checked against the installed tuf.

ngclient has no public way to set the time expiry is judged at, so
``trust.Verifier.refresh`` sets ``Updater._trusted_set.reference_time`` (pyproject.toml
holds tuf to the major version this was checked with). This fails if a python-tuf
release renames that attribute or stops judging expiry by it: the clock floor would
then be silently lost.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bootpull.trust import FETCH_BASE_URL, _tree_fetcher
from signed_repo import SignedRepo
from tuf.api.exceptions import ExpiredMetadataError
from tuf.ngclient.updater import Updater


def refresh_at(repo: SignedRepo, moment: datetime, cache: Path) -> None:
    cache.mkdir()
    updater = Updater(str(cache), FETCH_BASE_URL,
                      fetcher=_tree_fetcher(repo.remote().snapshot("main")),
                      bootstrap=repo.trust)
    assert isinstance(updater._trusted_set.reference_time, datetime)
    updater._trusted_set.reference_time = moment
    updater.refresh()


def test_ngclient_judges_expiry_by_the_reference_time_the_verifier_sets(
        signed_repo: SignedRepo, tmp_path: Path) -> None:
    refresh_at(signed_repo, datetime.now(UTC), tmp_path / "now")
    with pytest.raises(ExpiredMetadataError):  # timestamp.json lives 30 days
        refresh_at(signed_repo, datetime.now(UTC) + timedelta(days=45), tmp_path / "later")
