"""The re-probes an action's verification needs beyond systemd; they only read.

Does the broker answer, and which workers are silent: nothing is kept between calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from healer.probes.prober import expected_nodes

if TYPE_CHECKING:
    from healer.config import Config
    from healer.probes.broker import BrokerProbe
    from healer.probes.celery import CeleryProbe
    from healer.systemd import Systemd


class Liveness:
    """The executor's ``Checks``, over the same probes a pass uses."""

    def __init__(self, systemd: Systemd, broker: BrokerProbe | None, celery: CeleryProbe | None,
                 config: Config) -> None:
        self._systemd = systemd
        self._broker = broker
        self._celery = celery
        self._config = config

    def broker_answers(self) -> bool:
        """Whether the broker answers now (for verification after a broker restart)."""
        return self._broker is not None and self._broker.check([]).reachable

    def silent_workers(self) -> list[str]:
        """Worker units with a node that does not answer a ping now."""
        if self._celery is None:
            return []
        workers = tuple(self._systemd.unit_state(n) for n in self._config.units.workers)
        nodes = {name: unit.name for name, unit, _ in
                 expected_nodes(workers, self._config)}
        try:
            replied = self._celery.ask(nodes, backlog=False).replied or ()
        except Exception:  # the broker went away again: no node answers now
            replied = ()
        return list(dict.fromkeys(unit for node, unit in nodes.items() if node not in replied))
