"""The command line in process: configuration and probe failures map to exit codes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from healer.cli import EXIT_CONFIG, EXIT_PROBE, main

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
    """An unknown command is a usage error: argparse exits 2."""
    with pytest.raises(SystemExit) as info:
        main(["no-such-command"])
    assert info.value.code == EXIT_CONFIG
    assert "invalid choice" in capsys.readouterr().err
