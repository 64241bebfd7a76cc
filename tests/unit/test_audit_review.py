"""Reviewing the audit log: selecting, grouping into incidents, stats, and the audit commands."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pytest

from healer.audit import review
from healer.audit.log import AuditLog
from healer.cli import EXIT_CONFIG, EXIT_OK, EXIT_UNHEALTHY, main
from healer.errors import ConfigError
from healer.testing import ManualClock
from healer.vocabulary import Event

if TYPE_CHECKING:
    from pathlib import Path

W1, W2, W3, BROKER = "celery-w1.service", "celery-w2.service", "celery-w3.service", \
    "redis.service"
NOW = datetime(2026, 11, 24, 18, 0, tzinfo=timezone.utc)


class Writer:
    """An AuditLog whose clock is set to the time of each record."""

    def __init__(self, path: Path) -> None:
        self.clock = ManualClock(start=0.0)
        self.log = AuditLog(path, self.clock)

    def at(self, when: str, event: str, incident: str | None, **fields: object) -> None:
        """Write ``event`` at the UTC time ``when`` (2026-11-24T16:00:00)."""
        moment = datetime.fromisoformat(when).replace(tzinfo=timezone.utc).timestamp()
        self.clock.advance(moment - self.clock.time())
        self.log.record(Event(event), incident, **fields)

    def opened(self, when: str, incident: str, scenario: str, unit: str) -> None:
        """incident_opened with evidence."""
        self.at(when, "incident_opened", incident, scenario=scenario, unit=unit,
                severity="high", summary=f"{unit} is down", evidence={"result": "signal"})

    def action(self, started: str, finished: str, incident: str, scenario: str, unit: str,
               action: str, outcome: str) -> None:
        """action_started then action_finished."""
        fields: dict[str, Any] = {"scenario": scenario, "unit": unit, "action": action,
                                  "rule": "test", "dry_run": False}
        self.at(started, "action_started", incident, outcome="started", **fields)
        self.at(finished, "action_finished", incident, outcome=outcome,
                detail=f"{action} {outcome}", **fields)

    def resolved(self, when: str, incident: str, scenario: str, unit: str, took: float) -> None:
        """incident_resolved after ``took`` seconds."""
        self.at(when, "incident_resolved", incident, scenario=scenario, unit=unit,
                duration_s=took)

    def escalation(self, when: str, incident: str, scenario: str, unit: str) -> None:
        """A delivered escalation."""
        self.at(when, "escalation", incident, scenario=scenario, unit=unit, action="escalate",
                outcome="delivered", reason="ladder exhausted", error=None, dry_run=False)


def build(path: Path) -> None:
    """Six incidents over two days, one of each outcome (two healed), and a pause."""
    w = Writer(path)
    # inc-1, the day before: healed in 12 s
    w.opened("2026-11-23T10:00:00", "inc-1", "worker_down", W1)
    w.action("2026-11-23T10:00:01", "2026-11-23T10:00:06", "inc-1", "worker_down", W1,
             "restart_unit", "healed")
    w.resolved("2026-11-23T10:00:12", "inc-1", "worker_down", W1, 12.0)
    w.at("2026-11-24T08:00:00", "paused", None, unit=W2, until=None, reason="deploy")
    # inc-2: the restart did not heal it, but it went away by itself
    w.opened("2026-11-24T09:00:00", "inc-2", "worker_down", W2)
    w.action("2026-11-24T09:00:01", "2026-11-24T09:00:06", "inc-2", "worker_down", W2,
             "restart_unit", "not_healed")
    w.resolved("2026-11-24T09:05:00", "inc-2", "worker_down", W2, 300.0)
    # inc-3: the broker restart failed; escalated and held by the breaker
    w.opened("2026-11-24T15:00:00", "inc-3", "broker_unreachable", BROKER)
    w.action("2026-11-24T15:00:01", "2026-11-24T15:00:06", "inc-3", "broker_unreachable",
             BROKER, "restart_broker", "failed")
    w.escalation("2026-11-24T15:00:07", "inc-3", "broker_unreachable", BROKER)
    w.at("2026-11-24T15:00:07.500", "breaker_opened", "inc-3", scenario="broker_unreachable",
         unit=BROKER, reason="ladder exhausted")
    # inc-4: no automatic remedy, escalated
    w.opened("2026-11-24T16:30:00", "inc-4", "task_failures", W1)
    w.escalation("2026-11-24T16:35:00", "inc-4", "task_failures", W1)
    # inc-5: a restart in flight
    w.opened("2026-11-24T17:00:00", "inc-5", "worker_down", W3)
    w.at("2026-11-24T17:00:01", "action_started", "inc-5", scenario="worker_down", unit=W3,
         action="restart_unit", outcome="started", rule="test", dry_run=False)
    # inc-6: healed in 20 s
    w.opened("2026-11-24T17:10:00", "inc-6", "worker_down", W1)
    w.action("2026-11-24T17:10:01", "2026-11-24T17:10:06", "inc-6", "worker_down", W1,
             "restart_unit", "healed")
    w.resolved("2026-11-24T17:10:20", "inc-6", "worker_down", W1, 20.0)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example log, written once."""
    path = tmp_path_factory.mktemp("audit") / "audit.jsonl"
    build(path)
    return path


