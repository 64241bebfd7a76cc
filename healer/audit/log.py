"""Append-only, hash-chained JSON Lines through structlog; every record fsynced when written.

Every record has ``ts``, ``event`` and ``incident``; action records add ``scenario``, ``unit``,
``action``, ``outcome`` and ``dry_run``; each is numbered (``seq``) and chained to the one before
by ``prev`` and ``hash`` (``healer.audit.chain``). After each append the anchor, kept apart from
the log, moves to the new end, so that a cut tail shows. Intent is written before an action
starts, so a crash mid-action still leaves a trace of it. Writers hold an exclusive lock on the
file while they read the last hash and append, so the agent and an operator's command never fork
the chain. A torn last line (a crash mid-write) is moved to ``<log>.torn`` and recorded, never
silently dropped.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import structlog

from healer import safefile
from healer.audit import anchor, chain, files
from healer.errors import AuditCorrupt, ConfigError, StateError
from healer.redact import Redactor
from healer.vocabulary import Event

if TYPE_CHECKING:
    from collections.abc import MutableMapping
    from pathlib import Path

    from healer.clock import Clock


class _ChainedLines:
    """The structlog sink: chains, renders, appends and fsyncs one record under a lock."""

    def __init__(self, path: Path, anchor: Path | None) -> None:
        self._path = path
        self._anchor = anchor

    def msg(self, **record: Any) -> None:  # noqa: ANN401 - a record's values are JSON values
        """Append one record durably; a new log first gets its genesis, a new file its opening."""
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            fd = self._open_locked()
            try:
                last = files.last_line(self._path)
                end = chain.link(json.loads(last)) if last is not None else None
                torn = self._set_aside_torn_tail(fd)
                if end is None or not end.sealed:  # a new log, or one from before sealing
                    end = self._append(fd, _opening(Event.AUDIT_STARTED, record["ts"]), end)
                elif not os.fstat(fd).st_size:  # rotated: the new file says where it begins
                    end = self._append(fd, _opening(Event.AUDIT_FILE_STARTED, record["ts"]), end)
                if torn:
                    end = self._append(fd, {"ts": record["ts"], "event": Event.TORN_TAIL_SET_ASIDE,
                                            "incident": None, **torn}, end)
                self._append(fd, record, end)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StateError(f"cannot write audit log {self._path}: {exc.strerror or exc}"
                             ) from exc
        except (ConfigError, ValueError, RecursionError) as exc:  # nothing to chain onto; not JSON
            raise StateError(f"cannot write audit log {self._path}: {exc}") from exc

    def _open_locked(self) -> int:
        """The current file, locked; opened again if it was rotated before the lock was held."""
        while True:
            fd = safefile.open_for_writing(self._path, append=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
            held, now = os.fstat(fd), os.lstat(self._path) if self._path.exists() else None
            if now is not None and (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino):
                return fd
            os.close(fd)

    def _append(self, fd: int, record: dict[str, Any], last: chain.Link | None) -> chain.Link:
        """Write one sealed line and fsync it, then move the anchor to it."""
        line, end = chain.seal(record, last)
        safefile.write_all(fd, line + b"\n")
        os.fsync(fd)
        if self._anchor is not None:
            anchor.write(self._anchor, end)
        return end

    def _set_aside_torn_tail(self, fd: int) -> dict[str, Any]:
        """Move a torn last line to ``<log>.torn``; what to record of it (nothing if none)."""
        torn = files.torn_tail(self._path)
        if not torn:
            return {}
        keep = self._path.with_name(self._path.name + ".torn")
        side = safefile.open_for_writing(keep, append=True)
        try:
            safefile.write_all(side, torn + b"\n")
            os.fsync(side)
        finally:
            os.close(side)
        os.ftruncate(fd, os.fstat(fd).st_size - len(torn))
        return {"bytes": len(torn), "kept_in": str(keep)}


def _opening(event: Event, ts: str) -> dict[str, Any]:
    """The genesis record, or the first record of a file after a rotation."""
    return {"ts": ts, "event": event, "incident": None, "format": chain.FORMAT}


class AuditLog:
    """Writes audit records; time comes from the clock passed in."""

    def __init__(self, path: Path, clock: Clock, anchor: Path | None = None,
                 redactor: Redactor = Redactor()) -> None:  # noqa: B008 - frozen, shared
        self.path = path
        self._clock = clock
        self._redactor = redactor
        self._log = structlog.wrap_logger(
            _ChainedLines(path, anchor), processors=[self._stamp],
            wrapper_class=structlog.BoundLogger,
        )

    def _stamp(
        self, _logger: object, _method: str, record: MutableMapping[str, Any]
    ) -> dict[str, Any]:
        when = datetime.fromtimestamp(self._clock.time(), timezone.utc)
        return {"ts": chain.timestamp(when), "event": record.pop("event"), **record}

    def record(self, event: Event, incident: str | None, **fields: object) -> None:
        """Write one record, with every secret in its fields redacted."""
        self._log.msg(event, incident=incident, **self._redactor.value(fields))

    def events_of(self, action_id: str) -> set[str]:
        """The events recorded lately for one step (by its ``action_id``).

        A log that cannot be read counts as having its start: better an end recorded twice
        than none.
        """
        needle = json.dumps(action_id).encode()
        found = set()
        try:
            for line in files.recent(self.path):
                if needle in line.raw:
                    with contextlib.suppress(ValueError, RecursionError, AttributeError):
                        found.add(str(json.loads(line.raw).get("event")))
        except (AuditCorrupt, ConfigError):
            return {Event.ACTION_STARTED}
        return found
