"""The real sandbox for integration tests, and a Celery client of its broker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from celery import Celery

from sandbox.stack import CeleryStack

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def stack() -> Iterator[CeleryStack]:
    """A running redis + Celery worker + beat in a private systemd user manager.

    A missing prerequisite fails the test (SandboxError); it never skips.
    """
    with CeleryStack() as running:
        yield running


def client(stack: CeleryStack) -> Any:  # noqa: ANN401 - Celery is untyped
    """A Celery client for the sandbox's broker, to send tasks and control commands."""
    return Celery(broker=stack.broker_url, set_as_current=False)
