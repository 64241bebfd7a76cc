"""What every sandbox shares: its errors, waiting, and cgroups that take every process along.

A sandbox is named ``PREFIX<owner pid>-<random>``; its cgroups (in each hierarchy systemd uses)
and its folder carry that name, so teardown, and the reaping of sandboxes whose owner died,
find every process and file it made.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from healer.clock import SystemClock
from healer.wait import until

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType
    from typing import Self

PREFIX = "healer-sandbox-"


class SandboxError(RuntimeError):
    """The sandbox could not be started or used; the message says what is missing."""


def wait_until(check: Callable[[], bool], timeout: float, what: str, pause: float = 0.05) -> None:
    """Poll ``check`` until it is true; raise SandboxError naming ``what`` at the deadline."""
    if until(lambda: check() or None, timeout, SystemClock(), pause) is None:
        raise SandboxError(f"timed out after {timeout:.0f}s waiting for {what}")


# v1 controllers a system manager uses; cpuset is left out (a new cpuset group starts empty).
CONTROLLERS = ("memory", "pids", "devices", "cpu", "cpuacct", "blkio", "freezer")


def hierarchies(controllers: bool = False) -> list[Path]:
    """Where this process sits in name=systemd (v1) and cgroup2 (+ v1 ``controllers``)."""
    mounts: dict[str, Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" - ")
        fstype, _, options = fields[1].split()[:3]
        point = Path(line.split()[4])
        if fstype == "cgroup2":
            mounts["0::"] = point
        elif fstype == "cgroup" and "name=systemd" in options:
            mounts["name=systemd"] = point
        elif fstype == "cgroup" and controllers:
            # keyed as /proc/self/cgroup names it: "memory", or "cpu,cpuacct" when co-mounted
            names = [o for o in options.split(",") if o in CONTROLLERS]
            if names:
                mounts[",".join(names)] = point
    places = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        number, hierarchy, path = line.split(":", 2)
        key = "0::" if number == "0" else hierarchy
        if key in mounts:
            places.append(mounts[key] / path.lstrip("/"))
    if not places:
        raise SandboxError("no cgroup hierarchy for systemd found in /proc/self/mountinfo")
    return places


def kill_cgroup(group: Path) -> None:
    """SIGKILL every process in the cgroup tree, then remove the tree, deepest first."""
    if not group.exists():
        return

    def emptied() -> bool | None:
        pids = {int(p) for procs in group.rglob("cgroup.procs") for p in procs.read_text().split()}
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return not pids or None

    until(emptied, 5, SystemClock(), 0.05)  # what survives this is left to remove() to report
    for sub in sorted((d for d in group.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts)):
        with contextlib.suppress(OSError):
            sub.rmdir()
    with contextlib.suppress(OSError):
        group.rmdir()


def _cgroups_of(proc: Path) -> str:
    try:
        return (proc / "cgroup").read_text()
    except OSError:  # gone meanwhile
        return ""


def members(name: str) -> list[int]:
    """Processes, zombies awaiting their reaper included, still in a cgroup of this name."""
    return [int(p.name) for p in Path("/proc").glob("[0-9]*") if f"/{name}." in _cgroups_of(p)]


def _owner_alive(name: str) -> bool:
    try:
        owner = int(name.removeprefix(PREFIX).split("-")[0])
    except ValueError:
        return True
    return Path(f"/proc/{owner}").exists()


def reap_stale(base: Path) -> list[str]:
    """Tear down sandboxes whose owning process is gone (a test run killed mid-way)."""
    reaped = []
    for hierarchy in hierarchies(controllers=True):
        for group in hierarchy.glob(PREFIX + "*"):
            if not _owner_alive(group.name):
                kill_cgroup(group)
                reaped.append(group.name)
    for folder in base.glob(PREFIX + "*"):
        if not _owner_alive(folder.name):
            shutil.rmtree(folder, ignore_errors=True)
            reaped.append(folder.name)
    return sorted(set(reaped))


def claim(base: Path | None) -> tuple[str, Path]:
    """A new sandbox's name and folder (not made yet), once those whose owner died are reaped."""
    base = base or Path(tempfile.gettempdir())
    reap_stale(base)
    name = f"{PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
    return name, base / name


def remove(name: str, groups: list[Path], folder: Path) -> None:
    """Kill what is left in a sandbox's cgroups, wait until it is gone, remove its folder."""
    try:
        for group in groups:
            kill_cgroup(group)
        # Killed orphans linger as zombies until the host's init reaps them.
        wait_until(lambda: not members(name), 10, f"the processes of {name} to go")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class Sandbox:
    """Started on entering a ``with`` block, stopped on leaving it, even when starting failed."""

    def start(self) -> Self:
        """Bring the sandbox up."""
        raise NotImplementedError

    def stop(self) -> None:
        """Take the sandbox down and remove every trace of it."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
