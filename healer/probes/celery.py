"""Ask the workers, in process, through the broker: ping, what they run, with a backlog stats.

A bare ``Celery(broker=...)`` is enough for the control API: healer never imports the
application's code. ``ping(destination=...)`` returns as soon as every named node answered.
"""

from __future__ import annotations

import math
import socket
from typing import TYPE_CHECKING, Any, Protocol

from healer.model import ActiveTask, CeleryState

if TYPE_CHECKING:
    from collections.abc import Iterator

    from healer.clock import Clock

_HOSTNAME_FLAGS = ("-n", "--hostname")


def node_name(argv: tuple[str, ...], host: str | None = None) -> str | None:
    """The node name a ``celery worker`` command line gives itself (None if not a worker)."""
    if "worker" not in argv:
        return None
    host = host or socket.gethostname()
    name = f"celery@{host}"
    for i, arg in enumerate(argv):
        if arg in _HOSTNAME_FLAGS and i + 1 < len(argv):
            name = argv[i + 1]
        elif arg.startswith("--hostname="):
            name = arg.split("=", 1)[1]
        elif arg.startswith("-n") and len(arg) > 2:
            name = arg[2:]
    short, _, domain = host.partition(".")
    return name.replace("%h", host).replace("%n", short).replace("%d", domain)


MONOTONIC_BELOW = 1e9  # a time_start this small is a monotonic clock's, not wall time


def running(active: dict[str, Any], now: float, monotonic: float) -> Iterator[ActiveTask]:
    """The tasks of ``inspect active``'s replies, with when they started in wall time.

    Celery 5.7 reports ``time_start`` in wall time; older versions gave the pool's monotonic
    clock (celery#4185), which on the same host is healer's: converted. A reply that is not
    a list of tasks, or a task without a start, is skipped.
    """
    for node, tasks in active.items():
        for task in tasks if isinstance(tasks, list) else ():
            start = task.get("time_start") if isinstance(task, dict) else None
            if not isinstance(start, int | float) or isinstance(start, bool) \
                    or not math.isfinite(start):
                continue
            pid = task.get("worker_pid")
            yield ActiveTask(node=str(node), id=str(task.get("id", "")),
                             name=str(task.get("name", "unknown")),
                             started=now - (monotonic - start) if start < MONOTONIC_BELOW
                             else float(start), pid=pid if isinstance(pid, int) else None)


class CeleryProbe(Protocol):
    """Asks the workers over the broker."""

    def ask(self, nodes: dict[str, str], backlog: bool, tasks: bool = False) -> CeleryState:
        """Which expected nodes (node -> unit) answer a ping, and more on request.

        With ``tasks``, what they run; with a backlog, that and their task counts.
        """
        ...


class ControlProbe:
    """The control API over a bare app; the app is made on first use."""

    def __init__(self, broker_url: str, timeout: float, clock: Clock) -> None:
        self._url = broker_url
        self._timeout = timeout
        self._clock = clock
        self._app: Any = None

    def _control(self) -> Any:  # noqa: ANN401 - Celery is untyped
        if self._app is None:
            from celery import Celery  # noqa: PLC0415 - loaded only when a ping is due

            self._app = Celery(broker=self._url, set_as_current=False)
            self._app.conf.broker_connection_retry = False
            self._app.conf.broker_connection_timeout = self._timeout
        return self._app.control

    def ask(self, nodes: dict[str, str], backlog: bool, tasks: bool = False) -> CeleryState:
        """Ping the expected nodes; with ``tasks`` or a backlog, ask what those that answered run.

        With a backlog, their stats too.
        """
        targets = sorted(nodes)
        if not targets:
            return CeleryState(replied=())
        control = self._control()
        replies = control.ping(destination=targets, timeout=self._timeout) or []
        replied = tuple(sorted(n for reply in replies for n in reply))
        if not replied or not (tasks or backlog):
            return CeleryState(replied=replied)
        inspect = control.inspect(destination=list(replied), timeout=self._timeout,
                                  limit=len(replied))
        active = inspect.active() or {}
        found = tuple(running(active, self._clock.time(), self._clock.monotonic()))
        if not backlog:
            return CeleryState(replied=replied, tasks=found)
        stats = inspect.stats() or {}
        return CeleryState(
            replied=replied, tasks=found,
            processed=sum(sum(s.get("total", {}).values()) for s in stats.values()),
            active=sum(len(tasks) for tasks in active.values()),
        )
