"""The application's database: whether its TCP port accepts a connection in time."""

from __future__ import annotations

import socket

from healer.model import Endpoint


def check_tcp(host: str, port: int, timeout: float) -> Endpoint:
    """Connect and close; the error (refused, timeout, name) is kept."""
    address = f"{host}:{port}"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return Endpoint(address=address, reachable=True)
    except TimeoutError:
        return Endpoint(address=address, reachable=False, error="timeout")
    except OSError as exc:
        return Endpoint(address=address, reachable=False, error=exc.strerror or str(exc))
