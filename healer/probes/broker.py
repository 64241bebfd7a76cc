"""Is the broker there? A PING with a tight timeout, the error kind kept as evidence."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit, urlunsplit

import redis

from healer.errors import ConfigError
from healer.model import BrokerState

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


def redact(url: str) -> str:
    """The URL without its password, fit for logs and the audit record."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RedisProbe:
    """PING over a fresh connection with connect and read timeouts."""

    def __init__(self, url: str, timeout: float, clock: Clock) -> None:
        self._url = url
        self._timeout = timeout
        self._clock = clock

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
            return self._down("auth", exc)
        except redis.TimeoutError as exc:
            return self._down("timeout", exc)
        except redis.ConnectionError as exc:
            refused = isinstance(exc.__cause__ or exc.__context__, ConnectionRefusedError)
            return self._down("refused" if refused or "refused" in str(exc) else "error", exc)
        except redis.RedisError as exc:
            return self._down("error", exc)
        finally:
            client.close()
        latency = (self._clock.monotonic() - start) * 1000
        steps = len(PRIORITY_STEPS) + 1
        depths = {q: sum(replies[i * steps:(i + 1) * steps]) for i, q in enumerate(queues)}
        return BrokerState(url=redact(self._url), reachable=True, latency_ms=round(latency, 2),
                           queues=depths)

    def _down(self, kind: str, exc: Exception) -> BrokerState:
        return BrokerState(url=redact(self._url), reachable=False, error_kind=kind, error=str(exc))


def broker_probe(url: str, timeout: float, clock: Clock) -> BrokerProbe:
    """The probe for the broker URL's scheme."""
    scheme = urlsplit(url).scheme
    if scheme in {"redis", "rediss", "unix"}:
        return RedisProbe(url, timeout, clock)
    raise ConfigError(f"celery.broker_url: unsupported broker scheme {scheme!r} (use redis://)")
