"""Fuzzing the command line in process: generated configs, policies, audit logs and arguments.

Each case writes a config (a valid one, mutated), a policy file, an audit log and its
rotation, then calls ``healer.cli.main`` with generated arguments, under a per-case alarm. The
bus always points at a socket that does not exist, so no case reaches systemd. Every case must
end without an internal error and without hanging, exit with a code the README documents for
its command, and, when it refuses its input, say in its error line which file, key or option.

``HEALER_FUZZ_SEED`` and ``HEALER_FUZZ_CASES`` change the run (the seed is in every failure).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import random
import re
import shutil
import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from healer.cli import main

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

CASES = int(os.environ.get("HEALER_FUZZ_CASES", "10000"))
SEED = int(os.environ.get("HEALER_FUZZ_SEED", "20261201"))
ALARM = 5.0  # seconds one case may take before it counts as hung
BUS = "unix:path=/nonexistent/healer-fuzz/bus"

EXITS = {  # what the README documents for each command
    "run-once": {0, 1, 2, 3}, "diagnose": {0, 1, 2, 3}, "doctor": {0, 1, 2, 3},
    "pause": {0, 2, 3}, "resume": {0, 2, 3},
    "policy check": {0, 2}, "policy schema": {0, 2}, "audit list": {0, 2, 3},
    "audit show": {0, 2, 3}, "audit stats": {0, 2, 3}, "audit verify": {0, 1, 2, 3},
    "deploy polkit": {0, 2, 3}, "fleet status": {0, 1, 2, 3},
}

KEYS = {  # every config key, with the section it lives in
    "celery": ["broker_url", "queues", "nodes", "broker_timeout", "ping_timeout", "worker_log",
               "task_events"],
    "units": ["workers", "beat", "broker"],
    "beat": ["schedule_file", "log", "max_silence"],
    "paths": ["state_dir", "audit_log", "policies"],
    "thresholds": ["queue_backlog", "memory_mb", "task_failures", "task_window", "retry_loop",
                   "not_consuming_after", "startup_grace", "cpu_percent", "cpu_sustained"],
    "database": ["host", "port", "timeout"],
    "journal": ["directory", "scope"],
    "guard": ["budget_per_hour", "storm_share", "storm_max_units", "storm_min_units",
              "breaker_cooldown"],
    "escalation": ["webhook", "format", "routing_key", "timeout", "attempts"],
    "agent": ["interval", "jitter", "metrics_listen", "metrics_textfile"],
    "systemd": ["bus"],
    "fleet": ["store", "name", "host_id", "budget_per_hour", "fallback_budget_per_hour",
              "storm_share", "storm_min_hosts", "heartbeat_ttl"],
}
TOML_VALUES = [
    "0", "-1", "1", "3", "1e308", "-1e308", "inf", "-inf", "nan", "1e-320", "0.5",
    "9" * 30, "9" * 5000, "true", '""', '"x"', '"/"', '"."', '"/dev/zero"', '"FIFO"', '"DIR"',
    '"journal"', '"x\\u0000y"', '"a\\nb"', '"redis://[::1"', '"redis://h:99999/0"',
    '"redis://:pw@127.0.0.1:1/0"', '"amqp://u:p@127.0.0.1:1//"', '"ftp://x"',
    '"https://hooks.invalid/T0K3N"', '"127.0.0.1:1"', '"celery.service"', '"bad name"',
    '["celery.service"]', "[]", '["a.service", "a.service"]', "[1, 2]", '[""]',
    "{a = 1}", "[[1]]", "1979-05-27", '"' + "x" * 5000 + '"',
]
POLICY_VALUES = [
    "5", "0", "-5", ".inf", "-.inf", ".nan", "1e400", "30s", "99999999999d", "31d", "1h30m",
    "'x'", "null", "[]", "{}", "&a [*a]", "9" * 5000, "restart_unit", "escalate", "nope",
    "worker_down", "[worker_down]", "{scenario: worker_down}", "'*'", "a.service", "true",
]
POLICY = """\
rules:
  - name: {name}
    match: {{scenario: {scenario}, unit: {unit}}}
    ladder:
      - {{action: {action}, verify: {verify}, limit: {{max: {max}, within: {within}}},
         backoff: {backoff}}}
    escalate_after: {after}
