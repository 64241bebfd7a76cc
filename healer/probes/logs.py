"""Read what Celery logged since the last pass, from a file or from the journal.

File offsets and journal cursors live in the state store, so nothing is counted twice.

Worker: task failures and retries per task name (the same task id retried again and again is a
loop), and lost pool processes (SIGKILL, WorkerLostError). Beat: when it last sent a due task,
the shortest period it keeps, and schedule-file trouble (corrupt versus locked by a second beat).
"""

from __future__ import annotations

import re
import subprocess
from datetime import datetime
from typing import TYPE_CHECKING

from healer.errors import ProbeError
from healer.model import BeatLog, WorkerLog
from healer.state import LogCursor

if TYPE_CHECKING:
    from pathlib import Path

    from healer.state import State

FIRST_READ = 64 * 1024
MAX_READ = 1024 * 1024
MAX_RETRY_IDS = 500
JOURNAL_FIRST_READ = 1000
CURSOR = "-- cursor: "
_STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})")
_FAILED = re.compile(r"Task ([\w.:-]+)\[([\w-]+)\] raised unexpected")
_RETRY = re.compile(r"Task ([\w.:-]+)\[([\w-]+)\] retry:")
_LOST = re.compile(r"WorkerLostError|exited with 'signal 9 \(SIGKILL\)'")
_DISPATCH = re.compile(r"Scheduler: Sending due task (\S+)")
_REPAIRED = re.compile(r"Removing corrupted schedule file")
_CORRUPT = re.compile(
    r"UnpicklingError|_gdbm\.error|_dbm\.error|dbm\.error|db type could not be determined"
    r"|EOFError: Ran out of input|pickle data was truncated"
)
_LOCKED = re.compile(r"Resource temporarily unavailable")


def read_new(path: Path, state: State) -> list[str]:
    """Lines added since the last read (the last 64 KiB on first sight).

    A missing or unreadable file is a ProbeError (unknown), never "nothing logged".
    """
    try:
        with path.open("rb") as handle:
            stat = path.stat()
            cursor = state.logs.get(str(path))
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
    state.logs[str(path)] = LogCursor(inode=stat.st_ino, offset=start + complete)
    lines = data[:complete].decode(errors="replace").splitlines()
    return lines[1:] if cursor is None and start > 0 else lines


def read_journal(unit: str, state: State, directory: Path | None, scope: str) -> list[str]:
    """Messages a unit logged to the journal since the last read (the last 1000 at first)."""
    cursor = state.journal_cursors.get(unit)
    argv = ["journalctl", "--no-pager", "--output=cat", "--show-cursor",
            f"--{'user-' if scope == 'user' else ''}unit={unit}"]
    if directory is not None:
        argv.append(f"--directory={directory}")
    argv += [f"--after-cursor={cursor}"] if cursor else [f"--lines={JOURNAL_FIRST_READ}"]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProbeError(f"journalctl for {unit}: {exc}") from exc
    if result.returncode != 0:
        raise ProbeError(f"journalctl for {unit}: {result.stderr.strip()}")
    lines = [line for line in result.stdout.splitlines() if line != "-- No entries --"]
    if lines and lines[-1].startswith(CURSOR):
        state.journal_cursors[unit] = lines.pop().removeprefix(CURSOR)
    return lines


def _when(line: str, fallback: float) -> float:
    match = _STAMP.match(line)
    if match is None:
        return fallback
    local = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")  # noqa: DTZ007 - local time
    return local.astimezone().timestamp() + int(match.group(2)) / 1000


def record_failure(state: State, at: float, task: str) -> None:
    """One failed run of a task."""
    state.failures.append((at, task))


def record_retry(state: State, task: str, task_id: str) -> None:
    """One more retry of a task id (the same id again and again is a loop)."""
    state.retries[task_id] = (task, state.retries.get(task_id, (task, 0))[1] + 1)


def record_worker_lines(lines: list[str], state: State, now: float, tasks: bool = True) -> None:
    """Failures, retries (unless ``tasks`` is off: events count them) and lost processes."""
    for line in lines:
        if tasks and (failed := _FAILED.search(line)):
            record_failure(state, _when(line, now), failed.group(1))
        elif tasks and (retry := _RETRY.search(line)):
            record_retry(state, *retry.groups())
        elif _LOST.search(line):
            state.lost.append(_when(line, now))


def worker_log(state: State, now: float, window: float, loop: int) -> WorkerLog:
    """Failures and retry loops per task, and lost processes, within the window."""
    state.failures = [(t, task) for t, task in state.failures if now - t < window]
    state.lost = [t for t in state.lost if now - t < window]
    state.retries = dict(list(state.retries.items())[-MAX_RETRY_IDS:])
    failures: dict[str, int] = {}
    for _, task in state.failures:
        failures[task] = failures.get(task, 0) + 1
    loops: dict[str, int] = {}
    for task, count in state.retries.values():
        if count >= loop:
            loops[task] = max(loops.get(task, 0), count)
    return WorkerLog(failures=failures, retry_loops=loops, lost=len(state.lost))


def beat_log(lines: list[str], state: State, now: float) -> BeatLog:
    """Update what beat's log tells and return it."""
    beat = state.beat.model_copy()
    last_sent: dict[str, float] = {}
    updates: dict[str, object] = {}
    for line in lines:
        at = _when(line, now)
        if sent := _DISPATCH.search(line):
            task = sent.group(1)
            if task in last_sent and at > last_sent[task]:
                period = at - last_sent[task]
                shortest = updates.get("shortest_period", beat.shortest_period)
                updates["shortest_period"] = min(period, shortest) \
                    if isinstance(shortest, float) else period
            last_sent[task] = at
            updates["last_dispatch"] = at
        for kind, pattern in (("corrupt", _CORRUPT), ("locked", _LOCKED),
                              ("repaired", _REPAIRED)):
            if pattern.search(line):
                updates["schedule_error"], updates["schedule_error_at"] = kind, at
    state.beat = beat.model_copy(update=updates)
    return state.beat
