"""A real redis-server on the loopback as a fleet's coordination store.

It can be stopped and started again on the same port (the agents must fall back, then rejoin).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from sandbox.base import SandboxError, wait_until
from sandbox.stack import free_port

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Self


class RedisStore:
    """redis-server on 127.0.0.1, in memory only; ``url`` is what ``[fleet] store`` names."""

    def __init__(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise SandboxError("redis-server not found (Debian package redis-server)")
        self._server = server
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = Path(tempfile.mkdtemp(prefix="healer-store-"))
        self._process: subprocess.Popen[bytes] | None = None

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> Self:
        """Start the server and wait until it answers PING."""
        self._process = subprocess.Popen(
            [self._server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self._dir), "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._answers, 10, "the fleet store to answer")
        return self

    def stop(self) -> None:
        """Stop the server (what it held is gone: it keeps nothing on disk)."""
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
            self._process = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)
