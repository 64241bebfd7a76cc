"""Hostile and broken input, one class at a time: each gets one clear line and its exit code.

healer runs as root here (the tests do), in folders the unprivileged user nobody owns, as when
an operator runs it by hand on a host where the service has its own user.
"""

from __future__ import annotations

import gzip
import os
import signal
from typing import TYPE_CHECKING

import pytest

from healer.cli import EXIT_CONFIG, EXIT_OK, EXIT_PROBE, EXIT_UNHEALTHY, main
from healer.errors import ActionError
from healer.executor.executor import Executor
from healer.policy.models import Step
from healer.testing import FakeSystemd, ManualClock, unit
from tests.unit.test_cli import config_file

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

NOBODY = 65534
SECRET = b"root's own file\n"


@pytest.fixture(autouse=True)
def _alarm() -> Iterator[None]:
    """Every case here must end within 10 s: a hang fails the test instead of the run."""
    def hung(_signum: int, _frame: object) -> None:
        raise TimeoutError("hung")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    """Exit code, stderr lines and stdout of one in-process command; never an internal error."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert not any("internal error" in line or "Traceback" in line
                   for line in err.splitlines()), err
    return code, err.splitlines(), out


# -- planted links and FIFOs, healer running as root ------------------------------------------


def nobody_owns(tmp_path: Path) -> tuple[Path, Path]:
    """A config whose state dir and log dir belong to nobody; and a root-owned target file."""
    for folder in ("state", "log"):
        (tmp_path / folder).mkdir()
        os.chown(tmp_path / folder, NOBODY, NOBODY)
    target = tmp_path / "root-owned"
    target.write_bytes(SECRET)
    config = config_file(tmp_path).read_text().replace('"audit.jsonl"', '"log/audit.jsonl"')
    (tmp_path / "healer.toml").write_text(config)
    return tmp_path / "healer.toml", target


def plant(kind: str, at: Path, target: Path) -> None:
    """What the folder's owner could put there: a symlink, a hard link or a FIFO."""
    if kind == "symlink":
        at.symlink_to(target)
    elif kind == "hardlink":
        os.link(target, at)
    else:
        os.mkfifo(at)
    os.lchown(at, NOBODY, NOBODY) if kind != "hardlink" else None


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "fifo"])
@pytest.mark.parametrize("name", ["state/lock", "log/audit.jsonl", "state/state.json"])
def test_nothing_is_written_through_a_planted_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, name: str,
) -> None:
    """A link or FIFO at the lock, the audit log or the state: exit 3, the target untouched."""
    config, target = nobody_owns(tmp_path)
    plant(kind, tmp_path / name, target)
    code, err, _ = run(capsys, "--config", str(config), "pause", "--reason", "x")
    assert code == EXIT_PROBE
    assert len(err) == 1
    assert str(tmp_path / name) in err[0]
    assert target.read_bytes() == SECRET
    assert (target.stat().st_uid, target.stat().st_mode & 0o7777) == (0, 0o644)


def test_a_planted_temp_file_is_removed_not_written_through(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """A link at the state's temp file is removed; the state is saved; the target untouched."""
    config, target = nobody_owns(tmp_path)
    plant("symlink", tmp_path / "state" / ".state.json.tmp", target)
    code, _, _ = run(capsys, "--config", str(config), "pause", "--reason", "x")
    assert code == EXIT_OK
    assert target.read_bytes() == SECRET
    assert (tmp_path / "state" / "state.json").stat().st_uid == NOBODY


# -- inputs that are not regular files ---------------------------------------------------------


@pytest.mark.parametrize("command", [["diagnose"], ["policy", "check"], ["pause", "--reason", "x"]])
def test_a_fifo_or_a_device_as_config_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str],
) -> None:
    """A FIFO (or /dev/zero) as the config: refused at once with one line naming it."""
    fifo = tmp_path / "healer.toml"
    os.mkfifo(fifo)
    for path in (str(fifo), "/dev/zero"):
        code, err, _ = run(capsys, "--config", path, *command)
        assert code == (EXIT_PROBE if command == ["diagnose"] else EXIT_CONFIG)
        assert err == [f"healer: {path}: cannot read: not a regular file: refused"]


