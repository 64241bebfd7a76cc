"""Find in a unit what systemd can tell of its Celery nodes: names, pid files and logs.

A unit's ExecStart, read over D-Bus, is as written: its ``${VAR}`` and ``$VAR`` are expanded
here from ``Environment=`` and ``EnvironmentFile=`` (those files win, as in systemd); a
``/bin/sh -c`` line is expanded, then split as the shell would. Then:

- ``celery worker``: one node, named by ``-n``/``--hostname``; the unit's main process is it.
- ``celery multi start NODES``: a node per name, parsed by Celery's own multi parser, each with
  its pid file and log file (``--pidfile``, ``--logfile``; multi's defaults otherwise) and
  multi's ``%n`` expanded. ``%I`` and ``%i`` (a pool process's index) stay in the log pattern.
- Logs: ``--logfile``/``-f``; else where the unit sends its output (Celery logs to stderr):
  the path of ``StandardError=``/``StandardOutput=`` ``file:``/``append:``/``truncate:``,
  read from the unit's files, else the journal. ``null`` and the like: no log at all.

Discovery only reads. What it cannot find is said (``gaps``, ``no_log``), never guessed.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from healer import safefile
from healer.config import JOURNAL
from healer.probes.celery import node_name

if TYPE_CHECKING:
    from healer.model import UnitState

MAX_FILE = 256 * 1024  # an environment or unit file is a few KiB
MAX_POOL_LOGS = 256
MAX_NODES = 1000  # of one multi line: a count or a range beyond is refused, not expanded
MULTI_PIDFILE = "/var/run/celery/%n.pid"  # celery multi's defaults
MULTI_LOGFILE = "/var/log/celery/%n%I.log"
SHELLS = frozenset({"sh", "bash", "dash"})
_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)")
_BRACED = re.compile(r"\$\{(\w+)\}")
_KEY = re.compile(r"[A-Za-z_]\w*")
_SHELL_END = frozenset({";", "&&", "||", "|", "&"})
_INDEX = re.compile(r"%([iI])")
_SPAN = re.compile(r"(\d+)-(\d+)")


class Node(NamedTuple):
    """A node a unit runs: its name, its pid file (None: the main process) and its log."""

    name: str
    pid_file: str | None = None
    log: str | None = None  # a path, perhaps with %I or %i in it


class Layout(NamedTuple):
    """What a unit tells of its Celery nodes and its log.

    ``gaps``: what of the unit could not be read (an EnvironmentFile, its ExecStart);
    ``no_log``: why no log was found.
    """

    unit: str
    nodes: tuple[Node, ...] = ()
    log: tuple[str, ...] | str | None = None  # file patterns, JOURNAL, or no log
    gaps: tuple[str, ...] = ()
    no_log: str = ""


def _read(path: str) -> str:
    return safefile.read_capped(Path(path), MAX_FILE).decode("utf-8", errors="replace")


def env_file(text: str) -> dict[str, str]:
    """The assignments of an environment file, as systemd reads them.

    ``KEY=VALUE`` lines; ``#`` and ``;`` start comments; a value in single or double quotes
    loses them; a backslash at the end of a line continues it.
    """
    env: dict[str, str] = {}
    for raw in text.replace("\\\n", "").splitlines():
        line = raw.strip()
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or line[0] in "#;" or not _KEY.fullmatch(key):
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            quote, value = value[0], value[1:-1]
            if quote == '"':
                value = re.sub(r'\\(["\\$`])', r"\1", value)
        env[key] = value
    return env


def environment(unit: str, assignments: tuple[str, ...], files: tuple[tuple[str, bool], ...]
                ) -> tuple[dict[str, str], list[str]]:
    """The unit's environment (its files override ``Environment=``), and what could not be read."""
    env = dict(a.split("=", 1) for a in assignments if "=" in a)
    gaps = []
    for path, may_miss in files:
        try:
            env.update(env_file(_read(path)))
        except FileNotFoundError:  # noqa: PERF203 - each file its own answer
            if not may_miss:
                gaps.append(f"EnvironmentFile {path} of {unit} does not exist")
        except OSError as exc:
            gaps.append(f"cannot read EnvironmentFile {path} of {unit}: {exc.strerror or exc}")
    return env, gaps


