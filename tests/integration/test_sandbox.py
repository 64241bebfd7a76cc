"""The sandbox itself: real systemd user manager, isolated, and always cleaned up."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from sandbox.base import PREFIX, hierarchies
from sandbox.rootimage import ensure_image, in_use
from sandbox.stack import BEAT, BROKER, WORKER, CeleryStack
from sandbox.systemmanager import SystemManager
from sandbox.usermanager import UserManager

pytestmark = pytest.mark.integration


TMP = Path(tempfile.gettempdir())
PROJECT = Path(__file__).resolve().parents[2]


def _cgroup_of(proc: Path) -> str:
    try:
        return (proc / "cgroup").read_text()
    except OSError:  # the process is gone
        return ""


def _traces(name: str) -> list[str]:
    """Folders, cgroups, processes or mounts a sandbox of this name left behind."""
    found = [str(p) for p in TMP.glob(name)]
    found += [str(p) for h in hierarchies(controllers=True) for p in h.glob(f"{name}*")]
    found += [str(p) for p in Path("/sys/fs/cgroup").glob(f"{name}*")]
    found += [f"pid {p.name}" for p in Path("/proc").glob("[0-9]*") if name in _cgroup_of(p)]
    found += [m for m in Path("/proc/self/mountinfo").read_text().splitlines() if name in m]
    return found


def test_stack_runs_units_in_its_own_cgroup(stack: CeleryStack) -> None:
    """redis, worker and beat run as units of the sandbox's manager, inside its cgroup."""
    for unit in (BROKER, WORKER, BEAT):
        assert stack.active(unit), unit
        group = stack.manager.show(unit, "ControlGroup")
        assert group.startswith(f"/{stack.manager.name}.slice/user@0.service/"), group


def test_teardown_leaves_nothing_even_when_the_body_fails() -> None:
    """An exception inside the sandbox still removes every process, cgroup and folder."""
    names: list[str] = []

    def fail_inside() -> None:
        with CeleryStack() as running:
            names.append(running.manager.name)
            assert _traces(running.manager.name)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_inside()
    assert _traces(names[0]) == []


def test_two_sandboxes_do_not_collide() -> None:
    """Two stacks run side by side; stopping one leaves the other running."""
    with CeleryStack() as first, CeleryStack() as second:
        assert first.port != second.port
        first.kill(WORKER)
        assert second.active(WORKER)
        first.stop()
        assert second.active(WORKER)
        assert second.active(BEAT)


def test_stale_sandbox_of_a_dead_owner_is_reaped() -> None:
    """A sandbox whose owning process died is torn down when the next one starts."""
    stale = TMP / f"{PREFIX}999999999-dead00"
    stale.mkdir()
    with UserManager() as manager:
        assert manager.pid != os.getpid()
    assert not stale.exists()


def test_system_manager_teardown_leaves_nothing_even_when_the_body_fails() -> None:
    """A booted root goes completely on an error, and what it wrote never reaches the image."""
    image = ensure_image(PROJECT)
    names: list[str] = []

    def fail_inside() -> None:
        with SystemManager(image) as booted:
            names.append(booted.name)
            assert booted.systemctl("is-system-running", check=False).stdout.strip() in {
                "running", "degraded"}
            assert _traces(booted.name)
            booted.write("/etc/written-by-a-test", "the overlay keeps this out of the image")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_inside()
    assert _traces(names[0]) == []
    assert not (image / "etc/written-by-a-test").exists()


def test_a_booted_image_cannot_be_deleted_by_another_run() -> None:
    """While a sandbox runs on an image, a run that would delete it cannot take it."""
    image = ensure_image(PROJECT)
    with SystemManager(image), pytest.raises(BlockingIOError), in_use(image, exclusive=True):
        pass
    with in_use(image, exclusive=True):
        assert image.exists()
