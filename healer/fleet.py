"""Many hosts, one budget: the fleet's heartbeats, budget, storm lease and trials on Redis.

Every agent of a fleet publishes a heartbeat each pass (``exchange``), living
``heartbeat_ttl`` seconds and saying whether it has unhealthy units, and reads back how many
hosts are live and how many unhealthy: one script, one round trip, on sorted sets scored by
expiry in the store's own time (no host's clock skews it), so its cost does not grow with the
fleet. The budget of actions per hour across the fleet is the ``limits`` package's moving
window on the same Redis (``take``, ``room``). In a storm, a lease (``lease``) names the one
host that escalates it, and once per cool-down one host may try one step (``trial``; ``untry``
gives it back when it could not act): when it heals, the storm guard stands down for a cool-down
(``stand_down``) and the hosts heal as usual, within the budget.

Keys, under ``healer:fleet:NAME:``: ``seen`` (last heartbeat of each host, for a day), ``live``
and ``sick`` (expiry of each live, and each unhealthy, host), ``host:ID`` (the heartbeat, for
``status``), ``lease``, ``trial``, ``clear``; the budget's window is limits' own key. Every
call has a tight timeout; any failure is ``FleetUnreachable`` and the agent falls back to its
own guard. This module only talks to the store; the pass decides what it means.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar, cast

import msgspec
import redis
from limits import RateLimitItemPerHour
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from healer import codec, redact
from healer.errors import FleetUnreachable
from healer.model import Frozen

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from healer.config import FleetConfig

T = TypeVar("T")
TIMEOUT = 0.5  # seconds for one call to the store: a pass never waits long on it
FORGET = 86400.0  # a host not heard of for a day is dropped from the list
MAX_HEARTBEAT = 2**16  # bytes; a larger value is not a heartbeat healer wrote

# KEYS: seen, live, sick, host:ID, clear. ARGV: host, ttl (ms), heartbeat, sick (0/1), forget (ms).
# Publish one heartbeat and count the live and the sick hosts, by the store's clock.
_EXCHANGE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[4], ARGV[3], 'PX', ttl)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
if ARGV[4] == '1' then redis.call('ZADD', KEYS[3], now + ttl, ARGV[1])
else redis.call('ZREM', KEYS[3], ARGV[1]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[5]))
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
return {redis.call('ZCARD', KEYS[2]), redis.call('ZCARD', KEYS[3]), redis.call('EXISTS', KEYS[5])}
"""
# KEYS: the key. ARGV: host, then a new lifetime (ms) to renew it, or none to give it back:
# only while it is still this host's (one that expired may be another's now).
_OWN = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return redis.call('DEL', KEYS[1])
"""


def _text(value: object) -> str:
    """A name as Redis gives it back (bytes)."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class Heartbeat(msgspec.Struct, frozen=True, kw_only=True):
    """One host's word, as it published it (``status`` shows it).

    Unknown fields are ignored, not refused: a newer healer on another host may add one.
    """

    host: str
    unhealthy: list[str] = []  # the managed units found unhealthy (or being acted on)
    actions: int = 0  # its actions in the last hour


class View(Frozen, frozen=True):
    """The fleet as one pass sees it: live and unhealthy hosts, and whether it stood down."""

    hosts: int
    unhealthy: int
    stood_down: bool = False

    def storm(self, config: FleetConfig) -> str | None:
        """Why the fleet is in a storm, or None (see ``FleetConfig``); standing down or not."""
        if self.unhealthy < config.storm_min_hosts:
            return None
        share = self.unhealthy / max(self.hosts, 1)
        if share <= config.storm_share:
            return None
        return (f"fleet {config.name}: {self.unhealthy} of {self.hosts} hosts unhealthy at once "
                f"({100 * share:.3g}% > {100 * config.storm_share:.3g}%)")


class Seen(Frozen, frozen=True):
    """A host of ``healer fleet status``: its last heartbeat, and whether that still lives."""

    host: str
    last: float
    live: bool
    unhealthy: list[str] = msgspec.field(default_factory=list)
    actions: int = 0


class Status(Frozen, frozen=True):
    """What ``healer fleet status`` shows (times are the store's)."""

    fleet: str
    store: str  # redacted
    now: float
    hosts: list[Seen]
    budget_per_hour: int
    budget_left: int
    storm: str | None
    lease: str | None  # the host escalating the storm
    stood_down: bool

    @property
    def stale(self) -> list[str]:
        """The hosts heard of in the last day whose heartbeat expired."""
        return [h.host for h in self.hosts if not h.live]


