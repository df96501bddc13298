"""pytest plugin: in CI a skipped test is a failed test.

CI (``CI=true``, as root, after ``bash .ci/setup --test``) has every part the tests
need, so a test that skips there hides a broken setup: a lab network that cannot be
built, a server or a browser that is missing. There the skip is reported as a failure
that names the reason. Outside CI, skips stay skips (a developer without root, say).
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = (f"skipped in CI, where every part the tests need is installed: "
                           f"{reason} (with CI=true a skip is a failure)")
