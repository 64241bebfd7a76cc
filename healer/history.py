"""Fold what one look at the world saw into the history that spans passes; freeze a Snapshot.

Probes only read: they return Readings. This is the one place where their results change the
state store: how far the logs were read, backlog and CPU samples, task failures and retries,
lost pool processes, what beat last did, and how long each worker has been silent. The
pipeline calls ``fold`` after every look.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from msgspec.structs import replace

from healer.model import CpuSample, Observed, Sample, Silence, Snapshot, WorkerLog
from healer.probes import logs
from healer.vocabulary import ActiveState, TaskEventKind

if TYPE_CHECKING:
    from healer.model import Readings, Thresholds, UnitUsage
    from healer.state import State

V = TypeVar("V")
MAX_SAMPLES = 20
MAX_RETRY_IDS = 500


def fold(state: State, readings: Readings, thresholds: Thresholds) -> Snapshot:
    """Bring ``state`` up to date with ``readings`` and return the snapshot detectors judge."""
    now = readings.taken_at
    state.logs.update(readings.log_cursors)
    state.journal_cursors.update(readings.journal_cursors)
    _samples(state, readings, now)
    worker_log = _worker_log(state, readings, now, thresholds)
    last_success = {} if worker_log is None or state.tasks_since is None else {
        task: state.succeeded.get(task, state.tasks_since) for task in thresholds.critical_tasks}
    beat_log = None
    if readings.beat_lines is not None:
        state.beat = beat_log = logs.beat_log(readings.beat_lines, state.beat, now)
    _cpu(state, readings.usage, now)
    _tasks_due(state, readings, now, thresholds)
    _silence(state, readings, now)
    _running(state, readings, now)
    return Snapshot(
        **{name: getattr(readings, name) for name in Observed.__struct_fields__},
        silence=dict(state.silence),
        running={node: min(tasks.values()) for node, tasks in state.running.items() if tasks},
        samples=tuple(state.samples),
        cpu={unit: tuple(samples) for unit, samples in state.cpu.items()},
        worker_log=worker_log, beat_log=beat_log, last_success=last_success,
        thresholds=thresholds,
    )


def _samples(state: State, readings: Readings, now: float) -> None:
    """A backlog sample while workers answered; an empty queue forgets the samples."""
    broker, celery = readings.broker, readings.celery
    depth = sum(broker.queues.values()) if broker else 0
    if celery is not None and broker is not None and depth and celery.replied:
        state.samples = [*state.samples, Sample(at=now, depth=depth, processed=celery.processed,
                                                active=celery.active)][-MAX_SAMPLES:]
    elif broker is not None and not depth:
        state.samples = []


def _worker_log(state: State, readings: Readings, now: float, thresholds: Thresholds
                ) -> WorkerLog | None:
    """Failures, retry loops and lost processes within the window; None when nothing is read.

    With a task-event listener, failures and retries come from its events and the log counts
    only lost processes.
    """
    listening = readings.task_events is not None
    if readings.worker_lines is None and not listening:
        return None
    events, lost = logs.worker_lines(readings.worker_lines or (), now, tasks=not listening)
    state.tasks_since = state.tasks_since or now
    critical = set(thresholds.critical_tasks)
    for event in [*events, *(readings.task_events or ())]:
        if event.kind == TaskEventKind.FAILED:
            state.failures.append((event.at, event.task))
        elif event.kind == TaskEventKind.SUCCEEDED:
            if event.task in critical:
                state.succeeded[event.task] = max(event.at, state.succeeded.get(event.task, 0))
        else:
            count = state.retries.get(event.task_id, (event.task, 0))[1]
            state.retries[event.task_id] = (event.task, count + 1)
    window = thresholds.task_window
    state.lost = [t for t in [*state.lost, *lost] if now - t < window]
    state.failures = [(t, task) for t, task in state.failures if now - t < window]
    state.retries = dict(list(state.retries.items())[-MAX_RETRY_IDS:])
    failures: dict[str, int] = {}
    for _, task in state.failures:
        failures[task] = failures.get(task, 0) + 1
    loops: dict[str, int] = {}
    for task, count in state.retries.values():
        if count >= thresholds.retry_loop:
            loops[task] = max(loops.get(task, 0), count)
    return WorkerLog(failures=failures, retry_loops=loops, lost=len(state.lost))


def _forget_unexpected(by_node: dict[str, V], readings: Readings) -> None:
    """Drop what is kept of the nodes this look no longer expects."""
    expected = {n.name for n in readings.nodes}
    for name in [n for n in by_node if n not in expected]:
        del by_node[name]


def _silence(state: State, readings: Readings, now: float) -> None:
    """Each asked node's silence: since its last sign of life, over how many looks.

    A ping answered or an event heard since the look before is life; a new run (another
    ActiveEnterTimestamp of its unit, another pid) starts afresh, as not yet answered. A look
    that could not ask (the broker down) changes nothing; a node of a unit that is not
    active, or whose process is gone, has no silence.
    """
    celery, signals = readings.celery, readings.signals
    if celery is None or celery.replied is None:
        return
    heard = signals.heard if signals else {}
    _forget_unexpected(state.silence, readings)
    units = {u.name: u for u in readings.workers}
    for node in readings.nodes:
        unit = units[node.unit]
        if unit.active_state != ActiveState.ACTIVE or node.gone:
            state.silence.pop(node.name, None)
            continue
        track = state.silence.get(node.name)
        if track is None or (track.started_us, track.pid) != (unit.active_enter_us, node.pid):
            track = Silence(started_us=unit.active_enter_us, pid=node.pid,
                            last_life=max(unit.active_enter_us / 1e6, node.written or 0.0))
        life = now if node.name in celery.replied else max(track.last_life,
                                                           heard.get(node.name, 0.0))
        alive = life > track.last_life
        state.silence[node.name] = replace(track, last_life=life,
                                           looks=0 if alive else track.looks + 1,
                                           answered=track.answered or alive)


def _running(state: State, readings: Readings, now: float) -> None:
    """The tasks each node logged as received and not ended, in its unit's current run only."""
    _forget_unexpected(state.running, readings)
    units = {u.name: u for u in readings.workers}
    for node in readings.nodes:
        if node.name not in readings.node_lines and node.name not in state.running:
            continue
        unit = units[node.unit]
        started = unit.active_enter_us / 1e6 if unit.is_active else now
        kept = {task: at for task, at in state.running.get(node.name, {}).items()
                if at >= started}  # a restart ended whatever the run before was doing
        state.running[node.name] = logs.running(readings.node_lines.get(node.name, ()), kept,
                                                now)


def _tasks_due(state: State, readings: Readings, now: float, thresholds: Thresholds) -> None:
    """When to ask the workers what they run next: when a task could first pass its limit.

    A task seen running may pass its own at its start plus its limit; one that starts later
    not before the shortest limit from now.
    """
    tasks = readings.celery.tasks if readings.celery else None
    if tasks is None:
        return
    shortest = thresholds.task_limit_range[0]
    state.tasks_due = min([now + shortest,
                           *(t.started + thresholds.limit_of(t.name) for t in tasks)])


def _cpu(state: State, usage: tuple[UnitUsage, ...], now: float) -> None:
    """One CPU sample per unit; a new main process starts its series afresh."""
    for use in usage:
        kept = [s for s in state.cpu.get(use.unit, []) if s.main_pid == use.main_pid]
        sample = CpuSample(at=now, cpu_seconds=use.cpu_seconds, main_pid=use.main_pid)
        state.cpu[use.unit] = [*kept, sample][-MAX_SAMPLES:]