def command(argv: tuple[str, ...], env: dict[str, str]) -> list[str]:
    """ExecStart as it runs: systemd's expansion, and a shell's for ``sh -c``.

    systemd puts the value of ``${VAR}`` in place and splits a word that is just ``$VAR``;
    for ``sh -c SCRIPT`` every variable is expanded and the script split as the shell would
    (up to the first ``;``, ``&&`` or pipe). Raises ValueError when the quotes do not close.
    """
    words: list[str] = []
    for word in argv:
        if (var := _VAR.fullmatch(word)) and var.group(2):
            words += env.get(var.group(2), "").split()
        else:
            words.append(_BRACED.sub(lambda m: env.get(m.group(1), ""), word))
    if len(words) >= 3 and Path(words[0]).name in SHELLS and words[1] == "-c":
        script = _VAR.sub(lambda m: env.get(m.group(1) or m.group(2), ""), words[2])
        words = []
        for word in shlex.split(script):
            if word in _SHELL_END:
                break
            words.append(word)
        words = words[1:] if words[:1] == ["exec"] else words
    return words


def _option(words: list[str], *names: str) -> str | None:
    """The value of the last ``--name=V``, ``--name V`` or ``-xV`` among ``words``."""
    found = None
    for i, word in enumerate(words):
        for name in names:
            if word == name and i + 1 < len(words):
                found = words[i + 1]
            elif name.startswith("--") and word.startswith(name + "="):
                found = word.split("=", 1)[1]
            elif not name.startswith("--") and word.startswith(name) and len(word) > len(name):
                found = word[len(name):]
    return found


def _bounded(args: list[str]) -> None:
    """Refuse a node count, or a range of per-node options, that would make too many nodes."""
    for arg in args:
        spans = arg.partition("=")[0].partition(":")[2].split(",")  # -c:1-3,5 -> 1-3, 5
        if (arg.isdigit() and int(arg) > MAX_NODES) or any(
                (m := _SPAN.fullmatch(span)) and int(m[2]) - int(m[1]) > MAX_NODES
                for span in spans):
            raise ValueError(f"{arg!r} makes more than {MAX_NODES} nodes")


def _multi(args: list[str]) -> list[Node]:
    """The nodes of ``celery multi start ARGS``, as Celery's own parser reads them."""
    _bounded(args)
    from celery.apps.multi import (  # noqa: PLC0415 - only for a multi unit
        MultiParser,
        NamespacedOptionParser,
        build_expander,
    )
    from celery.utils.nodenames import node_format  # noqa: PLC0415

    options = NamespacedOptionParser(args)
    options.parse()
    parser = MultiParser()
    # Celery's Node makes the folders of its files; only its name and options are wanted here
    parser.Node = lambda name, _cmd, _append, opts, _extra: (name, opts)
    nodes = []
    for name, opts in parser.parse(options):
        short, _, host = name.partition("@")
        expand = build_expander(name, short, host)
        pid_file = opts.get("--pidfile") or opts.get("-p") or MULTI_PIDFILE
        log = opts.get("--logfile") or opts.get("-f") or MULTI_LOGFILE
        nodes.append(Node(name, str(node_format(expand(pid_file), name)), str(expand(log))))
    return nodes


def _specifiers(value: str, unit: str) -> str | None:
    """A unit file's value with the unit-name specifiers expanded; None if it has others."""
    name = unit.rpartition(".")[0]
    prefix, at, instance = name.partition("@")
    known = {"n": unit, "N": name, "p": prefix, "P": prefix, "i": instance if at else "",
             "I": instance if at else "", "%": "%"}
    out, rest = [], value
    while "%" in rest:
        head, _, rest = rest.partition("%")
        if not rest or rest[0] not in known:
            return None
        out += [head, known[rest[0]]]
        rest = rest[1:]
    return "".join([*out, rest])


