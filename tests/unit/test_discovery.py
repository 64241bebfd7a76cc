"""Discovery: what a unit's properties tell of its Celery nodes, pid files and logs."""

from __future__ import annotations

import random
import socket
from typing import TYPE_CHECKING

import pytest

from healer.config import JOURNAL
from healer.probes import discovery, logs
from healer.probes.discovery import Node, command, discover, env_file, log_files
from healer.testing import unit

if TYPE_CHECKING:
    from pathlib import Path

HOST = socket.gethostname()
DOCS_LINE = ("${CELERY_BIN} -A $CELERY_APP multi start $CELERYD_NODES "
             "--pidfile=${CELERYD_PID_FILE} --logfile=${CELERYD_LOG_FILE} "
             '--loglevel="${CELERYD_LOG_LEVEL}" $CELERYD_OPTS')
DOCS_ENV = """# /etc/conf.d/celery, as Celery's daemonization docs give it
CELERYD_NODES="w1 w2"
CELERY_BIN="/usr/local/bin/celery"
CELERY_APP="proj"
CELERYD_OPTS="--time-limit=300 --concurrency=8"
CELERYD_PID_FILE="/var/run/celery/%n.pid"
CELERYD_LOG_FILE="/var/log/celery/%n%I.log"
CELERYD_LOG_LEVEL="INFO"
"""


def service(tmp_path: Path, argv: tuple[str, ...], env: str = "", working_directory: str = ""
            ) -> discovery.Layout:
    """Discover a unit with this ExecStart and, when given, this EnvironmentFile."""
    files: tuple[tuple[str, bool], ...] = ()
    if env:
        (tmp_path / "celery").write_text(env)
        files = ((str(tmp_path / "celery"), False),)
    return discover(unit("celery.service", argv=argv, environment_files=files,
                         working_directory=working_directory), host="host")


def test_the_docs_multi_unit_gives_each_node_its_pid_file_and_log(tmp_path: Path) -> None:
    """/bin/sh -c of Celery's docs, EnvironmentFile: two nodes, %n expanded, %I kept."""
    layout = service(tmp_path, ("/bin/sh", "-c", DOCS_LINE), DOCS_ENV)
    assert layout.nodes == (
        Node(f"w1@{HOST}", "/var/run/celery/w1.pid", "/var/log/celery/w1%I.log"),
        Node(f"w2@{HOST}", "/var/run/celery/w2.pid", "/var/log/celery/w2%I.log"))
    assert layout.log == ("/var/log/celery/w1%I.log", "/var/log/celery/w2%I.log")
    assert layout.gaps == ()


def test_multi_reads_counts_names_with_hosts_and_its_defaults(tmp_path: Path) -> None:
    """``multi start 2`` names celery1 and celery2; ``a@h.example`` keeps its host; defaults."""
    counted = service(tmp_path, ("celery", "multi", "start", "2", "--pidfile=/run/%n.pid"))
    assert [(n.name, n.pid_file) for n in counted.nodes] == [
        (f"celery1@{HOST}", "/run/celery1.pid"), (f"celery2@{HOST}", "/run/celery2.pid")]
    named = service(tmp_path, ("celery", "multi", "start", "a@h.example"))
    assert named.nodes == (Node("a@h.example", discovery.MULTI_PIDFILE.replace("%n", "a"),
                                discovery.MULTI_LOGFILE.replace("%n", "a")),)


def test_relative_files_start_at_the_working_directory(tmp_path: Path) -> None:
    """Relative pid and log files are taken from WorkingDirectory (systemd's ``!`` dropped)."""
    layout = service(tmp_path, ("celery", "multi", "start", "w1", "--pidfile=%n.pid",
                                "--logfile=%n.log"), working_directory="!/srv/app")
    assert layout.nodes == (Node(f"w1@{HOST}", "/srv/app/w1.pid", "/srv/app/w1.log"),)


def test_a_worker_unit_names_its_node_and_its_logfile(tmp_path: Path) -> None:
    """``celery worker -n x@%h -f %n.log``: one node (the main process), its log file."""
    layout = service(tmp_path, ("celery", "worker", "-n", "x@%h", "-f", "/log/%n.log"))
    assert layout.nodes == (Node("x@host", None, "/log/%n.log"),)


def test_environment_files_override_environment_and_expand_as_systemd_does() -> None:
    """``${VAR}`` in place, a bare ``$VAR`` word split; unset is empty; sh -c as the shell."""
    env = {"NODES": "w1 w2", "BIN": "/opt/celery"}
    assert command(("${BIN}", "multi", "start", "$NODES", "--x=$NODES"), env) == [
        "/opt/celery", "multi", "start", "w1", "w2", "--x=$NODES"]
    assert command(("/bin/sh", "-c", 'exec $BIN worker -n "${UNSET}a" && true'), env) == [
        "/opt/celery", "worker", "-n", "a"]
    with pytest.raises(ValueError, match="quotation"):
        command(("/bin/sh", "-c", "celery 'worker"), env)


