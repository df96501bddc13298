"""``GET /metrics``: the home base in the Prometheus text format (prometheus_client).

Every figure comes from what the home base already keeps: the last fleet snapshot
(:mod:`.fleet`, never a walk over the nodes per scrape), its counters and the store's
size on disk. The families (docs/homebase.md, "Metrics"):

| metric | type | labels |
|---|---|---|
| ``bootpull_nodes`` | gauge | ``status``, ``role``, ``version`` |
| ``bootpull_nodes_silent`` | gauge | |
| ``bootpull_nodes_never_seen`` | gauge | |
| ``bootpull_nodes_drifting`` | gauge | |
| ``bootpull_events_accepted_total`` | counter | |
| ``bootpull_events_duplicate_total`` | counter | |
| ``bootpull_events_refused_total`` | counter | ``reason`` |
| ``bootpull_last_event_age_seconds`` | gauge | (absent before the first event) |
| ``bootpull_store_bytes`` | gauge | |
| ``bootpull_fleet_snapshot_age_seconds`` | gauge | |
| ``bootpull_webhook_{sent,retries,failed,dropped}_total`` | counter | (``--webhook``) |
| ``bootpull_webhook_queued`` | gauge | (``--webhook``) |
| ``bootpull_homebase_healthy`` | gauge | 1 when ``/healthz`` says 200 |
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import exposition, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from bootpull_homebase.admission import REFUSAL_REASONS
from bootpull_homebase.fleet import NEVER_SEEN

if TYPE_CHECKING:
    from bootpull_homebase.server import Homebase

#: text format 0.0.4, which every Prometheus reads (1.0.0 only adds UTF-8 names, and
#: these names are ASCII)
CONTENT_TYPE: str = getattr(exposition, "CONTENT_TYPE_PLAIN_0_0_4",
                            exposition.CONTENT_TYPE_LATEST)
#: every refusal reason, so each series exists from the start (rate() needs a zero)
REASONS = tuple(sorted({*REFUSAL_REASONS.values(), "client_bytes", "node_bytes", "other",
                        "unsigned", "wrong_key", "bad_signature", "rejected_key",
                        "replay"}))


class HomebaseCollector(Collector):
    def __init__(self, homebase: Homebase) -> None:
        self.homebase = homebase

    def collect(self) -> Iterator[Metric]:
        hb = self.homebase
        fleet = hb.fleet.current(block=False)
        now = hb.store.clock()
        nodes = GaugeMetricFamily("bootpull_nodes", "Nodes by status, role and version "
                                  "(NEVER SEEN: assigned, never reported)",
                                  labels=["status", "role", "version"])
        groups = Counter((row.status, row.role, row.version) for row in fleet.rows)
        for (status, role, version), count in sorted(groups.items()):
            nodes.add_metric([status, role, version], count)
        yield nodes
        yield GaugeMetricFamily("bootpull_nodes_silent", "Nodes past their report deadline",
                                value=fleet.counts.get("SILENT", 0))
        yield GaugeMetricFamily("bootpull_nodes_never_seen",
                                "Nodes the repository assigns that never reported",
                                value=fleet.counts.get(NEVER_SEEN, 0))
        yield GaugeMetricFamily("bootpull_nodes_drifting",
                                "Nodes that differ from what the repository says",
                                value=len(fleet.drift))
        yield CounterMetricFamily("bootpull_events_accepted", "Events stored",
                                  value=hb.accepted)
        yield CounterMetricFamily("bootpull_events_duplicate",
                                  "Events received again and not stored twice",
                                  value=hb.duplicates)
        refused = CounterMetricFamily("bootpull_events_refused",
                                      "POST /api/v1/events requests refused, by reason",
                                      labels=["reason"])
        for reason in sorted({*REASONS, *hb.refusals}):
            refused.add_metric([reason], hb.refusals.get(reason, 0))
        yield refused
        last = hb.store.last_received()
        if last is not None:
            yield GaugeMetricFamily("bootpull_last_event_age_seconds",
                                    "Seconds since the home base received its last event",
                                    value=max(0.0, now - last))
        yield GaugeMetricFamily("bootpull_store_bytes",
                                "Size of the event database on disk (with its WAL)",
                                value=hb.store.size_bytes())
        yield GaugeMetricFamily("bootpull_fleet_snapshot_age_seconds",
                                "Age of the fleet snapshot these figures come from",
                                value=max(0.0, now - fleet.at))
        hook = hb.changelog.webhook
        if hook is not None:
            for name, value, what in (("sent", hook.sent, "status changes delivered"),
                                      ("retries", hook.retries, "deliveries retried"),
                                      ("failed", hook.failed, "status changes given up"),
                                      ("dropped", hook.dropped, "dropped: queue full")):
                yield CounterMetricFamily(f"bootpull_webhook_{name}", f"Webhook: {what}",
                                          value=value)
            yield GaugeMetricFamily("bootpull_webhook_queued",
                                    "Webhook: status changes waiting", value=hook.queued)
        code, _ = hb.health()
        yield GaugeMetricFamily("bootpull_homebase_healthy",
                                "1 when /healthz answers 200", value=int(code == 200))


def registry_for(homebase: Homebase) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HomebaseCollector(homebase))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    out: bytes = generate_latest(registry)
    return out
