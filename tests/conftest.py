"""Shared fixtures: the real sandbox for integration tests, and running healer as a process."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest
from celery import Celery

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


def diagnose(config: Path) -> tuple[int, list[dict[str, Any]]]:
    """Exit code and findings of `healer diagnose --json`."""
    result = healer(config, "diagnose", "--json")
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)["findings"]


def scenarios(findings: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(scenario, severity) of each finding."""
    return [(f["scenario"], f["severity"]) for f in findings]


def client(stack: CeleryStack) -> Any:  # noqa: ANN401 - Celery is untyped
    """A Celery client for the sandbox's broker, to send tasks and control commands."""
    return Celery(broker=stack.broker_url, set_as_current=False)