@pytest.fixture
def log(built: Path, tmp_path: Path) -> Path:
    """A copy of the example log the test may change."""
    path = tmp_path / "audit.jsonl"
    shutil.copyfile(built, path)
    return path


def ids(records: list[dict[str, Any]]) -> list[str | None]:
    """The incident of every record, in order, repeats collapsed."""
    out: list[str | None] = []
    for record in records:
        if not out or out[-1] != record["incident"]:
            out.append(record["incident"])
    return out


def pick(path: Path, **filters: str) -> list[dict[str, Any]]:
    """review.select with these filters."""
    return list(review.select(path, review.Filters(**filters)))


# -- select ---------------------------------------------------------------------------------


def test_select_without_filters_reads_everything(log: Path) -> None:
    """No filters: every record, oldest first."""
    records = pick(log)
    assert len(records) == 23
    assert records[0]["event"] == "audit_started"
    assert ids(records) == [None, "inc-1", None, "inc-2", "inc-3", "inc-4", "inc-5", "inc-6"]


def test_select_since_and_until(log: Path) -> None:
    """The since and until filters keep records whose ts is within the window, bounds included."""
    since = pick(log, since="2026-11-24T00:00:00.000Z")
    assert ids(since) == [None, "inc-2", "inc-3", "inc-4", "inc-5", "inc-6"]
    until = pick(log, until="2026-11-24T09:00:00.000Z")
    assert ids(until) == [None, "inc-1", None, "inc-2"]
    assert until[-1]["event"] == "incident_opened"
    window = pick(log, since="2026-11-24T15:00:00.000Z", until="2026-11-24T16:59:59.999Z")
    assert ids(window) == ["inc-3", "inc-4"]
    assert all("2026-11-24T15" <= r["ts"] < "2026-11-24T17" for r in window)


def test_select_by_unit(log: Path) -> None:
    """The unit filter keeps only records naming that unit."""
    records = pick(log, unit=W1)
    assert ids(records) == ["inc-1", "inc-4", "inc-6"]
    assert {r["unit"] for r in records} == {W1}
    assert ids(pick(log, unit=W2)) == [None, "inc-2"]


def test_unit_filter_does_not_match_a_longer_name(log: Path) -> None:
    """A unit filter matches the quoted name, not a name it is a prefix of."""
    assert pick(log, unit="celery-w1") == []


