"""What a look could not watch, and why: the scenarios no signal healer reads would show.

A probe that failed is not here (it is unknown, in ``probe_errors``); this is what healer
has no source for at all: no worker log and no task events, no node name, no beat log, no
database set, no memory figure, no critical task named. ``diagnose`` lists it; it never
changes the exit code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from healer.vocabulary import ActiveState, Scenario

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    from healer.config import Config
    from healer.model import UnitState, UnitUsage
    from healer.probes.discovery import Layout


class Seen(NamedTuple):
    """What a look found, as far as coverage needs it."""

    workers: tuple[UnitState, ...]
    beat: UnitState | None
    found: Mapping[str, Layout]  # each worker unit's discovered layout
    nodes: Mapping[str, list[str]]  # each worker unit's nodes
    usage: Iterable[UnitUsage]
    errors: Mapping[str, str]  # the probes that failed
    worker_read: bool  # some worker log was read
    worker_unread: Mapping[str, str]  # why no worker log of a unit could be read
    beat_unread: Mapping[str, str]
    listening: bool  # task events are heard


def _task_failures(config: Config, seen: Seen) -> Iterator[str]:
    if seen.listening:
        return
    events = ("task events are heard by the agent only (healer run)"
              if config.celery.task_events else "task events are off")
    for unit, why in seen.worker_unread.items():
        yield f"no worker log found for {unit} ({why}), and {events}"


def _nodes(config: Config, seen: Seen) -> Iterator[str]:
    if "nodes" in seen.errors or "discovery" in seen.errors:
        return
    for unit in (u.name for u in seen.workers if u.name not in seen.nodes):
        if config.celery.nodes is not None:
            yield f"[celery] nodes names none for {unit} (one per worker unit, in order)"
            continue
        gaps = "; ".join(seen.found[unit].gaps) if unit in seen.found else ""
        yield (f"no Celery node found in the ExecStart of {unit}"
               f"{f' ({gaps})' if gaps else ''}; set [celery] nodes")


def _memory(seen: Seen) -> Iterator[str]:
    if "usage" in seen.errors:
        return
    measured = {m.unit for m in seen.usage}
    for unit in seen.workers:
        if unit.active_state == ActiveState.ACTIVE and unit.name not in measured:
            yield (f"no memory figure for {unit.name}: systemd does not account it and no "
                   "process of it is known")


def _critical(config: Config, seen: Seen) -> Iterator[str]:
    if not config.tasks.critical:
        yield "no [tasks] critical named"
    elif not seen.worker_read and not seen.listening:
        yield "no worker log read and no task events heard: no success is seen"


def unwatched(config: Config, seen: Seen) -> dict[str, str]:
    """Each scenario the look could not watch, and why."""
    beat = seen.beat
    reasons: dict[Scenario, list[str]] = {
        Scenario.TASK_FAILURES: list(_task_failures(config, seen)),
        Scenario.WORKER_UNRESPONSIVE: list(_nodes(config, seen)),
        Scenario.BEAT_DOWN: [] if beat else ["no beat unit in [units]"],
        Scenario.BEAT_STALLED: ["no beat unit in [units]"] if beat is None else [
            f"no log found for {beat.name} ({why})" for why in seen.beat_unread.values()],
        Scenario.DATABASE_UNREACHABLE: [] if config.database.host and config.database.port
        else ["no [database] host and port set"],
        Scenario.MEMORY_PRESSURE: list(_memory(seen)),
        Scenario.CRITICAL_TASK_STALLED: list(_critical(config, seen)),
    }
    return {scenario.value: "; ".join(why) for scenario, why in reasons.items() if why}
