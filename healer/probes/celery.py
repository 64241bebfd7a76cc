"""Ask the workers, in process, through the broker: ping, what they run, with a backlog stats.

Celery's control API is a kombu pidbox mailbox: healer speaks it with kombu directly, as
``app.control`` would, and imports neither Celery nor the application's code. A broadcast
returns as soon as every named node answered.
"""

from __future__ import annotations

import contextlib
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


def by_node(replies: list[dict[str, Any]]) -> dict[str, Any]:
    """Replies (one ``{node: reply}`` each) as one mapping, as ``inspect`` returns them."""
    return {node: reply for each in replies for node, reply in each.items()}


class CeleryProbe(Protocol):
    """Asks the workers over the broker."""

    def ask(self, nodes: dict[str, str], backlog: bool, tasks: bool = False) -> CeleryState:
        """Which expected nodes (node -> unit) answer a ping, and more on request.

        With ``tasks``, what they run; with a backlog, that and their task counts.
        """
        ...


class ControlProbe:
    """Celery's control API over kombu; one connection, made on first use, kept between passes."""

    def __init__(self, broker_url: str, timeout: float, clock: Clock) -> None:
        self._url = broker_url
        self._timeout = timeout
        self._clock = clock
        self._mailbox: Any = None
        self._connection: Any = None

    def _bound(self) -> Any:  # noqa: ANN401 - kombu's Mailbox is untyped
        """Celery's control mailbox, bound to the kept connection (both made on first use)."""
        if self._connection is None:
            from kombu import Connection  # noqa: PLC0415 - loaded only when a ping is due
            from kombu.pidbox import Mailbox  # noqa: PLC0415

            # app.control's: exchange celery.pidbox, json, short-lived exclusive reply queues
            self._mailbox = Mailbox(
                "celery", type="fanout", accept=["json"], serializer="json", queue_ttl=300.0,
                reply_queue_ttl=300.0, queue_expires=10.0, reply_queue_expires=10.0,
                queue_exclusive=True, queue_durable=False)
            self._connection = Connection(self._url, connect_timeout=self._timeout)
        return self._mailbox(self._connection)  # bound per call, as Celery does

    def _call(self, command: str, arguments: dict[str, Any], destination: list[str]
              ) -> list[dict[str, Any]]:
        """The replies of the named nodes to a command, waiting for at most one from each.

        A kept connection the broker closed (it restarted since) is dropped and the command
        sent once more on a new one; a second failure is the broker's answer.
        """
        kept = self._connection is not None
        try:
            return self._send(command, arguments, destination)
        except Exception:
            if not kept:
                raise
        return self._send(command, arguments, destination)

    def _send(self, command: str, arguments: dict[str, Any], destination: list[str]
              ) -> list[dict[str, Any]]:
        """One try; a connection that failed is dropped."""
        try:
            replies: list[dict[str, Any]] | None = self._bound().call(
                destination, command, arguments, timeout=self._timeout)
        except Exception:
            self._drop()
            raise
        return replies or []

    def _drop(self) -> None:
        """Forget the connection without talking to the broker: the next call makes a new one."""
        connection, self._connection = self._connection, None
        with contextlib.suppress(Exception):
            connection.collect()

    def command(self, command: str, arguments: dict[str, Any], nodes: list[str]
                ) -> list[dict[str, Any]]:
        """A control command (``cancel_consumer``, say) to the named nodes; their replies."""
        return self._call(command, arguments, nodes)

    def settings(self, nodes: list[str]) -> dict[str, tuple[dict[str, Any], str]]:
        """Each node that answers: its settings (``inspect conf``, defaults too), its report."""
        conf = by_node(self._call("conf", {"with_defaults": True}, nodes))
        report = by_node(self._call("report", {}, list(conf))) if conf else {}
        return {node: (found if isinstance(found, dict) else {},
                       str(said.get("ok", "")) if isinstance(said := report.get(node), dict)
                       else "") for node, found in conf.items()}

    def ask(self, nodes: dict[str, str], backlog: bool, tasks: bool = False) -> CeleryState:
        """Ping the expected nodes; with ``tasks`` or a backlog, ask what those that answered run.

        With a backlog, their stats too.
        """
        targets = sorted(nodes)
        if not targets:
            return CeleryState(replied=())
        replies = self._call("ping", {}, targets)
        replied = tuple(sorted(n for reply in replies for n in reply))
        if not replied or not (tasks or backlog):
            return CeleryState(replied=replied)
        active = by_node(self._call("active", {"safe": None}, list(replied)))
        found = tuple(running(active, self._clock.time(), self._clock.monotonic()))
        if not backlog:
            return CeleryState(replied=replied, tasks=found)
        stats = by_node(self._call("stats", {}, list(replied)))
        return CeleryState(
            replied=replied, tasks=found,
            processed=sum(sum(s.get("total", {}).values()) for s in stats.values()),
            active=sum(len(tasks) for tasks in active.values()),
        )
