"""A step left open by a healer that was killed mid-step is closed at the next pass."""

from __future__ import annotations

from typing import TYPE_CHECKING

from healer.audit import review
from healer.audit.log import AuditLog
from healer.state import Incident, InFlight
from healer.testing import FakeSystemd
from healer.vocabulary import Event, FindingKey, Outcome, Scenario
from tests.unit.harness import W1, W2, W3, Harness, svc

if TYPE_CHECKING:
    from pathlib import Path

STEP = {"scenario": "worker_down", "unit": W1, "action": "restart_unit", "rule": "restart"}


def left_by_a_kill(harness: Harness, *events: Event) -> None:
    """What a healer killed mid-step leaves: the step in flight in the state, and ``events``."""
    store = harness.store
    with store.locked():
        state = store.load()
        state.incidents[FindingKey(Scenario.WORKER_DOWN, W1)] = Incident(
            id="inc-0", opened=harness.clock.time())
        state.in_flight["act-0"] = InFlight(incident="inc-0", started=harness.clock.time(),
                                            **STEP)
        store.save(state)
    log = AuditLog(harness.audit_path, harness.clock)
    log.record(Event.INCIDENT_OPENED, "inc-0", scenario="worker_down", unit=W1)
    for event in events:
        log.record(event, "inc-0", action_id="act-0", outcome="started", dry_run=False, **STEP)


def healthy(tmp_path: Path) -> Harness:
    """Three running workers: the step that was cut short did heal W1."""
    return Harness(FakeSystemd(svc(W1), svc(W2), svc(W3)), tmp_path)


def test_a_started_step_without_an_end_is_recorded_interrupted(tmp_path: Path) -> None:
    """action_started with no outcome gets action_interrupted, with systemd's word on the unit."""
    harness = healthy(tmp_path)
    left_by_a_kill(harness, Event.ACTION_STARTED)
    harness.run()
    [closed] = harness.audit(Event.ACTION_INTERRUPTED)
    assert (closed["incident"], closed["action_id"], closed["outcome"]) == (
        "inc-0", "act-0", Outcome.INTERRUPTED)
    assert {k: closed[k] for k in STEP} == STEP
    assert closed["unit_state"] == "active (running)"
    assert harness.store.load().in_flight == {}
    [incident] = review.incidents(review.select(harness.audit_path, review.Filters()))
    assert incident.steps == ["restart_unit:interrupted"]


def test_it_is_recorded_once_however_often_healer_starts(tmp_path: Path) -> None:
    """A second pass (or a kill before the first saved) does not record it again."""
    harness = healthy(tmp_path)
    left_by_a_kill(harness, Event.ACTION_STARTED)
    harness.run()
    state = harness.store.load()
    state.in_flight["act-0"] = InFlight(incident="inc-0", started=0.0, **STEP)
    harness.store.save(state)  # as if killed before the pass saved
    harness.run()
    assert len(harness.audit(Event.ACTION_INTERRUPTED)) == 1


def test_a_step_whose_end_was_recorded_is_not_interrupted(tmp_path: Path) -> None:
    """Killed after its outcome was written but before the state was: nothing to close."""
    harness = healthy(tmp_path)
    left_by_a_kill(harness, Event.ACTION_STARTED, Event.ACTION_FINISHED)
    harness.run()
    assert harness.audit(Event.ACTION_INTERRUPTED) == []
    assert harness.store.load().in_flight == {}


def test_a_step_killed_before_its_start_was_recorded_is_not_invented(tmp_path: Path) -> None:
    """In flight in the state but never recorded as started: healer did not act, says nothing."""
    harness = healthy(tmp_path)
    left_by_a_kill(harness)
    harness.run()
    assert harness.audit(Event.ACTION_INTERRUPTED) == []
    assert harness.store.load().in_flight == {}


def test_a_whole_step_leaves_nothing_in_flight(tmp_path: Path) -> None:
    """A step that ran to its end carries one action_id in both records and is not in flight."""
    harness = Harness(FakeSystemd(svc(W1, "failed", "signal"), svc(W2), svc(W3)), tmp_path)
    harness.run()
    started, finished = harness.audit(Event.ACTION_STARTED), harness.audit(Event.ACTION_FINISHED)
    assert [r["action_id"] for r in started] == [r["action_id"] for r in finished]
    assert harness.store.load().in_flight == {}


def test_a_dry_run_closes_nothing(tmp_path: Path) -> None:
    """A dry run changes nothing: the open step waits for a real pass."""
    harness = healthy(tmp_path)
    left_by_a_kill(harness, Event.ACTION_STARTED)
    harness.run(dry_run=True)
    assert harness.audit(Event.ACTION_INTERRUPTED) == []
    assert "act-0" in harness.store.load().in_flight
