"""`healer run-once` against the real sandbox: faults injected for real, healed over D-Bus."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from sandbox.stack import WORKER, CeleryStack
from tests.conftest import audit_records, healer

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration


def _actions(stack: CeleryStack) -> list[dict[str, object]]:
    return [r for r in audit_records(stack.audit_log) if r["event"].startswith("action_")]


def _policy(folder: Path, step: str) -> Path:
    """A policy folder with one worker_down rule whose single step is ``step`` (YAML flow)."""
    folder.mkdir()
    (folder / "rules.yaml").write_text(
        "rules:\n  - name: test-rule\n    match: {scenario: worker_down}\n"
        f"    ladder:\n      - {step}\n"
    )
    return folder


def test_killed_worker_is_restarted_verified_and_audited(stack: CeleryStack) -> None:
    """SIGKILL of a Restart=no worker: run-once restarts it, verifies it, audits, exits 0."""
    killed = stack.kill(WORKER)
    assert stack.manager.show(WORKER, "Result") == "signal"
    result = healer(stack.config(), "run-once")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "worker_down" in result.stdout
    assert stack.active(WORKER)
    assert stack.main_pid(WORKER) not in {0, killed}
    actions = _actions(stack)
    assert [(r["event"], r["outcome"]) for r in actions] == [
        ("action_started", "started"), ("action_finished", "healed")]
    for record in actions:
        assert record["scenario"] == "worker_down"
        assert record["unit"] == WORKER
        assert record["action"] == "restart_unit"
        assert record["dry_run"] is False
        assert record["incident"]
        assert record["ts"]
    stack.wait_worker_ready()

    again = healer(stack.config(), "run-once")
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(_actions(stack)) == 2


def test_dry_run_changes_nothing_and_says_so(stack: CeleryStack) -> None:
    """--dry-run on a dead worker leaves it dead, exits 1 and records a dry-run decision."""
    stack.kill(WORKER)
    before = stack.manager.show(WORKER, "InactiveEnterTimestampMonotonic")
    result = healer(stack.config(), "run-once", "--dry-run")
    assert result.returncode == 1, result.stdout + result.stderr
    assert stack.manager.show(WORKER, "ActiveState") == "failed"
    assert stack.manager.show(WORKER, "InactiveEnterTimestampMonotonic") == before
    records = audit_records(stack.audit_log)
    assert [(r["event"], r["outcome"], r["dry_run"]) for r in records] == [
        ("decision", "dry_run", True)]
    assert not (stack.root / "state" / "state.json").exists()


def test_operator_stop_is_reported_and_left_stopped(stack: CeleryStack) -> None:
    """A worker stopped with systemctl is reported, not restarted (exit 1, decision held)."""
    stack.manager.systemctl("stop", WORKER)
    result = healer(stack.config(), "run-once")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "operator" in result.stdout
    after = {p: stack.show(WORKER, p) for p in ("ActiveState", "ActiveEnterTimestamp",
                                                 "InvocationID", "NRestarts")}
    assert after["ActiveState"] == "inactive", (
        f"{after}\n{result.stdout}\n{audit_records(stack.audit_log)}\n"
        f"{stack.unit_log(WORKER)[-1500:]}")
    decisions = [r for r in audit_records(stack.audit_log) if r["event"] == "decision"]
    assert [d["outcome"] for d in decisions] == ["held"]
    assert _actions(stack) == []


def test_rate_limit_holds_across_processes(stack: CeleryStack) -> None:
    """With a limit of 2 per window, the third kill is not restarted; exit 1; audit says why."""
    policies = _policy(stack.root / "policies", "{action: restart_unit, verify: 1s, "
                       "limit: {max: 2, within: 10m}}")
    config = stack.config(paths=f'state_dir = "{stack.root / "state"}"\n'
                                f'audit_log = "{stack.audit_log}"\npolicies = "{policies}"')
    for _ in range(2):
        stack.kill(WORKER)
        assert healer(config, "run-once").returncode == 0
    stack.kill(WORKER)
    result = healer(config, "run-once")
    assert result.returncode == 1
    assert "rate_limited" in result.stdout
    assert stack.manager.show(WORKER, "ActiveState") == "failed"
    limited = [r for r in audit_records(stack.audit_log) if r.get("outcome") == "rate_limited"]
    assert len(limited) == 1
    assert "limit of 2" in str(limited[0]["reason"])
    assert len([r for r in _actions(stack) if r["event"] == "action_started"]) == 2


def test_unit_outside_allowlist_is_never_acted_on(stack: CeleryStack) -> None:
    """A policy naming a unit missing from [units] is refused; that unit is never touched."""
    stack.manager.write_unit("rogue.service", "[Service]\nExecStart=/bin/sleep 1000\n")
    stack.manager.reload()
    policies = _policy(stack.root / "policies", "{action: restart_unit, unit: rogue.service}")
    config = stack.config(paths=f'state_dir = "{stack.root / "state"}"\n'
                                f'audit_log = "{stack.audit_log}"\npolicies = "{policies}"')
    stack.kill(WORKER)
    result = healer(config, "run-once")
    assert result.returncode == 1
    assert stack.manager.show("rogue.service", "ActiveState") == "inactive"
    assert stack.manager.show("rogue.service", "ActiveEnterTimestampMonotonic") == "0"
    refused = [r for r in audit_records(stack.audit_log) if r.get("outcome") == "refused"]
    assert refused
    assert refused[0]["unit"] == "rogue.service"
    assert _actions(stack) == []


def test_bad_config_key_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """A config with an unknown key exits 2 with one line naming the file and the key."""
    config = tmp_path / "healer.toml"
    config.write_text('[units]\nworkers = ["a.service"]\nwokers = ["b.service"]\n')
    result = healer(config, "run-once")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(config) in lines[0]
    assert "units.wokers" in lines[0]


def test_no_dbus_is_exit_3_with_a_clear_message(tmp_path: Path) -> None:
    """When the configured bus is not there, run-once exits 3 and says it cannot reach D-Bus."""
    config = tmp_path / "healer.toml"
    config.write_text(
        f'[systemd]\nbus = "unix:path={tmp_path}/no-bus"\n'
        f'[units]\nworkers = ["a.service"]\n'
        f'[paths]\nstate_dir = "{tmp_path}/state"\naudit_log = "{tmp_path}/audit.jsonl"\n'
    )
    result = healer(config, "run-once")
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "D-Bus" in lines[0]
    assert "Traceback" not in result.stderr
