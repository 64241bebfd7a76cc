"""Stuck tasks on the real sandbox: past its limit a running task is task_stuck and remediated.

The worker (prefork, one pool process) answers pings while its pool process naps.
"""

from __future__ import annotations

import json
import time

import pytest

from sandbox.base import wait_until
from sandbox.stack import WORKER, CeleryStack
from tests.conftest import healer
from tests.integration.conftest import client

pytestmark = pytest.mark.integration


def napping(stack: CeleryStack, seconds: float) -> None:
    """Send demoapp.nap and wait until the worker has received it."""
    seen = stack.unit_log(WORKER).count("demoapp.nap")
    client(stack).send_task("demoapp.nap", args=(seconds,))
    wait_until(lambda: stack.unit_log(WORKER).count("demoapp.nap") > seen, 10,
               "the worker to receive the nap")


def test_a_task_past_its_limit_is_stuck_and_the_worker_restarted(stack: CeleryStack) -> None:
    """demoapp.nap limited to 3 s in [task_limits]: found at 4 s, its worker restarted."""
    drop_in = stack.manager.unit_dir / f"{WORKER}.d"
    drop_in.mkdir()
    (drop_in / "stop.conf").write_text("[Service]\nTimeoutStopSec=3\n")  # the nap is hung
    stack.manager.reload()
    pid = stack.main_pid(WORKER)
    napping(stack, 120)
    time.sleep(4)
    report = json.loads(healer(stack.config(extra='[task_limits]\n"demoapp.nap" = 3\n'),
                               "run-once", "--json").stdout)
    [finding] = report["findings"]
    assert (finding["scenario"], finding["unit"], finding["evidence"]["task"]) == (
        "task_stuck", WORKER, "demoapp.nap")
    assert finding["evidence"]["running_s"] >= 3
    assert [(a["action"], a["outcome"]) for a in report["actions"]] == [
        ("restart_unit", "healed")]
    assert stack.main_pid(WORKER) != pid


def test_a_task_under_its_limit_is_left_alone(stack: CeleryStack) -> None:
    """The same nap under the default limit (3600 s): nothing found, nothing done."""
    pid = stack.main_pid(WORKER)
    napping(stack, 8)
    time.sleep(4)
    report = json.loads(healer(stack.config(), "run-once", "--json").stdout)
    assert (report["findings"], report["actions"]) == ([], [])
    assert stack.main_pid(WORKER) == pid