def test_an_environment_file_is_read_as_systemd_reads_it() -> None:
    """Comments, quotes, escapes and continued lines; lines that are not assignments skipped."""
    text = ('# comment\n; also\nA="a b"\nB=\'c $d\'\nC="e \\"f\\""\nD=x \\\ny\n'
            "not an assignment\n1BAD=z\n")
    assert env_file(text) == {"A": "a b", "B": "c $d", "C": 'e "f"', "D": "x y"}


def test_what_cannot_be_read_is_said_never_guessed(tmp_path: Path) -> None:
    """A missing EnvironmentFile, an ExecStart that is no Celery worker, output to null."""
    missing = discover(unit("w.service", argv=("/bin/true",), stdout="journal", stderr="null",
                            environment_files=((str(tmp_path / "none"), False),
                                               (str(tmp_path / "optional"), True))))
    assert missing.nodes == ()
    assert missing.log is None
    assert missing.gaps == (f"EnvironmentFile {tmp_path / 'none'} of w.service does not exist",)
    assert missing.no_log == "w.service sends its output to null"


def test_output_to_a_file_is_read_from_the_unit_files_with_its_specifiers(
        tmp_path: Path) -> None:
    """StandardError=append:%i.log of a template (drop-ins win); inherit follows stdout."""
    template, drop_in = tmp_path / "celery@.service", tmp_path / "x.conf"
    template.write_text("[Unit]\nStandardError=append:/wrong\n[Service]\n"
                        f"StandardError=append:{tmp_path}/%i.log\n")
    drop_in.write_text("[Service]\nStandardOutput=file:/out/%N-%p.log\n")
    files = (str(template), str(drop_in))
    argv = ("celery", "worker", "-n", "w1@%h")
    assert discover(unit("celery@w1.service", argv=argv, stderr="append", stdout="journal",
                         unit_files=files)).log == (f"{tmp_path}/w1.log",)
    assert discover(unit("celery@w1.service", argv=argv, stderr="inherit", stdout="file",
                         unit_files=files)).log == ("/out/celery@w1-celery.log",)
    assert discover(unit("celery@w1.service", argv=argv, stderr="inherit", stdout="journal",
                         unit_files=files)).log == JOURNAL


def test_pool_logs_are_read_before_the_main_one(tmp_path: Path) -> None:
    """``%I``: the pool processes' files (``-1``, ``-2``) first, the main process's last."""
    for name in ("w1.log", "w1-1.log", "w1-2.log", "w2.log", "w1-x.log"):
        (tmp_path / name).write_text("")
    assert log_files(f"{tmp_path}/w1%I.log") == [
        tmp_path / "w1-1.log", tmp_path / "w1-2.log", tmp_path / "w1.log"]
    assert log_files(f"{tmp_path}/w1.log") == [tmp_path / "w1.log"]


def test_an_end_read_before_its_receipt_cancels_it() -> None:
    """A pool's file read first: its end, then the main file's receipt: nothing is running."""
    ended = "[2023-11-14 22:13:50,000: INFO/ForkPoolWorker-1] Task t[a] succeeded in 1s: 1"
    received = "[2023-11-14 22:13:49,000: INFO/MainProcess] Task t[a] received"
    assert logs.running([ended, received], {}, 0.0) == {}
    assert logs.running([received, ended, received], {}, 0.0) == {"a": pytest.approx(
        logs.running([received], {}, 0.0)["a"])}


@pytest.mark.parametrize("args", [("100000000",), ("3", "-c:1-100000000", "2")])
def test_a_multi_line_that_would_make_too_many_nodes_is_refused(
        tmp_path: Path, args: tuple[str, ...]) -> None:
    """A count or a per-node range beyond 1000 nodes is a gap, never expanded."""
    layout = service(tmp_path, ("celery", "multi", "start", *args))
    assert layout.nodes == ()
    assert "makes more than 1000 nodes" in layout.gaps[0]


def test_hostile_unit_properties_give_a_layout_never_an_error(tmp_path: Path) -> None:
    """Random ExecStart lines and environment files: discovery answers (nodes, log, gaps)."""
    rng = random.Random(20261201)  # noqa: S311 - test data, not secrets
    words = ["celery", "multi", "start", "worker", "-n", "--hostname=", "--pidfile=", "-f",
             "%n", "%I", "%h", "%", "$X", "${X}", "${", "'", '"', "\\", ";", "&&", "-c:1-3",
             "-c:", "-", "--", "=", "3", "0", "99999", "a@b", "@", "%%", "\x00", "é", " "]
    for case in range(2000):
        argv = tuple("".join(rng.choices(words, k=rng.randint(1, 4)))
                     for _ in range(rng.randint(0, 12)))
        if case % 3 == 0:
            argv = ("/bin/sh", "-c", " ".join(argv))
        (tmp_path / "env").write_text(f"X={' '.join(rng.choices(words, k=5))}\n")
        layout = discover(unit("w.service", argv=argv, stdout=rng.choice(["append", "null", ""]),
                               environment_files=((str(tmp_path / "env"), False),),
                               unit_files=(str(tmp_path / "env"),)), host="h")
        assert isinstance(layout, discovery.Layout), (case, argv)
