"""Celery task events, received in the background while the agent runs.

Workers started with ``-E`` (or ``worker_send_task_events``) publish ``task-failed`` and
``task-retried``; events reach only a connected receiver, so only the agent (``healer run``)
listens, in a thread, and each pass drains what arrived. Task names come from the
``task-received`` event of the same id.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from functools import partial
from typing import TYPE_CHECKING, Any

from healer.model import TaskEvent
from healer.vocabulary import TaskEventKind

if TYPE_CHECKING:
    from healer.clock import Clock

MAX_NAMES = 10_000
MAX_PENDING = 10_000
RECONNECT = 2.0


class TaskEvents:
    """A background receiver of task events; ``drain`` hands over what arrived."""

    def __init__(self, broker_url: str, clock: Clock) -> None:
        self._url = broker_url
        self._clock = clock
        self._names: OrderedDict[str, str] = OrderedDict()
        self._pending: deque[TaskEvent] = deque(maxlen=MAX_PENDING)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._receiver: Any = None

    def start(self) -> None:
        """Listen in a daemon thread until ``stop``."""
        threading.Thread(target=self._listen, name="task-events", daemon=True).start()

    def stop(self) -> None:
        """Ask the receiver to stop (it checks about once a second)."""
        self._stop.set()
        if self._receiver is not None:
            self._receiver.should_stop = True

    def drain(self) -> list[TaskEvent]:
        """Every event since the last drain."""
        with self._lock:
            events = list(self._pending)
            self._pending.clear()
        return events

    def _name(self, event: dict[str, Any]) -> str:
        return self._names.get(event.get("uuid", ""), "unknown")

    def _received(self, event: dict[str, Any]) -> None:
        self._names[event["uuid"]] = event.get("name", "unknown")
        while len(self._names) > MAX_NAMES:
            self._names.popitem(last=False)

    def _add(self, kind: TaskEventKind, event: dict[str, Any]) -> None:
        at = float(event.get("timestamp") or self._clock.time())
        with self._lock:
            self._pending.append(TaskEvent(kind, at, self._name(event), event.get("uuid", "")))

    def _listen(self) -> None:
        from celery import Celery  # noqa: PLC0415 - only the agent listens

        app = Celery(broker=self._url, set_as_current=False)
        handlers = {"task-received": self._received,
                    **{kind.value: partial(self._add, kind) for kind in TaskEventKind}}
        while not self._stop.is_set():
            if not self._capture(app, handlers):
                self._stop.wait(RECONNECT)

    def _capture(self, app: Any, handlers: dict[str, Any]) -> bool:  # noqa: ANN401
        """Receive until stopped; False when the broker went away (the pass reports it)."""
        try:
            with app.connection_for_read() as connection:
                self._receiver = app.events.Receiver(connection, handlers=handlers)
                self._receiver.capture(limit=None, timeout=None, wakeup=False)
        except Exception:
            return False
        return True
