"""Reading the audit log after an incident: select, group into incidents, summarise, verify.

Selection is fast on large logs: a line is skipped before it is parsed where its bytes prove
that it cannot pass the filters (its ``ts`` prefix, a unit or scenario absent even escaped).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from healer.audit import anchor, chain, files
from healer.errors import AuditCorrupt, ConfigError
from healer.policy.models import parse_duration
from healer.vocabulary import Event, IncidentOutcome, Outcome

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

_TS_SEALED, _TS_LEGACY = b'{"ts":"', b'{"ts": "'
_SEALED_AT, _LEGACY_AT = len(_TS_SEALED), len(_TS_LEGACY)
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


def _raw_ts(raw: bytes) -> bytes | None:
    """The line's ``ts`` read without parsing, when it is a plain one of the usual length."""
    start = _SEALED_AT if raw.startswith(_TS_SEALED) else \
        _LEGACY_AT if raw.startswith(_TS_LEGACY) else 0
    if not start or raw[start + _TS_LEN:start + _TS_LEN + 1] != b'"':
        return None
    ts = raw[start:start + _TS_LEN]
    return None if b"\\" in ts else ts


def _passes(record: dict[str, Any], filters: Filters) -> bool:
    return (not filters.unit or record.get("unit") == filters.unit) and \
        (not filters.scenario or record.get("scenario") == filters.scenario) and \
        (not filters.since or record["ts"] >= filters.since) and \
        (not filters.until or record["ts"] <= filters.until)


def select(path: Path, filters: Filters) -> Iterator[dict[str, Any]]:
    """The records of the whole history that pass the time, unit and scenario filters.

    The filters apply to the parsed record. Lines are skipped unparsed only where the bytes
    prove it: a ts outside the window, or a unit or scenario that is not there even escaped.
    """
    wanted = [json.dumps(v, ensure_ascii=False).encode() for v in (filters.unit,
                                                                    filters.scenario) if v]
    since = filters.since.encode() if filters.since else None
    until = filters.until.encode() if filters.until else None
    window = since is not None or until is not None
    for _, _, raw in files.history(path):
        if window and (ts := _raw_ts(raw)) is not None and (
                (since and ts < since) or (until and ts > until)):
            continue
        if wanted and b"\\" not in raw and not all(w in raw for w in wanted):
            continue
        try:
            record = json.loads(raw)
        except (ValueError, RecursionError):
            continue  # `verify` names it; a review skips it
        if _is_record(record) and _passes(record, filters) and _encodable(raw, record):
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
        if record["event"] in {Event.ACTION_FINISHED, Event.ACTION_INTERRUPTED}:
            incident.steps.append(f"{record.get('action')}:{record.get('outcome')}")
        elif record["event"] == Event.ESCALATION:  # an escalation's try, or its resolve's
            incident.steps.append(f"{record.get('action') or 'escalate'}:{record.get('outcome')}")
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
    """What ``verify`` found: records checked, the first bad one, what the ends could show."""

    records: int
    first_ts: str | None
    last_ts: str | None
    bad: str | None
    torn: int
    sealed_from: int | None = None  # the record from which seq and canonical lines hold
    ends: str = ""

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
    if not isinstance(record, dict):
        return None, "not a JSON record"
    try:  # NaN or a lone surrogate cannot be hashed as healer hashes: not healer's
        flaw = chain.flaw(raw, record)
    except ValueError:
        flaw = "cannot be serialised as healer writes records (edited?)"
    return (record, None) if flaw is None else (None, f"record {number} {flaw}")