def test_select_by_scenario_and_unit(log: Path) -> None:
    """The scenario and unit filters together narrow to both."""
    assert ids(pick(log, scenario="worker_down")) == ["inc-1", "inc-2", "inc-5", "inc-6"]
    both = pick(log, scenario="worker_down", unit=W1, since="2026-11-24T00:00:00.000Z")
    assert ids(both) == ["inc-6"]
    assert len(both) == 4


def test_select_skips_a_garbage_line(log: Path) -> None:
    """A line that is not JSON is skipped by select (verify is the one that names it)."""
    with log.open("ab") as handle:
        handle.write(b"{oops\n")
    assert len(pick(log)) == 23


# -- incidents -------------------------------------------------------------------------------


def test_incidents_are_classified(log: Path) -> None:
    """Resolved after a heal: healed; resolved otherwise: resolved; breaker: held; etc."""
    found = review.incidents(review.select(log, review.Filters()))
    assert {i.id: i.outcome for i in found} == {
        "inc-1": "healed", "inc-2": "resolved", "inc-3": "held", "inc-4": "escalated",
        "inc-5": "open", "inc-6": "healed"}


def test_incident_summary(log: Path) -> None:
    """An incident's summary: first seen, scenario, units, steps, outcome, time to heal."""
    found = {i.id: i for i in review.incidents(review.select(log, review.Filters()))}
    assert found["inc-1"].summary() == {
        "incident": "inc-1", "first_seen": "2026-11-23T10:00:00.000Z",
        "scenario": "worker_down", "units": [W1], "steps": ["restart_unit:healed"],
        "outcome": "healed", "time_to_heal_s": 12.0}
    assert found["inc-3"].steps == ["restart_broker:failed", "escalate:delivered"]
    assert found["inc-3"].time_to_heal is None
    assert found["inc-4"].steps == ["escalate:delivered"]
    assert found["inc-5"].steps == []
    assert len(found["inc-3"].records) == 5


def test_incidents_outcome_filter(log: Path) -> None:
    """The outcome filter keeps only incidents of that outcome."""
    records = list(review.select(log, review.Filters()))
    assert [i.id for i in review.incidents(records, "healed")] == ["inc-1", "inc-6"]
    assert [i.id for i in review.incidents(records, "held")] == ["inc-3"]
    assert [i.id for i in review.incidents(records, "open")] == ["inc-5"]
    assert review.incidents(records, "nothing-like-this") == []


def test_records_without_incident_are_not_incidents(log: Path) -> None:
    """A record with incident None (a pause) belongs to no incident."""
    found = review.incidents(review.select(log, review.Filters(unit=W2)))
    assert [i.id for i in found] == ["inc-2"]


# -- stats -----------------------------------------------------------------------------------


def test_stats_counts_and_mean_time_to_heal(log: Path) -> None:
    """Per scenario and unit: incidents, actions started, healed, mean time to heal."""
    rows = review.stats(review.incidents(review.select(log, review.Filters())))
    assert rows == [
        {"scenario": "broker_unreachable", "unit": BROKER, "incidents": 1, "actions": 1,
         "healed": 0, "mean_time_to_heal_s": None},
        {"scenario": "task_failures", "unit": W1, "incidents": 1, "actions": 0, "healed": 0,
         "mean_time_to_heal_s": None},
        {"scenario": "worker_down", "unit": W1, "incidents": 2, "actions": 2, "healed": 2,
         "mean_time_to_heal_s": 16.0},
        {"scenario": "worker_down", "unit": W2, "incidents": 1, "actions": 1, "healed": 0,
         "mean_time_to_heal_s": None},
        {"scenario": "worker_down", "unit": W3, "incidents": 1, "actions": 1, "healed": 0,
         "mean_time_to_heal_s": None},
    ]


def test_stats_of_nothing_is_empty() -> None:
    """No incidents, no rows."""
    assert review.stats([]) == []