def test_a_fifo_as_policy_file_is_refused(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """`policy check` of a FIFO: exit 2, one line naming it."""
    fifo = tmp_path / "rules.yaml"
    os.mkfifo(fifo)
    code, err, _ = run(capsys, "policy", "check", str(fifo))
    assert code == EXIT_CONFIG
    assert err == [f"healer: {fifo}: cannot read policy: not a regular file: refused"]


# -- numbers and structure without bounds -------------------------------------------------------


POLICY = """\
rules:
  - name: r
    match: {{scenario: worker_down}}
    ladder: [{{action: restart_unit, verify: {verify}}}]
"""


@pytest.mark.parametrize("verify", [".inf", "1e400", "99999999999999999999d", "31d"])
def test_policy_durations_are_finite_and_bounded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], verify: str,
) -> None:
    """verify: .inf, a number past float, or more than 30 days: exit 2 naming the field."""
    path = tmp_path / "rules.yaml"
    path.write_text(POLICY.format(verify=verify))
    code, err, _ = run(capsys, "policy", "check", str(path))
    assert code == EXIT_CONFIG
    assert "rules.0.ladder.0.verify" in err[0]


@pytest.mark.parametrize("line", ["[agent]\ninterval = inf", "[agent]\ninterval = nan",
                                  "[thresholds]\nmemory_mb = 1e308",
                                  "[thresholds]\nqueue_backlog = 10000000000000000000000"])
def test_config_numbers_are_finite_and_bounded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str,
) -> None:
    """inf, nan and numbers past their documented bound: exit 2 naming the key."""
    config = config_file(tmp_path, line)
    code, err, _ = run(capsys, "--config", str(config), "pause", "--reason", "x")
    assert code == EXIT_CONFIG
    header, setting = line.split("\n")
    section, key = header.strip("[]"), setting.split(" ", 1)[0]
    assert f"{section}.{key}" in err[0]


def test_a_pause_beyond_its_bound_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """`pause --for 999...9d`: exit 2, and no audit record or state (no Infinity anywhere)."""
    config = config_file(tmp_path)
    code, err, _ = run(capsys, "--config", str(config), "pause", "--reason", "x",
                    "--for", "9" * 400 + "d")
    assert code == EXIT_CONFIG
    assert "--for" in err[0]
    assert not (tmp_path / "audit.jsonl").exists()
    assert not (tmp_path / "state" / "state.json").exists()


def alias_bomb(levels: int) -> str:
    """A YAML billion laughs: each level is nine aliases of the one before."""
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join([*lines, f"rules: *a{levels}"]) + "\n"


@pytest.mark.parametrize(("text", "says"), [
    (alias_bomb(9), "nodes once its aliases are expanded"),
    ("rules: &a [*a]\n", "an alias that contains itself"),
    ("rules: " + "[" * 3000 + "]" * 3000 + "\n", "nest"),  # ours at 64, or libyaml's
    ("rules: " + "9" * 5000 + "\n", "cannot read policy"),
])
def test_policy_structure_is_bounded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, says: str,
) -> None:
    """An alias bomb, a self-containing alias, deep nesting, a huge integer: exit 2 at once."""
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    code, err, _ = run(capsys, "policy", "check", str(path))
    assert code == EXIT_CONFIG
    assert len(err) == 1
    assert str(path) in err[0]
    assert says in err[0]


@pytest.mark.parametrize("body", ["a = " + "[" * 3000 + "]" * 3000,
                                  "a = " + "9" * 5000])
def test_toml_structure_is_bounded(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   body: str) -> None:
    """TOML nested 3,000 deep or an integer of 5,000 digits: exit 2, one line naming the file."""
    config = tmp_path / "healer.toml"
    config.write_text(body + "\n")
    code, err, _ = run(capsys, "--config", str(config), "pause", "--reason", "x")
    assert code == EXIT_CONFIG
    assert err[0].startswith(f"healer: {config}: invalid TOML")


# -- values that used to become internal errors ------------------------------------------------


@pytest.mark.parametrize(("extra", "key"), [
    ('[beat]\nschedule_file = "/var/lib/celery/x\\u0000y"', "beat.schedule_file"),
    ('[beat]\nschedule_file = "/"', "beat.schedule_file"),
    ('[celery]\nbroker_url = "redis://[::1"', "celery.broker_url"),
    ('[celery]\nbroker_url = "redis://h:99999999/0"', "celery.broker_url"),
])
def test_bad_paths_and_urls_name_their_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, key: str,
) -> None:
    """A NUL in a path, "/" as a file, an unparsable broker URL: exit 2 naming the key."""
    code, err, _ = run(capsys, "--config", str(config_file(tmp_path, extra)), "run-once")
    assert code == EXIT_CONFIG
    assert key in err[0]


def test_clear_beat_schedule_refuses_a_folder_before_stopping_beat(tmp_path: Path) -> None:
    """schedule_file naming a folder: refused with a reason, nothing moved, beat not stopped."""
    folder = tmp_path / "schedule"
    folder.mkdir()
    fake = FakeSystemd(unit("beat.service"))
    executor = Executor(fake, frozenset({"beat.service"}), ManualClock(), schedule_file=folder)
    with pytest.raises(ActionError, match="not a regular file"):
        executor.execute(Step(action="clear_beat_schedule"), "beat.service")
    assert fake.calls == []
    assert folder.is_dir()


