"""The interface every systemd backend implements (D-Bus for real, a fake for unit tests)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from healer.model import UnitState

JobVerb = Literal["start", "stop", "restart"]
SUCCESSFUL_JOB_RESULTS = frozenset({"done", "skipped"})


class Systemd(Protocol):
    """What healer needs from systemd, and nothing more."""

    def unit_state(self, name: str) -> UnitState:
        """Read a unit's state; raises ProbeError when systemd cannot be asked."""
        ...

    def job(self, verb: JobVerb, name: str, timeout: float) -> str:
        """Queue a job (mode "replace"), wait for it, return its result ("timeout" at the deadline).

        Raises SystemdError when systemd refuses the call.
        """
        ...

    def reset_failed(self, name: str) -> None:
        """Clear a unit's failed state (ResetFailedUnit); raises SystemdError when refused."""
        ...

    def changes(self) -> set[str] | None:
        """The units read before whose ActiveState changed since the last call (events).

        None while not subscribed: the connection was lost, and the next read subscribes again.
        """
        ...

    def reload(self) -> None:
        """daemon-reload (Reload); returns when it is done; raises SystemdError when refused."""
        ...
