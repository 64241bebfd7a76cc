"""The systemd interface's contract: every method, the same cases on the fake and on D-Bus."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from healer.clock import SystemClock
from healer.errors import SystemdError
from healer.systemd import Systemd
from healer.vocabulary import ActiveState
from healer.wait import until
from tests.contract.conftest import FALSE, SLEEP

if TYPE_CHECKING:
    from healer.model import UnitState
    from tests.contract.conftest import Bench

NO_SUCH_UNIT = "org.freedesktop.systemd1.NoSuchUnit"
MISSING = "contract-missing.service"


def settled(bench: Bench, name: str) -> UnitState:
    """The unit once it has left the transient states a job can leave it in for a moment."""
    def done() -> UnitState | None:
        state = bench.systemd.unit_state(name)
        return state if state.active_state in {ActiveState.ACTIVE, ActiveState.FAILED,
                                               ActiveState.INACTIVE} and (
            state.active_state != ActiveState.ACTIVE or state.main_pid) else None

    state = until(done, 10, SystemClock(), 0.05)
    assert state is not None, f"{name} did not settle"
    return state


def test_unit_state_of_a_unit_that_does_not_exist(bench: Bench) -> None:
    """unit_state of no such unit: not-found, inactive, dead, no process; it does not raise."""
    state = bench.systemd.unit_state(MISSING)
    assert (state.name, state.load_state, state.active_state, state.sub_state, state.main_pid) \
        == (MISSING, "not-found", "inactive", "dead", 0)


def test_a_unit_read_before_reads_as_it_is_after_it_was_unloaded(bench: Bench) -> None:
    """Read, stopped (systemd unloads a stopped unit nothing holds), read again: as it is now."""
    name = bench.add("sleeps")
    assert bench.systemd.job("start", name, 10) == "done"
    assert settled(bench, name).active_state == "active"
    assert bench.systemd.job("stop", name, 10) == "done"
    time.sleep(0.5)  # the manager's garbage collection runs in between
    state = bench.systemd.unit_state(name)
    assert (state.load_state, state.active_state, state.argv) == ("loaded", "inactive", SLEEP)
    assert bench.systemd.unit_state(MISSING).load_state == "not-found"
    assert bench.systemd.unit_state(MISSING).load_state == "not-found"


def test_unit_state_of_a_stopped_unit(bench: Bench) -> None:
    """A loaded, never started service: inactive, dead, Result=success, its ExecStart argv."""
    name = bench.add("sleeps")
    state = bench.systemd.unit_state(name)
    assert (state.load_state, state.active_state, state.sub_state, state.result,
            state.main_pid, state.n_restarts, state.argv) == (
        "loaded", "inactive", "dead", "success", 0, 0, SLEEP)


def test_start_then_stop(bench: Bench) -> None:
    """Start is done and leaves it running with a process and a start time; stop is done too."""
    name = bench.add("sleeps")
    assert bench.systemd.job("start", name, 10) == "done"
    running = settled(bench, name)
    assert (running.active_state, running.sub_state, running.result) == (
        "active", "running", "success")
    assert running.main_pid > 0
    assert running.active_enter_us > 0
    assert bench.systemd.job("stop", name, 10) == "done"
    stopped = bench.systemd.unit_state(name)
    assert (stopped.active_state, stopped.sub_state, stopped.main_pid) == ("inactive", "dead", 0)


def test_start_of_a_running_unit_keeps_its_process(bench: Bench) -> None:
    """A second start is done and changes nothing: the same main process."""
    name = bench.add("sleeps")
    bench.systemd.job("start", name, 10)
    pid = settled(bench, name).main_pid
    assert bench.systemd.job("start", name, 10) == "done"
    assert bench.systemd.unit_state(name).main_pid == pid


def test_restart_gives_a_new_process(bench: Bench) -> None:
    """Restart is done and the unit runs again under a new main process."""
    name = bench.add("sleeps")
    bench.systemd.job("start", name, 10)
    pid = settled(bench, name).main_pid
    assert bench.systemd.job("restart", name, 10) == "done"
    again = settled(bench, name)
    assert again.active_state == "active"
    assert again.main_pid not in {0, pid}


def test_a_job_done_is_not_healthy(bench: Bench) -> None:
    """A service whose command fails: start is done, and the unit fails with exit-code 1."""
    name = bench.add("crashes")
    assert bench.systemd.job("start", name, 10) == "done"
    state = settled(bench, name)
    assert (state.active_state, state.result, state.exec_main_status, state.argv) == (
        "failed", "exit-code", 1, FALSE)


def test_a_job_past_its_deadline_is_timeout(bench: Bench) -> None:
    """A start that takes longer than the timeout returns "timeout"; the unit is activating."""
    name = bench.add("slow")
    assert bench.systemd.job("start", name, 0.5) == "timeout"
    assert bench.systemd.unit_state(name).active_state == "activating"


def test_a_killed_unit_is_failed_stop_keeps_it_reset_failed_clears_it(bench: Bench) -> None:
    """SIGKILL: failed, Result=signal, status 9; stop leaves it failed; reset_failed clears it."""
    name = bench.add("sleeps")
    bench.systemd.job("start", name, 10)
    settled(bench, name)
    bench.kill(name)
    state = bench.systemd.unit_state(name)
    assert (state.active_state, state.sub_state, state.result, state.exec_main_status,
            state.main_pid) == ("failed", "failed", "signal", 9, 0)
    assert bench.systemd.job("stop", name, 10) == "done"
    assert bench.systemd.unit_state(name).active_state == "failed"
    bench.systemd.reset_failed(name)
    cleared = bench.systemd.unit_state(name)
    assert (cleared.active_state, cleared.sub_state, cleared.result) == (
        "inactive", "dead", "success")


def test_reset_failed_of_a_running_unit_changes_nothing(bench: Bench) -> None:
    """reset_failed on a unit that is not failed does not raise and leaves it running."""
    name = bench.add("sleeps")
    bench.systemd.job("start", name, 10)
    pid = settled(bench, name).main_pid
    bench.systemd.reset_failed(name)
    state = bench.systemd.unit_state(name)
    assert (state.active_state, state.main_pid) == ("active", pid)


@pytest.mark.parametrize("verb", ["start", "stop", "restart"])
def test_a_job_on_no_such_unit_is_refused(bench: Bench, verb: str) -> None:
    """Every job on a unit that does not exist raises SystemdError named NoSuchUnit."""
    with pytest.raises(SystemdError) as raised:
        bench.systemd.job(verb, MISSING, 10)  # type: ignore[arg-type]
    assert raised.value.dbus_name == NO_SUCH_UNIT
    assert not raised.value.denied


def test_reset_failed_of_no_such_unit_is_refused(bench: Bench) -> None:
    """reset_failed on a unit that does not exist raises SystemdError named NoSuchUnit."""
    with pytest.raises(SystemdError) as raised:
        bench.systemd.reset_failed(MISSING)
    assert raised.value.dbus_name == NO_SUCH_UNIT


def test_reload_returns_when_done_and_keeps_units_as_they_are(bench: Bench) -> None:
    """daemon-reload returns None; a running unit keeps running under the same process."""
    name = bench.add("sleeps")
    bench.systemd.job("start", name, 10)
    pid = settled(bench, name).main_pid
    assert bench.systemd.reload() is None  # type: ignore[func-returns-value]
    state = bench.systemd.unit_state(name)
    assert (state.active_state, state.main_pid) == ("active", pid)


def seen_change(bench: Bench, name: str) -> set[str]:
    """Every unit changes() names until ``name`` is among them (events arrive when they do)."""
    seen: set[str] = set()

    def named() -> bool | None:
        changed = bench.systemd.changes()
        assert changed is not None, "subscribed after a read"
        seen.update(changed)
        return name in seen or None

    assert until(named, 10, SystemClock(), 0.02), f"no change of {name} signalled"
    return seen


def test_changes_name_the_units_that_changed_state(bench: Bench) -> None:
    """A read unit that starts, then is killed, is named by changes(); an idle one is not."""
    name, idle = bench.add("sleeps"), bench.add("sleeps")
    for unit in (name, idle):
        bench.systemd.unit_state(unit)
    assert bench.systemd.changes() is not None
    bench.systemd.job("start", name, 10)
    assert idle not in seen_change(bench, name)
    settled(bench, name)
    bench.systemd.changes()
    bench.kill(name)
    assert idle not in seen_change(bench, name)


def test_every_method_of_the_interface_has_a_case() -> None:
    """A method added to the Systemd interface without a contract case here fails this."""
    methods = {name for name in vars(Systemd) if not name.startswith("_")}
    source = Path(__file__).read_text()
    assert methods == {m for m in methods if f".systemd.{m}(" in source}
