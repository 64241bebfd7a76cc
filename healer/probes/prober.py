"""Run every probe once and freeze what they saw in Readings; the probes only read.

systemd is the one probe healer cannot do without (ProbeError, exit 3). Any other probe that
fails is named in ``probe_errors`` and its part of the readings left empty: unknown, never
healthy. How far the logs were read comes in (the cursors) and goes out (the new cursors) as
values; folding them into the state store is ``healer.history``'s job.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, TypeVar

from healer.model import Readings
from healer.probes import logs, process
from healer.probes.celery import expected_nodes
from healer.probes.database import check_tcp
from healer.probes.usage import unit_usage
from healer.vocabulary import ActiveState

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from healer.clock import Clock
    from healer.config import Config
    from healer.model import LogCursor
    from healer.probes.broker import BrokerProbe
    from healer.probes.celery import CeleryProbe
    from healer.probes.events import CeleryEvents
    from healer.systemd import Systemd

T = TypeVar("T")


class LogRead(NamedTuple):
    """New lines of one log source, and the cursors that now mark how far it was read.

    ``by_unit`` has the lines of each unit where the source tells them apart: the journal, or
    a file when it is the only unit's.
    """

    lines: tuple[str, ...]
    files: dict[str, LogCursor]
    journal: dict[str, str]
    by_unit: dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class Prober:
    """Reads systemd, the broker, the workers, the logs, memory and the database."""

    systemd: Systemd
    broker: BrokerProbe | None
    celery: CeleryProbe | None
    config: Config
    clock: Clock
    events: CeleryEvents | None = None
    process_state: Callable[[int], str | None] = process.state

    def _read_log(self, source: Path | str | None, units: list[str],
                  files: Mapping[str, LogCursor], journal: Mapping[str, str]) -> LogRead | None:
        """New lines from a log file, or from the units' journal; None when not configured."""
        if source is None:
            return None
        if source == "journal":
            where, by_unit, cursors = self.config.journal, {}, {}
            for unit in units:
                got, after = logs.read_journal(unit, journal.get(unit), where.directory,
                                               where.scope)
                by_unit[unit] = tuple(got)
                if after is not None:
                    cursors[unit] = after
            return LogRead(tuple(line for got in by_unit.values() for line in got), {}, cursors,
                           by_unit)
        path = str(source)
        new, cursor = logs.read_new(Path(source), files.get(path))
        return LogRead(tuple(new), {path: cursor}, {},
                       {units[0]: tuple(new)} if len(units) == 1 else {})

    def observe(self, files: Mapping[str, LogCursor], journal: Mapping[str, str]) -> Readings:
        """One look with every probe; ``files`` and ``journal`` say how far logs were read."""
        config, now, errors = self.config, self.clock.time(), {}
        read = self.systemd.unit_state
        units = config.units
        workers = tuple(read(name) for name in units.workers)
        beat = read(units.beat) if units.beat else None

        def guarded(name: str, probe: Callable[[], T]) -> T | None:
            try:
                return probe()
            except Exception as exc:  # a probe's failure is reported as unknown
                errors[name] = f"{type(exc).__name__}: {exc}"
                return None

        broker = guarded("broker", partial(self.broker.check, config.celery.queues)) \
            if self.broker else None
        depth = sum(broker.queues.values()) if broker else 0
        celery = None
        if self.celery is not None and broker is not None and broker.reachable:
            celery_probe = self.celery
            nodes = expected_nodes(workers, config.celery.nodes)
            celery = guarded("celery", lambda: celery_probe.ask(nodes, backlog=depth > 0))
        worker_log = guarded("worker_log", partial(
            self._read_log, config.celery.worker_log, units.workers, files, journal))
        beat_log = guarded("beat_log", partial(
            self._read_log, config.beat.log, [units.beat] if units.beat else [], files, journal))
        db = config.database
        database = guarded("database", partial(check_tcp, db.host, db.port, db.timeout)) \
            if db.host and db.port else None
        usage = tuple(m for u in workers if (m := guarded("usage", partial(unit_usage, u))))
        silent = [] if celery is None or celery.replied is None else [
            u for u in workers if u.active_state == ActiveState.ACTIVE and u.main_pid
            and u.name in celery.nodes and celery.nodes[u.name] not in celery.replied]
        processes = {u.name: letter for u in silent
                     if (letter := self.process_state(u.main_pid))}
        read_logs = [r for r in (worker_log, beat_log) if r is not None]
        return Readings(
            taken_at=now, workers=workers, beat=beat,
            broker_unit=read(units.broker) if units.broker else None,
            broker=broker, celery=celery, usage=usage,
            worker_lines=None if worker_log is None else worker_log.lines,
            unit_lines={} if worker_log is None else worker_log.by_unit,
            beat_lines=None if beat_log is None else beat_log.lines,
            task_events=tuple(self.events.drain()) if self.events and config.celery.task_events
            else None,
            signals=self.events.signals() if self.events else None,
            processes=processes,
            log_cursors={k: v for r in read_logs for k, v in r.files.items()},
            journal_cursors={k: v for r in read_logs for k, v in r.journal.items()},
            database=database, probe_errors=errors,
        )
