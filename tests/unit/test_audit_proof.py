"""What `audit verify` proves: seq, canonical lines, the genesis record and the anchor."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from healer.audit import anchor, chain, review
from healer.audit.log import AuditLog
from healer.cli import EXIT_CONFIG, EXIT_OK, EXIT_UNHEALTHY, main
from healer.testing import ManualClock
from healer.vocabulary import Event

if TYPE_CHECKING:
    from collections.abc import Callable

UNIT = "celery-w1.service"
BEFORE_SEQ = Path(__file__).parent / "data" / "audit-before-seq.jsonl"  # by the code before seq
APPENDER = """
import sys
from pathlib import Path
from healer.audit.log import AuditLog
from healer.testing import ManualClock
from healer.vocabulary import Event
writer = AuditLog(Path(sys.argv[1]), ManualClock(), anchor=Path(sys.argv[2]))
while True:
    writer.record(Event.DECISION, "inc-live", outcome="held")
"""


class Log:
    """An audit log with its anchor, as the agent writes them."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "audit.jsonl"
        self.anchor = tmp_path / "state" / anchor.NAME
        self.anchor.parent.mkdir()
        self.clock = ManualClock()
        self.log = AuditLog(self.path, self.clock, anchor=self.anchor)

    def write(self, count: int) -> None:
        """``count`` action records, a second apart."""
        for n in range(count):
            self.clock.advance(1)
            self.log.record(Event.ACTION_FINISHED, f"inc-{n}", scenario="worker_down",
                            unit=UNIT, action="restart_unit", outcome="healed", dry_run=False)

    def lines(self) -> list[bytes]:
        """The current file's lines, each with its newline."""
        return self.path.read_bytes().splitlines(keepends=True)

    def edit(self, change: Callable[[list[bytes]], list[bytes]]) -> None:
        """Rewrite the current file's lines."""
        self.path.write_bytes(b"".join(change(self.lines())))

    def verify(self, anchored: bool = True) -> review.ChainCheck:
        """Verify as the CLI runs it with the config's anchor (or without one)."""
        return review.verify(self.path, self.anchor if anchored else None)


@pytest.fixture
def log(tmp_path: Path) -> Log:
    """A sealed log of a genesis and five records, anchored."""
    written = Log(tmp_path)
    written.write(5)
    return written


def resealed(lines: list[bytes], start: int, **change: object) -> list[bytes]:
    """The lines with record ``start`` edited and it and every later one sealed afresh."""
    out = lines[:start]
    last = chain.link(json.loads(lines[start - 1]))
    for raw in lines[start:]:
        record = json.loads(raw)
        body = {k: v for k, v in record.items() if k not in {"seq", "prev", "hash"}}
        line, last = chain.seal({**body, **change} if len(out) == start else body, last)
        out.append(line + b"\n")
    return out


def test_an_untouched_log_verifies_with_both_ends_checked(log: Log) -> None:
    """An untouched anchored log is OK, and says that both ends were checked."""
    check = log.verify()
    assert (check.ok, check.records, check.sealed_from) == (True, 6, 1)
    assert check.ends == ("it starts at its genesis record; it ends where the anchor "
                          f"{log.anchor} says")


def test_the_anchor_follows_every_append(log: Log) -> None:
    """After each record the anchor holds the last record's seq and hash."""
    last = json.loads(log.lines()[-1])
    assert anchor.read(log.anchor) == chain.Link(5, last["hash"])
    log.write(1)
    assert anchor.read(log.anchor) == chain.Link(6, json.loads(log.lines()[-1])["hash"])


def test_a_cut_head_is_caught_without_an_anchor(log: Log) -> None:
    """Records cut from the start (the genesis among them) fail verify, anchor or not."""
    log.edit(lambda lines: lines[2:])
    check = log.verify(anchored=False)
    assert not check.ok
    assert check.bad == (f"{log.path}:1: record 1 (seq 2) is where the history starts: its "
                         "genesis record and those after it up to here were cut")


