"""`healer doctor` on the real sandbox: a clean stack passes; each misconfiguration is named."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sandbox.stack import NODE, WORKER, CeleryStack
from tests.conftest import healer

pytestmark = pytest.mark.integration

CLEAN_CONF = {"worker_prefetch_multiplier": "1", "task_acks_late": "true",
              "worker_max_tasks_per_child": "1000", "task_time_limit": "3600",
              "task_soft_time_limit": "3000"}
CLEAN_SERVICE = {"Restart": "on-failure", "KillMode": "mixed", "TimeoutStopSec": "3700",
                 "MemoryMax": "2G"}


def doctor(stack: CeleryStack, conf: dict[str, str], service: dict[str, str],
           options: str = "-E", kombu: str = "", **sections: str
           ) -> tuple[int, list[dict[str, Any]]]:
    """The worker rewritten with these settings and started; doctor's exit code and checks."""
    seen = stack.unit_log(WORKER).count(" ready.")
    stack.write_worker(options=options, conf=",".join(f"{k}={v}" for k, v in conf.items()),
                       service="".join(f"{k}={v}\n" for k, v in service.items()), kombu=kombu)
    stack.manager.reload()
    stack.manager.systemctl("restart", WORKER)
    stack.wait_worker_ready(seen=seen)
    run = healer(stack.config(None, "", **sections), "doctor", "--json")
    assert run.stderr == "", run.stderr
    return run.returncode, json.loads(run.stdout)["checks"]


def test_a_clean_stack_gets_no_warning(stack: CeleryStack) -> None:
    """The runbook's settings, Restart, KillMode=mixed, room to stop and for memory: exit 0."""
    code, checks = doctor(stack, CLEAN_CONF, CLEAN_SERVICE)
    assert code == 0, checks
    assert {c["verdict"] for c in checks} <= {"ok", "not applicable"}
    [own] = [c for c in checks if c["check"] == "deployment"]
    assert own["verdict"] == "not applicable"
    assert "system manager" in own["says"]
    assert {c["check"] for c in checks if c["subject"] == NODE} == {
        "prefetch", "acks_late", "max_tasks_per_child", "time_limits", "task_events", "versions"}


@pytest.mark.parametrize(("check", "conf", "service", "options", "kombu"), [
    ("prefetch", {"worker_prefetch_multiplier": "4"}, {}, "-E", ""),
    ("acks_late", {"task_acks_late": "false"}, {}, "-E", ""),
    ("max_tasks_per_child", {"worker_max_tasks_per_child": "null"}, {}, "-E", ""),
    ("time_limits", {"task_soft_time_limit": "null"}, {}, "-E", ""),
    ("task_events", {}, {}, "", ""),
    ("versions", {}, {}, "-E", "5.3.7"),  # the worker reports the kombu before the fix
    ("restart", {}, {"Restart": "no"}, "-E", ""),
    ("timeout_stop", {}, {"TimeoutStopSec": "10"}, "-E", ""),
    ("kill_mode", {}, {"KillMode": "control-group"}, "-E", ""),
    ("memory_max", {}, {"MemoryMax": "512M"}, "-E", ""),
])
def test_each_misconfiguration_gets_its_warning(stack: CeleryStack, check: str,
                                                conf: dict[str, str], service: dict[str, str],
                                                options: str, kombu: str) -> None:
    """One setting off the runbook's: that check, and only it, warns, with its fix."""
    code, checks = doctor(stack, {**CLEAN_CONF, **conf}, {**CLEAN_SERVICE, **service}, options,
                          kombu)
    warned = [c for c in checks if c["verdict"] == "warning"]
    assert [c["check"] for c in warned] == [check], checks
    assert warned[0]["fix"]
    assert code == 1


def test_a_schedule_folder_that_is_gone_is_critical(stack: CeleryStack) -> None:
    """Beat's schedule file in a folder that does not exist: critical, exit 2."""
    code, checks = doctor(stack, CLEAN_CONF, CLEAN_SERVICE,
                          beat=f'schedule_file = "{stack.root / "gone" / "sched"}"')
    [schedule] = [c for c in checks if c["check"] == "beat_schedule"]
    assert schedule["verdict"] == "critical"
    assert code == 2
