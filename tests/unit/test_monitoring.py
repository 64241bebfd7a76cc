"""The shipped Grafana dashboard draws every gauge, and asks only for what the agent exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from msgspec.structs import replace

from healer.metrics import Metrics
from healer.model import ActionReport, Finding, FleetReport, PassReport
from healer.vocabulary import FindingKey, Outcome, Scenario, Severity

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
GAUGES = ("healer_incidents_open", "healer_paused", "healer_breakers_open",
          "healer_last_pass_timestamp_seconds", "healer_build_info", "healer_queue_depth",
          "healer_worker_up", "healer_outbox_size", "healer_fleet_store_up", "healer_fleet_hosts")
_METRIC = re.compile(r"\bhealer_[a-z_]+")


def queries() -> list[str]:
    """The expression of every panel's every query."""
    board = json.loads((DEPLOY / "grafana" / "healer.json").read_text())
    return [target["expr"] for panel in board["panels"] for target in panel["targets"]]


def exported() -> set[str]:
    """Every sample name the agent's registry gives once each metric has a value."""
    metrics = Metrics()
    unit = "w.service"
    finding = Finding(scenario=Scenario.WORKER_DOWN, severity=Severity.HIGH, unit=unit,
                      summary="down", evidence={})
    acted = [ActionReport.about(finding, unit, "restart_unit", Outcome.HEALED, "ok"),
             ActionReport(finding=FindingKey(Scenario.WORKER_DOWN, unit),
                          scenario=Scenario.WORKER_DOWN, unit=unit, action="escalate",
                          outcome=Outcome.DELIVERED, detail="", tier=0)]
    report = replace(PassReport(findings=(finding,), actions=tuple(acted), remaining=(finding,)),
                     paused=("*",), queues={"celery": 1}, nodes_up={"celery@a": True},
                     fleet=FleetReport(name="web", reachable=True, hosts=3, unhealthy=1))
    metrics.observe(report, 0.1, 1.0)
    metrics.failed("ProbeError")
    return {s.name for family in metrics.registry.collect() for s in family.samples}


def test_every_gauge_is_drawn_by_a_panel() -> None:
    """Each gauge the issue lists appears in some panel's query."""
    drawn = {name for expr in queries() for name in _METRIC.findall(expr)}
    assert set(GAUGES) - drawn == set()


def test_every_query_names_a_metric_the_agent_exports() -> None:
    """No panel asks for a healer metric the agent does not have (a typo draws nothing)."""
    names = exported()
    asked = {name for expr in queries() for name in _METRIC.findall(expr)}
    assert asked - names == set()


def test_every_rule_names_a_metric_the_agent_exports() -> None:
    """No alert rule waits on a healer metric that does not exist (it would never fire)."""
    rules = (DEPLOY / "prometheus" / "healer.rules.yml").read_text()
    assert set(_METRIC.findall(rules)) - exported() == set()


def test_a_host_in_no_fleet_exports_no_fleet_gauge() -> None:
    """Without [fleet] there is no healer_fleet_store_up at 0 for an alert to fire on."""
    metrics = Metrics()
    metrics.observe(PassReport(findings=(), actions=(), remaining=()), 0.1, 1.0)
    names = {s.name for family in metrics.registry.collect() for s in family.samples}
    assert not {n for n in names if n.startswith("healer_fleet")}
