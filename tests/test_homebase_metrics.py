"""``GET /metrics``: the Prometheus text format, read back by prometheus_client's own
parser and checked by ``promtool check metrics`` (Debian's prometheus package)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from bootpull.mac import Mac
from bootpull_homebase.server import Running
from homebase_fixtures import DB1, WEB1, WEB2, FakeClock, event, settings_for
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
PROMTOOL = shutil.which("promtool") or next(
    (str(p) for p in [ROOT / "cache/prometheus/usr/bin/promtool"] if p.exists()), None)
STRANGER = Mac.parse("02:00:00:00:77:01")
STRANGER2 = Mac.parse("02:00:00:00:77:02")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def hb(homebase_repo: Path, tmp_path: Path, clock: FakeClock) -> Iterator[Running]:
    settings = settings_for(homebase_repo, tmp_path / "events.db", max_unknown_nodes=1,
                            webhook="http://127.0.0.1:9/hook")
    with Running(settings, clock=clock) as running:
        running.homebase.changelog.webhook.base = 3600.0  # type: ignore[union-attr]
        yield running


def scrape(hb: Running) -> tuple[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    answer = requests.get(hb.url + "/metrics", timeout=30)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return answer.text, samples


def test_metrics_count_nodes_events_refusals_and_age(hb: Running, clock: FakeClock,
                                                     tmp_path: Path) -> None:
    post = hb.url + "/api/v1/events"
    first = event(WEB1)  # made once: its time field makes each call a new event
    assert requests.post(post, json=[first, event(WEB2, "warn")],
                         timeout=30).status_code == 200
    assert requests.post(post, json=first, timeout=30).json()["duplicates"] == 1
    assert requests.post(post, json={"node": "nope"}, timeout=30).status_code == 400
    assert requests.post(post, data=b"{", timeout=30).status_code == 400
    assert requests.post(post, json=event(STRANGER), timeout=30).status_code == 200
    assert requests.post(post, json=event(STRANGER2), timeout=30).status_code == 403
    clock.advance(30)
    text, samples = scrape(hb)
    assert samples[("bootpull_nodes", (("role", "web"), ("status", "OK"),
                                       ("version", "1.0")))] == 2  # WEB1, STRANGER
    assert samples[("bootpull_nodes", (("role", "web"), ("status", "WARN"),
                                       ("version", "1.0")))] == 1
    assert samples[("bootpull_nodes", (("role", "db"), ("status", "NEVER SEEN"),
                                       ("version", "")))] == 1  # DB1 has never reported
    assert samples[("bootpull_nodes_never_seen", ())] == 1
    assert samples[("bootpull_nodes_silent", ())] == 0
    assert samples[("bootpull_events_accepted_total", ())] == 3
    assert samples[("bootpull_events_duplicate_total", ())] == 1
    assert samples[("bootpull_events_refused_total", (("reason", "invalid"),))] == 2
    assert samples[("bootpull_events_refused_total", (("reason", "unknown_node"),))] == 1
    assert samples[("bootpull_events_refused_total", (("reason", "rate"),))] == 0
    assert samples[("bootpull_last_event_age_seconds", ())] == 30
    db = tmp_path / "events.db"
    on_disk = sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())
    assert samples[("bootpull_store_bytes", ())] == on_disk > 0
    assert samples[("bootpull_homebase_healthy", ())] == 1
    assert ("bootpull_webhook_queued", ()) in samples
    assert "bootpull_webhook_sent_total" in text
    clock.advance(200)  # past the web role's 120 s deadline
    _, later = scrape(hb)
    assert later[("bootpull_nodes_silent", ())] == 3
    assert later[("bootpull_last_event_age_seconds", ())] == 230


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (bash .ci/setup --test)")
def test_promtool_accepts_the_metrics(hb: Running, clock: FakeClock) -> None:
    requests.post(hb.url + "/api/v1/events", timeout=30,
                  json=[event(WEB1), event(DB1, "fail", role="db")]).raise_for_status()
    requests.post(hb.url + "/api/v1/events", json={}, timeout=30)
    text, _ = scrape(hb)
    assert PROMTOOL is not None
    checked = subprocess.run([PROMTOOL, "check", "metrics"], input=text, text=True,
                             capture_output=True, timeout=60, check=False)
    assert checked.returncode == 0 and not checked.stdout.strip(), (
        checked.stdout + checked.stderr)
    # promtool is not a pushover: a name that breaks its rules fails the check
    broken = text.replace("bootpull_events_accepted_total", "bootpull_eventsAccepted")
    bad = subprocess.run([PROMTOOL, "check", "metrics"], input=broken, text=True,
                         capture_output=True, timeout=60, check=False)
    assert bad.returncode != 0
