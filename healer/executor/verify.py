"""A job that is "done" is not healthy: the unit must stay active through a settle period."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from healer.vocabulary import ActiveState, Outcome
from healer.wait import until

if TYPE_CHECKING:
    from collections.abc import Callable

    from healer.clock import Clock
    from healer.model import EvidenceValue, UnitState
    from healer.systemd import Systemd


@dataclass(frozen=True)
class Verified:
    """How an action ended: healed or not_healed, with what was seen."""

    outcome: Outcome
    detail: str
    evidence: dict[str, EvidenceValue] = field(default_factory=dict)

    @property
    def healed(self) -> bool:
        """Whether the unit is healthy after the action."""
        return self.outcome == Outcome.HEALED


def _evidence(state: UnitState) -> dict[str, EvidenceValue]:
    return {"active_state": state.active_state, "sub_state": state.sub_state,
            "result": state.result, "main_pid": state.main_pid, "n_restarts": state.n_restarts}


def settle(systemd: Systemd, unit: str, period: float, clock: Clock, poll: float,
           meanwhile: Callable[[], None]) -> Verified:
    """Healed when the unit is active at the end of ``period`` with the same process throughout.

    Leaving ``active``, a new main PID or a rise in NRestarts once active means it crashed.
    ``meanwhile`` is called before every read: other work that must not wait for this window.
    A read it delays misses nothing: a crash in between leaves a new PID or NRestarts.
    """
    first: UnitState | None = None  # the first active state read: the process to keep
    last: UnitState | None = None

    def crashed() -> Verified | None:
        nonlocal first, last
        meanwhile()  # first: what is read next is read after it
        state = last = systemd.unit_state(unit)
        if state.active_state == ActiveState.ACTIVE:
            first = first or state
            if state.main_pid != first.main_pid or state.n_restarts != first.n_restarts:
                return Verified(Outcome.NOT_HEALED, f"{unit} restarted by itself while verifying",
                                _evidence(state))
        elif first is not None or state.active_state in {ActiveState.FAILED,
                                                         ActiveState.INACTIVE}:
            return Verified(Outcome.NOT_HEALED, f"{unit} went {state.active_state} "
                            f"(Result={state.result}) while verifying", _evidence(state))
        return None

    if (verdict := until(crashed, period, clock, poll)) is not None:
        return verdict
    assert last is not None  # until calls crashed at least once
    if first is None:
        return Verified(Outcome.NOT_HEALED, f"{unit} did not become active in {period:g}s",
                        _evidence(last))
    return Verified(Outcome.HEALED, f"{unit} active for {period:g}s, pid {last.main_pid}",
                    _evidence(last))
