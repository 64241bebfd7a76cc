"""The real sandbox for integration tests, and a Celery client of its broker."""

from __future__ import annotations

import sys
import urllib.request
from typing import TYPE_CHECKING, Any

import pytest
from celery import Celery

from sandbox.stack import CeleryStack

AGENT = "healer.service"

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def stack() -> Iterator[CeleryStack]:
    """A running redis + Celery worker + beat in a private systemd user manager.

    A missing prerequisite fails the test (SandboxError); it never skips.
    """
    with CeleryStack() as running:
        yield running


def start_agent(stack: CeleryStack, config: Path) -> None:
    """Healer run as a Type=notify unit with a watchdog, in the sandbox."""
    stack.manager.write_unit(AGENT, (
        f"[Service]\nType=notify\nNotifyAccess=main\nWatchdogSec=10\n"
        f"ExecStart={sys.executable} -m healer --config {config} run\n"
        f"StandardError=append:{stack.root / 'healer.log'}\n"))
    stack.manager.reload()
    stack.manager.systemctl("start", AGENT)  # returns once READY=1 arrived


def metrics(port: int) -> dict[str, float]:
    """The healer_* samples of the metrics endpoint."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {name: float(value) for line in text.splitlines() if line.startswith("healer_")
            for name, value in [line.rsplit(" ", 1)]}


def client(stack: CeleryStack) -> Any:  # noqa: ANN401 - Celery is untyped
    """A Celery client for the sandbox's broker, to send tasks and control commands."""
    return Celery(broker=stack.broker_url, set_as_current=False)