class Fleet:
    """One host's connection to the fleet's store (nothing is sent before the first call)."""

    def __init__(self, config: FleetConfig, host: str, cooldown: float) -> None:
        self.config = config
        self.host = config.host_id or host
        self._cooldown = int(cooldown * 1000)
        self._ttl = int(config.heartbeat_ttl * 1000)
        self._prefix = f"healer:fleet:{config.name}:"
        self._redis = redis.Redis.from_url(
            config.store, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT,
            retry_on_timeout=False, retry=None)
        url = config.store.replace("unix://", "redis+unix://", 1)
        self._limiter = MovingWindowRateLimiter(RedisStorage(
            url, connection_pool=self._redis.connection_pool, key_prefix="healer:fleet"))
        self._budget = RateLimitItemPerHour(config.budget_per_hour)
        self._exchange = self._redis.register_script(_EXCHANGE)
        self._own = self._redis.register_script(_OWN)

    def _call(self, what: str, call: Callable[[], T]) -> T:
        """One exchange with the store; any failure is FleetUnreachable (the URL redacted)."""
        try:
            return call()
        except (redis.RedisError, OSError) as exc:
            store = redact.url(self.config.store)
            raise FleetUnreachable(f"fleet store {store}: {what} failed: "
                                   f"{type(exc).__name__}") from exc

    def _key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    def exchange(self, unhealthy: Iterable[str], actions: int) -> View:
        """Publish this host's heartbeat; count the live hosts and the unhealthy (this one too)."""
        units = sorted(unhealthy)
        beat = Heartbeat(host=self.host, unhealthy=units, actions=actions)
        keys = [self._key("seen"), self._key("live"), self._key("sick"),
                self._key("host", self.host), self._key("clear")]
        args: list[str | int | bytes] = [self.host, self._ttl, codec.encode(beat),
                                         int(bool(units)), int(FORGET * 1000)]
        live, sick, clear = self._call("the heartbeat", lambda: cast(
            "list[int]", self._exchange(keys=keys, args=args)))
        return View(hosts=int(live), unhealthy=int(sick), stood_down=bool(clear))

    def take(self) -> bool:
        """One action from the fleet's budget; False when the hour's budget is spent."""
        return self._call("the budget", lambda: self._limiter.hit(
            self._budget, self.config.name, "actions"))

    def room(self) -> bool:
        """Whether the fleet's budget has room for one more action now (nothing is taken)."""
        return self._call("the budget", lambda: self._limiter.test(
            self._budget, self.config.name, "actions"))

    def lease(self) -> bool:
        """Whether this host escalates the storm: it takes the lease, or renews its own.

        Taking it starts the storm's first cool-down too: no trial before one has passed.
        """
        def take() -> bool:
            if self._redis.set(self._key("lease"), self.host, nx=True, px=self._ttl):
                self._redis.set(self._key("trial"), self.host, nx=True, px=self._cooldown)
                return True
            return bool(self._own(keys=[self._key("lease")], args=[self.host, self._ttl]))

        return self._call("the storm's lease", take)

    def trial(self) -> bool:
        """Whether this host may try one step in the storm (once per cool-down, fleet-wide)."""
        return self._call("the trial", lambda: bool(self._redis.set(
            self._key("trial"), self.host, nx=True, px=self._cooldown)))

    def untry(self) -> None:
        """Give the trial back: this host could not act on it (another may, without waiting)."""
        self._call("the trial", lambda: self._own(keys=[self._key("trial")], args=[self.host]))

    def stand_down(self) -> None:
        """A trial healed: the storm guard stands down for a cool-down, on every host."""
        self._call("standing down", lambda: self._redis.set(
            self._key("clear"), self.host, px=self._cooldown))

    def status(self) -> Status:
        """Every host heard of in the last day, the budget left, the storm's state."""
        def read() -> Status:
            seconds, micros = self._redis.time()
            now = seconds + micros / 1e6
            seen = [(_text(n), float(s) / 1000) for n, s in cast(
                "list[tuple[bytes, float]]", self._redis.zrangebyscore(
                    self._key("seen"), (now - FORGET) * 1000, "+inf", withscores=True))]
            live = {_text(n) for n in cast("list[bytes]", self._redis.zrangebyscore(
                self._key("live"), now * 1000, "+inf"))}
            beats = self._heartbeats(sorted(live))
            hosts = [Seen(host=name, last=last, live=name in live,
                          unhealthy=beats[name].unhealthy if name in beats else [],
                          actions=beats[name].actions if name in beats else 0)
                     for name, last in seen]
            sick = int(self._redis.zcount(self._key("sick"), now * 1000, "+inf"))
            view = View(hosts=len(live), unhealthy=sick,
                        stood_down=bool(self._redis.exists(self._key("clear"))))
            lease = self._redis.get(self._key("lease"))
            stats = self._limiter.get_window_stats(self._budget, self.config.name, "actions")
            return Status(fleet=self.config.name, store=redact.url(self.config.store), now=now,
                          hosts=hosts, budget_per_hour=self.config.budget_per_hour,
                          budget_left=stats.remaining, storm=view.storm(self.config),
                          lease=_text(lease) if lease else None, stood_down=view.stood_down)

        return self._call("reading the fleet", read)

    def _heartbeats(self, names: list[str]) -> dict[str, Heartbeat]:
        """The live heartbeats of these hosts; a value healer did not write is left out."""
        if not names:
            return {}
        beats = {}
        for value in cast("list[bytes | None]", self._redis.mget(
                [self._key("host", n) for n in names])):
            if value is None or len(value) > MAX_HEARTBEAT:
                continue
            try:
                beat = codec.decode(value, Heartbeat)
            except ValueError:  # not JSON, or not a heartbeat (codec.Invalid)
                continue
            beats[beat.host] = beat
        return beats
