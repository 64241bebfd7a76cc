"""A node's process state from the real /proc: stopped is proof, a zombie does not run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from healer.probes import process


def _state_is(pid: int, letter: str) -> None:
    """Wait until the kernel shows process ``pid`` in state ``letter``."""
    deadline = time.monotonic() + 5
    while process.state(pid) != letter:
        assert time.monotonic() < deadline, f"{pid} never reached state {letter}"
        time.sleep(0.01)


def test_a_stopped_process_reads_as_stopped() -> None:
    """A SIGSTOPped child reads as T, the proof worker_unresponsive acts on at once."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        os.kill(child.pid, signal.SIGSTOP)
        _state_is(child.pid, "T")
        assert process.node_state(child.pid) in process.STOPPED
    finally:
        child.kill()
        child.wait()


def test_a_killed_process_not_yet_reaped_does_not_run() -> None:
    """A SIGKILLed child its parent has not reaped (a zombie) reads as no process, not stuck."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        child.kill()
        _state_is(child.pid, process.EXITED)
        assert process.node_state(child.pid) is None
    finally:
        child.wait()
