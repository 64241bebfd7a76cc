"""A process's state letter from ``/proc/PID/stat``: ``T`` (stopped) or ``Z`` (zombie) is proof.

A SIGSTOPped worker is ``active`` to systemd and silent to ping; only its process state tells
it from a worker that is busy, at once.
"""

from __future__ import annotations

from pathlib import Path

from healer import safefile

STOPPED = frozenset({"T", "t", "Z"})  # stopped by a signal, stopped by a tracer, a zombie
MAX_STAT = 4096


def state(pid: int, proc: Path = Path("/proc")) -> str | None:
    """The state letter of process ``pid``, or None when it is gone or cannot be read."""
    try:
        stat = safefile.read_capped(proc / str(pid) / "stat", MAX_STAT).decode(errors="replace")
    except OSError:
        return None
    _, paren, rest = stat.rpartition(")")  # the command name may hold spaces and parentheses
    fields = rest.split()
    return fields[0] if paren and fields else None
