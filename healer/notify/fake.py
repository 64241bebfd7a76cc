"""A notifier that records alerts (or fails like an unreachable webhook), for unit tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

from healer.errors import NotifyError

if TYPE_CHECKING:
    from healer.notify.webhook import Alert


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
