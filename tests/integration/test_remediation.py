"""The policy engine and the guard on the real sandbox.

Ladders, broker first, the beat schedule, escalation to a real webhook, the breaker, the storm
guard and pause.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest

from sandbox.base import wait_until
from sandbox.stack import BEAT, BROKER, WORKER, CeleryStack
from tests.conftest import audit_records, healer
from tests.integration.conftest import Receiver

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.integration


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on a free loopback port, shut down after the test."""
    with Receiver().up() as running:
        yield running


def with_policy(stack: CeleryStack, rules: str, extra: str = "") -> Path:
    """The stack's config with one policy file holding ``rules`` (YAML)."""
    folder = stack.root / "policies"
    folder.mkdir(exist_ok=True)
    (folder / "test.yaml").write_text(rules)
    return stack.config(paths=f'state_dir = "{stack.root / "state"}"\n'
                              f'audit_log = "{stack.audit_log}"\npolicies = "{folder}"',
                        extra=extra)


def events(stack: CeleryStack, *names: str) -> list[dict[str, Any]]:
    """Audit records with one of these event names."""
    return [r for r in audit_records(stack.audit_log) if r["event"] in names]


def test_crash_loop_is_escalated_once_then_held_until_resume(
        stack: CeleryStack, receiver: Receiver) -> None:
    """A worker exiting after 2 s: one restart, one delivered escalation, then held until resume."""
    stack.manager.write_unit(WORKER, "[Service]\nExecStart=/bin/sh -c 'sleep 2; exit 1'\n")
    stack.manager.reload()
    stack.manager.systemctl("restart", WORKER)
    wait_until(lambda: stack.manager.show(WORKER, "ActiveState") == "failed", 10, "the crash")
    config = with_policy(stack, """
rules:
  - name: crash-loop
    match: {scenario: worker_down}
    ladder:
      - {action: restart_unit, verify: 3s, limit: {max: 2, within: 10m}}
      - {action: escalate}
""", extra=f'[escalation]\nwebhook = "http://127.0.0.1:{receiver.port}/hook"\n')
    first = healer(config, "run-once")
    assert first.returncode == 1, first.stdout + first.stderr
    for _ in range(2):
        assert healer(config, "run-once").returncode == 1
    started = events(stack, "action_started")
    assert [r["action"] for r in started] == ["restart_unit"]
    assert [b["scenario"] for b in receiver.bodies] == ["worker_down"]
    assert receiver.bodies[0]["incident"] == started[0]["incident"]
    [escalation] = events(stack, "escalation")
    assert escalation["outcome"] == "delivered"
    assert [r["outcome"] for r in events(stack, "decision")] == ["breaker_open"]

    assert healer(config, "resume").returncode == 0
    healer(config, "run-once")
    assert len(events(stack, "action_started")) == 2


def test_broker_first_and_no_worker_restart_while_it_is_down(stack: CeleryStack) -> None:
    """Broker stopped, worker killed: the broker is restarted first, the worker only after it."""
    stack.kill(WORKER)
    stack.manager.systemctl("stop", BROKER)
    result = healer(stack.config(), "run-once")
    assert result.returncode == 0, result.stdout + result.stderr
    assert [(r["action"], r["unit"]) for r in events(stack, "action_started")] == [
        ("restart_broker", BROKER), ("restart_unit", WORKER)]
    broker_up = int(stack.manager.show(BROKER, "ActiveEnterTimestampMonotonic"))
    worker_up = int(stack.manager.show(WORKER, "ActiveEnterTimestampMonotonic"))
    assert worker_up > broker_up
    assert stack.active(WORKER)


def test_stopped_broker_is_restarted_and_workers_reconnect(stack: CeleryStack) -> None:
    """Broker stopped: restarted and verified; the worker reconnects by itself, untouched."""
    pid = stack.main_pid(WORKER)
    stack.manager.systemctl("stop", BROKER)
    result = healer(stack.config(), "run-once")
    assert result.returncode == 0, result.stdout + result.stderr
    [finished] = events(stack, "action_finished")
    assert (finished["action"], finished["outcome"]) == ("restart_broker", "healed")
    assert "workers reconnected" in finished["detail"]
    assert stack.main_pid(WORKER) == pid


