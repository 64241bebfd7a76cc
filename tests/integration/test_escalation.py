"""Escalation on real time with a real local receiver: the outbox, kills, resolves, stalls.

A crash-looping worker whose ladder runs out escalates; the receiver may be down.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest

from healer.state import StateStore
from sandbox.base import wait_until
from sandbox.stack import BEAT, WORKER, CeleryStack
from tests.conftest import audit_records, diagnose, healer
from tests.integration.conftest import Alertmanager, Receiver

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration

LADDER = """rules:
  - name: crash-loop
    match: {scenario: worker_down}
    ladder:
      - {action: restart_unit, verify: 2s, limit: {max: 2, within: 1h}}
      - {action: escalate}
"""


def crash_loop(stack: CeleryStack, webhook: str, fmt: str = "generic") -> Path:
    """The worker exits after a second, for good; a config whose one restart will not hold."""
    stack.manager.write_unit(WORKER, "[Service]\nExecStart=/bin/sh -c 'sleep 1; exit 1'\n")
    stack.manager.reload()
    stack.manager.systemctl("restart", WORKER)
    wait_until(lambda: stack.show(WORKER, "ActiveState") == "failed", 10, "the crash")
    policies = stack.root / "policies"
    policies.mkdir()
    (policies / "p.yaml").write_text(LADDER)
    key = '\nrouting_key = "R0UTING-KEY-0123"' if fmt == "pagerduty" else ""
    return stack.config(
        paths=f'state_dir = "{stack.root / "state"}"\naudit_log = "{stack.audit_log}"\n'
              f'policies = "{policies}"',
        extra=f'[escalation]\nwebhook = "{webhook}"\nformat = "{fmt}"{key}\n'
              'retry_after = 1\nattempts = 1\n')


def outbox(stack: CeleryStack) -> int:
    """How many notifications wait in the state's outbox."""
    return len(StateStore(stack.root / "state").load().outbox)


def test_a_receiver_down_gets_one_trigger_when_back_and_a_resolve_after_the_heal(
        stack: CeleryStack) -> None:
    """Down at the escalation: kept; back: exactly one trigger; healed: a resolve, same key."""
    receiver = Receiver()
    config = crash_loop(stack, receiver.url, fmt="pagerduty")
    healer(config, "run-once")
    assert outbox(stack) == 1
    with receiver.up():
        time.sleep(1.1)  # retry_after
        for _ in range(3):
            healer(config, "run-once")
        assert [b["event_action"] for b in receiver.bodies] == ["trigger"]
        assert outbox(stack) == 0
        stack.write_worker()  # the fault is removed
        stack.manager.reload()
        assert healer(config, "resume").returncode == 0
        healed = healer(config, "run-once")
        assert healed.returncode == 0, healed.stdout
        trigger, resolve = receiver.bodies
        assert (resolve["event_action"], resolve["dedup_key"]) == ("resolve",
                                                                    trigger["dedup_key"])
    outcomes = [(r["action"], r["outcome"]) for r in
                map(json.loads, stack.audit_log.read_text().splitlines())
                if r["event"] == "escalation"]
    assert outcomes == [("escalate", "undelivered"), ("escalate", "delivered"),
                        ("resolve", "delivered")]


def test_a_notification_waiting_when_the_agent_is_killed_is_sent_once_after(
        stack: CeleryStack) -> None:
    """SIGKILL while the outbox holds the trigger; the agent started again delivers it once."""
    receiver = Receiver()
    config = crash_loop(stack, receiver.url)
    command = [sys.executable, "-m", "healer", "--config", str(config), "run"]
    agent = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: outbox(stack) == 1, 30, "the trigger to wait in the outbox")
    finally:
        agent.send_signal(signal.SIGKILL)
        agent.wait()
    with receiver.up():
        again = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: bool(receiver.bodies), 30, "the trigger to arrive")
            time.sleep(3)  # further passes: nothing is sent twice
        finally:
            again.send_signal(signal.SIGTERM)
            again.wait(timeout=30)
    assert [(b["scenario"], b["status"]) for b in receiver.bodies] == [
        ("worker_down", "triggered")]
    assert outbox(stack) == 0


def test_an_alert_fires_in_alertmanager_and_is_resolved_after_the_heal(stack: CeleryStack,
                                                                       tmp_path: Path) -> None:
    """Through Alertmanager's own API: the incident's alert fires, labelled; healed, it is gone."""
    with Alertmanager(tmp_path / "alertmanager") as manager:
        config = crash_loop(stack, manager.url, fmt="alertmanager")
        healer(config, "run-once")
        wait_until(lambda: bool(manager.alerts()), 10, "the alert in Alertmanager")
        [alert] = manager.alerts()
        assert alert["status"]["state"] == "active"
        labels = alert["labels"]
        assert {k: labels[k] for k in ("alertname", "scenario", "unit", "severity")} == {
            "alertname": "HealerIncident", "scenario": "worker_down", "unit": WORKER,
            "severity": "critical"}
        assert labels["host"]
        stack.write_worker()  # the fault is removed
        stack.manager.reload()
        assert healer(config, "resume").returncode == 0
        assert healer(config, "run-once").returncode == 0
        wait_until(lambda: not manager.alerts(), 10, "the alert to be resolved")
    sent = [(r["action"], r["outcome"], r["tier"]) for r in audit_records(stack.audit_log)
            if r["event"] == "escalation"]
    assert sent == [("escalate", "delivered", 1), ("resolve", "delivered", 1)]


def test_a_critical_task_is_stalled_only_once_beat_stops_sending_it(stack: CeleryStack) -> None:
    """demoapp.tick, sent by beat every 2 s: not stalled while it runs; found once beat stops."""
    config = stack.config(extra='[tasks]\ncritical = ["demoapp.tick"]\nstalled_after = 5\n')
    diagnose(config)  # healer reads task outcomes from now on
    time.sleep(6)  # longer than stalled_after: only its successes keep it from stalling
    _, findings = diagnose(config)
    assert "critical_task_stalled" not in [f["scenario"] for f in findings], findings
    stack.manager.systemctl("stop", BEAT)
    time.sleep(6)
    _, findings = diagnose(config)
    [stalled] = [f for f in findings if f["scenario"] == "critical_task_stalled"]
    assert stalled["severity"] == "high"
    assert stalled["evidence"]["silent_s:demoapp.tick"] >= 5
    assert stalled["remedy"].startswith("watch, escalate after 0s")
