"""Read what Celery logged since the last pass, from a file or from the journal.

Reading takes the cursor of the last read and returns the new one (the pass keeps them in the
state store, so nothing is counted twice); parsing is pure.

Worker: task failures and retries per task name (the same task id retried again and again is a
loop), lost pool processes (SIGKILL, WorkerLostError), and the tasks it is running. Beat: when
it last sent a due task, the shortest period it keeps, and schedule-file trouble (corrupt
versus locked by a second beat).
"""

from __future__ import annotations

import os
import re
import subprocess
from datetime import datetime
from typing import TYPE_CHECKING

from msgspec.structs import replace

from healer import safefile
from healer.errors import ProbeError
from healer.model import LogCursor, TaskEvent
from healer.vocabulary import TaskEventKind

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from healer.model import BeatLog

FIRST_READ = 64 * 1024
MAX_READ = 1024 * 1024
JOURNAL_FIRST_READ = 1000
CURSOR = "-- cursor: "
_STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})")
_FAILED = re.compile(r"Task ([\w.:-]+)\[([\w-]+)\] raised unexpected")
_RETRY = re.compile(r"Task ([\w.:-]+)\[([\w-]+)\] retry:")
_SUCCEEDED = re.compile(r"Task ([\w.:-]+)\[([\w-]+)\] succeeded in")
_RECEIVED = re.compile(r"Task [\w.:-]+\[([\w-]+)\] received")
_ENDED = re.compile(r"Task [\w.:-]+\[([\w-]+)\] (?:succeeded in|raised unexpected|retry:"
                    r"|ignored)|Discarding revoked task: [\w.:-]+\[([\w-]+)\]")
MAX_RUNNING = 1000
_LOST = re.compile(r"WorkerLostError|exited with 'signal 9 \(SIGKILL\)'")
_DISPATCH = re.compile(r"Scheduler: Sending due task (\S+)")
_REPAIRED = re.compile(r"Removing corrupted schedule file")
_CORRUPT = re.compile(
    r"UnpicklingError|_gdbm\.error|_dbm\.error|dbm\.error|db type could not be determined"
    r"|EOFError: Ran out of input|pickle data was truncated"
)
_LOCKED = re.compile(r"Resource temporarily unavailable")


def read_new(path: Path, cursor: LogCursor | None) -> tuple[list[str], LogCursor]:
    """Lines added since ``cursor`` (the last 64 KiB on first sight), and the new cursor.

    A missing or unreadable file, or one that is not a regular file (a FIFO would block the
    pass), is a ProbeError (unknown), never "nothing logged".
    """
    try:
        with safefile.reading(path) as handle:
            stat = os.fstat(handle.fileno())
            if cursor is None:
                start = max(0, stat.st_size - FIRST_READ)
            elif cursor.inode != stat.st_ino or cursor.offset > stat.st_size:
                start = 0
            else:
                start = cursor.offset
            handle.seek(start)
            data = handle.read(MAX_READ)
    except OSError as exc:
        raise ProbeError(f"cannot read {path}: {exc.strerror or exc}") from exc
    complete = data.rfind(b"\n") + 1
    lines = data[:complete].decode(errors="replace").splitlines()
    return (lines[1:] if cursor is None and start > 0 else lines,
            LogCursor(inode=stat.st_ino, offset=start + complete))


def read_journal(unit: str, cursor: str | None, directory: Path | None, scope: str
                 ) -> tuple[list[str], str | None]:
    """Messages a unit logged to the journal since ``cursor`` (the last 1000 at first).

    Returns them with the journal's cursor after the last one (None when it gave none).
    """
    argv = ["journalctl", "--no-pager", "--output=cat", "--show-cursor",
            f"--{'user-' if scope == 'user' else ''}unit={unit}"]
    if directory is not None:
        argv.append(f"--directory={directory}")
    argv += [f"--after-cursor={cursor}"] if cursor else [f"--lines={JOURNAL_FIRST_READ}"]
    try:
        # journalctl with healer's own arguments; the unit name was validated by the config
        result = subprocess.run(argv, capture_output=True, text=True,  # noqa: S603
                                timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProbeError(f"journalctl for {unit}: {exc}") from exc
    if result.returncode != 0:
        raise ProbeError(f"journalctl for {unit}: {result.stderr.strip()}")
    lines = [line for line in result.stdout.splitlines() if line != "-- No entries --"]
    if lines and lines[-1].startswith(CURSOR):
        return lines[:-1], lines[-1].removeprefix(CURSOR)
    return lines, None


def _when(line: str, fallback: float) -> float:
    match = _STAMP.match(line)
    if match is None:
        return fallback
    local = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")  # noqa: DTZ007 - local time
    return local.astimezone().timestamp() + int(match.group(2)) / 1000


def worker_lines(lines: Iterable[str], now: float, tasks: bool = True
                 ) -> tuple[list[TaskEvent], list[float]]:
    """Task failures, retries and successes, and the times of lost pool processes.

    With ``tasks`` off (Celery's task events count them), the task outcomes are skipped.
    """
    events: list[TaskEvent] = []
    lost: list[float] = []
    kinds = ((TaskEventKind.FAILED, _FAILED), (TaskEventKind.RETRIED, _RETRY),
             (TaskEventKind.SUCCEEDED, _SUCCEEDED)) if tasks else ()
    for line in lines:
        if said := next(((k, m) for k, pattern in kinds if (m := pattern.search(line))), None):
            events.append(TaskEvent(said[0], _when(line, now), *said[1].groups()))
        elif _LOST.search(line):
            lost.append(_when(line, now))
    return events, lost


def running(lines: Iterable[str], received: dict[str, float], now: float) -> dict[str, float]:
    """The tasks a worker logged as received and not yet as ended, with when they came.

    Logged at once, even by a solo pool busy in the task (Celery buffers its task events
    until the task ends): a received task without its end shows the worker busy. The lines may
    come from several files (a pool process logs the end in its own): an end read before
    its receipt cancels it.
    """
    still = dict(received)
    early: set[str] = set()
    for line in lines:
        if got := _RECEIVED.search(line):
            if got.group(1) in early:
                early.discard(got.group(1))
            else:
                still[got.group(1)] = _when(line, now)
        elif ended := _ENDED.search(line):
            task = ended.group(1) or ended.group(2)
            if still.pop(task, None) is None:
                early.add(task)
    return dict(list(still.items())[-MAX_RUNNING:])


def beat_log(lines: Iterable[str], previous: BeatLog, now: float) -> BeatLog:
    """What beat's log tells, ``previous`` brought up to date with the new lines."""
    last_sent: dict[str, float] = {}
    updates: dict[str, object] = {}
    for line in lines:
        at = _when(line, now)
        if sent := _DISPATCH.search(line):
            task = sent.group(1)
            if task in last_sent and at > last_sent[task]:
                period = at - last_sent[task]
                shortest = updates.get("shortest_period", previous.shortest_period)
                updates["shortest_period"] = min(period, shortest) \
                    if isinstance(shortest, float) else period
            last_sent[task] = at
            updates["last_dispatch"] = at
        for kind, pattern in (("corrupt", _CORRUPT), ("locked", _LOCKED),
                              ("repaired", _REPAIRED)):
            if pattern.search(line):
                updates["schedule_error"], updates["schedule_error_at"] = kind, at
    return replace(previous, **updates)
