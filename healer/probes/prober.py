"""Run every probe once and freeze what they saw in Readings; the probes only read.

systemd is the one probe healer cannot do without (ProbeError, exit 3). Any other probe that
fails is named in ``probe_errors`` and its part of the readings left empty: unknown, never
healthy. How far the logs were read comes in (the cursors) and goes out (the new cursors) as
values; folding them into the state store is ``healer.history``'s job.

The worker units' nodes and logs are discovered from the units (``healer.probes.discovery``)
unless the config names them. A log healer found but cannot read, or none at all, is not a
probe error: the scenarios it alone would show are named in ``unwatched``, with why.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from healer.config import JOURNAL
from healer.errors import ProbeError
from healer.model import NodeState, Readings
from healer.probes import coverage, logs, process
from healer.probes.database import check_tcp
from healer.probes.discovery import Layout, discover, log_files
from healer.probes.usage import unit_usage

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from healer.clock import Clock
    from healer.config import Config
    from healer.model import LogCursor, UnitState
    from healer.probes.broker import BrokerProbe
    from healer.probes.celery import CeleryProbe
    from healer.probes.events import CeleryEvents
    from healer.systemd import Systemd

T = TypeVar("T")


@dataclass(frozen=True)
class LogRead:
    """New lines of some log sources, and the cursors that now mark how far they were read.

    ``read``: whether any source could be read; ``by_node`` has the lines of each node where
    the sources tell them apart; ``unread`` says, by unit, why a source found for it could
    not be read.
    """

    lines: tuple[str, ...] = ()
    read: bool = False
    files: dict[str, LogCursor] = field(default_factory=dict)
    journal: dict[str, str] = field(default_factory=dict)
    by_node: dict[str, tuple[str, ...]] = field(default_factory=dict)
    unread: dict[str, str] = field(default_factory=dict)

    def __add__(self, other: LogRead) -> LogRead:
        """Both reads at once."""
        return LogRead(self.lines + other.lines, self.read or other.read,
                       self.files | other.files, self.journal | other.journal,
                       self.by_node | other.by_node, self.unread | other.unread)

    def of(self, node: str | None) -> LogRead:
        """These lines as one node's (None: the source does not tell its nodes apart)."""
        return self if node is None else replace(self, by_node={node: self.lines})


def _single(nodes: list[str] | None) -> str | None:
    """The node of a source whose lines are all one node's (None: several, or none)."""
    return nodes[0] if nodes and len(nodes) == 1 else None


def nodes_of(workers: tuple[UnitState, ...], layouts: Mapping[str, Layout],
             configured: list[str] | None) -> list[tuple[str, UnitState, str | None]]:
    """Each expected node: name, unit and pid file; configured names go one per unit, in order."""
    if configured is not None:
        return [(name, u, None) for u, name in zip(workers, configured, strict=False)]
    return [(n.name, u, n.pid_file) for u in workers
            for n in layouts.get(u.name, Layout(u.name)).nodes]


def expected_nodes(workers: tuple[UnitState, ...], config: Config
                   ) -> list[tuple[str, UnitState, str | None]]:
    """Each node the worker units should run (name, unit, pid file), as a look finds them."""
    return nodes_of(workers, layouts(workers, config), config.celery.nodes)


def layouts(workers: tuple[UnitState, ...], config: Config) -> dict[str, Layout]:
    """What each worker unit tells of its nodes and log (unread when the config says both)."""
    if config.celery.nodes is not None and config.celery.worker_log is not None:
        return {u.name: Layout(u.name) for u in workers}
    return {u.name: discover(u) for u in workers}


