"""Memory and CPU time per unit: systemd's accounting when known, else psutil over its processes.

MemoryCurrent and CPUUsageNSec read 2^64-1 when the manager does not account them (as with a
user manager without delegated controllers); then the processes of the unit's cgroup (its
``cgroup.procs``, and its sub-groups') are summed with psutil, or, when that cgroup cannot be
read here, the main process and its children (which costs a read of every process's stat). A
main process that runs but that healer cannot read (/proc hidden by ProtectProc= or hidepid=, or
access denied) is a probe error, reported as unknown: counting it as nothing would call its
memory fine without having looked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from healer import safefile
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


# Where systemd's cgroup tree is: cgroup v2, or the hybrid and legacy layouts' own hierarchies.
CGROUPS = (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup/systemd"))
MAX_PROCS = 1 << 20  # a cgroup.procs of more is refused


def members(group: str, roots: tuple[Path, ...] = CGROUPS) -> list[int] | None:
    """The pids in cgroup ``group`` and below it; None when it cannot be read here."""
    top = next((t for root in roots if (t := root / group.lstrip("/")).is_dir()), None)
    if not group or top is None:
        return None
    pids: list[int] = []
    try:
        for folder, _subgroups, _files in os.walk(top):
            pids += map(int, safefile.read_capped(Path(folder) / "cgroup.procs", MAX_PROCS).split())
    except (OSError, ValueError):
        return None
    return pids


def _tree(pid: int, children: bool = True) -> list[psutil.Process]:
    try:
        main = psutil.Process(pid)
        return [main, *main.children(recursive=True)] if children else [main]
    except psutil.ZombieProcess:
        return []  # dead, not yet reaped
    except psutil.AccessDenied as exc:
        raise ProbeError(f"cannot read process {pid} in /proc: access denied") from exc
    except psutil.NoSuchProcess as exc:
        if _runs(pid):
            raise ProbeError(f"process {pid} runs but /proc does not show it to healer "
                             "(ProtectProc= or hidepid=)") from exc
        return []  # gone since systemd named it


def _processes(roots: list[int], group: str) -> list[psutil.Process]:
    """The roots (each must be readable) and the rest of the cgroup, or the roots' trees."""
    pids = members(group)
    if pids is None:
        return [p for root in roots for p in _tree(root)]
    found = [p for root in roots for p in _tree(root, children=False)]
    known = {p.pid for p in found}
    for pid in pids:
        if pid not in known:
            try:
                found.append(psutil.Process(pid))
            except psutil.Error:  # gone since the cgroup named it
                continue
    return found


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

    Without a main process (``celery multi`` leaves none), its nodes' pids stand in for it.
    """
    roots = [unit.main_pid] if unit.main_pid else list(nodes)
    tree = _processes(roots, unit.control_group) if roots and (
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
