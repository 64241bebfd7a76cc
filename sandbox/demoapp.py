"""The sandbox's Celery application: a periodic tick for beat and tasks to inject faults with."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import kombu
from celery import Celery

app = Celery("demoapp", broker=os.environ.get("HEALER_DEMO_BROKER", "redis://127.0.0.1:6379/0"))
app.conf.update(
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    beat_schedule={"tick": {"task": "demoapp.tick", "schedule": 2.0}},
)
# HEALER_DEMO_CONF="task_acks_late=true,worker_prefetch_multiplier=1": settings for a test
app.conf.update({key: json.loads(value) for key, _, value in (
    pair.partition("=") for pair in os.environ.get("HEALER_DEMO_CONF", "").split(",") if pair)})
if os.environ.get("HEALER_DEMO_KOMBU"):  # the version `inspect report` gives, as an old install
    kombu.__version__ = os.environ["HEALER_DEMO_KOMBU"]


@app.task(name="demoapp.tick")
def tick() -> str:
    """The periodic task beat dispatches every two seconds."""
    return "tock"


@app.task(name="demoapp.add")
def add(x: int, y: int) -> int:
    """A task that succeeds."""
    return x + y


@app.task(name="demoapp.fail")
def fail() -> None:
    """A task that always raises."""
    raise RuntimeError("injected failure")


@app.task(name="demoapp.flaky", bind=True, max_retries=50)
def flaky(self: Any) -> None:  # noqa: ANN401
    """A task stuck in a retry loop: the same id comes back again and again."""
    raise self.retry(countdown=0.2)


@app.task(name="demoapp.hog")
def hog(mib: int, seconds: float) -> int:
    """Hold ``mib`` MiB of memory (touched, so it is resident) for a while."""
    block = bytearray(mib * 2**20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    time.sleep(seconds)
    return len(block)


@app.task(name="demoapp.nap")
def nap(seconds: float) -> float:
    """Block for a while without yielding: a solo pool answers nothing meanwhile."""
    time.sleep(seconds)
    return seconds


@app.task(name="demoapp.spin")
def spin(seconds: float) -> int:
    """Keep one core busy for a while."""
    deadline, turns = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        turns += 1
    return turns


@app.task(name="demoapp.sleep")
def sleep(seconds: float) -> float:
    """A task that keeps a worker busy."""
    time.sleep(seconds)
    return seconds
