"""The real sandbox for integration tests, and a Celery client of its broker."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest
from celery import Celery

from healer.doctor import AGENT
from sandbox.base import wait_until
from sandbox.stack import CeleryStack, free_port

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path
    from typing import Self


@pytest.fixture
def stack() -> Iterator[CeleryStack]:
    """A running redis + Celery worker + beat in a private systemd user manager.

    A missing prerequisite fails the test (SandboxError); it never skips.
    """
    with CeleryStack() as running:
        yield running


def start_agent(stack: CeleryStack, config: Path) -> None:
    """Healer run as a Type=notify unit with a watchdog, in the sandbox."""
    stack.manager.write_unit(AGENT, (
        f"[Service]\nType=notify\nNotifyAccess=main\nWatchdogSec=10\n"
        f"ExecStart={sys.executable} -m healer --config {config} run\n"
        f"StandardError=append:{stack.root / 'healer.log'}\n"))
    stack.manager.reload()
    stack.manager.systemctl("start", AGENT)  # returns once READY=1 arrived


def metrics(port: int) -> dict[str, float]:
    """The healer_* samples of the metrics endpoint."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {name: float(value) for line in text.splitlines() if line.startswith("healer_")
            for name, value in [line.rsplit(" ", 1)]}


def client(stack: CeleryStack) -> Any:  # noqa: ANN401 - Celery is untyped
    """A Celery client for the sandbox's broker, to send tasks and control commands."""
    return Celery(broker=stack.broker_url, set_as_current=False)


class _Recording(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.server.bodies.append(json.loads(self.rfile.read(length)))  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet."""


class Receiver:
    """A local webhook receiver on one loopback port that keeps every JSON body it was sent.

    It may be down (nothing listens on its port) and come back on the same port.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.bodies: list[dict[str, Any]] = []
        self._server: ThreadingHTTPServer | None = None

    def up(self) -> Self:
        """Listen on the port, in a thread."""
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _Recording)
        server.bodies = self.bodies  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._server = server
        return self

    def down(self) -> None:
        """Stop listening: a POST finds the port refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.down()


ALERTMANAGER_CONFIG = """route:
  receiver: "null"
  group_wait: 1s
receivers:
  - name: "null"
"""


class Alertmanager:
    """Debian's prometheus-alertmanager on a loopback port, alone (no cluster), in a folder."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("prometheus-alertmanager")
        assert binary, "prometheus-alertmanager is not installed (make system installs it)"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "alertmanager.yml").write_text(ALERTMANAGER_CONFIG)
        self.address = f"127.0.0.1:{free_port()}"
        self.url = f"http://{self.address}"
        self._process = subprocess.Popen(
            [binary, f"--config.file={folder / 'alertmanager.yml'}",
             f"--storage.path={folder / 'data'}", f"--web.listen-address={self.address}",
             "--cluster.listen-address="],
            stdout=subprocess.DEVNULL, stderr=(folder / "alertmanager.log").open("wb"))
        wait_until(self._ready, 20, "Alertmanager to be ready")

    def _ready(self) -> bool:
        assert self._process.poll() is None, "Alertmanager exited"
        try:
            with urllib.request.urlopen(f"http://{self.address}/-/ready", timeout=2) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts Alertmanager holds as firing now (its API leaves resolved ones out)."""
        with urllib.request.urlopen(f"http://{self.address}/api/v2/alerts", timeout=5) as answer:
            found: list[dict[str, Any]] = json.loads(answer.read())
            return found

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)

