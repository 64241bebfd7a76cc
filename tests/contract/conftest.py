"""Two benches behind one interface: the fake systemd, and the D-Bus backend on a real manager.

A bench makes services of a few kinds and injects faults into them; the contract cases then
use only the ``Systemd`` interface, so both backends must answer them alike.
"""

from __future__ import annotations

import itertools
import os
import signal
from typing import TYPE_CHECKING, Protocol

import pytest
from msgspec.structs import replace

from healer.clock import SystemClock
from healer.systemd.dbus_backend import DBusSystemd
from healer.testing import FakeSystemd, ManualClock, unit
from healer.vocabulary import ActiveState
from sandbox.base import wait_until
from sandbox.usermanager import UserManager

if TYPE_CHECKING:
    from collections.abc import Iterator

    from healer.model import UnitState
    from healer.systemd import Systemd

SLEEP = ("/bin/sleep", "infinity")
FALSE = ("/bin/false",)
_SERVICES = {  # kind: (ExecStart argv, the unit file's extra [Service] lines)
    "sleeps": (SLEEP, ""),
    "crashes": (FALSE, ""),
    "slow": (SLEEP, "ExecStartPre=/bin/sleep 5\n"),
}


class Bench(Protocol):
    """Where the contract runs: a systemd backend and the means to set up its world."""

    systemd: Systemd

    def add(self, kind: str) -> str:
        """A new loaded, stopped service of this kind (see _SERVICES); its name."""
        ...

    def kill(self, name: str) -> None:
        """SIGKILL the service's main process; return once systemd has it failed."""
        ...


class FakeBench:
    """FakeSystemd, set up the way systemd behaves for each kind of service."""

    def __init__(self) -> None:
        self.fake = FakeSystemd(clock=ManualClock())
        self.systemd: Systemd = self.fake
        self._names = itertools.count()

    def add(self, kind: str) -> str:
        """A unit of this kind in the dict, with the outcome its start has on systemd."""
        name = f"contract-{kind}-{next(self._names)}.service"
        argv, _ = _SERVICES[kind]
        self.fake.units[name] = replace(unit(name, ActiveState.INACTIVE), argv=argv)
        if kind == "crashes":
            self.fake.outcomes[name] = lambda s: replace(
                s, active_state=ActiveState.FAILED, sub_state="failed", result="exit-code",
                exec_main_status=1, main_pid=0)
        elif kind == "slow":
            self.fake.job_results[name] = "timeout"
            self.fake.outcomes[name] = lambda s: replace(
                s, active_state=ActiveState.ACTIVATING, sub_state="start-pre", main_pid=0)
        return name

    def kill(self, name: str) -> None:
        """The unit as systemd leaves a service whose main process got SIGKILL."""
        state: UnitState = self.fake.units[name]
        self.fake.units[name] = replace(state, active_state=ActiveState.FAILED,
                                        sub_state="failed", result="signal",
                                        exec_main_status=9, main_pid=0)


class DBusBench:
    """The D-Bus backend on a private systemd user manager, with real unit files."""

    def __init__(self, manager: UserManager) -> None:
        self.manager = manager
        self.systemd: Systemd = DBusSystemd(manager.bus_address, SystemClock())
        self._names = itertools.count()

    def add(self, kind: str) -> str:
        """A unit file of this kind, loaded by a daemon-reload."""
        name = f"contract-{kind}-{next(self._names)}.service"
        argv, extra = _SERVICES[kind]
        self.manager.write_unit(name, f"[Service]\n{extra}ExecStart={' '.join(argv)}\n")
        self.manager.reload()
        return name

    def kill(self, name: str) -> None:
        """SIGKILL the main process for real, and wait until the unit is failed."""
        os.kill(self.systemd.unit_state(name).main_pid, signal.SIGKILL)
        wait_until(lambda: self.systemd.unit_state(name).active_state == ActiveState.FAILED,
                   10, f"{name} to fail")


@pytest.fixture(scope="module")
def manager() -> Iterator[UserManager]:
    """One private user manager for the module's D-Bus cases (each makes its own units)."""
    with UserManager() as running:
        yield running


@pytest.fixture(params=["fake", pytest.param("dbus", marks=pytest.mark.integration)])
def bench(request: pytest.FixtureRequest) -> Bench:
    """The contract's bench: the fake, or the D-Bus backend on the real manager."""
    if request.param == "fake":
        return FakeBench()
    return DBusBench(request.getfixturevalue("manager"))
