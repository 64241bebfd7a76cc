"""Prometheus's own tools on what healer ships and exports: the rules, their tests, a scrape."""

from __future__ import annotations

import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from sandbox.base import wait_until
from sandbox.stack import CeleryStack, free_port
from tests.integration.conftest import start_agent

pytestmark = pytest.mark.integration
RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def promtool(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Debian's promtool (the prometheus package), which must be installed."""
    binary = shutil.which("promtool")
    assert binary, "promtool is not installed (make system installs the prometheus package)"
    return subprocess.run([binary, *args], input=stdin.decode() if stdin else None,
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_shipped_rules_are_valid_and_pass_their_tests() -> None:
    """The rules pass `promtool check rules`, and `promtool test rules` with their test file."""
    checked = promtool("check", "rules", str(RULES / "healer.rules.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", str(RULES / "healer.rules.test.yml"))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_a_scrape_of_the_running_agent_passes_promtool_check_metrics(stack: CeleryStack) -> None:
    """The agent's /metrics, with its gauges filled by a real pass, lints clean."""
    port = free_port()
    start_agent(stack, stack.config(agent=f'interval = 1\nmetrics_listen = "127.0.0.1:{port}"'))

    def scrape() -> bytes:
        return bytes(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read())

    wait_until(lambda: b"healer_passes_total 1.0" in scrape(), 30, "the first pass")
    scraped = scrape()
    assert b"healer_worker_up{" in scraped
    assert b"healer_queue_depth{" in scraped
    checked = promtool("check", "metrics", stdin=scraped)
    assert checked.returncode == 0, checked.stdout + checked.stderr
