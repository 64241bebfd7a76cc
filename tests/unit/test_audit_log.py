"""The audit log on disk: a hash chain that survives torn writes, rotation and two writers."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import threading
from typing import TYPE_CHECKING, Any

from healer.audit import chain, files, review
from healer.audit.log import AuditLog
from healer.testing import ManualClock
from healer.vocabulary import Event, Outcome

if TYPE_CHECKING:
    from pathlib import Path

NOBODY = 65534
TORN = b'{"ts": "2023-11-14T22:13:2'


def lines(path: Path) -> list[dict[str, Any]]:
    """The complete records of one file (gzipped or not), in order."""
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return [json.loads(raw) for raw in data.splitlines(keepends=True) if raw.endswith(b"\n")]


def write(log: AuditLog, clock: ManualClock, count: int, start: int = 1) -> None:
    """``count`` action records for incidents inc-<start>.., a second apart."""
    for n in range(start, start + count):
        clock.advance(1)
        log.record(Event.ACTION_FINISHED, f"inc-{n}", scenario="worker_down",
                   unit="celery-w1.service", action="restart_unit", outcome="healed",
                   dry_run=False)


def setup_log(tmp_path: Path, count: int) -> tuple[Path, AuditLog, ManualClock]:
    """A log under tmp_path/log with ``count`` records written."""
    clock = ManualClock()
    path = tmp_path / "log" / "audit.jsonl"
    log = AuditLog(path, clock)
    write(log, clock, count)
    return path, log, clock


OPENINGS = {Event.AUDIT_STARTED, Event.AUDIT_FILE_STARTED}


def written(path: Path) -> list[dict[str, Any]]:
    """The records of one file that healer was asked to write (no genesis or file openings)."""
    return [r for r in lines(path) if r["event"] not in OPENINGS]


def assert_chained(records: list[dict[str, Any]], first_prev: str | None = None) -> None:
    """Every record is intact, numbered after the one before, and points at its hash."""
    prev, seq = first_prev, records[0]["seq"]
    for record in records:
        raw = (json.dumps(record, ensure_ascii=False, separators=(",", ":"))).encode()
        assert chain.flaw(raw, record) is None
        assert (record["prev"], record["seq"]) == (prev, seq)
        prev, seq = record["hash"], seq + 1


def test_records_are_chained_and_verify(tmp_path: Path) -> None:
    """A genesis record (seq 0) starts the chain; each record follows the one before."""
    path, _, _ = setup_log(tmp_path, 4)
    records = lines(path)
    assert len(records) == 5
    assert_chained(records)
    assert (records[0]["event"], records[0]["seq"], records[0]["prev"]) == (
        "audit_started", 0, None)
    assert [r["incident"] for r in records[1:]] == ["inc-1", "inc-2", "inc-3", "inc-4"]
    assert records[1]["ts"] == "2023-11-14T22:13:21.000Z"
    verdict = review.verify(path)
    assert verdict.ok
    assert (verdict.records, verdict.torn, verdict.sealed_from) == (5, 0, 1)
    assert verdict.first_ts == records[0]["ts"]
    assert verdict.last_ts == records[-1]["ts"]
    assert "no anchor" in verdict.ends


def test_a_line_is_its_canonical_form(tmp_path: Path) -> None:
    """Lines put ts and seq first, the rest sorted, hash last: re-serialised, the same bytes."""
    path, _, _ = setup_log(tmp_path, 1)
    raw = path.read_bytes().splitlines()[1]
    record = json.loads(raw)
    keys = list(record)
    assert keys[:2] == ["ts", "seq"]
    assert keys[-1] == "hash"
    assert keys[2:-1] == sorted(keys[2:-1])
    assert raw == json.dumps(record, separators=(",", ":")).encode()


def test_edited_byte_names_file_line_and_record(tmp_path: Path) -> None:
    """Changing one byte of an old record fails verify at that file:line, naming record N."""
    path, _, _ = setup_log(tmp_path, 4)
    raw = path.read_bytes().splitlines(keepends=True)
    assert b'"healed"' in raw[2]
    raw[2] = raw[2].replace(b'"healed"', b'"healee"')
    path.write_bytes(b"".join(raw))
    verdict = review.verify(path)
    assert not verdict.ok
    assert verdict.records == 2
    assert verdict.bad == f"{path}:3: record 3 does not match its hash (edited?)"


def forge(path: Path, index: int, **change: object) -> None:
    """Edit record ``index`` and seal it again with a fresh hash, as an attacker would."""
    raw = path.read_bytes().splitlines(keepends=True)
    record = json.loads(raw[index])
    body = {k: v for k, v in record.items() if k not in {"seq", "prev", "hash"}}
    line, _ = chain.seal({**body, **change}, chain.Link(record["seq"] - 1, record["prev"]))
    raw[index] = line + b"\n"
    path.write_bytes(b"".join(raw))


def test_edit_with_recomputed_hash_breaks_next_link(tmp_path: Path) -> None:
    """An edited record re-sealed with a fresh hash is caught at the next record's prev."""
    path, _, _ = setup_log(tmp_path, 4)
    forge(path, 2, outcome="not_healed")
    verdict = review.verify(path)
    assert not verdict.ok
    assert verdict.records == 3
    assert verdict.bad is not None
    assert verdict.bad.startswith(f"{path}:4: record 4 does not follow")


