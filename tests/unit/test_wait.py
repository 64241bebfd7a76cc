"""The one poll loop: an answer ends it, the deadline ends it, and no sleep overshoots."""

from __future__ import annotations

from healer.testing import ManualClock
from healer.wait import until


def test_an_answer_at_once_sleeps_not_at_all() -> None:
    """A check that answers on the first call returns that answer without sleeping."""
    clock = ManualClock()
    assert until(lambda: "done", 10, clock, 1) == "done"
    assert clock.monotonic() == 0


def test_polls_every_interval_until_an_answer() -> None:
    """The check runs at once and then every ``every`` seconds until it answers."""
    clock = ManualClock()
    calls: list[float] = []

    def third_time() -> int | None:
        calls.append(clock.monotonic())
        return len(calls) if len(calls) == 3 else None

    assert until(third_time, 10, clock, 2) == 3
    assert calls == [0, 2, 4]


def test_the_deadline_gives_none_after_one_last_look_and_no_overshoot() -> None:
    """Without an answer: the last call is at the deadline, then None; time ends there."""
    clock = ManualClock()
    calls: list[float] = []

    def never() -> None:
        calls.append(clock.monotonic())

    assert until(never, 5, clock, 2) is None
    assert calls == [0, 2, 4, 5]
    assert clock.monotonic() == 5
