"""The command line in process: configuration and probe failures map to exit codes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from healer.cli import EXIT_CONFIG, EXIT_PROBE, main
from healer.config import load_config
from healer.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path


def config_file(tmp_path: Path, extra: str = "", bus: str = "unix:path=/nonexistent/bus") -> Path:
    """A config file whose state and audit go under tmp_path, plus extra lines."""
    path = tmp_path / "healer.toml"
    path.write_text(
        f'[systemd]\nbus = "{bus}"\n'
        '[units]\nworkers = ["celery.service"]\n'
        f'[paths]\nstate_dir = "state"\naudit_log = "audit.jsonl"\n{extra}',
        encoding="utf-8",
    )
    return path


def stderr_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The lines written on stderr so far."""
    return capsys.readouterr().err.splitlines()


def test_bad_key_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown config key exits 2 with exactly one stderr line naming the key."""
    path = tmp_path / "healer.toml"
    path.write_text('[units]\nworkers = ["celery.service"]\nwokers = []\n', encoding="utf-8")
    assert main(["--config", str(path), "run-once"]) == EXIT_CONFIG
    lines = stderr_lines(capsys)
    assert len(lines) == 1
    assert "units.wokers" in lines[0]
    assert str(path) in lines[0]


def test_missing_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A config file that does not exist exits 2 with one line naming it."""
    path = tmp_path / "absent.toml"
    assert main(["--config", str(path), "run-once"]) == EXIT_CONFIG
    lines = stderr_lines(capsys)
    assert len(lines) == 1
    assert str(path) in lines[0]


def test_unreachable_bus_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A valid config whose D-Bus address does not exist exits 3 with one line about D-Bus."""
    path = config_file(tmp_path)
    assert main(["--config", str(path), "run-once", "--dry-run"]) == EXIT_PROBE
    lines = stderr_lines(capsys)
    assert len(lines) == 1
    assert "D-Bus" in lines[0]
    assert not (tmp_path / "audit.jsonl").exists()


def test_bad_policy_folder_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A policies path that does not exist exits 2, naming it, before D-Bus is tried."""
    path = config_file(tmp_path, 'policies = "no-such-policies"\n')
    assert main(["--config", str(path), "run-once"]) == EXIT_CONFIG
    lines = stderr_lines(capsys)
    assert len(lines) == 1
    assert str(tmp_path / "no-such-policies") in lines[0]
    assert "D-Bus" not in lines[0]


def test_invalid_policy_exits_2_with_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A policy file with an unknown field exits 2 with one line giving file and line."""
    folder = tmp_path / "policies"
    folder.mkdir()
    policy = folder / "p.yaml"
    policy.write_text("rules:\n  - name: r\n    match: {scenario: worker_down}\n"
                      "    ladder: [{action: restart_unit}]\n    when: always\n",
                      encoding="utf-8")
    path = config_file(tmp_path, 'policies = "policies"\n')
    assert main(["--config", str(path), "run-once"]) == EXIT_CONFIG
    lines = stderr_lines(capsys)
    assert len(lines) == 1
    assert f"{policy}:5: rules.0.when: unknown field" in lines[0]


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown command is a usage error: exit 2 (for diagnose, UNKNOWN: 3)."""
    assert main(["no-such-command"]) == EXIT_CONFIG
    assert "invalid choice" in capsys.readouterr().err
    assert main(["diagnose", "--bogus"]) == 3


def test_unreadable_state_is_exit_3_in_one_line(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A corrupt state file stops healer (exit 3) with one line naming it; diagnose says UNKNOWN."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "state.json").write_text("garbage")
    config = tmp_path / "healer.toml"
    config.write_text(f'[units]\nworkers = ["a.service"]\n[paths]\nstate_dir = "{state}"\n'
                      f'audit_log = "{tmp_path}/audit.jsonl"\n')
    assert main(["--config", str(config), "pause", "--reason", "x"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "state.json: unreadable state" in err[0]


def test_pause_for_zero_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`pause --for 0s` is an error, not a pause until resumed."""
    config = tmp_path / "healer.toml"
    config.write_text('[units]\nworkers = ["a.service"]\n')
    assert main(["--config", str(config), "pause", "--reason", "x", "--for", "0s"]) == 2
    assert "above zero" in capsys.readouterr().err


def test_webhook_must_be_http_and_pagerduty_needs_a_key(tmp_path: Path) -> None:
    """[escalation] accepts only http(s) webhooks; the pagerduty format needs routing_key."""
    for body, key in (('webhook = "file:///etc/hostname"', "escalation.webhook"),
                      ('webhook = "https://x.invalid/h"\nformat = "pagerduty"', "routing_key")):
        config = tmp_path / "healer.toml"
        config.write_text(f'[units]\nworkers = ["a.service"]\n[escalation]\n{body}\n')
        with pytest.raises(ConfigError, match=key):
            load_config(config)


def test_deploy_polkit_without_a_bus_still_prints_the_rule_and_says_what_it_could_not_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """No bus to resolve aliases: the rule from the configured names, and one warning line."""
    assert main(["--config", str(config_file(tmp_path)), "deploy", "polkit"]) == 0
    out, err = capsys.readouterr()
    assert '"celery.service": ["reset-failed", "restart"]' in out
    [warning] = err.splitlines()
    assert "[units] not checked against systemd" in warning
    assert "an alias there would not be covered" in warning