def test_a_cut_tail_is_caught_against_the_anchor(log: Log) -> None:
    """Records cut from the end fail verify against the anchor; without one verify says so."""
    log.edit(lambda lines: lines[:-2])
    assert log.verify(anchored=False).ok
    assert "no anchor: a cut tail or a re-sealed log cannot be seen" in \
        log.verify(anchored=False).ends
    check = log.verify()
    assert check.bad == (f"the log ends at seq 3 but the anchor {log.anchor} is at seq 5: "
                         "records were cut from the end")


def test_a_resealed_edit_is_caught_against_the_anchor(log: Log) -> None:
    """An edit with every later record sealed again keeps the chain; the anchor shows it."""
    log.edit(lambda lines: resealed(lines, 2, outcome="not_healed"))
    assert log.verify(anchored=False).ok  # the chain alone cannot tell
    check = log.verify()
    assert check.bad == (f"the record at seq 5 is not the one the anchor {log.anchor} holds: "
                         "the log was rewritten (re-sealed)")


def test_an_escaped_edit_is_not_canonical(log: Log) -> None:
    r"""A JSON escape that keeps the hash (\u002e for a dot) is rejected as not canonical."""
    log.edit(lambda lines: [*lines[:3], lines[3].replace(b"w1.service", b"w1\\u002eservice"),
                            *lines[4:]])
    assert json.loads(log.lines()[3])["unit"] == UNIT  # same record, same hash
    check = log.verify()
    assert check.bad == (f"{log.path}:4: record 4 is not in canonical form (an escaped or "
                         "duplicated key: edited?)")


def test_an_escaped_edit_does_not_hide_records_from_the_review(log: Log) -> None:
    """`audit list --unit` finds the record whose unit was written with an escape."""
    log.edit(lambda lines: [*lines[:3], lines[3].replace(b"w1.service", b"w1\\u002eservice"),
                            *lines[4:]])
    found = list(review.select(log.path, review.Filters(unit=UNIT)))
    assert [r["incident"] for r in found] == [f"inc-{n}" for n in range(5)]


def test_a_duplicated_key_is_not_canonical(log: Log) -> None:
    """A key given twice (JSON keeps the last) is rejected though the hash holds."""
    log.edit(lambda lines: [*lines[:2], lines[2].replace(
        b'"unit":"celery-w1.service"', b'"unit":"celery-w9.service","unit":"celery-w1.service"'),
        *lines[3:]])
    check = log.verify()
    assert check.bad is not None
    assert check.bad.endswith("record 3 is not in canonical form (an escaped or duplicated key: "
                              "edited?)")


def test_a_log_from_before_seq_still_verifies(tmp_path: Path) -> None:
    """A log written by the previous release verifies under its rule; verify says so."""
    path = tmp_path / "audit.jsonl"
    shutil.copy(BEFORE_SEQ, path)
    check = review.verify(path, tmp_path / "absent.anchor")
    assert (check.ok, check.records, check.sealed_from) == (True, 4, None)
    assert check.ends == "no sealed records (written before seq): the ends cannot be checked"


def test_appending_to_an_old_log_seals_from_a_genesis(tmp_path: Path) -> None:
    """New records after an old log start with a genesis chained to its last hash."""
    written = Log(tmp_path)
    shutil.copy(BEFORE_SEQ, written.path)
    old_end = json.loads(written.lines()[-1])["hash"]
    written.write(2)
    genesis = json.loads(written.lines()[4])
    assert (genesis["event"], genesis["seq"], genesis["prev"]) == ("audit_started", 0, old_end)
    check = written.verify()
    assert (check.ok, check.records, check.sealed_from) == (True, 7, 5)
    assert main(["audit", "verify", "--log", str(written.path), "--anchor",
                 str(written.anchor)]) == EXIT_OK