@dataclass
class _Walk:
    """The chain as read so far."""

    count: int = 0
    prev: str | None = None
    seq: int | None = None
    sealed_from: int | None = None
    head: str = "it starts at its genesis record"
    first_ts: str | None = None
    last_ts: str | None = None
    at_anchor: str | None = None  # the hash of the record at the anchor's seq

    def step(self, line: files.Line, record: dict[str, Any], anchored: int | None
             ) -> str | None:
        """Take one intact record; what is wrong with its place in the chain, if anything."""
        seq, number = record.get("seq"), self.count + 1
        if seq is None and self.seq is not None:
            return f"record {number} has no seq after the chain was sealed (edited?)"
        if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool)):
            return f"record {number} has a seq that is not a number (edited?)"
        if seq is not None and self.seq is None:
            self.sealed_from = number
            if record.get("event") != Event.AUDIT_STARTED or seq != 0:
                if self.count or record.get("event") != Event.AUDIT_FILE_STARTED \
                        or line.number != 1:
                    return (f"record {number} (seq {seq}) is where the history starts: its "
                            "genesis record and those after it up to here were cut")
                self.head = (f"it starts at seq {seq}, the first record of {line.file.name}: "
                             "older rotations are gone (rotated away or removed)")
        elif seq is not None and self.seq is not None and seq != self.seq + 1:
            return f"record {number} has seq {seq} after seq {self.seq} (removed or reordered?)"
        if self.count and record.get("prev") != self.prev:
            return f"record {number} does not follow the one before (removed or reordered?)"
        if not self.count and seq is None and record.get("prev") is not None:
            self.head = "its first record follows one that is not here (old format)"
        self.count, self.prev, self.seq = number, record["hash"], seq
        if seq is not None and seq == anchored:
            self.at_anchor = record["hash"]
        ts = _text(record.get("ts"))
        self.first_ts, self.last_ts = self.first_ts or ts, ts
        return None

    def ends(self, anchor_path: Path | None, before: chain.Link | None,
             after: chain.Link | None) -> tuple[str | None, str]:
        """What is wrong at the ends against the anchor, if anything, and what the ends show.

        ``before`` is the anchor read before the walk, ``after`` the one read after it: records
        appended while verify ran are past the first and at most one past the second.
        """
        if self.sealed_from is None:
            return None, "no sealed records (written before seq): the ends cannot be checked"
        if anchor_path is None:
            return None, f"{self.head}; no anchor: a cut tail or a re-sealed log cannot be seen"
        lag = "; its last record came after the anchor (a stop mid-append)" \
            if after and (self.seq or 0) > after.seq else ""
        return self._against(anchor_path, before, after), \
            f"{self.head}; it ends where the anchor {anchor_path} says{lag}"

    def _against(self, anchor_path: Path, before: chain.Link | None, after: chain.Link | None
                 ) -> str | None:
        """What is wrong with the log's end against the anchor, if anything."""
        last = -1 if self.seq is None else self.seq
        if before is None or after is None:
            return f"the anchor {anchor_path} is missing, though the log has sealed records"
        if last < before.seq:
            return (f"the log ends at seq {last} but the anchor {anchor_path} is at seq "
                    f"{before.seq}: records were cut from the end")
        if self.at_anchor != before.hash:
            return (f"the record at seq {before.seq} is not the one the anchor {anchor_path} "
                    "holds: the log was rewritten (re-sealed)")
        if last > after.seq + 1:
            return (f"{last - after.seq} records after the anchor's seq {after.seq}: healer "
                    "moves the anchor after each record")
        return None


def verify(path: Path, anchor_path: Path | None = None) -> ChainCheck:
    """Check each record, its place in the chain, and the ends against the anchor, if any.

    Stops at the first bad record. The anchor is read before and after the walk, so that
    records appended while verify runs are not taken for a cut or a forgery.
    """
    before = anchor.read(anchor_path) if anchor_path is not None else None
    walk = _Walk()

    def broken(why: str) -> ChainCheck:
        return ChainCheck(walk.count, walk.first_ts, walk.last_ts, why, 0, walk.sealed_from)

    try:
        for line in files.history(path):
            where = f"{line.file}:{line.number}"
            record, flaw = _flaw(line.raw, walk.count + 1)
            if record is None:
                return broken(f"{where}: {flaw}")
            wrong = walk.step(line, record, before.seq if before else None)
            if wrong:
                return broken(f"{where}: {wrong}")
    except AuditCorrupt as exc:  # a rotation cut short: the history stops being provable
        return broken(str(exc))
    after = anchor.read(anchor_path) if anchor_path is not None else None
    wrong, ends = walk.ends(anchor_path, before, after)
    if wrong:
        return broken(wrong)
    return ChainCheck(walk.count, walk.first_ts, walk.last_ts, None,
                      len(files.torn_tail(path, follow=True)), walk.sealed_from, ends)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
