"""Broker probes against a closed local port: the error kind is kept, never an exception."""

from __future__ import annotations

import socket

import pytest

from healer.clock import SystemClock
from healer.errors import ConfigError
from healer.probes.broker import AmqpProbe, RedisProbe, broker_probe


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("probe", [RedisProbe, AmqpProbe])
def test_closed_port_is_refused(probe: type[RedisProbe | AmqpProbe]) -> None:
    """A broker port nobody listens on is unreachable with error_kind refused."""
    scheme = "redis" if probe is RedisProbe else "amqp"
    state = probe(f"{scheme}://u:secret@127.0.0.1:{_closed_port()}/0", 0.5,
                  SystemClock()).check(["celery"])
    assert (state.reachable, state.error_kind) == (False, "refused")
    assert "secret" not in state.url


def test_scheme_picks_the_probe() -> None:
    """redis:// and amqp:// get their probes; an unknown scheme is a config error naming it."""
    clock = SystemClock()
    assert isinstance(broker_probe("redis://h/0", 1, clock), RedisProbe)
    assert isinstance(broker_probe("amqp://h//", 1, clock), AmqpProbe)
    with pytest.raises(ConfigError, match=r"celery\.broker_url.*'sqs'"):
        broker_probe("sqs://h", 1, clock)
