"""Shared fixtures: the real sandbox for integration tests, and running healer as a process."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

from healer.sandbox.stack import CeleryStack

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


def healer(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the healer command line as its own process, as an operator would."""
    return subprocess.run(
        [sys.executable, "-m", "healer", "--config", str(config), *args],
        capture_output=True, text=True, timeout=120, check=False,
    )


def audit_records(path: Path) -> list[dict[str, Any]]:
    """Every record of a JSON Lines audit log."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]
