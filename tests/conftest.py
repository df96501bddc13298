"""Shared test configuration. Fixtures for real servers live in their own plugin modules."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

# The machines are small (2 cores) and often busy booting VMs: hypothesis judges
# correctness here, not speed (speed is bench/'s job).
settings.register_profile(
    "bootpull", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=100
)
settings.load_profile("bootpull")

# Fixture plugins for real servers (network namespaces + dnsmasq, git smart HTTP, ...).
# Each area adds the module that holds its session-scoped fixtures here.
# (nginxserver before lab_fixtures, which imports it)
pytest_plugins: list[str] = ["gitserver", "homebase_fixtures", "signed_repo", "netfixtures",
                             "example_fixtures", "eventsink", "nginxserver", "lab_fixtures",
                             "ci_skips", "ntpserver", "gitserver_kinds", "pytester"]
