"""Helpers every test may use: running healer as a process, reading its audit log.

Nothing here imports the sandbox or Celery: unit tests load neither (tests/integration/conftest.py
has the sandbox's fixtures).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path


def healer(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the healer command line as its own process, as an operator would."""
    return subprocess.run(
        [sys.executable, "-m", "healer", "--config", str(config), *args],
        capture_output=True, text=True, timeout=120, check=False,
    )


def audit_records(path: Path) -> list[dict[str, Any]]:
    """Every record of a JSON Lines audit log but the chain's own (genesis, file openings)."""
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in records if r["event"] not in {"audit_started", "audit_file_started"}]


def diagnose(config: Path) -> tuple[int, list[dict[str, Any]]]:
    """Exit code and findings of `healer diagnose --json`."""
    result = healer(config, "diagnose", "--json")
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)["findings"]


def scenarios(findings: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(scenario, severity) of each finding."""
    return [(f["scenario"], f["severity"]) for f in findings]