# -- moment ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-24", "2026-11-24T00:00:00.000Z"),
    ("2026-11-24T16:00", "2026-11-24T16:00:00.000Z"),
    ("2026-11-24 16:00:05Z", "2026-11-24T16:00:05.000Z"),
    ("2026-11-24T16:00:05.25", "2026-11-24T16:00:05.250Z"),
    ("2h", "2026-11-24T16:00:00.000Z"),
    ("90m", "2026-11-24T16:30:00.000Z"),
    ("1h30m", "2026-11-24T16:30:00.000Z"),
    ("1d", "2026-11-23T18:00:00.000Z"),
])
def test_moment(text: str, expected: str) -> None:
    """A date, a time or a duration ago becomes a ts string comparable with records."""
    assert review.moment(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "2 hours", "-2h", "16:00", "", "2h ago"])
def test_bad_moment_is_config_error(text: str) -> None:
    """Neither a date nor a duration: ConfigError naming the value."""
    with pytest.raises(ConfigError, match="neither a date"):
        review.moment(text, NOW)


@pytest.mark.parametrize("text", ["2026-13-45", "2026-11-24T25:00"])
def test_impossible_date_is_config_error(text: str) -> None:
    """A date-shaped value that is no real date is a ConfigError too."""
    with pytest.raises(ConfigError):
        review.moment(text, NOW)


# -- the audit commands ----------------------------------------------------------------------


def out_json(capsys: pytest.CaptureFixture[str]) -> Any:  # noqa: ANN401 - any JSON
    """The stdout so far, parsed as one JSON document."""
    return json.loads(capsys.readouterr().out)


