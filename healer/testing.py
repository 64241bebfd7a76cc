"""Test doubles for every boundary healer has, behind the same interfaces as the real ones.

Hand them to ``healer.compose.World`` to run whole passes without a host: systemd
(``FakeSystemd``), the broker (``FakeBroker``), the workers (``FakeCelery``), the notifier
(``RecordingNotifier``) and time (``ManualClock``). None of them subclasses what it stands in
for; ``tests/contract`` holds FakeSystemd to the real D-Bus backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from healer.errors import NotifyError
from healer.model import BrokerState, CeleryState
from healer.systemd.fake import FakeSystemd, unit
from healer.vocabulary import BrokerError

if TYPE_CHECKING:
    from healer.model import UnitState
    from healer.notify.webhook import Alert

__all__ = ["FakeBroker", "FakeCelery", "FakeSystemd", "ManualClock", "RecordingNotifier", "unit"]


class FakeBroker:
    """A broker probe whose answer the test sets: reachable with empty queues, or refused.

    ``checks`` counts the calls.
    """

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", reachable: bool = False) -> None:
        self.url = url
        self.reachable = reachable
        self.checks = 0

    def check(self, queues: list[str]) -> BrokerState:  # noqa: ARG002 - every queue is empty
        """Reachable with empty queues, or refused."""
        self.checks += 1
        if self.reachable:
            return BrokerState(url=self.url, reachable=True, latency_ms=1.0)
        return BrokerState(url=self.url, reachable=False, error_kind=BrokerError.REFUSED,
                           error="Connection refused")

    def restarted(self, state: UnitState) -> UnitState:
        """As FakeSystemd's outcome of the broker unit's restart: the broker answers again."""
        self.reachable = True
        return state


class FakeCelery:
    """Ping answered by every expected node except the ``silent`` ones (named, or by unit)."""

    def __init__(self, *silent: str) -> None:
        self.silent = set(silent)

    def ask(self, nodes: dict[str, str], backlog: bool,  # noqa: ARG002
            tasks: bool = False) -> CeleryState:
        """Every node replies but the silent ones; asked, they run no task."""
        return CeleryState(replied=tuple(sorted(
            node for node, unit in nodes.items() if not self.silent & {node, unit})),
            tasks=() if tasks else None)


class RecordingNotifier:
    """Keeps every alert in ``sent``; with ``fail`` set, raises NotifyError instead."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[Alert] = []
        self.fail = fail

    def send(self, alert: Alert) -> None:
        """Record the alert, or fail."""
        if self.fail:
            raise NotifyError("webhook unreachable")
        self.sent.append(alert)


class ManualClock:
    """A clock that moves only when told to; sleeping advances it."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._mono = 0.0

    def time(self) -> float:
        """The current manual wall time."""
        return self._now

    def monotonic(self) -> float:
        """The current manual monotonic time."""
        return self._mono

    def sleep(self, seconds: float) -> None:
        """Advance both clocks instead of waiting."""
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        """Move both clocks forward."""
        self._now += seconds
        self._mono += seconds
