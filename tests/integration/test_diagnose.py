"""`healer diagnose` on the real sandbox: each runbook scenario injected for real.

Each is reported exactly, with the runbook's severity; a healthy stack under load reports nothing.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import TYPE_CHECKING

import psutil
import pytest

from sandbox.base import wait_until
from sandbox.stack import BEAT, BROKER, NODE, WORKER, CeleryStack, free_port
from tests.conftest import diagnose, scenarios
from tests.integration.conftest import client

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration


def config_with(stack: CeleryStack, **thresholds: float) -> Path:
    """The stack's config with some thresholds changed."""
    lines = "\n".join(f"{k} = {v}" for k, v in thresholds.items())
    return stack.config(extra=f"[thresholds]\n{lines}\n")


def test_healthy_stack_under_load_reports_nothing_across_20_passes(stack: CeleryStack) -> None:
    """Steady task load and beat running: 20 diagnose passes all say OK, no findings."""
    app, stop = client(stack), threading.Event()

    def load() -> None:
        while not stop.is_set():
            app.send_task("demoapp.add", args=(1, 2))
            time.sleep(0.05)

    sender = threading.Thread(target=load)
    sender.start()
    try:
        config = stack.config()
        for _ in range(20):
            assert diagnose(config) == (0, [])
    finally:
        stop.set()
        sender.join()


def test_worker_down(stack: CeleryStack) -> None:
    """A SIGKILLed worker is worker_down, critical (all workers down), exit CRITICAL."""
    stack.kill(WORKER)
    code, findings = diagnose(stack.config())
    assert (code, scenarios(findings)) == (2, [("worker_down", "critical")])
    assert findings[0]["evidence"]["result"] == "signal"
    assert findings[0]["remedy"].startswith("restart_unit")


def test_worker_unresponsive(stack: CeleryStack) -> None:
    """A SIGSTOPped worker is active to systemd and silent to ping: worker_unresponsive."""
    os.kill(stack.main_pid(WORKER), signal.SIGSTOP)
    code, findings = diagnose(config_with(stack, startup_grace=0))
    assert (code, scenarios(findings)) == (2, [("worker_unresponsive", "critical")])
    assert findings[0]["unit"] == WORKER
    assert findings[0]["evidence"]["node"] == NODE


def test_worker_not_consuming(stack: CeleryStack) -> None:
    """Answers ping, consumer cancelled, backlog not falling: worker_not_consuming."""
    app = client(stack)
    app.control.cancel_consumer("celery", destination=[NODE], reply=True, timeout=2)
    for _ in range(5):
        app.send_task("demoapp.add", args=(1, 2))
    config = config_with(stack, not_consuming_after=2)
    code, findings = diagnose(config)
    assert (code, findings) == (0, [])
    time.sleep(1.2)
    diagnose(config)
    time.sleep(1.2)
    code, findings = diagnose(config)
    assert (code, scenarios(findings)) == (2, [("worker_not_consuming", "high")])
    assert findings[0]["unit"] == WORKER


def test_broker_unreachable(stack: CeleryStack) -> None:
    """Broker stopped: broker_unreachable (refused), and nothing else the broker explains."""
    stack.manager.systemctl("stop", BROKER)
    code, findings = diagnose(config_with(stack, startup_grace=0))
    assert (code, scenarios(findings)) == (2, [("broker_unreachable", "critical")])
    assert findings[0]["evidence"]["error_kind"] == "refused"
    assert findings[0]["unit"] == BROKER


def test_task_failures_and_retry_loop(stack: CeleryStack) -> None:
    """Repeated task failures, then one task id retried again and again: task_failures."""
    config = stack.config()
    diagnose(config)
    app = client(stack)
    for _ in range(3):
        app.send_task("demoapp.fail")
    wait_until(lambda: stack.log("celery.log").count("raised unexpected") >= 3, 20, "failures")
    code, findings = diagnose(config)
    assert (code, scenarios(findings)) == (1, [("task_failures", "medium")])
    assert findings[0]["evidence"]["failed:demoapp.fail"] == 3

    app.send_task("demoapp.flaky")
    wait_until(lambda: stack.log("celery.log").count("retry:") >= 3, 20, "retries")
    _, findings = diagnose(config)
    assert scenarios(findings) == [("task_failures", "medium")]
    assert findings[0]["evidence"]["retry_loop:demoapp.flaky"] >= 3


def test_beat_down(stack: CeleryStack) -> None:
    """A SIGKILLed beat is beat_down, high."""
    stack.kill(BEAT)
    code, findings = diagnose(stack.config())
    assert (code, scenarios(findings)) == (2, [("beat_down", "high")])


def test_beat_down_with_corrupt_schedule(stack: CeleryStack) -> None:
    """Beat crashing on a corrupted schedule file is beat_down with schedule_file=corrupt.

    The index of the dbm.dumb shelve is kept and the data behind the entries key is
    truncated pickle: beat cannot repair that and crashes (celery#4777).
    """
    stack.manager.systemctl("stop", BEAT)
    data = stack.schedule.with_name(stack.schedule.name + ".dat")
    assert data.exists()
    data.write_bytes(b"\x80\x04garbage!" * 200)
    stack.manager.systemctl("start", BEAT)
    wait_until(lambda: stack.manager.show(BEAT, "ActiveState") == "failed", 20, "beat to crash")
    code, findings = diagnose(stack.config())
    assert (code, scenarios(findings)) == (2, [("beat_down", "high")])
    assert findings[0]["evidence"]["schedule_file"] == "corrupt"


