"""Memory per unit: systemd's MemoryCurrent when known, else RSS summed over the process tree."""

from __future__ import annotations

from typing import TYPE_CHECKING

import psutil

from healer.model import UnitMemory

if TYPE_CHECKING:
    from healer.model import UnitState


def unit_memory(unit: UnitState) -> UnitMemory | None:
    """None when the unit has no process and systemd does not know its memory."""
    if unit.memory_bytes is not None:
        return UnitMemory(unit=unit.name, bytes=unit.memory_bytes, source="cgroup")
    if not unit.main_pid:
        return None
    try:
        main = psutil.Process(unit.main_pid)
        tree = [main, *main.children(recursive=True)]
    except psutil.Error:
        return None
    return UnitMemory(unit=unit.name, bytes=sum(_rss(p) for p in tree), source="psutil")


def _rss(process: psutil.Process) -> int:
    try:
        return int(process.memory_info().rss)
    except psutil.Error:  # gone while we counted
        return 0
