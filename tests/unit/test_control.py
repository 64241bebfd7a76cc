"""The control probe over kombu's in-memory broker, against a node that answers as a worker."""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Any

from kombu import Connection
from kombu.pidbox import Mailbox

from healer.model import ActiveTask, CeleryState
from healer.probes.celery import ControlProbe
from healer.testing import ManualClock

if TYPE_CHECKING:
    from collections.abc import Iterator

BROKER = "memory://"
NODE = "w1@host"
TASK = {"id": "t1", "name": "app.add", "time_start": 1_699_999_990.0, "worker_pid": 7}
REPLIES = {"ping": {"ok": "pong"}, "active": [TASK], "stats": {"total": {"app.add": 3}}}


@contextlib.contextmanager
def worker(hostname: str, replies: dict[str, Any]) -> Iterator[None]:
    """A node on Celery's control mailbox, in a thread, answering each command with its reply."""
    ready, stop = threading.Event(), threading.Event()

    def serve() -> None:
        """Listen on the node's pidbox queue until stopped."""
        with Connection(BROKER) as connection:
            channel = connection.default_channel
            handlers = {name: lambda _state, reply=reply, **_: reply
                        for name, reply in replies.items()}
            node = Mailbox("celery", type="fanout", accept=["json"])(connection).Node(
                hostname, channel=channel, handlers=handlers)
            with node.listen(channel):
                ready.set()
                while not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        connection.drain_events(timeout=0.1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


def test_ping_active_and_stats_are_asked_as_celery_control_asks_them() -> None:
    """A node's pong, what it runs and its totals come back; the next pass asks again."""
    probe = ControlProbe(BROKER, 5.0, ManualClock())
    with worker(NODE, REPLIES):
        assert probe.ask({NODE: "w1.service"}, backlog=True) == CeleryState(
            replied=(NODE,), tasks=(ActiveTask(node=NODE, id="t1", name="app.add",
                                               started=1_699_999_990.0, pid=7),),
            processed=3, active=1)
        assert probe.ask({NODE: "w1.service"}, backlog=False) == CeleryState(replied=(NODE,))


def test_a_node_that_does_not_answer_is_not_replied() -> None:
    """Only the nodes that answered within the timeout are replied; the others are asked no more."""
    probe = ControlProbe(BROKER, 0.2, ManualClock())
    with worker(NODE, REPLIES):
        assert probe.ask({NODE: "w1.service", "w2@host": "w2.service"}, backlog=False,
                         tasks=True).replied == (NODE,)