"""
DATES = ["2h", "30m", "1d", "99999999999d", "2026-11-24", "2026-13-45", "2026-11-24T16:00",
         "x", "", "0s", "-1h", "1e9d", "9" * 400 + "d", "2026-11-24T25:61:61Z"]


@dataclass
class Report:
    """What a fuzz run saw: cases, and the ones that broke a rule (with their inputs)."""

    cases: int = 0
    internal: list[str] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)
    unnamed: list[str] = field(default_factory=list)

    def failures(self) -> list[str]:
        """Every broken rule, one line each."""
        return [*self.internal, *self.hangs, *self.codes, *self.unnamed]


class Hung(Exception):
    """The case outlived its alarm."""


@contextlib.contextmanager
def alarm(seconds: float) -> Iterator[None]:
    """Raise Hung in this thread once ``seconds`` have passed."""
    def ring(_signum: int, _frame: object) -> None:
        raise Hung

    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def config_text(rng: random.Random, folder: Path) -> str:
    """A valid config for this folder, then zero to three mutations (keys, values, bytes)."""
    sections: dict[str, dict[str, str]] = {  # paths first: a cut never reaches them, so no
        "paths": {"state_dir": '"state"', "audit_log": '"audit.jsonl"',  # case writes outside
                  "policies": '"rules.yaml"'},                           # its folder
        "systemd": {"bus": json.dumps(BUS)},
        "units": {"workers": '["celery-w1.service"]', "beat": '"celery-beat.service"',
                  "broker": '"redis.service"'},
        "celery": {"broker_url": '"redis://127.0.0.1:1/0"'},
    }
    if rng.random() < 0.3:  # a fleet whose store refuses: the agent falls back
        sections["fleet"] = {"store": '"redis://:pw@127.0.0.1:1/0"'}
    for _ in range(rng.randint(0, 3)):
        section = rng.choice(list(KEYS))
        key = rng.choice([*KEYS[section], "typo_key"])
        if section == "systemd" or (section == "paths" and key != "policies"):
            continue  # the bus stays the socket that does not exist; writes stay in the folder
        value = rng.choice(TOML_VALUES).replace("FIFO", str(folder / "fifo")).replace(
            "DIR", str(folder / "dir"))
        sections.setdefault(section, {})[key] = value
    text = "".join(f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())
                   for name, keys in sections.items())
    roll, kept = rng.random(), text.index("[systemd]")
    if roll < 0.05:
        return text[: rng.randint(kept, len(text))]
    if roll < 0.08:
        return text + "a = " + "[" * 3000 + "]" * 3000 + "\n"
    if roll < 0.10:
        cut = rng.randint(kept, len(text))
        return text[:cut] + rng.choice(["\x00", "\xff", "[[", "= =", '"', "]]"]) + text[cut:]
    return text


def policy_text(rng: random.Random) -> str:
    """A one-rule policy with generated values, sometimes a bomb, a loop or deep nesting."""
    roll = rng.random()
    if roll < 0.03:
        levels = rng.randint(3, 9)
        lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
        lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
        return "\n".join([*lines, f"rules: *a{levels}"]) + "\n"
    if roll < 0.05:
        return "rules: " + "[" * rng.choice([65, 200, 3000]) + "]" * 3000 + "\n"
    if roll < 0.07:
        return "rules:\n  - name: a\n    name: b\n    match: {scenario: worker_down}\n"
    values = {"name": "r", "scenario": "worker_down", "unit": "'*'", "action": "restart_unit",
              "verify": "5", "max": "3", "within": "15m", "backoff": "0", "after": "null"}
    for _ in range(rng.randint(0, 3)):
        values[rng.choice(list(values))] = rng.choice(POLICY_VALUES)
    return POLICY.format(**values)


def audit_lines(rng: random.Random) -> bytes:
    """A few records: chained-looking ones, and lines no healer wrote."""
    good = {"ts": "2026-11-24T16:00:00.000Z", "event": "incident_opened", "incident": "i1",
            "scenario": "worker_down", "unit": "celery-w1.service", "prev": None, "hash": "x"}
    pool = [json.dumps(good), json.dumps({**good, "event": "action_finished",
                                          "outcome": "healed", "action": "restart_unit"}),
            "[1, 2]", '"text"', "7", "{}", '{"event": 5}', '{"ts": 5, "event": "x"}',
            "not json", "\xff\xfe", '{"ts": "2026-11-24T16:00:00.000Z"}',
            json.dumps({**good, "incident": None}), json.dumps({**good, "unit": ["x"]})]
    lines = [rng.choice(pool) for _ in range(rng.randint(0, 6))]
    tail = rng.choice(["", "", '{"ts": "torn'])
    return ("".join(f"{line}\n" for line in lines) + tail).encode(errors="replace")


def _options(rng: random.Random, choices: list[tuple[str, list[str]]],
             chance: float) -> list[str]:
    """Each option with its chance, and a value picked for it ("" flags take none)."""
    argv: list[str] = []
    for option, values in choices:
        if rng.random() < chance:
            argv += [option, rng.choice(values)] if values else [option]
    return argv


def _audit_options(rng: random.Random, command: str, folder: Path) -> list[str]:
    argv = [rng.choice(["i1", "", "nope"])] if command == "audit show" else []
    logs = [str(folder / name) for name in ("audit.jsonl", "dir", "fifo", "missing.jsonl")]
    argv += _options(rng, [("--log", logs), ("--json", [])], 0.4)
    if command != "audit verify":
        argv += _options(rng, [("--since", DATES), ("--until", DATES),
                               ("--unit", ["celery-w1.service", "x"]),
                               ("--outcome", ["healed", "open", "x"])], 0.3)
    return argv


def arguments(rng: random.Random, config: Path, folder: Path) -> tuple[str, list[str]]:
    """A command and its generated arguments (audit commands read --log when asked)."""
    command = rng.choice(list(EXITS))
    units = ["celery-w1.service", "nope.service", "x\x00"]
    policies = [str(folder / name) for name in ("rules.yaml", "fifo", "dir", "missing.yaml")]
    extra: dict[str, Callable[[], list[str]]] = {
        "pause": lambda: ["--reason", rng.choice(["x", "", "a\nb"]),
                          *_options(rng, [("--for", DATES), ("--unit", units)], 0.5)],
        "resume": lambda: _options(rng, [("--unit", units)], 0.3),
        "policy check": lambda: [rng.choice([*policies, "/dev/zero"])]
        if rng.random() < 0.5 else [],
        "deploy polkit": lambda: _options(
            rng, [("--user", ["healer", "root", "", "x\ny", "a" * 40, "Bad"])], 0.5),
        "run-once": lambda: _options(rng, [("--json", []), ("--dry-run", [])], 0.4),
        "diagnose": lambda: _options(rng, [("--json", [])], 0.5),
        "doctor": lambda: _options(rng, [("--json", [])], 0.5),
        "fleet status": lambda: _options(rng, [("--json", [])], 0.5),
    }
    more = _audit_options(rng, command, folder) if command.startswith("audit") \
        else extra.get(command, list)()
    argv = ["--config", str(config), *command.split(), *more]
    if rng.random() < 0.02:
        argv.append(rng.choice(["--bogus", "extra"]))
    return command, argv


def lay_out(rng: random.Random, folder: Path) -> Path:
    """The case's files in a fresh folder: config, policy, audit log, a rotation, a FIFO, a dir."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.mkfifo(folder / "fifo")
    (folder / "dir").mkdir()
    (folder / "rules.yaml").write_text(policy_text(rng))
    (folder / "audit.jsonl").write_bytes(audit_lines(rng))
    if rng.random() < 0.3:
        whole = gzip.compress(audit_lines(rng))
        (folder / "audit.jsonl.1.gz").write_bytes(whole[: rng.randint(0, len(whole))])
    config = folder / "healer.toml"
    config.write_text(config_text(rng, folder), errors="replace")
    return config


