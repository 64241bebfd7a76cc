"""Run every probe once and freeze the result in a Snapshot.

systemd is the one probe healer cannot do without (ProbeError, exit 3). Any other probe that
fails is named in ``probe_errors`` and its part of the snapshot left empty: unknown, never
healthy.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from healer.model import CpuSample, Limits, Sample, Snapshot
from healer.probes import logs
from healer.probes.celery import expected_nodes
from healer.probes.database import check_tcp
from healer.probes.usage import unit_usage

if TYPE_CHECKING:
    from collections.abc import Callable

    from healer.clock import Clock
    from healer.config import Config
    from healer.probes.broker import BrokerProbe
    from healer.probes.celery import CeleryProbe
    from healer.probes.events import TaskEvents
    from healer.state import State
    from healer.systemd import Systemd

T = TypeVar("T")
MAX_SAMPLES = 20


def limits(config: Config) -> Limits:
    """The thresholds of the config, in the form detectors read them."""
    t = config.thresholds
    return Limits(
        queue_backlog=t.queue_backlog, memory_bytes=int(t.memory_mb * 2**20),
        task_failures=t.task_failures, retry_loop=t.retry_loop,
        not_consuming_after=t.not_consuming_after, startup_grace=t.startup_grace,
        cpu_percent=t.cpu_percent, cpu_sustained=t.cpu_sustained,
        beat_max_silence=config.beat.max_silence,
    )


class Prober:
    """Reads systemd, the broker, the workers, the logs, memory and the database."""

    def __init__(
        self,
        systemd: Systemd,
        broker: BrokerProbe | None,
        celery: CeleryProbe | None,
        config: Config,
        clock: Clock,
        events: TaskEvents | None = None,
    ) -> None:
        self._systemd = systemd
        self._broker = broker
        self._celery = celery
        self._config = config
        self._clock = clock
        self._events = events

    def _lines(self, source: Path | str | None, units: list[str], state: State
               ) -> list[str] | None:
        """New lines from a log file, or from the units' journal; None when not configured."""
        if source is None:
            return None
        if source == "journal":
            journal = self._config.journal
            return [line for unit in units
                    for line in logs.read_journal(unit, state, journal.directory, journal.scope)]
        return logs.read_new(Path(source), state)

    def broker_answers(self) -> bool:
        """Whether the broker answers now (for verification after a broker restart)."""
        return self._broker is not None and self._broker.check([]).reachable

    def silent_workers(self) -> list[str]:
        """Worker units whose node does not answer a ping now."""
        if self._celery is None:
            return []
        workers = tuple(self._systemd.unit_state(n) for n in self._config.units.workers)
        nodes = expected_nodes(workers, self._config.celery.nodes)
        replied = self._celery.ask(nodes, backlog=False).replied or ()
        return [unit for unit, node in nodes.items() if node not in replied]

    def snapshot(self, state: State) -> Snapshot:
        """One pass of probes; history (log offsets, backlog samples) is kept in ``state``."""
        config, now, errors = self._config, self._clock.time(), {}
        read = self._systemd.unit_state
        units = config.units
        workers = tuple(read(name) for name in units.workers)
        beat = read(units.beat) if units.beat else None

        def guarded(name: str, probe: Callable[[], T]) -> T | None:
            try:
                return probe()
            except Exception as exc:  # a probe's failure is reported as unknown
                errors[name] = f"{type(exc).__name__}: {exc}"
                return None

        broker = guarded("broker", partial(self._broker.check, config.celery.queues)) \
            if self._broker else None
        depth = sum(broker.queues.values()) if broker else 0
        celery = None
        if self._celery is not None and broker is not None and broker.reachable:
            celery_probe = self._celery
            nodes = expected_nodes(workers, config.celery.nodes)
            celery = guarded("celery", lambda: celery_probe.ask(nodes, backlog=depth > 0))
        if celery is not None and broker is not None and depth and celery.replied:
            state.samples = [*state.samples, Sample(at=now, depth=depth, processed=celery.processed,
                                                    active=celery.active)][-MAX_SAMPLES:]
        elif broker is not None and not depth:
            state.samples = []
        t, db = config.thresholds, config.database
        worker_lines = guarded("worker_log", partial(
            self._lines, config.celery.worker_log, units.workers, state))
        if worker_lines is not None:
            logs.record_worker_lines(worker_lines, state, now, tasks=self._events is None)
        for kind, at, task, task_id in self._events.drain() if self._events else []:
            if kind == "failed":
                logs.record_failure(state, at, task)
            else:
                logs.record_retry(state, task, task_id)
        worker_log = logs.worker_log(state, now, t.task_window, t.retry_loop) \
            if worker_lines is not None or self._events else None
        beat_lines = guarded("beat_log", partial(
            self._lines, config.beat.log, [units.beat] if units.beat else [], state))
        beat_log = None if beat_lines is None else logs.beat_log(beat_lines, state, now)
        database = guarded("database", partial(check_tcp, db.host, db.port, db.timeout)) \
            if db.host and db.port else None
        usage = tuple(m for u in workers if (m := guarded("usage", partial(unit_usage, u))))
        for use in usage:
            kept = [s for s in state.cpu.get(use.unit, []) if s.main_pid == use.main_pid]
            sample = CpuSample(at=now, cpu_seconds=use.cpu_seconds, main_pid=use.main_pid)
            state.cpu[use.unit] = [*kept, sample][-MAX_SAMPLES:]
        return Snapshot(
            taken_at=now, workers=workers, beat=beat,
            broker_unit=read(units.broker) if units.broker else None,
            broker=broker, celery=celery, samples=tuple(state.samples), usage=usage,
            cpu={unit: tuple(samples) for unit, samples in state.cpu.items()},
            worker_log=worker_log, beat_log=beat_log, database=database,
            limits=limits(config), probe_errors=errors,
        )
