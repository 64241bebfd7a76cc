"""A process's state letter from ``/proc/PID/stat``: ``T`` (stopped) is proof of a wedged node.

A SIGSTOPped worker is ``active`` to systemd and silent to ping; only its process state tells
it from a worker that is busy, at once. A zombie (``Z``) is not wedged but dead: it has exited
and waits to be reaped, and a killed main process is one for the moment before systemd marks
its unit failed. A node of ``celery multi`` has its pid in a pid file.
"""

from __future__ import annotations

import os
from pathlib import Path

from healer import safefile

STOPPED = frozenset({"T", "t"})  # stopped by a signal, stopped by a tracer
EXITED = "Z"  # a zombie
MAX_STAT = 4096
MAX_PID_FILE = 32
MAX_PID = 2**22  # the kernel's pid_max at most


def state(pid: int, proc: Path = Path("/proc")) -> str | None:
    """The state letter of process ``pid``, or None when it is gone or cannot be read."""
    try:
        stat = safefile.read_capped(proc / str(pid) / "stat", MAX_STAT).decode(errors="replace")
    except OSError:
        return None
    _, paren, rest = stat.rpartition(")")  # the command name may hold spaces and parentheses
    fields = rest.split()
    return fields[0] if paren and fields else None


def in_cgroup(pid: int, group: str, proc: Path = Path("/proc")) -> bool:
    """Whether process ``pid`` runs in cgroup ``group`` or below it (any hierarchy)."""
    try:
        lines = safefile.read_capped(proc / str(pid) / "cgroup", MAX_STAT).decode(errors="replace")
    except OSError:
        return False
    paths = (line.split(":", 2)[-1] for line in lines.splitlines())
    return any(p == group or p.startswith(group.rstrip("/") + "/") for p in paths)


def node_state(pid: int, group: str = "") -> str | None:
    """``state`` of a node's pid: None unless it runs (a zombie does not) in the unit's cgroup.

    A pid file outlives a killed node, and its pid may be taken by another process since.
    """
    letter = state(pid)
    runs = letter not in {None, EXITED}
    return letter if runs and (not group or in_cgroup(pid, group)) else None


def pid_file(path: Path) -> tuple[int, float | None]:
    """The pid a pid file holds (0: none) and when it was written (None: no such file)."""
    try:
        with safefile.reading(path) as handle:
            written = os.fstat(handle.fileno()).st_mtime
            text = handle.read(MAX_PID_FILE).decode(errors="replace").strip()
    except FileNotFoundError:
        return 0, None
    pid = int(text) if text.isascii() and text.isdigit() else 0
    return (pid if 0 < pid <= MAX_PID else 0), written
