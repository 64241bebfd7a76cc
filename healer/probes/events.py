"""Celery's events, received in the background while the agent runs.

Workers send ``worker-heartbeat`` (about every 2 s), ``worker-online`` and ``worker-offline``
by default: when a node was last heard is a second sign of life beside ping. Workers started
with ``-E`` (or ``worker_send_task_events``) also publish task events: ``task-failed`` and
``task-retried`` are counted, and a ``task-started`` not yet followed by its end shows the
node busy (a solo pool in a task answers neither ping nor heartbeat). Events reach only a
connected receiver, so only the agent (``healer run``) listens, in a thread; each pass drains
the task events that arrived and reads the workers' signals. Task names come from the
``task-received`` event of the same id. The receiver is Celery's ``EventReceiver`` rebuilt on
kombu: a queue of its own on the ``celeryev`` exchange, JSON only; Celery is not imported.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any

from healer.model import TaskEvent, WorkerSignals
from healer.vocabulary import TaskEventKind

if TYPE_CHECKING:
    from healer.clock import Clock

MAX_NAMES = 10_000
MAX_PENDING = 10_000
MAX_NODES = 10_000
RECONNECT = 2.0
CONNECT_TIMEOUT = 4.0  # Celery's broker_connection_timeout
WAKE = 1.0  # how often the receiver looks whether it was asked to stop
_COUNTED = frozenset(TaskEventKind)
_ENDS = ("task-succeeded", "task-failed", "task-rejected", "task-revoked", "task-retried")


class CeleryEvents:
    """A background receiver; ``drain`` hands over task events, ``signals`` the workers'."""

    def __init__(self, broker_url: str, clock: Clock) -> None:
        self._url = broker_url
        self._clock = clock
        self._names: OrderedDict[str, str] = OrderedDict()
        self._pending: deque[TaskEvent] = deque(maxlen=MAX_PENDING)
        self._heard: OrderedDict[str, float] = OrderedDict()
        self._running: OrderedDict[str, str] = OrderedDict()  # task id -> node
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def start(self) -> None:
        """Listen in a daemon thread until ``stop``."""
        threading.Thread(target=self._listen, name="celery-events", daemon=True).start()

    def stop(self) -> None:
        """Ask the receiver to stop (it checks about once a second)."""
        self._stop.set()

    def drain(self) -> list[TaskEvent]:
        """Every task failure and retry since the last drain."""
        with self._lock:
            events = list(self._pending)
            self._pending.clear()
        return events

    def signals(self) -> WorkerSignals:
        """When each node was last heard, and how many tasks it has started and not ended."""
        with self._lock:
            busy: dict[str, int] = {}
            for node in self._running.values():
                busy[node] = busy.get(node, 0) + 1
            return WorkerSignals(heard=dict(self._heard), busy=busy)

    def _name(self, event: dict[str, Any]) -> str:
        return self._names.get(event.get("uuid", ""), "unknown")

    def _seen(self, event: dict[str, Any]) -> None:
        """Any event of a node is a sign of life; task events also open and close its tasks."""
        node, kind, task = str(event.get("hostname", "")), event.get("type"), event.get("uuid")
        with self._lock:
            if node:
                self._heard[node] = self._clock.time()
                self._heard.move_to_end(node)
                while len(self._heard) > MAX_NODES:
                    self._heard.popitem(last=False)
            if kind == "task-started" and task and node:
                self._running[str(task)] = node
                while len(self._running) > MAX_PENDING:
                    self._running.popitem(last=False)
            elif kind in _ENDS and task:
                self._running.pop(str(task), None)
            elif kind == "worker-offline":
                for ended in [t for t, n in self._running.items() if n == node]:
                    del self._running[ended]

    def _received(self, event: dict[str, Any]) -> None:
        self._names[event["uuid"]] = event.get("name", "unknown")
        while len(self._names) > MAX_NAMES:
            self._names.popitem(last=False)

    def _add(self, kind: TaskEventKind, event: dict[str, Any]) -> None:
        at = float(event.get("timestamp") or self._clock.time())
        with self._lock:
            self._pending.append(TaskEvent(kind, at, self._name(event), event.get("uuid", "")))

    def receive(self, event: dict[str, Any]) -> None:
        """Every event: what it says of its node, then what it says of its task."""
        self._seen(event)
        kind = event.get("type")
        if kind == "task-received" and "uuid" in event:
            self._received(event)
        elif kind in _COUNTED:
            self._add(TaskEventKind(kind), event)

    def _receive(self, body: Any, _message: Any) -> None:  # noqa: ANN401 - kombu's callback
        """A message of the event exchange: one event, or a list of them (workers batch)."""
        for event in body if isinstance(body, list) else [body]:
            if isinstance(event, dict):
                self.receive(localized(event))

    def _listen(self) -> None:
        """Capture until stopped, again RECONNECT seconds after the broker went away."""
        while not self._stop.is_set():
            if not self._capture():
                self._stop.wait(RECONNECT)

    def _capture(self) -> bool:
        """Receive until stopped; False when the broker went away (the pass reports it)."""
        from kombu import Connection, Consumer, Exchange, Queue  # noqa: PLC0415 - agent only

        try:
            with Connection(self._url, connect_timeout=CONNECT_TIMEOUT) as connection:
                channel = connection.default_channel
                # Celery's event exchange is a topic one, but fanout on Redis (celery#436).
                fanout = connection.transport.driver_type == "redis"
                exchange = Exchange("celeryev", type="fanout" if fanout else "topic")
                queue = Queue(f"celeryev.{uuid.uuid4()}", exchange, routing_key="#",
                              auto_delete=True, durable=False, exclusive=True,
                              message_ttl=5.0, expires=60.0)
                with Consumer(channel, [queue], callbacks=[self._receive], no_ack=True,
                              accept=["json"], on_decode_error=_skip):
                    while not self._stop.is_set():
                        with contextlib.suppress(socket.timeout):
                            connection.drain_events(timeout=WAKE)
        except Exception:
            return False
        return True


def localized(event: dict[str, Any]) -> dict[str, Any]:
    """The event, its timestamp moved from its sender's UTC offset to this host's (as Celery)."""
    offset, stamp = event.get("utcoffset"), event.get("timestamp")
    if isinstance(offset, int | float) and isinstance(stamp, int | float):
        here = (time.altzone if time.localtime().tm_isdst else time.timezone) / 3600
        event["timestamp"] = stamp - (offset - here) * 3600
    return event


def _skip(_message: Any, _error: Exception) -> None:  # noqa: ANN401 - kombu's callback
    """A message that does not decode (not JSON) is skipped, as Celery's receiver skips it."""
