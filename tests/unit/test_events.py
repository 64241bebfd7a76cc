"""What Celery's events tell the agent: who was heard, who is busy, which tasks failed."""

from __future__ import annotations

from typing import Any

from healer.model import TaskEvent
from healer.probes.events import CeleryEvents
from healer.testing import ManualClock
from healer.vocabulary import TaskEventKind

NODE = "w1@host"


def heard(*events: dict[str, Any]) -> CeleryEvents:
    """A listener that received these events (as its Receiver hands them over)."""
    listener = CeleryEvents("redis://127.0.0.1:1/0", ManualClock(start=100.0))
    for event in events:
        listener.receive(event)
    return listener


def test_a_heartbeat_is_a_sign_of_life() -> None:
    """worker-heartbeat (or any event of the node) marks it heard at the time it arrived."""
    signals = heard({"type": "worker-heartbeat", "hostname": NODE}).signals()
    assert signals.heard == {NODE: 100.0}
    assert signals.busy == {}


def test_a_started_task_keeps_its_node_busy_until_it_ends() -> None:
    """task-started without its end is busy; succeeded, failed, revoked or retried end it."""
    started = {"type": "task-started", "hostname": NODE, "uuid": "t1"}
    assert heard(started).signals().busy == {NODE: 1}
    for end in ("task-succeeded", "task-failed", "task-revoked", "task-retried"):
        assert heard(started, {"type": end, "hostname": NODE, "uuid": "t1"}
                     ).signals().busy == {}


def test_a_node_going_offline_runs_nothing() -> None:
    """worker-offline: the tasks it had started are no longer counted as running."""
    listener = heard({"type": "task-started", "hostname": NODE, "uuid": "t1"},
                     {"type": "worker-offline", "hostname": NODE})
    assert listener.signals().busy == {}


def test_failures_and_retries_are_drained_with_their_names() -> None:
    """task-failed and task-retried come out of drain once, named from task-received."""
    listener = heard({"type": "task-received", "uuid": "t1", "name": "app.add"},
                     {"type": "task-failed", "uuid": "t1", "hostname": NODE, "timestamp": 5.0})
    assert listener.drain() == [TaskEvent(TaskEventKind.FAILED, 5.0, "app.add", "t1")]
    assert listener.drain() == []


def test_a_success_is_drained_with_its_name_for_the_critical_tasks() -> None:
    """task-succeeded comes out of drain, named: the last success of a critical task."""
    listener = heard({"type": "task-received", "uuid": "t2", "name": "app.tick"},
                     {"type": "task-succeeded", "uuid": "t2", "hostname": NODE, "timestamp": 7.0})
    assert listener.drain() == [TaskEvent(TaskEventKind.SUCCEEDED, 7.0, "app.tick", "t2")]