def output_path(unit: str, files: tuple[str, ...], key: str) -> str | None:
    """The path of ``key=file:PATH`` (or append:, truncate:) in the unit's files; last wins."""
    value = None
    for path in files:
        section = ""
        for raw in _read(path).replace("\\\n", " ").splitlines():
            line = raw.strip()
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
            elif section == "Service" and line.partition("=")[0].strip() == key:
                value = line.partition("=")[2].strip()
    kind, sep, where = (value or "").partition(":")
    if not sep or kind not in {"file", "append", "truncate"}:
        return None
    return _specifiers(where, unit)


def _stream_log(unit: str, stdout: str, stderr: str, files: tuple[str, ...]
                ) -> tuple[tuple[str, ...] | str | None, str]:
    """Where Celery's log goes without ``--logfile``: the unit's stderr (inherit: stdout)."""
    key, kind = ("StandardOutput", stdout) if stderr in {"inherit", ""} else ("StandardError",
                                                                               stderr)
    if kind.startswith((JOURNAL, "kmsg")):
        return JOURNAL, ""
    if kind in {"file", "append", "truncate"}:
        try:
            path = output_path(unit, files, key)
        except OSError as exc:
            return None, f"cannot read the unit files of {unit}: {exc.strerror or exc}"
        if path is None:
            return None, f"cannot tell the path of {key}={kind}: in the unit files of {unit}"
        return (path,), ""
    return None, f"{unit} sends its output to {kind or 'nowhere healer knows'}"


def _workdir(words: list[str], working_directory: str) -> Path:
    """Where relative paths start: ``--workdir``, else the unit's WorkingDirectory.

    systemd shows ``!`` or ``-`` before it when flags were set, and ``~`` for the home.
    """
    return Path(_option(words, "--workdir") or working_directory.lstrip("!-") or "/"
                ).expanduser()


def discover(state: UnitState, host: str | None = None) -> Layout:
    """What a unit's properties tell of its nodes and its log."""
    unit = state.name
    env, gaps = environment(unit, state.environment, state.environment_files)
    try:
        words = command(state.argv, env)
    except ValueError as exc:
        return Layout(unit, gaps=(*gaps, f"cannot split the ExecStart of {unit}: {exc}"))
    workdir = _workdir(words, state.working_directory)
    logfile = _option(words, "--logfile", "-f")
    nodes: list[Node] = []
    at = words.index("multi") + 1 if "multi" in words else len(words)
    if words[at:at + 1] in (["start"], ["restart"]):
        try:
            nodes = _multi(words[at + 1:])
        except Exception as exc:  # Celery's parser, on whatever line a unit holds
            gaps.append(f"cannot parse the celery multi line of {unit}: {exc}")
    elif (name := node_name(tuple(words), host or socket.gethostname())) is not None:
        nodes = [Node(name, log=logfile)]
    nodes = [n._replace(pid_file=n.pid_file and str(workdir / n.pid_file),
                        log=n.log and str(workdir / n.log)) for n in nodes]
    logs = tuple(n.log for n in nodes if n.log) or (
        (str(workdir / logfile),) if logfile and not nodes else ())  # beat's
    if logs:
        return Layout(unit, tuple(nodes), logs, tuple(gaps))
    log, why = _stream_log(unit, state.stdout, state.stderr, state.unit_files)
    return Layout(unit, tuple(nodes), log, tuple(gaps), why)


def log_files(pattern: str) -> list[Path]:
    """The files of a log pattern: ``%I``/``%i`` stand for the pool processes' index.

    Pool processes' files come first, the main process's last: a task's end is logged by the
    pool, its receipt by the main process before, so reading in this order never sees an
    end whose receipt it has not read.
    """
    path = Path(pattern)
    if not _INDEX.search(path.name):
        return [path]
    main = path.with_name(path.name.replace("%I", "").replace("%i", "0"))
    parts = _INDEX.split(path.name)
    regex = re.compile("".join(
        re.escape(p) if i % 2 == 0 else (r"-\d+" if p == "I" else r"\d+")
        for i, p in enumerate(parts)))
    try:
        names = sorted(e.name for e in os.scandir(path.parent) if regex.fullmatch(e.name))
    except OSError:
        names = []
    pool = [path.with_name(n) for n in names if path.with_name(n) != main][:MAX_POOL_LOGS]
    return [*pool, main]
