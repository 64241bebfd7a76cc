"""Memory and CPU time per unit: systemd's accounting when known, else psutil over the tree.

MemoryCurrent and CPUUsageNSec read 2^64-1 when the manager does not account them (as with a
user manager without delegated controllers); then the unit's main process and its children
are summed with psutil. A main process that runs but that healer cannot read (/proc hidden by
ProtectProc= or hidepid=, or access denied) is a probe error, reported as unknown: counting it as
nothing would call its memory fine without having looked.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import psutil

from healer.errors import ProbeError
from healer.model import UnitUsage

if TYPE_CHECKING:
    from collections.abc import Sequence

    from healer.model import UnitState


def _runs(pid: int) -> bool:
    """Whether a process exists, whether or not /proc shows it (signal 0 sends nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's
    return True


def _tree(pid: int) -> list[psutil.Process]:
    try:
        main = psutil.Process(pid)
        return [main, *main.children(recursive=True)]
    except psutil.ZombieProcess:
        return []  # dead, not yet reaped
    except psutil.AccessDenied as exc:
        raise ProbeError(f"cannot read process {pid} in /proc: access denied") from exc
    except psutil.NoSuchProcess as exc:
        if _runs(pid):
            raise ProbeError(f"process {pid} runs but /proc does not show it to healer "
                             "(ProtectProc= or hidepid=)") from exc
        return []  # gone since systemd named it


def _rss(process: psutil.Process) -> int:
    try:
        return int(process.memory_info().rss)
    except psutil.Error:  # gone while we counted
        return 0


def _cpu(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def unit_usage(unit: UnitState, nodes: Sequence[int] = ()) -> UnitUsage | None:
    """None when the unit has no process and systemd accounts neither memory nor CPU.

    Without a main process (``celery multi`` leaves none), the trees of its nodes' pids.
    """
    roots = [unit.main_pid] if unit.main_pid else list(nodes)
    tree = [p for root in roots for p in _tree(root)] if roots and (
        unit.memory_bytes is None or unit.cpu_nsec is None) else []
    if unit.memory_bytes is not None:
        memory, source = unit.memory_bytes, "cgroup"
    elif tree:
        memory, source = sum(_rss(p) for p in tree), "psutil"
    else:
        return None
    cpu = unit.cpu_nsec / 1e9 if unit.cpu_nsec is not None else sum(_cpu(p) for p in tree)
    return UnitUsage(unit=unit.name, bytes=memory, source=source, cpu_seconds=cpu,
                     main_pid=roots[0] if roots else 0)