def test_deleted_middle_line_is_a_gap_in_seq(tmp_path: Path) -> None:
    """Removing a record in the middle fails verify at its successor, which skips a seq."""
    path, _, _ = setup_log(tmp_path, 4)
    raw = path.read_bytes().splitlines(keepends=True)
    del raw[2]
    path.write_bytes(b"".join(raw))
    verdict = review.verify(path)
    assert not verdict.ok
    assert verdict.bad == f"{path}:3: record 3 has seq 3 after seq 1 (removed or reordered?)"


def test_swapped_lines_do_not_follow(tmp_path: Path) -> None:
    """Two records swapped fail verify as reordered."""
    path, _, _ = setup_log(tmp_path, 3)
    raw = path.read_bytes().splitlines(keepends=True)
    raw[2], raw[3] = raw[3], raw[2]
    path.write_bytes(b"".join(raw))
    verdict = review.verify(path)
    assert verdict.bad is not None
    assert "record 3 has seq 3 after seq 1" in verdict.bad


def test_garbage_line_is_named(tmp_path: Path) -> None:
    """A complete line that is not JSON fails verify naming its file:line."""
    path, _, _ = setup_log(tmp_path, 2)
    with path.open("ab") as handle:
        handle.write(b"not json\n")
    verdict = review.verify(path)
    assert verdict.bad == f"{path}:4: not a JSON record"
    assert verdict.records == 3


def test_torn_tail_is_reported_then_set_aside(tmp_path: Path) -> None:
    """A torn last line is reported by verify, then moved to <log>.torn and recorded."""
    path, log, clock = setup_log(tmp_path, 2)
    before = lines(path)
    with path.open("ab") as handle:
        handle.write(TORN)

    verdict = review.verify(path)
    assert verdict.ok
    assert verdict.records == 3
    assert verdict.torn == len(TORN)
    assert [line.number for line in files.history(path)] == [1, 2, 3]

    clock.advance(1)
    log.record(Event.PAUSED, None, unit="celery-w1.service", reason="maintenance")

    torn_file = path.with_name("audit.jsonl.torn")
    assert torn_file.read_bytes() == TORN + b"\n"
    assert path.read_bytes().endswith(b"\n")
    records = lines(path)
    assert [r["event"] for r in records] == ["audit_started", "action_finished",
                                              "action_finished", "torn_tail_set_aside", "paused"]
    aside = records[3]
    assert aside["bytes"] == len(TORN)
    assert aside["kept_in"] == str(torn_file)
    assert aside["incident"] is None
    assert_chained(records)
    assert records[:3] == before
    verdict = review.verify(path)
    assert verdict.ok
    assert (verdict.records, verdict.torn) == (5, 0)


def test_file_of_only_a_torn_line_is_set_aside(tmp_path: Path) -> None:
    """A current file holding nothing but a torn write chains on from the rotation before it."""
    path, log, clock = setup_log(tmp_path, 2)
    rotated = path.with_name("audit.jsonl.1")
    path.rename(rotated)
    path.write_bytes(TORN)
    assert review.verify(path).torn == len(TORN)
    write(log, clock, 1, start=3)
    records = lines(path)
    assert [r["event"] for r in records] == ["audit_file_started", "torn_tail_set_aside",
                                              "action_finished"]
    assert_chained(records, first_prev=lines(rotated)[-1]["hash"])
    assert review.verify(path).ok


def rotate(path: Path) -> None:
    """What logrotate with delaycompress does: .1 -> .2.gz, current -> .1, new empty file."""
    one = path.with_name(path.name + ".1")
    if one.exists():
        two = path.with_name(path.name + ".2")
        one.rename(two)
        with two.open("rb") as src, gzip.open(path.with_name(path.name + ".2.gz"), "wb") as dst:
            shutil.copyfileobj(src, dst)
        two.unlink()
    path.rename(one)
    path.touch()


