"""Reading the audit log after an incident: select, group into incidents, summarise, verify.

Selection is fast on large logs: the time window is compared on the raw ``ts`` prefix and the
unit and scenario as quoted substrings before any line is parsed.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from healer.audit import chain, files
from healer.errors import AuditCorrupt, ConfigError
from healer.policy.models import parse_duration
from healer.vocabulary import Event, IncidentOutcome, Outcome

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

_TS_PREFIX = b'{"ts": "'
_TS_LEN = len("2026-01-01T00:00:00.000Z")
_DATE = re.compile(r"^\d{4}-\d\d-\d\d([T ]\d\d:\d\d(:\d\d(\.\d+)?)?)?Z?$")


def moment(text: str, now: datetime, end: bool = False) -> str:
    """An ISO date or time (UTC), or a duration meaning that long ago, as a record's ``ts``.

    With ``end``, a bare date means the end of that day (``--until 2026-11-24`` includes it).
    """
    if _DATE.match(text):
        try:
            when = datetime.fromisoformat(text.rstrip("Z").replace(" ", "T"))
        except ValueError as exc:
            raise ConfigError(f"{text!r}: {exc}") from exc
        when = when.replace(tzinfo=timezone.utc)
        if end and len(text.rstrip("Z")) == len("2026-11-24"):
            when += timedelta(days=1, milliseconds=-1)
    else:
        try:
            ago = parse_duration(text)
        except ValueError as exc:
            raise ConfigError(f"{text!r} is neither a date (2026-11-24T16:00) nor a duration "
                              "(2h, 30m)") from exc
        try:
            when = now - timedelta(seconds=float(str(ago)))
        except OverflowError as exc:
            raise ConfigError(f"{text!r} reaches back before the year 1") from exc
    return chain.timestamp(when)


@dataclass(frozen=True)
class Filters:
    """What to look at: a time window (ts strings), a unit, a scenario, an outcome."""

    since: str | None = None
    until: str | None = None
    unit: str | None = None
    scenario: str | None = None
    outcome: str | None = None


_TEXT = (str, type(None))


def _is_record(record: object) -> bool:
    """Shaped as healer writes records: ts and event text; the fields a review reads, text."""
    if not isinstance(record, dict):
        return False
    get = record.get  # unrolled: this runs once per record of a large log
    return isinstance(get("ts"), str) and isinstance(get("event"), str) \
        and isinstance(get("incident"), _TEXT) and isinstance(get("scenario"), _TEXT) \
        and isinstance(get("unit"), _TEXT) and isinstance(get("action"), _TEXT) \
        and isinstance(get("outcome"), _TEXT)


def _encodable(raw: bytes, record: dict[str, Any]) -> bool:
    """No lone surrogate (only a JSON escape makes one), so the record can be printed."""
    if b"\\u" not in raw or b"\\ud" not in raw.lower():
        return True
    try:
        json.dumps(record, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


def select(path: Path, filters: Filters) -> Iterator[dict[str, Any]]:
    """The records of the whole history that pass the time, unit and scenario filters."""
    unit = json.dumps(filters.unit).encode() if filters.unit else None
    scenario = json.dumps(filters.scenario).encode() if filters.scenario else None
    since = filters.since.encode() if filters.since else None
    until = filters.until.encode() if filters.until else None
    for line in files.history(path):
        raw = line.raw
        if raw.startswith(_TS_PREFIX):
            ts = raw[len(_TS_PREFIX):len(_TS_PREFIX) + _TS_LEN]
            if (since and ts < since) or (until and ts > until):
                continue
        if (unit and unit not in raw) or (scenario and scenario not in raw):
            continue
        try:
            record = json.loads(raw)
        except (ValueError, RecursionError):
            continue  # `verify` names it; a review skips it
        if _is_record(record) and _encodable(raw, record):
            yield record  # anything else is not a record healer wrote: verify names it


@dataclass
class Timeline:
    """One incident as the audit log tells it."""

    id: str
    first_seen: str
    scenario: str | None = None
    units: set[str] = field(default_factory=set)
    steps: list[str] = field(default_factory=list)
    outcome: IncidentOutcome = IncidentOutcome.OPEN
    time_to_heal: float | None = None
    records: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The incident without its records, JSON-ready."""
        return {"incident": self.id, "first_seen": self.first_seen, "scenario": self.scenario,
                "units": sorted(self.units), "steps": self.steps, "outcome": self.outcome,
                "time_to_heal_s": self.time_to_heal}


