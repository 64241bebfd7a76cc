"""Is the broker there, and how deep are its queues? Tight timeouts, the error kind kept.

Redis: PING and LLEN over every priority key of each queue, in one round trip (Redis cannot
report consumers). RabbitMQ: AMQP connect and a passive queue declare, which gives the
message count and the consumer count.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote, urlsplit

import amqp
import redis

from healer import redact
from healer.config import AMQP_SCHEMES, REDIS_SCHEMES
from healer.errors import ConfigError
from healer.model import BrokerState
from healer.vocabulary import BrokerError

if TYPE_CHECKING:
    from healer.clock import Clock


PRIORITY_SEP = "\x06\x16"
PRIORITY_STEPS = (3, 6, 9)


class BrokerProbe(Protocol):
    """Checks the broker once and counts the queues."""

    def check(self, queues: list[str]) -> BrokerState:
        """Reachable or not (and why not), and each queue's depth."""
        ...


def queue_keys(queue: str) -> list[str]:
    """Every Redis list kombu keeps a queue in: the plain key and one per priority step."""
    return [queue, *(f"{queue}{PRIORITY_SEP}{step}" for step in PRIORITY_STEPS)]


class _Probe:
    """What both probes share: the URL, a tight timeout, the clock, and how to report."""

    def __init__(self, url: str, timeout: float, clock: Clock) -> None:
        self._url = url
        self._timeout = timeout
        self._clock = clock

    def _down(self, kind: BrokerError, exc: Exception) -> BrokerState:
        return BrokerState(url=redact.url(self._url), reachable=False, error_kind=kind,
                           error=str(exc) or type(exc).__name__)

    def _up(self, start: float, queues: dict[str, int],
            consumers: dict[str, int] | None = None) -> BrokerState:
        latency = (self._clock.monotonic() - start) * 1000
        return BrokerState(url=redact.url(self._url), reachable=True, latency_ms=round(latency, 2),
                           queues=queues, consumers=consumers or {})


class RedisProbe(_Probe):
    """PING over a fresh connection with connect and read timeouts."""

    def check(self, queues: list[str]) -> BrokerState:
        """PING and every LLEN in one round trip; refused, timeout, auth or error on failure."""
        client = redis.Redis.from_url(
            self._url, socket_timeout=self._timeout, socket_connect_timeout=self._timeout,
            retry_on_timeout=False,
        )
        start = self._clock.monotonic()
        try:
            pipe = client.pipeline(transaction=False)
            pipe.ping()
            for queue in queues:
                for name in queue_keys(queue):
                    pipe.llen(name)
            replies = pipe.execute()[1:]
        except redis.AuthenticationError as exc:
            return self._down(BrokerError.AUTH, exc)
        except redis.TimeoutError as exc:
            return self._down(BrokerError.TIMEOUT, exc)
        except redis.ConnectionError as exc:
            refused = isinstance(exc.__cause__ or exc.__context__, ConnectionRefusedError)
            refused = refused or "Connection refused" in str(exc)
            return self._down(BrokerError.REFUSED if refused else BrokerError.ERROR, exc)
        except redis.RedisError as exc:
            return self._down(BrokerError.ERROR, exc)
        finally:
            client.close()
        steps = len(PRIORITY_STEPS) + 1
        return self._up(start, {q: sum(replies[i * steps:(i + 1) * steps])
                                for i, q in enumerate(queues)})


class AmqpProbe(_Probe):
    """AMQP connect and a passive queue declare per queue: depth and consumer count."""

    def check(self, queues: list[str]) -> BrokerState:
        """Connect, declare passively; refused, timeout, auth or error on failure."""
        parts = urlsplit(self._url)
        vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
        connection = amqp.Connection(
            host=f"{parts.hostname or 'localhost'}:{parts.port or 5672}",
            userid=unquote(parts.username or "guest"), password=unquote(parts.password or "guest"),
            virtual_host=vhost, connect_timeout=self._timeout, read_timeout=self._timeout,
            write_timeout=self._timeout, ssl=parts.scheme == "amqps",
        )
        start = self._clock.monotonic()
        depths, consumers = {}, {}
        try:
            connection.connect()
            for queue in queues:
                depths[queue], consumers[queue] = _declare(connection, queue)
        except amqp.exceptions.AccessRefused as exc:
            return self._down(BrokerError.AUTH, exc)
        except ConnectionRefusedError as exc:
            return self._down(BrokerError.REFUSED, exc)
        except TimeoutError as exc:
            return self._down(BrokerError.TIMEOUT, exc)
        except (OSError, amqp.exceptions.AMQPError) as exc:
            return self._down(BrokerError.ERROR, exc)
        finally:
            with contextlib.suppress(Exception):
                connection.close()
        return self._up(start, depths, consumers)


def _declare(connection: amqp.Connection, queue: str) -> tuple[int, int]:
    """Message and consumer count of a queue; (0, 0) when it is not declared yet."""
    channel = connection.channel()
    try:
        _, messages, consumers = channel.queue_declare(queue, passive=True)
    except amqp.exceptions.NotFound:  # the broker closes the channel; nothing is queued
        return 0, 0
    channel.close()
    return int(messages), int(consumers)


def broker_probe(url: str, timeout: float, clock: Clock) -> BrokerProbe:
    """The probe for the broker URL's scheme."""
    scheme = urlsplit(url).scheme
    if scheme in REDIS_SCHEMES:
        return RedisProbe(url, timeout, clock)
    if scheme in AMQP_SCHEMES:
        return AmqpProbe(url, timeout, clock)
    raise ConfigError(f"celery.broker_url: unsupported broker scheme {scheme!r} "
                      "(redis://, rediss://, amqp://, amqps://)")
