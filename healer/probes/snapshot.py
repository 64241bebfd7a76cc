"""Run every probe once and freeze the result in a Snapshot."""

from __future__ import annotations

from typing import TYPE_CHECKING

from healer.model import Snapshot

if TYPE_CHECKING:
    from healer.clock import Clock
    from healer.config import UnitsConfig
    from healer.probes.broker import BrokerProbe
    from healer.systemd import Systemd


class Prober:
    """Reads the configured units from systemd and asks the broker."""

    def __init__(
        self, systemd: Systemd, units: UnitsConfig, broker: BrokerProbe | None, clock: Clock
    ) -> None:
        self._systemd = systemd
        self._units = units
        self._broker = broker
        self._clock = clock

    def snapshot(self) -> Snapshot:
        """One pass of probes; raises ProbeError when systemd cannot be read."""
        read = self._systemd.unit_state
        units = self._units
        return Snapshot(
            taken_at=self._clock.time(),
            workers=tuple(read(name) for name in units.workers),
            beat=read(units.beat) if units.beat else None,
            broker_unit=read(units.broker) if units.broker else None,
            broker=self._broker.check() if self._broker else None,
        )