def test_an_old_format_record_after_sealing_is_an_edit(log: Log) -> None:
    """A record without seq after the genesis fails: the chain was sealed."""
    old = BEFORE_SEQ.read_bytes().splitlines(keepends=True)[0]
    log.edit(lambda lines: [*lines, old])
    assert log.verify(anchored=False).bad == (
        f"{log.path}:7: record 7 has no seq after the chain was sealed (edited?)")


def test_rotations_removed_by_logrotate_leave_a_checked_start(log: Log) -> None:
    """Once the oldest rotation is deleted, the history starts at a file's first record."""
    one = log.path.with_name("audit.jsonl.1")
    log.path.rename(one)
    log.write(2)
    with one.open("rb") as src, gzip.open(log.path.with_name("audit.jsonl.2.gz"), "wb") as dst:
        shutil.copyfileobj(src, dst)
    one.unlink()
    log.path.rename(one)
    log.write(1)
    log.path.with_name("audit.jsonl.2.gz").unlink()  # rotate 52: the oldest goes
    check = log.verify()
    assert check.ok
    assert check.ends.startswith("it starts at seq 6, the first record of audit.jsonl.1: older "
                                 "rotations are gone")


def test_a_stop_between_append_and_anchor_is_not_a_cut(log: Log) -> None:
    """One record past the anchor (a kill before it moved) verifies; two do not."""
    unanchored = AuditLog(log.path, log.clock)
    unanchored.record(Event.PAUSED, None, reason="x")
    check = log.verify()
    assert check.ok
    assert check.ends.endswith("its last record came after the anchor (a stop mid-append)")
    unanchored.record(Event.RESUMED, None, reason="x")
    assert log.verify().bad == ("2 records after the anchor's seq 5: healer moves the anchor "
                                "after each record")


def test_cli_finds_the_anchor_through_the_config(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """`audit verify` uses the state dir's anchor; a missing one is a failure, a bad one exit 2."""
    config = tmp_path / "healer.toml"
    config.write_text(f'[units]\nworkers = ["{UNIT}"]\n[paths]\nstate_dir = "{tmp_path}/state"'
                      f'\naudit_log = "{tmp_path}/audit.jsonl"\n', encoding="utf-8")
    Log(tmp_path).write(2)
    assert main(["--config", str(config), "audit", "verify"]) == EXIT_OK
    assert "it ends where the anchor" in capsys.readouterr().out
    (tmp_path / "state" / anchor.NAME).unlink()
    assert main(["--config", str(config), "audit", "verify"]) == EXIT_UNHEALTHY
    assert "anchor" in capsys.readouterr().out
    (tmp_path / "state" / anchor.NAME).write_text("{oops", encoding="utf-8")
    assert main(["--config", str(config), "audit", "verify"]) == EXIT_CONFIG
    assert "not an audit anchor" in capsys.readouterr().err
    assert main(["audit", "verify", "--log", str(tmp_path / "audit.jsonl"), "--anchor",
                 str(tmp_path / "nowhere")]) == EXIT_CONFIG


def test_records_appended_while_verify_runs_are_not_a_forgery(log: Log) -> None:
    """Another process appending all through verify: every verify still says OK."""
    last = anchor.read(log.anchor)
    with log.path.open("ab") as handle:  # a long log, quickly: verify takes a while over it
        for n in range(20_000):
            line, last = chain.seal({"ts": "2026-12-01T00:00:00.000Z", "event": "decision",
                                     "incident": f"inc-{n}"}, last)
            handle.write(line + b"\n")
    assert last is not None
    anchor.write(log.anchor, last)
    writer = subprocess.Popen([sys.executable, "-c", APPENDER, str(log.path), str(log.anchor)])
    try:
        checks = [log.verify() for _ in range(3)]
    finally:
        writer.kill()
        writer.wait()
    assert [c.bad for c in checks] == [None] * 3
    assert checks[-1].records > checks[0].records
