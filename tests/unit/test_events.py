"""What Celery's events tell the agent: who was heard, who is busy, which tasks failed."""

from __future__ import annotations

import time
from typing import Any

from kombu import Connection, Exchange

from healer.model import TaskEvent
from healer.probes.events import CeleryEvents, localized
from healer.testing import ManualClock
from healer.vocabulary import TaskEventKind

NODE = "w1@host"
BROKER = "memory://"
MARK = "mark@host"  # a node whose heartbeat shows that what was sent before it was received


def heard(*events: dict[str, Any]) -> CeleryEvents:
    """A listener that received these events (as its Receiver hands them over)."""
    listener = CeleryEvents("redis://127.0.0.1:1/0", ManualClock(start=100.0))
    for event in events:
        listener.receive(event)
    return listener


def received(*bodies: Any) -> CeleryEvents:  # noqa: ANN401 - what a worker may publish
    """A listener on the in-memory broker that received these messages, sent as a worker sends."""
    listener = CeleryEvents(BROKER, ManualClock(start=100.0))
    listener.start()
    exchange = Exchange("celeryev", type="topic")
    with Connection(BROKER) as connection:
        producer = connection.Producer(serializer="json")

        def send(body: Any, key: str) -> None:  # noqa: ANN401
            """Publish one message on the event exchange."""
            producer.publish(body, exchange=exchange, routing_key=key, declare=[exchange])

        def heard(mark: str) -> None:
            """Send the mark's heartbeat until the listener heard it."""
            deadline = time.monotonic() + 20
            while mark not in listener.signals().heard:
                assert time.monotonic() < deadline
                send({"type": "worker-heartbeat", "hostname": mark}, "worker.heartbeat")
                time.sleep(0.1)

        heard(MARK)  # the listener's queue is bound: nothing sent from now on is lost
        for body in bodies:
            send(body, "task.multi")
        heard(f"after-{MARK}")
    listener.stop()
    return listener


def test_a_batch_of_task_events_in_one_message_is_each_received() -> None:
    """Workers batch task events (a list in one message): each is received, in order."""
    listener = received([
        {"type": "task-received", "uuid": "t1", "name": "app.add", "hostname": NODE},
        {"type": "task-started", "uuid": "t1", "hostname": NODE},
        {"type": "task-failed", "uuid": "t1", "hostname": NODE, "timestamp": 5.0},
        {"type": "task-started", "uuid": "t2", "hostname": NODE}, "not an event",
    ], {"type": "task-retried", "uuid": "t3", "hostname": NODE, "timestamp": 6.0})
    assert listener.drain() == [TaskEvent(TaskEventKind.FAILED, 5.0, "app.add", "t1"),
                                TaskEvent(TaskEventKind.RETRIED, 6.0, "unknown", "t3")]
    assert listener.signals().busy == {NODE: 1}


def test_a_timestamp_is_moved_by_the_utc_offset_it_was_sent_with() -> None:
    """As Celery's receiver: an hour more of ``utcoffset`` (hours west of UTC) is an hour less."""
    east, west = (localized({"timestamp": 7200.0, "utcoffset": h})["timestamp"] for h in (0, 1))
    assert east - west == 3600
    assert localized({"timestamp": 5.0}) == {"timestamp": 5.0}


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