def test_beat_stalled(stack: CeleryStack) -> None:
    """A SIGSTOPped beat is active but sends nothing: beat_stalled, medium."""
    os.kill(stack.main_pid(BEAT), signal.SIGSTOP)
    config = stack.config(extra="")
    text = config.read_text().replace("[beat]\n", "[beat]\nmax_silence = 3\n")
    config.write_text(text)
    time.sleep(3.5)
    code, findings = diagnose(config)
    assert (code, scenarios(findings)) == (1, [("beat_stalled", "medium")])


def test_memory_pressure(stack: CeleryStack) -> None:
    """A task holding 300 MiB in a worker limited to 150 MiB: memory_pressure, medium."""
    client(stack).send_task("demoapp.hog", args=(300, 30))
    wait_until(lambda: "Task demoapp.hog" in stack.log("celery.log"), 20, "the hog task")
    config = config_with(stack, memory_mb=150)
    time.sleep(1)
    code, findings = diagnose(config)
    assert (code, scenarios(findings)) == (1, [("memory_pressure", "medium")])
    assert findings[0]["evidence"]["used_mib"] > 150
    assert findings[0]["evidence"]["source"] in {"cgroup", "psutil"}


def test_lost_pool_process_is_memory_pressure_high(stack: CeleryStack) -> None:
    """A pool process SIGKILLed mid-task (as the OOM killer does): memory_pressure, high."""
    client(stack).send_task("demoapp.sleep", args=(30,))
    wait_until(lambda: "Task demoapp.sleep" in stack.log("celery.log"), 20, "the task")
    config = stack.config()
    assert diagnose(config) == (0, [])
    pool = psutil.Process(stack.main_pid(WORKER)).children()
    assert pool
    pool[0].send_signal(signal.SIGKILL)
    wait_until(lambda: "WorkerLostError" in stack.log("celery.log")
               or "signal 9 (SIGKILL)" in stack.log("celery.log"), 20, "the lost process")
    code, findings = diagnose(config)
    assert (code, scenarios(findings)) == (2, [("memory_pressure", "high")])
    assert findings[0]["evidence"]["lost_processes"] >= 1


def test_sustained_cpu_is_memory_pressure(stack: CeleryStack) -> None:
    """A task spinning on a core for longer than cpu_sustained: memory_pressure, medium."""
    config = config_with(stack, cpu_percent=60, cpu_sustained=2)
    client(stack).send_task("demoapp.spin", args=(30,))
    wait_until(lambda: "Task demoapp.spin" in stack.log("celery.log"), 20, "the spinning task")
    assert diagnose(config) == (0, [])
    time.sleep(2.5)
    code, findings = diagnose(config)
    assert (code, scenarios(findings)) == (1, [("memory_pressure", "medium")])
    assert findings[0]["evidence"]["cpu_percent"] >= 60


def test_queue_backlog(stack: CeleryStack) -> None:
    """300 slow tasks queued: queue_backlog (low) counted over every priority key."""
    app = client(stack)
    for i in range(300):
        app.send_task("demoapp.sleep", args=(0.2,), priority=(i % 3) * 3)
    code, findings = diagnose(stack.config())
    assert (code, scenarios(findings)) == (1, [("queue_backlog", "low")])
    assert findings[0]["evidence"]["depth"] > 250


def test_database_unreachable(stack: CeleryStack) -> None:
    """The application's database stops accepting connections: database_unreachable, high."""
    port = free_port()
    stack.manager.write_unit("postgresql.service", (
        "[Service]\nExecStart=/usr/bin/env python3 -m http.server "
        f"{port} --bind 127.0.0.1\n"))
    stack.manager.reload()
    stack.manager.systemctl("start", "postgresql.service")
    config = stack.config(extra=f'[database]\nhost = "127.0.0.1"\nport = {port}\n')
    wait_until(lambda: diagnose(config) == (0, []), 10, "the stand-in database")
    stack.manager.systemctl("stop", "postgresql.service")
    code, findings = diagnose(config)
    assert (code, scenarios(findings)) == (2, [("database_unreachable", "high")])


def test_task_failures_and_beat_from_the_journal() -> None:
    """Logs in journald: task failures read from the journal once each; beat not stalled."""
    with CeleryStack(logs="journal") as stack:
        config = stack.config()
        assert "Sending due task" in stack.log("celerybeat.log")
        assert diagnose(config) == (0, [])
        app = client(stack)
        for _ in range(3):
            app.send_task("demoapp.fail")
        wait_until(lambda: stack.log("celery.log").count("raised unexpected") >= 3, 20,
                   "failures in the journal")
        code, findings = diagnose(config)
        assert (code, scenarios(findings)) == (1, [("task_failures", "medium")])
        assert findings[0]["evidence"]["failed:demoapp.fail"] == 3
        _, again = diagnose(config)
        assert again[0]["evidence"]["failed:demoapp.fail"] == 3
        assert not (stack.root / "log" / "celery.log").exists()
