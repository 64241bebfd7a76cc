"""Steps that do not wait on each other's verify windows, over whole passes.

A restart's outcome on FakeSystemd kills other units as the restart is done, so they fail
inside its 5 s verify window; ManualClock makes the windows exact. The audit log and the
state store are real.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from healer.config import GuardConfig
from tests.unit.harness import (
    BROKER,
    W1,
    W2,
    W3,
    Harness,
    broker_down,
    broker_rule,
    outcomes,
    restart_rule,
    svc,
    world,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from healer.model import UnitState
    from healer.testing import FakeBroker, FakeSystemd

WINDOW = 5.0  # restart_rule's verify


def killing(fake: FakeSystemd, *others: str, broker: FakeBroker | None = None
            ) -> Callable[[UnitState], UnitState]:
    """A restart outcome: the unit runs, and ``others`` die (and the broker stops answering)."""
    def outcome(running: UnitState) -> UnitState:
        for name in others:
            fake.units[name] = svc(name, "failed", "signal")
        if broker is not None:
            broker.reachable = False
        return running
    return outcome


def started(harness: Harness) -> dict[str, float]:
    """When each unit's step started, by the audit log."""
    return {r["unit"]: datetime.fromisoformat(r["ts"]).timestamp()
            for r in harness.audit("action_started")}


def finished(harness: Harness) -> dict[str, Any]:
    """How each unit's step ended, by the audit log."""
    return {r["unit"]: r["outcome"] for r in harness.audit("action_finished")}


def test_a_worker_killed_during_another_window_is_restarted_before_it_ends(tmp_path: Path
                                                                           ) -> None:
    """W2 dies as W1's restart is done: W2 is restarted inside W1's window; both are healed."""
    fake = world(W1)
    fake.outcomes[W1] = killing(fake, W2)
    harness = Harness(fake, tmp_path)

    report = harness.run()

    at = started(harness)
    assert at[W1] <= at[W2] < at[W1] + WINDOW
    assert finished(harness) == {W1: "healed", W2: "healed"}
    assert sorted(outcomes(report)) == [(W1, "healed"), (W2, "healed")]
    assert {f.unit for f in report.findings} == {W1, W2}
    assert report.remaining == ()
    events = [(r["event"], r["unit"]) for r in harness.audit() if r["event"].startswith("action")]
    assert events == [("action_started", W1), ("action_started", W2),
                      ("action_finished", W2), ("action_finished", W1)]


def test_two_dead_workers_are_restarted_without_waiting_on_each_other(tmp_path: Path) -> None:
    """W1 and W2 dead at the first look: W2's restart starts inside W1's window."""
    harness = Harness(world(W1, W2), tmp_path)

    harness.run()

    at = started(harness)
    assert at[W1] <= at[W2] < at[W1] + WINDOW
    assert finished(harness) == {W1: "healed", W2: "healed"}


def test_the_storm_guard_counts_the_unit_being_verified(tmp_path: Path) -> None:
    """W2 and W3 die in W1's window: with W1 that is 3 of 4 units, a storm; they are held."""
    fake = world(W1)
    fake.outcomes[W1] = killing(fake, W2, W3)
    harness = Harness(fake, tmp_path, guard=GuardConfig(storm_share=0.5))

    report = harness.run()

    assert fake.calls == [("restart", W1)]
    assert (W2, "storm") in outcomes(report)
    assert (W3, "storm") in outcomes(report)
    assert [r["outcome"] for r in harness.audit("storm_guard")] == ["on"]


def test_the_broker_is_restarted_first_when_it_fails_in_a_window(tmp_path: Path) -> None:
    """The broker fails and W2 dies in W1's window: the broker is restarted in it, W2 after."""
    fake = world(W1)
    broker = broker_down(fake)
    broker.reachable = True
    fake.outcomes[W1] = killing(fake, W2, broker=broker)
    harness = Harness(fake, tmp_path, rules=[broker_rule(), restart_rule()], broker=broker)

    harness.run()

    assert fake.calls == [("restart", W1), ("restart", BROKER), ("restart", W2)]
    at = started(harness)
    assert at[W1] <= at[BROKER] < at[W1] + WINDOW <= at[W2]
    assert finished(harness) == {W1: "healed", BROKER: "healed", W2: "healed"}


def test_nothing_else_is_decided_while_the_broker_verifies(tmp_path: Path) -> None:
    """W1 dies in the broker's window: it waits until the broker's step has ended."""
    fake = world()
    broker = broker_down(fake)
    restarted = fake.outcomes[BROKER]
    fake.outcomes[BROKER] = lambda state: killing(fake, W1)(restarted(state))
    harness = Harness(fake, tmp_path, rules=[broker_rule(), restart_rule()], broker=broker)

    harness.run()

    assert fake.calls == [("restart", BROKER), ("restart", W1)]
    events = [(r["event"], r["unit"]) for r in harness.audit() if r["event"].startswith("action")]
    assert events == [("action_started", BROKER), ("action_finished", BROKER),
                      ("action_started", W1), ("action_finished", W1)]