@dataclass(frozen=True)
class Prober:
    """Reads systemd, the broker, the workers, the logs, memory and the database."""

    systemd: Systemd
    broker: BrokerProbe | None
    celery: CeleryProbe | None
    config: Config
    clock: Clock
    events: CeleryEvents | None = None
    process_state: Callable[[int, str], str | None] = process.node_state

    def _files(self, paths: Iterable[Path], files: Mapping[str, LogCursor]
               ) -> tuple[list[str], dict[str, LogCursor]]:
        lines: list[str] = []
        cursors = {}
        for path in paths:
            new, cursors[str(path)] = logs.read_new(path, files.get(str(path)))
            lines += new
        return lines, cursors

    def _journal(self, unit: str, journal: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
        where = self.config.journal
        got, after = logs.read_journal(unit, journal.get(unit), where.directory, where.scope)
        return got, {} if after is None else {unit: after}

    def _configured_log(self, source: Path | str, units: list[str],
                        nodes: Mapping[str, list[str]], files: Mapping[str, LogCursor],
                        journal: Mapping[str, str]) -> LogRead:
        """The log the config names, for all ``units``; ``nodes``: each unit's nodes."""
        if source == JOURNAL:
            read = LogRead()
            for unit in units:
                got, after = self._journal(unit, journal)
                read += LogRead(tuple(got), read=True, journal=after).of(_single(nodes.get(unit)))
            return read
        new, cursors = self._files([Path(source)], files)
        every = [n for unit in units for n in nodes.get(unit, ())]
        return LogRead(tuple(new), read=True, files=cursors).of(_single(every))

    def _found_log(self, layout: Layout, nodes: list[str], files: Mapping[str, LogCursor],
                   journal: Mapping[str, str]) -> LogRead:
        """The log discovered for one unit; what cannot be read is said in ``unread``."""
        unit = layout.unit
        single = _single(nodes)
        if layout.log is None:
            why = [*layout.gaps, layout.no_log] if layout.no_log else list(layout.gaps)
            return LogRead(unread={unit: "; ".join(why) or "none found"})
        per_node = {n.name: n.log for n in layout.nodes if n.log}
        sources: list[tuple[str | None, str]] = [(single, JOURNAL)] if layout.log == JOURNAL \
            else [*per_node.items()] or [(single, pattern) for pattern in layout.log]
        read = LogRead()
        for node, source in sources:
            try:
                if source == JOURNAL:
                    new, after = self._journal(unit, journal)
                    got = LogRead(tuple(new), read=True, journal=after)
                else:
                    new, cursors = self._files(log_files(source), files)
                    got = LogRead(tuple(new), read=True, files=cursors)
            except ProbeError as exc:
                read += LogRead(unread={unit: str(exc)})
                continue
            read += got.of(node)
        return read

    def _worker_logs(self, workers: tuple[UnitState, ...], found: Mapping[str, Layout],
                     nodes: Mapping[str, list[str]], files: Mapping[str, LogCursor],
                     journal: Mapping[str, str]) -> LogRead:
        configured = self.config.celery.worker_log
        if configured is not None:
            return self._configured_log(configured, [u.name for u in workers], nodes, files,
                                        journal)
        read = LogRead()
        for unit in workers:
            read += self._found_log(found[unit.name], nodes.get(unit.name, []), files, journal)
        return read

    def _beat_log(self, beat: UnitState | None, files: Mapping[str, LogCursor],
                  journal: Mapping[str, str]) -> LogRead | None:
        if beat is None:
            return None
        configured = self.config.beat.log
        if configured is not None:
            return self._configured_log(configured, [beat.name], {}, files, journal)
        return self._found_log(discover(beat), [], files, journal)

    def _node(self, name: str, unit: UnitState, pid_file: str | None) -> NodeState:
        """A node and its process: the unit's main one, or the one its pid file names."""
        if pid_file is None:
            pid, written = unit.main_pid, None
        else:
            try:
                pid, written = process.pid_file(Path(pid_file))
            except OSError as exc:
                raise ProbeError(f"cannot read the pid file {pid_file} of {name}: "
                                 f"{exc.strerror or exc}") from exc
        group = unit.control_group if pid_file else ""
        return NodeState(name=name, unit=unit.name, pid=pid, pid_file=pid_file, written=written,
                         process=self.process_state(pid, group) if pid else None)

    def units(self) -> tuple[UnitState, ...]:
        """Every unit in [units] as systemd has it now: the cheap look between looks."""
        return tuple(self.systemd.unit_state(name) for name in self.config.units.all())

    def observe(self, files: Mapping[str, LogCursor], journal: Mapping[str, str],
                tasks: bool = True) -> Readings:
        """One look with every probe; ``files`` and ``journal`` say how far logs were read.

        ``tasks``: whether to ask the workers what they run (a task may have passed its limit).
        """
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

        found = guarded("discovery", partial(layouts, workers, config)) or {}
        nodes = tuple(n for args in nodes_of(workers, found, config.celery.nodes)
                      if (n := guarded("nodes", partial(self._node, *args))))
        by_unit: dict[str, list[str]] = {}
        for node in nodes:
            by_unit.setdefault(node.unit, []).append(node.name)
        broker = guarded("broker", partial(self.broker.check, config.celery.queues)) \
            if self.broker else None
        depth = sum(broker.queues.values()) if broker else 0
        celery = None
        if self.celery is not None and broker is not None and broker.reachable:
            celery_probe, asked = self.celery, {n.name: n.unit for n in nodes}
            celery = guarded("celery", lambda: celery_probe.ask(asked, backlog=depth > 0,
                                                                tasks=tasks))
        worker_log = guarded("worker_log", partial(
            self._worker_logs, workers, found, by_unit, files, journal))
        beat_log = guarded("beat_log", partial(self._beat_log, beat, files, journal))
        db = config.database
        database = guarded("database", partial(check_tcp, db.host, db.port, db.timeout)) \
            if db.host and db.port else None
        usage = tuple(m for u in workers if (m := guarded("usage", partial(
            unit_usage, u, [n.pid for n in nodes if n.unit == u.name and n.process]))))
        logged = sum((r for r in (worker_log, beat_log) if r is not None), LogRead())
        listening = self.events is not None and config.celery.task_events
        return Readings(
            taken_at=now, workers=workers, beat=beat,
            broker_unit=read(units.broker) if units.broker else None,
            broker=broker, celery=celery, usage=usage, nodes=nodes,
            worker_lines=worker_log.lines if worker_log and worker_log.read else None,
            node_lines={} if worker_log is None else worker_log.by_node,
            beat_lines=beat_log.lines if beat_log and beat_log.read else None,
            task_events=tuple(self.events.drain()) if self.events and listening else None,
            signals=self.events.signals() if self.events else None,
            log_cursors=logged.files, journal_cursors=logged.journal,
            database=database, probe_errors=errors,
            unwatched=coverage.unwatched(config, coverage.Seen(
                workers, beat, found, by_unit, usage, errors,
                worker_log is not None and worker_log.read,
                worker_log.unread if worker_log else {}, beat_log.unread if beat_log else {},
                listening)),
        )
