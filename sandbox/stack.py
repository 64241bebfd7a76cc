"""A Celery deployment inside a sandboxed user manager: redis-server, a worker and beat as units."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from healer.vocabulary import ActiveState
from sandbox.base import Sandbox, SandboxError, wait_until
from sandbox.usermanager import UserManager

if TYPE_CHECKING:
    from typing import Self

WORKER = "hiringdog-celery.service"
BEAT = "hiringdog-celerybeat.service"
BROKER = "redis.service"
RABBITMQ = "rabbitmq-server.service"
RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
NODE = "worker1@sandbox"


_LOG_UNITS = {"celery.log": WORKER, "celerybeat.log": BEAT}


APP_DIR = Path(__file__).resolve().parent  # demoapp.py: Celery loads it as ``demoapp`` here


def worker_command(python: str, node: str, app_dir: object = APP_DIR,
                   options: str = "-E") -> str:
    """A worker's ExecStart: one pool process, no mingle or gossip, task events on."""
    return (f"{python} -m celery --workdir={app_dir} -A demoapp worker --hostname={node} "
            f"--concurrency=1 --loglevel=INFO --without-mingle --without-gossip {options}")


def beat_command(python: str, schedule: object, app_dir: object = APP_DIR) -> str:
    """Beat's ExecStart, with its schedule file."""
    return (f"{python} -m celery --workdir={app_dir} -A demoapp beat --schedule={schedule} "
            "--loglevel=INFO")


def free_port() -> int:
    """A TCP port on the loopback nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Deployment(Sandbox):
    """A Celery worker and beat as units of some systemd manager: waiting on them, reading them.

    Subclasses say how to read a unit's property and what a unit logged.
    """

    def show(self, unit: str, prop: str) -> str:
        """One property of a unit, as systemctl prints it."""
        raise NotImplementedError

    def unit_log(self, unit: str) -> str:
        """What the worker or beat unit logged so far."""
        raise NotImplementedError

    def main_pid(self, unit: str) -> int:
        """The unit's main PID (0 when it has none)."""
        return int(self.show(unit, "MainPID") or 0)

    def active(self, unit: str) -> bool:
        """Whether systemd says the unit is active."""
        return self.show(unit, "ActiveState") == "active"

    def wait_down(self, unit: str, timeout: float = 10) -> None:
        """Wait until the unit is inactive or failed, not just no longer active.

        While the pool's children are still going it is "deactivating", and systemd has not
        yet recorded how it went down.
        """
        down = {ActiveState.INACTIVE, ActiveState.FAILED}
        wait_until(lambda: self.show(unit, "ActiveState") in down, timeout, f"{unit} to go down")

    def wait_worker_ready(self, timeout: float = 30, seen: int = 0) -> None:
        """Wait until the worker has logged "ready." more than ``seen`` times and is active."""
        wait_until(lambda: self.unit_log(WORKER).count(" ready.") > seen and self.active(WORKER),
                   timeout, "the Celery worker to be ready")

    def wait_beat_sending(self, timeout: float = 60) -> None:
        """Wait until beat has sent a task."""
        wait_until(lambda: "Sending due task" in self.unit_log(BEAT), timeout,
                   "beat to send its first task")


