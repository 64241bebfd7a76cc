"""An in-memory systemd behind the same interface as the D-Bus backend, for fast unit tests.

``tests/contract`` runs the same cases against this and the D-Bus backend on a real manager.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from msgspec.structs import replace

from healer.errors import SystemdError
from healer.model import UnitState
from healer.vocabulary import ActiveState

if TYPE_CHECKING:
    from collections.abc import Callable

    from healer.clock import Clock
    from healer.errors import HealerError
    from healer.systemd.backend import JobVerb

NO_SUCH_UNIT = "org.freedesktop.systemd1.NoSuchUnit"


def unit(name: str, active: str = ActiveState.ACTIVE, result: str = "success", **kw: Any  # noqa: ANN401
         ) -> UnitState:
    """A loaded service unit in the given state (sub-state derived the way systemd does).

    ``kw`` sets any other field of UnitState (main_pid, argv, stdout, ...).
    """
    subs: dict[str, str] = {ActiveState.ACTIVE: "running", ActiveState.INACTIVE: "dead"}
    sub = subs.get(active, active)  # a failed unit's sub-state is "failed" too
    return UnitState(name=name, load_state="loaded", active_state=active, sub_state=sub,
                     result=result, **kw)


class FakeSystemd:
    """Units in a dict; every call is recorded in ``calls``.

    ``outcomes[name]`` decides what a start or restart job leaves behind (default: running);
    ``errors[(verb, name)]`` makes that call raise, as a denial or a failed job would;
    ``subscribed = False`` is a lost event subscription (the next read subscribes again). With a
    ``clock``, a start sets ActiveEnterTimestamp and a stop InactiveEnterTimestamp, as systemd
    does; without one they stay as given.
    """

    def __init__(self, *units: UnitState, clock: Clock | None = None) -> None:
        self.units: dict[str, UnitState] = {u.name: u for u in units}
        self.clock = clock
        self.calls: list[tuple[str, str]] = []
        self.outcomes: dict[str, Callable[[UnitState], UnitState]] = {}
        self.errors: dict[tuple[str, str], HealerError] = {}
        self.job_results: dict[str, str] = {}
        self.subscribed = True
        self._next_pid = 1000
        self._seen: dict[str, str] = {}  # the ActiveState each read unit had at the last changes

    def _stamp(self, field: str) -> dict[str, int]:
        """The timestamp a transition sets, in microseconds of wall time (none without a clock)."""
        return {} if self.clock is None else {field: int(self.clock.time() * 1e6)}

    def unit_state(self, name: str) -> UnitState:
        """The stored state, or not-found like LoadUnit gives for an unknown unit."""
        if (err := self.errors.get(("read", name))) is not None:
            raise err
        self.subscribed = True
        if name in self.units:
            self._seen.setdefault(name, self.units[name].active_state)
        return self.units.get(
            name, UnitState(name=name, load_state="not-found", active_state=ActiveState.INACTIVE,
                            sub_state="dead")
        )

    def job(self, verb: JobVerb, name: str, timeout: float) -> str:  # noqa: ARG002
        """Apply the job to the stored state and return its result."""
        self.calls.append((verb, name))
        if (err := self.errors.get((verb, name))) is not None:
            raise err
        if name not in self.units:
            raise SystemdError(f"{verb} {name}: {NO_SUCH_UNIT}: Unit {name} not found.",
                               dbus_name=NO_SUCH_UNIT)
        before = self.units[name]
        if verb == "stop":  # like systemd, stopping a failed unit leaves it failed
            after = before if before.active_state == ActiveState.FAILED else replace(
                before, active_state=ActiveState.INACTIVE, sub_state="dead", main_pid=0,
                **self._stamp("inactive_enter_us"))
        elif verb == "start" and before.active_state == ActiveState.ACTIVE:
            after = before  # starting a running unit changes nothing
        else:
            self._next_pid += 1
            running = replace(before, active_state=ActiveState.ACTIVE, sub_state="running",
                              result="success", main_pid=self._next_pid,
                              **self._stamp("active_enter_us"))
            outcome = self.outcomes.get(name)
            after = outcome(running) if outcome else running
        self.units[name] = after
        return self.job_results.get(name, "done")

    def changes(self) -> set[str] | None:
        """The read units whose ActiveState differs from the last call; None when unsubscribed."""
        if not self.subscribed:
            return None
        changed = {n for n, was in self._seen.items() if self.units[n].active_state != was}
        self._seen.update({n: self.units[n].active_state for n in changed})
        return changed

    def reload(self) -> None:
        """Record a daemon-reload."""
        self.calls.append(("daemon-reload", ""))
        if (err := self.errors.get(("daemon-reload", ""))) is not None:
            raise err

    def reset_failed(self, name: str) -> None:
        """Failed becomes inactive with Result=success."""
        self.calls.append(("reset-failed", name))
        if (err := self.errors.get(("reset-failed", name))) is not None:
            raise err
        if name not in self.units:
            raise SystemdError(f"reset-failed {name}: {NO_SUCH_UNIT}: Unit {name} not loaded.",
                               dbus_name=NO_SUCH_UNIT)
        state = self.units[name]
        if state.active_state == ActiveState.FAILED:
            self.units[name] = replace(state, active_state=ActiveState.INACTIVE,
                                       sub_state="dead", result="success")
