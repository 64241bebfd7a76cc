"""Prometheus metrics of the agent, on a registry of its own (no global state).

Served over HTTP on a configured loopback address, or written as a node_exporter textfile.
Counters follow the pass reports, so they match the audit log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from healer import safefile
from healer.vocabulary import ACTED, ESCALATIONS

if TYPE_CHECKING:
    from pathlib import Path

    from healer.model import PassReport

class Metrics:
    """passes, findings by scenario, actions by step and outcome, escalations, breakers."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.passes = Counter("healer_passes", "Passes run", registry=r)
        self.failures = Counter("healer_pass_failures", "Passes that failed", ["reason"],
                                registry=r)
        self.findings = Counter("healer_findings", "Findings seen", ["scenario"], registry=r)
        self.actions = Counter("healer_actions", "Steps carried out", ["action", "outcome"],
                               registry=r)
        self.escalations = Counter("healer_escalations", "Escalations", ["outcome"], registry=r)
        self.breakers = Gauge("healer_breakers_open", "Problems held by an open breaker",
                              registry=r)
        self.events = Gauge("healer_events_subscribed", "1 while passes follow systemd's "
                            "state changes, 0 while polling only", registry=r)
        self.duration = Histogram("healer_pass_duration_seconds", "Duration of a pass",
                                  buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
                                  registry=r)

    def observe(self, report: PassReport, seconds: float) -> None:
        """Count one pass."""
        self.passes.inc()
        self.duration.observe(seconds)
        for finding in report.findings:
            self.findings.labels(finding.scenario.value).inc()
        for action in report.actions:
            if action.outcome in ESCALATIONS:
                self.escalations.labels(action.outcome.value).inc()
            elif action.action is not None and action.outcome in ACTED:
                self.actions.labels(action.action, action.outcome).inc()
        self.breakers.set(len(report.breakers))

    def failed(self, reason: str) -> None:
        """Count a pass that could not run."""
        self.failures.labels(reason).inc()

    def write(self, path: Path) -> None:
        """Write the node_exporter textfile atomically, never through a planted link."""
        safefile.replace(path, generate_latest(self.registry), mode=0o644)  # node_exporter reads it
