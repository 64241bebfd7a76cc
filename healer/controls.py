"""The operator's hand on the guard: pause and resume (which also closes breakers).

Besides the pass, the only writer of the state store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from healer.guard.guard import GLOBAL
from healer.state import Pause
from healer.vocabulary import Event

if TYPE_CHECKING:
    from healer.audit.log import AuditLog
    from healer.clock import Clock
    from healer.state import StateStore


class Controls:
    """Pause and resume, recorded in the state store and the audit log."""

    def __init__(self, store: StateStore, audit: AuditLog, clock: Clock) -> None:
        self._store = store
        self._audit = audit
        self._clock = clock

    def pause(self, unit: str | None, duration: float | None, reason: str) -> str:
        """Stop acting (on one unit or everything) until resumed or for a while."""
        now = self._clock.time()
        until = now + duration if duration is not None else None
        with self._store.locked():
            state = self._store.load()
            self._audit.record(Event.PAUSED, None, unit=unit, until=until, reason=reason)
            state.pauses[unit or GLOBAL] = Pause(since=now, until=until, reason=reason)
            self._store.save(state)
        scope = unit or "everything"
        return f"paused {scope}" + (" until resumed" if duration is None else
                                    f" for {duration:g}s")

    def resume(self, unit: str | None) -> str:
        """Lift pauses and close open breakers (of one unit, or all)."""
        with self._store.locked():
            state = self._store.load()
            pauses = [k for k in state.pauses if unit is None or k == unit]
            breakers = [k for k in state.breakers if unit is None or k.unit == unit]
            self._audit.record(Event.RESUMED, None, unit=unit, pauses=pauses,
                               breakers=[str(k) for k in breakers])
            for name in pauses:
                del state.pauses[name]
            for key in breakers:
                del state.breakers[key]
            self._store.save(state)
        return f"resumed: {len(pauses)} pause(s) lifted, {len(breakers)} breaker(s) closed"