def test_since_too_far_back_is_an_input_error(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """--since 99999999999d: exit 2 with one line, not an overflow."""
    log = tmp_path / "audit.jsonl"
    log.write_text("")
    code, err, _ = run(capsys, "audit", "list", "--log", str(log), "--since", "99999999999d")
    assert code == EXIT_CONFIG
    assert "--since" in err[0] or "99999999999d" in err[0]


def test_audit_lines_that_are_not_records_are_skipped_by_the_review(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """Lines that are JSON but not records (a list, no ts, no event): list skips, verify names."""
    log = tmp_path / "audit.jsonl"
    log.write_text('[1, 2]\n{"event": "paused", "incident": "i"}\n{"ts": "x", "incident": "i"}\n'
                   '"text"\n7\n')
    assert run(capsys, "audit", "list", "--log", str(log))[0] == EXIT_OK
    code, _, out = run(capsys, "audit", "verify", "--log", str(log))
    assert code == EXIT_UNHEALTHY
    assert out.startswith("BROKEN after 0 good records: ")


def test_a_truncated_gz_rotation_is_broken_for_verify_and_an_error_for_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """A .gz cut short: verify says BROKEN (exit 1) naming it; list exits 2 naming it."""
    log = tmp_path / "audit.jsonl"
    log.write_text("")
    whole = gzip.compress(b'{"ts": "2026-01-01T00:00:00.000Z", "event": "paused"}\n' * 50)
    rotation = tmp_path / "audit.jsonl.2.gz"
    rotation.write_bytes(whole[: len(whole) // 2])
    code, _, out = run(capsys, "audit", "verify", "--log", str(log))
    assert code == EXIT_UNHEALTHY
    assert str(rotation) in out
    code, err, _ = run(capsys, "audit", "list", "--log", str(log))
    assert code == EXIT_CONFIG
    assert str(rotation) in err[0]


def test_an_audit_log_that_is_a_folder_is_an_input_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """--log naming a folder: exit 2 with one line naming it, for every audit command."""
    for command in ("list", "stats", "verify"):
        code, err, _ = run(capsys, "audit", command, "--log", str(tmp_path))
        assert code == EXIT_CONFIG
        assert str(tmp_path) in err[0]


# -- the polkit rule ---------------------------------------------------------------------------


def test_polkit_user_must_be_a_user_name(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """--user with a newline (a rule injection): exit 2, and no rule printed."""
    config = config_file(tmp_path)
    code, err, out = run(capsys, "--config", str(config), "deploy", "polkit",
                         "--user", "x\npolkit.addRule(function() { return polkit.Result.YES; });")
    assert code == EXIT_CONFIG
    assert "--user" in err[0]
    assert "polkit.addRule" not in out


def test_polkit_rule_holds_the_config_path_as_text(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A config path with a newline lands escaped in one comment line, never as code."""
    folder = tmp_path / "x\npolkit.addRule(function() { return polkit.Result.YES; });"
    folder.mkdir()
    config = config_file(folder)
    code, _, rule = run(capsys, "--config", str(config), "deploy", "polkit")
    assert code == EXIT_OK
    assert rule.count("polkit.addRule") == 1 + sum(
        line.startswith("//") and "polkit.addRule" in line for line in rule.splitlines())
    injected = [line for line in rule.splitlines() if "function() { return" in line]
    assert injected
    assert all(line.startswith("//") for line in injected)


@pytest.mark.parametrize("line", ['{"ts": "x", "event": "e", "incident": null, "n": NaN}',
                                  '{"ts": "x", "event": "e", "incident": "\\ud800"}',
                                  '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}",
                                  ('{"ts": "x", "event": "incident_resolved", "incident": "i", '
                                  '"duration_s": "soon"}')])
def test_audit_lines_healer_cannot_have_written_are_broken_not_internal_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str,
) -> None:
    """NaN, a lone surrogate, deep nesting, a text duration: verify BROKEN, list and stats fine."""
    log = tmp_path / "audit.jsonl"
    log.write_text(line + "\n")
    assert run(capsys, "audit", "verify", "--log", str(log))[0] == EXIT_UNHEALTHY
    for command in ("list", "stats"):
        assert run(capsys, "audit", command, "--log", str(log))[0] == EXIT_OK


def test_a_metrics_port_past_65535_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """metrics_listen on port 99999: exit 2 naming the key, not an overflow in the agent."""
    config = config_file(tmp_path, '[agent]\nmetrics_listen = "127.0.0.1:99999"')
    code, err, _ = run(capsys, "--config", str(config), "run")
    assert code == EXIT_CONFIG
    assert "agent.metrics_listen" in err[0]