def fuzz(root: Path, cases: int, seed: int) -> Report:
    """Run the cases; a case that breaks a rule is reported with its seed, index and argv."""
    report, rng = Report(), random.Random(seed)  # noqa: S311 - reproducible, not secret
    for index in range(cases):
        folder = root / f"case{index % 16}"
        config = lay_out(rng, folder)
        command, argv = arguments(rng, config, folder)
        name = f"seed {seed} case {index}: healer {' '.join(map(repr, argv))}"
        out, err = io.StringIO(), io.StringIO()
        try:
            with alarm(ALARM), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(argv)
        except Hung:
            report.hangs.append(f"hung: {name}")
            continue
        except BaseException as exc:  # anything escaping main is the finding
            report.internal.append(f"raised {type(exc).__name__}: {exc}: {name}")
            continue
        finally:
            report.cases += 1
        said = err.getvalue()
        if "internal error" in said or "Traceback" in said:
            report.internal.append(f"{said.strip()[-300:]}: {name}")
        if code not in EXITS[command]:
            report.codes.append(f"exit {code} not in {sorted(EXITS[command])}: {name}")
        refused = code == 2 or (command in {"diagnose", "doctor"} and code == 3
                                and not said.startswith("healer: cannot probe"))
        named = [str(folder), "--", "error:", *(a for a in argv[3:] if len(a) > 1)]
        if refused and not any(part in said for part in named) \
                and not re.search(r"\b[a-z]+\.[a-z_]+\b", said):
            report.unnamed.append(f"unnamed {said.strip()!r}: {name}")
    return report


def test_ten_thousand_hostile_inputs_get_a_documented_answer(tmp_path: Path) -> None:
    """Generated inputs never raise, hang or say internal error; exits and errors as documented."""
    report = fuzz(tmp_path, CASES, SEED)
    assert report.cases == CASES
    assert report.failures() == []
