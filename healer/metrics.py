"""Prometheus metrics of the agent, on a registry of its own (no global state).

Served over HTTP on a configured loopback address, or written as a node_exporter textfile.
Counters follow the pass reports, so they match the audit log; gauges say how the last pass
left things (``deploy/grafana`` draws each, ``deploy/prometheus`` alerts on them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from healer import __version__, safefile
from healer.vocabulary import ACTED, ESCALATIONS

if TYPE_CHECKING:
    from pathlib import Path

    from healer.model import PassReport

class Metrics:
    """Counters of passes, findings, steps and notifications; gauges of the last pass."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.passes = Counter("healer_passes", "Passes run", registry=r)
        self.failures = Counter("healer_pass_failures", "Passes that failed", ["reason"],
                                registry=r)
        self.findings = Counter("healer_findings", "Findings seen", ["scenario"], registry=r)
        self.actions = Counter("healer_actions", "Steps carried out", ["action", "outcome"],
                               registry=r)
        self.notifications = Counter("healer_notifications", "Notifications tried, by tier "
                                     "(1: the first) and outcome", ["tier", "outcome"],
                                     registry=r)
        self.breakers = Gauge("healer_breakers_open", "Problems held by an open breaker",
                              registry=r)
        self.events = Gauge("healer_events_subscribed", "1 while passes follow systemd's "
                            "state changes, 0 while polling only", registry=r)
        self.duration = Histogram("healer_pass_duration_seconds", "Duration of a pass",
                                  buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
                                  registry=r)
        self.incidents = Gauge("healer_incidents_open", "Open incidents (1 each)",
                               ["scenario", "unit"], registry=r)
        self.paused = Gauge("healer_paused", "1 while acting is paused (unit * : everything)",
                            ["unit"], registry=r)
        self.storm = Gauge("healer_storm_guard", "1 while the storm guard holds workers and beat",
                           registry=r)
        self.last_pass = Gauge("healer_last_pass_timestamp_seconds", "When the last pass ended",
                               registry=r)
        self.outbox = Gauge("healer_outbox_size", "Notifications waiting to be delivered",
                            registry=r)
        self.queues = Gauge("healer_queue_depth", "Messages waiting in each queue",
                            ["queue_name"], registry=r)
        self.workers = Gauge("healer_worker_up", "1 when the node answered the last ping",
                             ["node"], registry=r)
        self.fleet_store = Gauge("healer_fleet_store_up", "1 while the fleet's store answers, "
                                 "0 while the local fallback budget applies", ["fleet"],
                                 registry=r)  # labelled: a host in no fleet exports none
        self.fleet_hosts = Gauge("healer_fleet_hosts", "The fleet's live hosts, and those "
                                 "unhealthy", ["fleet", "state"], registry=r)
        Gauge("healer_build_info", "healer's version", ["version"],
              registry=r).labels(__version__).set(1)

    def observe(self, report: PassReport, seconds: float, ended: float) -> None:
        """Count one pass, which ended at ``ended`` (wall time), and set the gauges from it."""
        self.passes.inc()
        self.duration.observe(seconds)
        self.last_pass.set(ended)
        for finding in report.findings:
            self.findings.labels(finding.scenario.value).inc()
        for action in report.actions:
            if action.outcome in ESCALATIONS:
                self.notifications.labels(str((action.tier or 0) + 1), action.outcome).inc()
            elif action.action is not None and action.outcome in ACTED:
                self.actions.labels(action.action, action.outcome).inc()
        self.breakers.set(len(report.breakers))
        self.storm.set(report.storm)
        self.outbox.set(report.outbox)
        _each(self.incidents, {(f.scenario.value, f.unit or ""): 1 for f in report.remaining})
        _each(self.paused, {(unit,): 1 for unit in report.paused})
        _each(self.queues, {(queue,): depth for queue, depth in report.queues.items()})
        _each(self.workers, {(node,): up for node, up in report.nodes_up.items()})
        fleet = report.fleet
        _each(self.fleet_store, {(fleet.name,): fleet.reachable} if fleet else {})
        _each(self.fleet_hosts, {(fleet.name, "live"): fleet.hosts,
                                 (fleet.name, "unhealthy"): fleet.unhealthy}
              if fleet and fleet.reachable else {})

    def failed(self, reason: str) -> None:
        """Count a pass that could not run."""
        self.failures.labels(reason).inc()

    def write(self, path: Path) -> None:
        """Write the node_exporter textfile atomically, never through a planted link."""
        safefile.replace(path, generate_latest(self.registry), mode=0o644)  # node_exporter reads it


def _each(gauge: Gauge, values: dict[tuple[str, ...], float]) -> None:
    """The gauge holds exactly these label sets now: what the last pass no longer saw is gone."""
    gauge.clear()
    for labels, value in values.items():
        gauge.labels(*labels).set(value)