def test_chain_continues_across_rotations(tmp_path: Path) -> None:
    """After rotation the new file chains on from .1; history reads .2.gz, .1, current."""
    path, log, clock = setup_log(tmp_path, 3)
    rotate(path)
    write(log, clock, 3, start=4)
    rotate(path)
    write(log, clock, 3, start=7)

    one, two = path.with_name("audit.jsonl.1"), path.with_name("audit.jsonl.2.gz")
    assert not path.with_name("audit.jsonl.2").exists()
    assert files.rotations(path) == [two, one]
    oldest, middle, current = lines(two), lines(one), lines(path)
    assert [len(oldest), len(middle), len(current)] == [4, 4, 4]
    assert [middle[0]["event"], current[0]["event"]] == ["audit_file_started"] * 2
    assert current[0]["prev"] == middle[-1]["hash"]
    assert middle[0]["prev"] == oldest[-1]["hash"]
    assert_chained(oldest + middle + current)

    history = list(files.history(path))
    assert [(line.file, line.number) for line in history] == [
        (file, n) for file in (two, one, path) for n in (1, 2, 3, 4)]
    assert [json.loads(line.raw)["incident"] for line in history if line.number > 1] == [
        f"inc-{n}" for n in range(1, 10)]
    verdict = review.verify(path)
    assert verdict.ok
    assert verdict.records == 12
    assert verdict.first_ts == oldest[0]["ts"]
    assert verdict.last_ts == current[-1]["ts"]


def test_right_after_rotation_last_line_is_in_rotation(tmp_path: Path) -> None:
    """With an empty current file the last line is the newest rotation's last line."""
    path, _, _ = setup_log(tmp_path, 2)
    last = path.read_bytes().splitlines()[-1]
    rotate(path)
    assert path.read_bytes() == b""
    assert files.last_line(path) == last
    assert files.torn_tail(path) == b""


def test_edit_inside_gzipped_rotation_is_named(tmp_path: Path) -> None:
    """An edited record inside a .gz rotation fails verify naming the .gz file and line."""
    path, log, clock = setup_log(tmp_path, 2)
    rotate(path)
    write(log, clock, 1, start=3)
    rotate(path)
    write(log, clock, 1, start=4)
    two = path.with_name("audit.jsonl.2.gz")
    data = gzip.decompress(two.read_bytes()).replace(b'"inc-2"', b'"inc-9"')
    two.write_bytes(gzip.compress(data))
    verdict = review.verify(path)
    assert verdict.bad == f"{two}:3: record 3 does not match its hash (edited?)"


def test_record_longer_than_tail_window_chains(tmp_path: Path) -> None:
    """A record longer than the 64 KiB read window is still found as the last line."""
    path, log, clock = setup_log(tmp_path, 1)
    clock.advance(1)
    log.record(Event.INCIDENT_OPENED, "inc-big", summary="x" * (files.TAIL + 100))
    write(log, clock, 1, start=2)
    records = lines(path)
    assert len(records) == 4
    assert_chained(records)
    assert review.verify(path).ok


def test_two_writers_alternating_keep_one_chain(tmp_path: Path) -> None:
    """Two AuditLog objects on one file (as the agent and a CLI would) extend one chain."""
    clock = ManualClock()
    path = tmp_path / "audit.jsonl"
    agent, operator = AuditLog(path, clock), AuditLog(path, clock)
    for n in range(6):
        clock.advance(1)
        writer = agent if n % 2 == 0 else operator
        writer.record(Event.DECISION, f"inc-{n}", outcome=Outcome.HELD)
    records = lines(path)
    assert [r["incident"] for r in written(path)] == [f"inc-{n}" for n in range(6)]
    assert_chained(records)
    assert review.verify(path).ok


def test_two_writers_at_once_never_fork_the_chain(tmp_path: Path) -> None:
    """Two threads appending through separate AuditLogs at once leave one unbroken chain."""
    clock = ManualClock()
    path = tmp_path / "audit.jsonl"
    go = threading.Barrier(2)

    def writer(name: str) -> None:
        log = AuditLog(path, clock)
        go.wait()
        for n in range(25):
            log.record(Event.DECISION, f"{name}-{n}", outcome=Outcome.HELD)

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    records = lines(path)
    assert len(records) == 51
    assert_chained(records)
    verdict = review.verify(path)
    assert verdict.ok
    assert verdict.records == 51


def test_files_root_writes_belong_to_the_folders_owner(tmp_path: Path) -> None:
    """As root in the service user's folder, what healer makes is theirs; old files keep theirs."""
    folder = tmp_path / "log"
    folder.mkdir()
    os.chown(folder, NOBODY, NOBODY)
    path = folder / "audit.jsonl"
    clock = ManualClock()
    write(AuditLog(path, clock), clock, 1)
    with path.open("ab") as handle:
        handle.write(TORN)
    assert (path.stat().st_uid, path.stat().st_gid) == (NOBODY, NOBODY)
    os.chown(path, 0, 0)  # an older root run left it root's
    write(AuditLog(path, clock), clock, 1)
    torn = folder / "audit.jsonl.torn"
    assert (torn.stat().st_uid, torn.stat().st_gid) == (NOBODY, NOBODY)
    assert (path.stat().st_uid, path.stat().st_gid) == (0, 0)
