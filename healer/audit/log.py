"""Append-only JSON Lines through structlog; each record is flushed and fsynced when written.

Every record has ``ts``, ``event`` and ``incident``; action records add ``scenario``, ``unit``,
``action``, ``outcome`` and ``dry_run`` (see DESIGN.md). Intent is written before an action
starts, so a crash mid-action still leaves a trace of it.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import structlog

from healer.errors import StateError

if TYPE_CHECKING:
    from collections.abc import MutableMapping
    from pathlib import Path

    from healer.clock import Clock


class _SyncedLines:
    """A structlog logger that appends each rendered line and fsyncs it."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def msg(self, line: str) -> None:
        """Append one line durably."""
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, (line + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StateError(f"cannot write audit log {self._path}: {exc}") from exc


class AuditLog:
    """Writes audit records; time comes from the clock passed in."""

    def __init__(self, path: Path, clock: Clock) -> None:
        self.path = path
        self._clock = clock
        self._log = structlog.wrap_logger(
            _SyncedLines(path),
            processors=[self._stamp, structlog.processors.JSONRenderer()],
            wrapper_class=structlog.BoundLogger,
        )

    def _stamp(
        self, _logger: object, _method: str, record: MutableMapping[str, Any]
    ) -> dict[str, Any]:
        when = datetime.fromtimestamp(self._clock.time(), timezone.utc)
        ts = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return {"ts": ts, "event": record.pop("event"), **record}

    def record(self, event: str, incident: str | None, **fields: object) -> None:
        """Write one record."""
        self._log.msg(event, incident=incident, **fields)
