"""Ask the workers, in process, through the broker: ping, and while there is a backlog, stats.

A bare ``Celery(broker=...)`` is enough for the control API: healer never imports the
application's code. ``ping(destination=...)`` returns as soon as every named node answered.
"""

from __future__ import annotations

import socket
from typing import Any, Protocol

from healer.model import CeleryState

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


class CeleryProbe(Protocol):
    """Asks the workers over the broker."""

    def ask(self, nodes: dict[str, str], backlog: bool) -> CeleryState:
        """Which expected nodes (node -> unit) answer a ping; with a backlog, their task counts."""
        ...


class ControlProbe:
    """The control API over a bare app; the app is made on first use."""

    def __init__(self, broker_url: str, timeout: float) -> None:
        self._url = broker_url
        self._timeout = timeout
        self._app: Any = None

    def _control(self) -> Any:  # noqa: ANN401 - Celery is untyped
        if self._app is None:
            from celery import Celery  # noqa: PLC0415 - loaded only when a ping is due

            self._app = Celery(broker=self._url, set_as_current=False)
            self._app.conf.broker_connection_retry = False
            self._app.conf.broker_connection_timeout = self._timeout
        return self._app.control

    def ask(self, nodes: dict[str, str], backlog: bool) -> CeleryState:
        """Ping the expected nodes; with a backlog also read processed and active counts."""
        targets = sorted(nodes)
        if not targets:
            return CeleryState(replied=())
        control = self._control()
        replies = control.ping(destination=targets, timeout=self._timeout) or []
        replied = tuple(sorted(n for reply in replies for n in reply))
        if not backlog or not replied:
            return CeleryState(replied=replied)
        inspect = control.inspect(destination=list(replied), timeout=self._timeout,
                                  limit=len(replied))
        stats = inspect.stats() or {}
        active = inspect.active() or {}
        return CeleryState(
            replied=replied,
            processed=sum(sum(s.get("total", {}).values()) for s in stats.values()),
            active=sum(len(tasks) for tasks in active.values()),
        )