def _outcome(incident: Timeline) -> IncidentOutcome:
    events = {r["event"] for r in incident.records}
    healed = any(r["event"] == Event.ACTION_FINISHED and r.get("outcome") == Outcome.HEALED
                 for r in incident.records)
    if Event.INCIDENT_RESOLVED in events:
        return IncidentOutcome.HEALED if healed else IncidentOutcome.RESOLVED
    if Event.INCIDENT_DROPPED in events:
        return IncidentOutcome.DROPPED
    if Event.BREAKER_OPENED in events:
        return IncidentOutcome.HELD
    return IncidentOutcome.ESCALATED if Event.ESCALATION in events else IncidentOutcome.OPEN


def incidents(records: Iterable[dict[str, Any]], outcome: str | None = None
              ) -> list[Timeline]:
    """Records grouped by incident, in order of first sight (optionally of one outcome)."""
    found: dict[str, Timeline] = {}
    for record in records:
        key = record.get("incident")
        if not key:
            continue
        incident = found.setdefault(key, Timeline(id=key, first_seen=record["ts"]))
        incident.records.append(record)
        incident.scenario = incident.scenario or record.get("scenario")
        if record.get("unit"):
            incident.units.add(record["unit"])
        if record["event"] == Event.ACTION_FINISHED:
            incident.steps.append(f"{record.get('action')}:{record.get('outcome')}")
        elif record["event"] == Event.ESCALATION:
            incident.steps.append(f"escalate:{record.get('outcome')}")
        elif record["event"] == Event.INCIDENT_RESOLVED:
            took = record.get("duration_s")
            incident.time_to_heal = float(took) if isinstance(took, int | float) \
                and not isinstance(took, bool) and math.isfinite(took) else None
    result = list(found.values())
    for incident in result:
        incident.outcome = _outcome(incident)
    return [i for i in result if outcome is None or i.outcome == outcome]


def stats(found: list[Timeline]) -> list[dict[str, Any]]:
    """Per scenario and unit: incidents, actions, healed, mean time to heal."""
    table: dict[tuple[str, str], dict[str, Any]] = {}
    for incident in found:
        for unit in sorted(incident.units) or ["-"]:
            row = table.setdefault((incident.scenario or "-", unit), {
                "scenario": incident.scenario, "unit": unit, "incidents": 0, "actions": 0,
                "healed": 0, "heal_times": []})
            row["incidents"] += 1
            row["actions"] += sum(1 for r in incident.records
                                  if r["event"] == Event.ACTION_STARTED and r.get("unit") == unit)
            if incident.outcome == IncidentOutcome.HEALED:
                row["healed"] += 1
                if incident.time_to_heal is not None:
                    row["heal_times"].append(incident.time_to_heal)
    rows = []
    for row in table.values():
        times = row.pop("heal_times")
        row["mean_time_to_heal_s"] = round(sum(times) / len(times), 3) if times else None
        rows.append(row)
    return sorted(rows, key=lambda r: (r["scenario"] or "", r["unit"]))


@dataclass(frozen=True)
class ChainCheck:
    """What ``verify`` found: records checked, the first bad one, a torn tail."""

    records: int
    first_ts: str | None
    last_ts: str | None
    bad: str | None
    torn: int

    @property
    def ok(self) -> bool:
        """The chain holds (a torn tail is reported, not a failure)."""
        return self.bad is None


def _flaw(raw: bytes, number: int) -> tuple[dict[str, Any], None] | tuple[None, str]:
    """The record of an intact line, or what is wrong with the line."""
    try:
        record = json.loads(raw)
    except (ValueError, RecursionError):
        return None, "not a JSON record"
    try:  # NaN or a lone surrogate cannot be hashed as healer hashes: not healer's
        intact = isinstance(record, dict) and chain.intact(record)
    except ValueError:
        intact = False
    if not intact:
        return None, f"record {number} does not match its hash (edited?)"
    return record, None


def verify(path: Path) -> ChainCheck:
    """Check every record's hash and its link to the one before; stop at the first bad one."""
    prev: str | None = None
    count, first_ts, last_ts = 0, None, None

    def broken(why: str) -> ChainCheck:
        return ChainCheck(count, first_ts, last_ts, why, 0)

    try:
        for line in files.history(path):
            where = f"{line.file}:{line.number}"
            record, flaw = _flaw(line.raw, count + 1)
            if record is None:
                return broken(f"{where}: {flaw}")
            if count and record.get("prev") != prev:
                return broken(f"{where}: record {count + 1} does not follow the one before "
                              "(removed or reordered?)")
            prev, count = record["hash"], count + 1
            ts = record.get("ts")
            first_ts, last_ts = first_ts or _text(ts), _text(ts)
    except AuditCorrupt as exc:  # a rotation cut short: the history stops being provable
        return broken(str(exc))
    return ChainCheck(count, first_ts, last_ts, None, len(files.torn_tail(path, follow=True)))


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
