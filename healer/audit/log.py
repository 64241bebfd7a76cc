"""Append-only, hash-chained JSON Lines through structlog; every record fsynced when written.

Every record has ``ts``, ``event`` and ``incident``; action records add ``scenario``, ``unit``,
``action``, ``outcome`` and ``dry_run``; each is chained to the one before by
``prev`` and ``hash``. Intent is written before an action starts, so a crash mid-action still
leaves a trace of it. Writers hold an exclusive lock on the file while they read the last hash
and append, so the agent and an operator's command never fork the chain. A torn last line (a
crash mid-write) is moved to ``<log>.torn`` and recorded, never silently dropped.
"""

from __future__ import annotations

import fcntl
import json
import os
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import structlog

from healer import safefile
from healer.audit import chain, files
from healer.errors import ConfigError, StateError
from healer.vocabulary import Event

if TYPE_CHECKING:
    from collections.abc import MutableMapping
    from pathlib import Path

    from healer.clock import Clock


class _ChainedLines:
    """The structlog sink: chains, renders, appends and fsyncs one record under a lock."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def msg(self, **record: Any) -> None:  # noqa: ANN401 - a record's values are JSON values
        """Append one record durably."""
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            fd = safefile.open_for_writing(self._path, append=True)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._set_aside_torn_tail(fd, record["ts"])
                self._append(fd, record)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StateError(f"cannot write audit log {self._path}: {exc.strerror or exc}"
                             ) from exc
        except (ConfigError, ValueError, RecursionError) as exc:  # nothing to chain onto; not JSON
            raise StateError(f"cannot write audit log {self._path}: {exc}") from exc

    def _append(self, fd: int, record: dict[str, Any]) -> None:
        last = json.loads(files.last_line(self._path) or "null")
        if last is not None and not isinstance(last, dict):
            raise ValueError("its last line is not a record (see `healer audit verify`)")
        prev = last.get("hash") if last else None
        sealed = chain.seal(record, prev)
        safefile.write_all(fd, (json.dumps(sealed, ensure_ascii=False, allow_nan=False)
                                + "\n").encode())

    def _set_aside_torn_tail(self, fd: int, ts: str) -> None:
        torn = files.torn_tail(self._path)
        if not torn:
            return
        keep = self._path.with_name(self._path.name + ".torn")
        side = safefile.open_for_writing(keep, append=True)
        try:
            safefile.write_all(side, torn + b"\n")
            os.fsync(side)
        finally:
            os.close(side)
        os.ftruncate(fd, os.fstat(fd).st_size - len(torn))
        self._append(fd, {"ts": ts, "event": Event.TORN_TAIL_SET_ASIDE, "incident": None,
                          "bytes": len(torn), "kept_in": str(keep)})


class AuditLog:
    """Writes audit records; time comes from the clock passed in."""

    def __init__(self, path: Path, clock: Clock) -> None:
        self.path = path
        self._clock = clock
        self._log = structlog.wrap_logger(
            _ChainedLines(path), processors=[self._stamp], wrapper_class=structlog.BoundLogger,
        )

    def _stamp(
        self, _logger: object, _method: str, record: MutableMapping[str, Any]
    ) -> dict[str, Any]:
        when = datetime.fromtimestamp(self._clock.time(), timezone.utc)
        return {"ts": chain.timestamp(when), "event": record.pop("event"), **record}

    def record(self, event: Event, incident: str | None, **fields: object) -> None:
        """Write one record."""
        self._log.msg(event, incident=incident, **fields)
