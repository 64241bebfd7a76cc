"""A job that is "done" is not healthy: the unit must stay active through a settle period."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from healer.vocabulary import ActiveState, Outcome

if TYPE_CHECKING:
    from healer.clock import Clock
    from healer.model import EvidenceValue
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


def settle(systemd: Systemd, unit: str, period: float, clock: Clock, poll: float) -> Verified:
    """Healed when the unit is active at the end of ``period`` with the same process throughout.

    Leaving ``active``, a new main PID or a rise in NRestarts once active means it crashed.
    """
    deadline = clock.monotonic() + period
    first = None
    while True:
        state = systemd.unit_state(unit)
        evidence: dict[str, EvidenceValue] = {
            "active_state": state.active_state, "sub_state": state.sub_state,
            "result": state.result, "main_pid": state.main_pid, "n_restarts": state.n_restarts,
        }
        if state.active_state == ActiveState.ACTIVE:
            first = first or state
            if state.main_pid != first.main_pid or state.n_restarts != first.n_restarts:
                return Verified(Outcome.NOT_HEALED, f"{unit} restarted by itself while verifying",
                               evidence)
        elif first is not None or state.active_state in {ActiveState.FAILED, ActiveState.INACTIVE}:
            return Verified(Outcome.NOT_HEALED, f"{unit} went {state.active_state} "
                                         f"(Result={state.result}) while verifying", evidence)
        if clock.monotonic() >= deadline:
            if first is None:
                return Verified(Outcome.NOT_HEALED, f"{unit} did not become active in {period:g}s",
                               evidence)
            return Verified(Outcome.HEALED, f"{unit} active for {period:g}s, pid {state.main_pid}",
                           evidence)
        clock.sleep(poll)
