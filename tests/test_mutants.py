"""The mutation check's list stays true to the code: every mutant still applies once,
changes its file, and names tests that exist (the check itself: tests/mutation.py)."""

from __future__ import annotations

import mutation
import pytest


@pytest.mark.parametrize("mutant", mutation.MUTANTS, ids=lambda m: m.name)
def test_each_mutant_applies_to_todays_code(mutant: mutation.Mutant) -> None:
    text = (mutation.ROOT / mutant.path).read_text()
    changed = mutation.apply(mutant, text)
    assert changed != text
    compile(changed, mutant.path, "exec")  # a mutant breaks behaviour, not syntax
    for test in mutant.tests:
        assert (mutation.ROOT / test.split("::")[0]).is_file(), test


def test_names_are_unique_and_a_stale_mutant_is_reported() -> None:
    names = [m.name for m in mutation.MUTANTS]
    assert len(names) == len(set(names))
    stale = mutation.Mutant("x", "p.py", "gone", "y", (), "nothing")
    with pytest.raises(mutation.MutantError, match=r"occurs 0 times in p\.py"):
        mutation.apply(stale, "text")


def test_the_modules_the_issue_names_are_covered() -> None:
    covered = {m.path.rsplit("/", 1)[-1] for m in mutation.MUTANTS}
    assert {"trust.py", "pull.py", "install.py", "state.py", "dhcp.py", "store.py",
            "feeds.py", "drift.py"} <= covered