class CeleryStack(Deployment):
    """A broker + worker + beat in a private user manager; ``config()`` writes healer's TOML.

    The broker is redis-server (unit ``redis.service``) or, with ``broker="rabbitmq"``,
    rabbitmq-server (unit ``rabbitmq-server.service``) with its own node name, ports and epmd.
    Worker and beat log to files, or with ``logs="journal"`` to the sandbox's journald.
    Without ``worker``, only the broker and beat start: the test adds the workers it wants.
    """

    def __init__(
        self, manager: UserManager | None = None, broker: str = "redis", logs: str = "file",
        worker: bool = True,
    ) -> None:
        self.manager = manager or UserManager()
        self.root = self.manager.root
        self.journald = logs == "journal"
        self.port = free_port()
        self.logs = self.root / "log"
        self.schedule = self.root / "beat" / "schedule"
        for folder in (self.logs, self.schedule.parent):
            folder.mkdir(parents=True, exist_ok=True)
        if broker == "rabbitmq":
            self.broker_unit = RABBITMQ
            self.broker_url = f"amqp://guest:guest@127.0.0.1:{self.port}//"
            self._rabbitmq()
        else:
            self.broker_unit = BROKER
            self.broker_url = f"redis://127.0.0.1:{self.port}/0"
            self._redis()
        self.workers = [WORKER] if worker else []
        self.write_worker(WORKER, NODE, "celery.log")
        self.manager.write_unit(BEAT, self._unit(
            "Celery beat", beat_command(sys.executable, self.schedule), log="celerybeat.log",
            after=self.broker_unit, journal=self.journald,
        ))

    def write_worker(self, unit: str = WORKER, node: str = NODE, log: str = "celery.log",
                     options: str = "-E", service: str = "", **demo: str) -> None:
        """Write a worker unit (by default the stack's own, as it was at the start).

        ``service`` adds lines to [Service] (they win over the defaults); ``demo`` sets
        demoapp's variables: ``conf`` its settings (HEALER_DEMO_CONF), ``kombu`` the kombu
        version it reports (HEALER_DEMO_KOMBU).
        """
        self.manager.write_unit(unit, self._unit(
            "Celery worker", worker_command(sys.executable, node, options=options), log=log,
            after=self.broker_unit, journal=self.journald, service=service,
            environment={f"HEALER_DEMO_{k.upper()}": v for k, v in demo.items() if v},
        ))

    def add_worker(self, unit: str, node: str, options: str = "-E") -> None:
        """Another worker unit (its own node name, log and options), started; in the config."""
        self.write_worker(unit, node, f"{unit}.log", options)
        self._add(unit)

    def _add(self, unit: str, text: str | None = None) -> None:
        if text is not None:
            self.manager.write_unit(unit, text)
        self.workers.append(unit)
        self.manager.reload()
        self.manager.systemctl("start", unit)

    def add_multi(self, unit: str = "celery.service", nodes: tuple[str, ...] = ("w1", "w2")
                  ) -> list[str]:
        """A worker unit as Celery's daemonization docs write it, started; its node names.

        ``Type=forking`` running ``celery multi start`` from ``/bin/sh -c``, its settings in
        an ``EnvironmentFile``, pid and log files named with ``%n`` and ``%I``.
        """
        conf, files = self.root / "conf.d" / "celery", self.root / "celery"
        conf.parent.mkdir(exist_ok=True)
        files.mkdir(exist_ok=True)
        conf.write_text(
            f'CELERYD_NODES="{" ".join(nodes)}"\n'
            f'CELERY_BIN="{sys.executable} -m celery"\nCELERY_APP="demoapp"\n'
            f'CELERYD_OPTS="--workdir={APP_DIR} --concurrency=1 --without-mingle '
            '--without-gossip"\n'
            f'CELERYD_PID_FILE="{files}/%n.pid"\nCELERYD_LOG_FILE="{files}/%n%I.log"\n'
            'CELERYD_LOG_LEVEL="INFO"\n')
        line = ("--pidfile=${CELERYD_PID_FILE} --logfile=${CELERYD_LOG_FILE} "
                '--loglevel="${CELERYD_LOG_LEVEL}"')
        self._add(unit, (
            f"[Unit]\nDescription=Celery Service\nAfter={self.broker_unit}\n\n[Service]\n"
            f"Type=forking\nEnvironmentFile={conf}\nWorkingDirectory={self.root}\n"
            f"Environment=HEALER_DEMO_BROKER={self.broker_url} PYTHONPATH={APP_DIR}\n"
            "ExecStart=/bin/sh -c '${CELERY_BIN} -A $CELERY_APP multi start $CELERYD_NODES \\\n"
            f"    {line} $CELERYD_OPTS'\n"
            "ExecStop=/bin/sh -c '${CELERY_BIN} multi stopwait $CELERYD_NODES \\\n"
            f"    {line}'\n"
            "ExecReload=/bin/sh -c '${CELERY_BIN} -A $CELERY_APP multi restart "
            f"$CELERYD_NODES \\\n    {line} $CELERYD_OPTS'\nRestart=always\n"))
        return [f"{node}@{socket.gethostname()}" for node in nodes]

    def node_pid(self, node: str) -> int:
        """The pid in a ``celery multi`` node's pid file."""
        return int((self.root / "celery" / f"{node.partition('@')[0]}.pid").read_text())

    def add_instance(self, instance: str, output: str | None = None, template: str = "celery"
                     ) -> str:
        """``TEMPLATE@INSTANCE.service`` of a template whose node is ``%i@%h``, started.

        It logs to ``log/%i.log`` by StandardOutput=append:, or to ``output`` (``null``, say).
        """
        where = output or f"append:{self.logs}/%i.log"
        self.manager.write_unit(f"{template}@.service", (
            f"[Unit]\nAfter={self.broker_unit}\n\n[Service]\nType=simple\n"
            f"Environment=HEALER_DEMO_BROKER={self.broker_url} PYTHONUNBUFFERED=1\n"
            f"ExecStart={worker_command(sys.executable, '%i@%%h', options='')}\n"
            f"StandardOutput={where}\nStandardError={where}\n"))
        unit = f"{template}@{instance}.service"
        self._add(unit)
        return unit

    def _redis(self) -> None:
        redis = shutil.which("redis-server")
        if redis is None:
            raise SandboxError("redis-server not found (Debian package redis-server)")
        (self.root / "redis").mkdir()
        self.manager.write_unit(BROKER, self._unit(
            "redis-server for the sandbox",
            f"{redis} --port {self.port} --bind 127.0.0.1 --save '' --appendonly no "
            f"--dir {self.root / 'redis'} --daemonize no",
            log="redis.log",
        ))

    def _rabbitmq(self) -> None:
        if not Path(RABBITMQ_SERVER).exists():
            raise SandboxError(f"{RABBITMQ_SERVER} not found (Debian package rabbitmq-server)")
        base = self.root / "rabbitmq"
        base.mkdir()
        (base / "enabled_plugins").write_text("[].\n")
        env = {
            "RABBITMQ_NODENAME": f"{self.manager.name}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "RABBITMQ_NODE_PORT": self.port,
            "RABBITMQ_DIST_PORT": free_port(), "ERL_EPMD_PORT": free_port(),
            "ERL_EPMD_ADDRESS": "127.0.0.1", "HOME": base,
            "RABBITMQ_MNESIA_BASE": base / "mnesia", "RABBITMQ_LOG_BASE": base / "log",
            "RABBITMQ_ENABLED_PLUGINS_FILE": base / "enabled_plugins",
            "RABBITMQ_PID_FILE": base / "pid",
        }
        self.manager.write_unit(RABBITMQ, self._unit(
            "rabbitmq-server for the sandbox", RABBITMQ_SERVER, log="rabbitmq.log",
            environment=env,
        ))

    def _unit(self, description: str, command: str, log: str, after: str | None = None,
              journal: bool = False, environment: dict[str, object] | None = None,
              service: str = "") -> str:
        order = f"After={after}\n" if after else ""
        output = "journal" if journal else f"append:{self.logs / log}"
        own = "".join(f"Environment={k}={v}\n" for k, v in (environment or {}).items())
        return (
            f"[Unit]\nDescription={description}\n{order}\n"
            f"[Service]\n{own}Type=simple\nRestart=no\n"
            f"WorkingDirectory={self.root}\n"
            f"Environment=HEALER_DEMO_BROKER={self.broker_url} PYTHONUNBUFFERED=1\n"
            f"ExecStart={command}\n"
            f"StandardOutput={output}\nStandardError={output}\n{service}"
        )

    def start(self, timeout: float = 30) -> Self:
        """Start everything and wait until the worker is ready and beat has sent a task."""
        self.manager.start()
        self.manager.systemctl("start", self.broker_unit, *self.workers, BEAT)
        if self.workers:
            self.wait_worker_ready(timeout)
        self.wait_beat_sending(timeout)
        return self

    def log(self, name: str) -> str:
        """What worker (celery.log) or beat (celerybeat.log) logged, from file or journal."""
        if self.journald and name in _LOG_UNITS:
            return self.manager.journal_text(_LOG_UNITS[name])
        path = self.logs / name
        return path.read_text(errors="replace") if path.exists() else ""

    def unit_log(self, unit: str) -> str:
        """What the worker or beat unit logged, from its file or the journal."""
        return self.log(next(name for name, logged in _LOG_UNITS.items() if logged == unit))

    def show(self, unit: str, prop: str) -> str:
        """One property of a unit of the sandbox's manager."""
        return self.manager.show(unit, prop)

    def kill(self, unit: str, sig: signal.Signals = signal.SIGKILL) -> int:
        """Send a signal to the unit's main process, as the OOM killer or a stray kill would."""
        pid = self.main_pid(unit)
        if not pid:
            raise SandboxError(f"{unit} has no main process to kill")
        os.kill(pid, sig)
        if sig in {signal.SIGKILL, signal.SIGTERM}:
            self.wait_down(unit)
        return pid

    def config(self, path: Path | None = None, extra: str = "", **sections: str) -> Path:
        """Write a healer config for this stack; ``sections`` replace whole default sections."""
        path = path or self.root / "healer.toml"
        worker_log, beat_log = (("journal", "journal") if self.journald else
                                (self.logs / "celery.log", self.logs / "celerybeat.log"))
        defaults = {
            "systemd": f'bus = "{self.manager.bus_address}"',
            "celery": f'broker_url = "{self.broker_url}"\nqueues = ["celery"]\n'
                      f'worker_log = "{worker_log}"',
            "units": f"workers = {json.dumps(self.workers)}\n"
                     f'beat = "{BEAT}"\nbroker = "{self.broker_unit}"',
            "beat": f'schedule_file = "{self.schedule}"\nlog = "{beat_log}"',
            "paths": f'state_dir = "{self.root / "state"}"\naudit_log = "{self.audit_log}"',
            "journal": f'directory = "{self.manager.journal}"\nscope = "user"',
        }
        defaults.update(sections)
        path.write_text("".join(f"[{k}]\n{v}\n\n" for k, v in defaults.items()) + extra)
        return path

    @property
    def audit_log(self) -> Path:
        """Where the generated config puts healer's audit log."""
        return self.root / "audit.jsonl"

    def stop(self) -> None:
        """Tear the whole sandbox down."""
        self.manager.stop()