def test_corrupt_beat_schedule_is_cleared_with_a_backup(stack: CeleryStack) -> None:
    """Beat crashing on its schedule: clear_beat_schedule keeps the old files, beat sends again."""
    stack.manager.systemctl("stop", BEAT)
    data = stack.schedule.with_name(stack.schedule.name + ".dat")
    data.write_bytes(b"\x80\x04garbage!" * 200)
    stack.manager.systemctl("start", BEAT)
    wait_until(lambda: stack.manager.show(BEAT, "ActiveState") == "failed", 20, "beat to crash")
    sent = stack.log("celerybeat.log").count("Sending due task")
    result = healer(stack.config(), "run-once")
    assert result.returncode == 0, result.stdout + result.stderr
    [finished] = events(stack, "action_finished")
    assert (finished["action"], finished["outcome"]) == ("clear_beat_schedule", "healed")
    backups = list(stack.schedule.parent.glob("schedule.dat.healer-*"))
    assert len(backups) == 1
    assert b"garbage!" in backups[0].read_bytes()
    wait_until(lambda: stack.log("celerybeat.log").count("Sending due task") > sent, 20,
               "beat to send a task again")


def test_next_step_runs_when_the_first_does_not_heal(stack: CeleryStack) -> None:
    """Ladder reset_failed then restart_unit: the reset does not heal, the restart does."""
    config = with_policy(stack, """
rules:
  - name: ladder
    match: {scenario: worker_down}
    ladder:
      - {action: reset_failed}
      - {action: restart_unit, verify: 2s}
""")
    stack.kill(WORKER)
    result = healer(config, "run-once")
    assert result.returncode == 0, result.stdout + result.stderr
    assert [(r["action"], r["outcome"]) for r in events(stack, "action_finished")] == [
        ("reset_failed", "not_healed"), ("restart_unit", "healed")]
    assert stack.active(WORKER)


def test_a_worker_killed_in_another_window_is_restarted_before_it_ends(stack: CeleryStack
                                                                       ) -> None:
    """A second worker killed in the first's 10 s verify window is restarted within it."""
    second = "hiringdog-celery-2.service"
    stack.add_worker(second, "worker2@sandbox")
    config = with_policy(stack, """
rules:
  - name: restart
    match: {scenario: worker_down}
    ladder:
      - {action: restart_unit, verify: 10s}
""")
    stack.kill(WORKER)
    with ThreadPoolExecutor(1) as pool:
        run = pool.submit(healer, config, "run-once", "--json")
        wait_until(lambda: stack.active(WORKER), 20, "the first restart")
        stack.kill(second)
        result = run.result()
    at = {r["unit"]: datetime.fromisoformat(r["ts"]).timestamp()
          for r in events(stack, "action_started")}
    assert at[WORKER] < at[second] < at[WORKER] + 10
    assert {r["unit"]: r["outcome"] for r in events(stack, "action_finished")} == {
        WORKER: "healed", second: "healed"}
    assert json.loads(result.stdout)["remaining"] == []
    assert all(stack.active(unit) for unit in (WORKER, second))


def test_storm_guard_holds_and_escalates(stack: CeleryStack) -> None:
    """All workers killed at once (3 of 5 units): nothing restarted, storm recorded, escalated."""
    stack.add_worker("hiringdog-celery-2.service", "worker2@sandbox")
    stack.add_worker("hiringdog-celery-3.service", "worker3@sandbox")
    for unit in stack.workers:
        stack.kill(unit)
    result = healer(stack.config(), "run-once")
    assert result.returncode == 1
    assert events(stack, "action_started") == []
    [storm] = events(stack, "storm_guard")
    assert storm["outcome"] == "on"
    assert "3 of 5 managed units" in storm["reason"]
    assert {r["outcome"] for r in events(stack, "decision")} == {"storm"}
    assert len(events(stack, "escalation")) == 3
    assert all(stack.manager.show(u, "ActiveState") == "failed" for u in stack.workers)


def test_paused_healer_changes_nothing(stack: CeleryStack) -> None:
    """Paused: a dead worker is recorded as paused and left alone; after resume it is healed."""
    config = stack.config()
    paused = healer(config, "pause", "--for", "10m", "--reason", "maintenance window")
    assert paused.returncode == 0, paused.stderr
    stack.kill(WORKER)
    before = stack.manager.show(WORKER, "InactiveEnterTimestampMonotonic")
    result = healer(config, "run-once")
    assert result.returncode == 1
    assert stack.manager.show(WORKER, "InactiveEnterTimestampMonotonic") == before
    assert events(stack, "action_started") == []
    decision = events(stack, "decision")[0]
    assert decision["outcome"] == "paused"
    assert "maintenance window" in decision["reason"]

    assert healer(config, "resume").returncode == 0
    assert healer(config, "run-once").returncode == 0
    assert stack.active(WORKER)
