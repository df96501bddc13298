"""With CI=true a skipped test fails the run; without it a skip stays a skip."""

from __future__ import annotations

from pathlib import Path

import pytest

INNER = """
import pytest

def test_lab() -> None:
    pytest.skip("lab network unavailable: no root")

@pytest.mark.skipif(True, reason="chromium is not installed")
def test_page() -> None:
    pass

@pytest.mark.xfail(reason="known")
def test_known() -> None:
    raise AssertionError

def test_fine() -> None:
    pass
"""


@pytest.mark.parametrize(("ci", "failed", "errors", "skipped"),
                         [("true", 1, 1, 0), ("", 0, 0, 2)])
def test_a_skip_fails_only_in_ci(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                 ci: str, failed: int, errors: int, skipped: int) -> None:
    """A skip in the test body is a failure, a skipif (at setup) an error: both fail."""
    monkeypatch.setenv("CI", ci)
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_subprocess("-p", "ci_skips", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=failed, errors=errors, skipped=skipped, xfailed=1)
    if ci:
        result.stdout.fnmatch_lines(["*skipped in CI*lab network unavailable: no root*",
                                     "*skipped in CI*chromium is not installed*"])
