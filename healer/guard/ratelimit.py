""""N within M" rate limits over attempt times kept in the state store; read-only."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

HOUR = 3600.0

if TYPE_CHECKING:
    from healer.policy.models import Limit
    from healer.state import State


def key(action: str, unit: str) -> str:
    """The state key under which attempts of one action on one unit are counted."""
    return f"{action}:{unit}"


def recent(state: State, action: str, unit: str, within: float, now: float) -> list[float]:
    """Attempt times of this action on this unit inside the window ending now."""
    return [t for t in state.actions.get(key(action, unit), []) if now - t < within]


def exceeded(state: State, action: str, unit: str, limit: Limit, now: float) -> str | None:
    """Why the limit forbids another attempt now, or None when it allows one."""
    times = recent(state, action, unit, limit.within, now)
    if len(times) < limit.max:
        return None
    wait = min(times) + limit.within - now
    return (
        f"{len(times)} {action} of {unit} in the last {limit.within:g}s reach the limit of "
        f"{limit.max}; next allowed in {wait:.0f}s"
    )


class Attempt(NamedTuple):
    """The windows after one more attempt: the step's ("N within M") and the hourly budget's."""

    key: str
    times: list[float]
    spent: list[float]


def attempt(state: State, action: str, unit: str, limit: Limit, now: float) -> Attempt:
    """One more attempt now, counted for its step's limit and the budget (the pass stores it)."""
    return Attempt(key(action, unit), [*recent(state, action, unit, limit.within, now), now],
                   [*spent(state, now), now])


def spent(state: State, now: float) -> list[float]:
    """Times of every action in the last hour, whatever its step (the budget's window)."""
    return [t for t in state.spent if now - t < HOUR]
