"""The sandbox's Celery application: a periodic tick for beat and tasks to inject faults with."""

from __future__ import annotations

import os
import time

from celery import Celery

app = Celery("demoapp", broker=os.environ.get("HEALER_DEMO_BROKER", "redis://127.0.0.1:6379/0"))
app.conf.update(
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    beat_schedule={"tick": {"task": "demoapp.tick", "schedule": 2.0}},
)


@app.task(name="demoapp.tick")
def tick() -> str:
    """The periodic task beat dispatches every two seconds."""
    return "tock"


@app.task(name="demoapp.add")
def add(x: int, y: int) -> int:
    """A task that succeeds."""
    return x + y


@app.task(name="demoapp.sleep")
def sleep(seconds: float) -> float:
    """A task that keeps a worker busy."""
    time.sleep(seconds)
    return seconds