def test_cli_list_json(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`audit list --json` prints every incident's summary."""
    assert main(["audit", "list", "--log", str(log), "--json"]) == EXIT_OK
    listed = out_json(capsys)
    assert [i["incident"] for i in listed] == [f"inc-{n}" for n in range(1, 7)]
    assert [i["outcome"] for i in listed] == ["healed", "resolved", "held", "escalated",
                                              "open", "healed"]
    assert listed[5]["time_to_heal_s"] == 20.0


def test_cli_list_filters(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`audit list` takes --since, --unit, --scenario and --outcome."""
    args = ["audit", "list", "--log", str(log), "--json"]
    assert main([*args, "--since", "2026-11-24", "--outcome", "healed"]) == EXIT_OK
    assert [i["incident"] for i in out_json(capsys)] == ["inc-6"]
    assert main([*args, "--unit", W1, "--scenario", "task_failures"]) == EXIT_OK
    assert [i["incident"] for i in out_json(capsys)] == ["inc-4"]
    assert main([*args, "--until", "2026-11-23"]) == EXIT_OK  # a bare date includes the day
    assert [i["incident"] for i in out_json(capsys)] == ["inc-1"]
    assert main([*args, "--until", "2026-11-24T00:00"]) == EXIT_OK
    assert [i["incident"] for i in out_json(capsys)] == ["inc-1"]


def test_cli_list_table(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`audit list` without --json prints a header and one row per incident."""
    assert main(["audit", "list", "--log", str(log)]) == EXIT_OK
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split()[:3] == ["INCIDENT", "FIRST", "SEEN"]
    assert len(rows) == 7
    assert rows[1].split() == ["inc-1", "2026-11-23T10:00:00.000Z", "worker_down", W1,
                               "restart_unit:healed", "healed", "12.0s"]


def test_cli_show_prints_the_timeline(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`audit show ID` prints one line per record, with evidence under the opening."""
    assert main(["audit", "show", "inc-3", "--log", str(log)]) == EXIT_OK
    shown = capsys.readouterr().out.splitlines()
    assert len(shown) == 6
    assert shown[0].split()[:2] == ["2026-11-24T15:00:00.000Z", "incident_opened"]
    assert shown[1].strip() == 'evidence: {"result": "signal"}'
    events = [line.split()[1] for line in shown if not line.startswith(" ")]
    assert events == ["incident_opened", "action_started", "action_finished", "escalation",
                      "breaker_opened"]
    assert "restart_broker failed" in shown[3]


def test_cli_show_json(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`audit show ID --json` prints the incident's records."""
    assert main(["audit", "show", "inc-1", "--log", str(log), "--json"]) == EXIT_OK
    records = out_json(capsys)
    assert [r["event"] for r in records] == ["incident_opened", "action_started",
                                             "action_finished", "incident_resolved"]


def test_cli_show_unknown_incident(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`audit show` of an unknown id exits 2 with one stderr line naming it."""
    assert main(["audit", "show", "nope", "--log", str(log)]) == EXIT_CONFIG
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.splitlines()
    assert len(err) == 1
    assert "'nope'" in err[0]
    assert str(log) in err[0]


def test_cli_bad_since_exits_2(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A --since that is neither date nor duration exits 2 with one stderr line."""
    assert main(["audit", "list", "--log", str(log), "--since", "soon"]) == EXIT_CONFIG
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_cli_verify_ok(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`audit verify` on an intact log exits 0 and says how many records are chained."""
    assert main(["audit", "verify", "--log", str(log)]) == EXIT_OK
    assert capsys.readouterr().out.strip() == (
        "OK: 23 records chained (2026-11-23T10:00:00.000Z .. 2026-11-24T17:10:20.000Z); it "
        "starts at its genesis record; no anchor: a cut tail or a re-sealed log cannot be seen")


def test_cli_verify_broken(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`audit verify` on an edited log exits 1 with a BROKEN line naming file:line and record."""
    raw = log.read_bytes().splitlines(keepends=True)
    assert b'"healed"' in raw[3]
    raw[3] = raw[3].replace(b'"healed"', b'"failed"')
    log.write_bytes(b"".join(raw))
    assert main(["audit", "verify", "--log", str(log)]) == EXIT_UNHEALTHY
    assert capsys.readouterr().out.strip() == (
        f"BROKEN after 3 good records: {log}:4: record 4 does not match its hash (edited?)")
    assert main(["audit", "verify", "--log", str(log), "--json"]) == EXIT_UNHEALTHY
    verdict = out_json(capsys)
    assert (verdict["records"], verdict["ok"]) == (3, False)
    assert "record 4" in verdict["bad"]


def test_cli_verify_reports_torn_tail(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`audit verify` with a torn last line exits 0 and mentions the torn bytes."""
    with log.open("ab") as handle:
        handle.write(b'{"ts": "20')
    assert main(["audit", "verify", "--log", str(log)]) == EXIT_OK
    assert "torn tail of 10 bytes" in capsys.readouterr().out


def test_cli_stats_json(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`audit stats --json` prints the same rows as review.stats."""
    assert main(["audit", "stats", "--log", str(log), "--json"]) == EXIT_OK
    rows = out_json(capsys)
    assert rows == review.stats(review.incidents(review.select(log, review.Filters())))
    assert rows[2]["mean_time_to_heal_s"] == 16.0


def test_cli_stats_table(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`audit stats` without --json prints a table with the mean time to heal."""
    assert main(["audit", "stats", "--log", str(log), "--scenario", "worker_down"]) == EXIT_OK
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split()[:2] == ["SCENARIO", "UNIT"]
    assert rows[1].split() == ["worker_down", W1, "2", "2", "2", "16.0s"]
    assert rows[2].split() == ["worker_down", W2, "1", "1", "0", "-"]


def test_cli_on_missing_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A log that does not exist yet lists nothing and verifies as zero records."""
    path = tmp_path / "absent.jsonl"
    assert main(["audit", "list", "--log", str(path), "--json"]) == EXIT_OK
    assert out_json(capsys) == []
    assert main(["audit", "verify", "--log", str(path)]) == EXIT_OK
    assert capsys.readouterr().out.startswith("OK: 0 records")
