"""The TOML configuration, validated as it is read; every error names the file and the key.

Relative paths are taken from the config file's folder.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, TypeVar
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta, field
from msgspec.structs import replace

from healer import codec, safefile
from healer.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

DEFAULT_CONFIG = Path("/etc/healer/healer.toml")
MAX_CONFIG = 2**20  # bytes; a config is a few KiB
DEFAULT_POLICIES = Path(__file__).resolve().parent / "default_policies"
# metrics are served on loopback only, on a port from 1 to 65535
LOOPBACK = (r"^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost):"
            r"([1-9]\d{0,3}|[1-5]\d{4}|6[0-4]\d{3}|65[0-4]\d{2}|655[0-2]\d|6553[0-5])$")
_UNIT_NAME = re.compile(r"[A-Za-z0-9:_.\\@-]+\.(service|socket|target|timer|mount|path)")


def _text(value: object, most: int = 4096) -> str:
    """A string of one line, at most ``most`` characters."""
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    if len(value) > most or any(c < " " for c in value):
        raise ValueError(f"not a line of at most {most} characters")
    return value


def _unit_name(value: object) -> str:
    """A systemd unit name such as celery.service."""
    if not _UNIT_NAME.fullmatch(text := _text(value)):
        raise ValueError(f"{text!r} is not a systemd unit name (e.g. celery.service)")
    return text


JOURNAL = "journal"


def _log_source(value: object) -> str:
    """Where a log is read: "journal", or a file path."""
    return JOURNAL if value == JOURNAL else str(codec.file_path(value))


DAY = 86400.0


def finite(most: float, least: float = 0, inclusive: bool = False) -> Meta:
    """A number above ``least`` (or from it, ``inclusive``) up to ``most``: never inf or NaN."""
    return Meta(ge=least, le=most) if inclusive else Meta(gt=least, le=most)


def count(most: int, least: int = 1) -> Meta:
    """A whole number from ``least`` to ``most``."""
    return Meta(ge=least, le=most)


REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})
AMQP_SCHEMES = frozenset({"amqp", "amqps", "pyamqp"})


def _broker_url(value: object) -> str:
    """A URL of a broker healer can probe; the message never repeats it (it may hold a secret)."""
    value = _text(value)
    try:
        parts = urlsplit(value)
        _ = parts.port  # parses it: a port that is not a number is an error here
    except ValueError as exc:
        raise ValueError(f"not a URL healer can parse ({exc})") from None
    if parts.scheme not in REDIS_SCHEMES | AMQP_SCHEMES:
        raise ValueError(f"unsupported broker scheme {parts.scheme!r} "
                         "(redis://, rediss://, amqp://, amqps://)")
    return value


if TYPE_CHECKING:  # as the code sees them; read by the parse functions above
    UnitName = str
    BrokerUrl = str
    LogSource = str
else:
    UnitName = codec.parsed(str, "UnitName", _unit_name,
                            {"type": "string", "pattern": f"^{_UNIT_NAME.pattern}$"})
    BrokerUrl = codec.parsed(str, "BrokerUrl", _broker_url, {"type": "string"})
    LogSource = codec.parsed(str, "LogSource", _log_source, {"type": "string"})
S = TypeVar("S", bound="Section")
Format = Literal["generic", "slack", "pagerduty", "alertmanager"]
Webhook = Annotated[str, Meta(pattern=r"^https?://[^\s/]+")]
Name = Annotated[str, Meta(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f]+$")]


class Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A config section: unknown keys are errors, so a typo never disables a setting."""


class SystemdConfig(Section, frozen=True):
    """How to reach systemd."""

    bus: str = "system"


class CeleryConfig(Section, frozen=True):
    """How to reach Celery's broker and which nodes and queues to expect."""

    broker_url: BrokerUrl = "redis://127.0.0.1:6379/0"
    queues: Annotated[list[Name], Meta(min_length=1, max_length=1000)] = field(
        default_factory=lambda: ["celery"])
    nodes: Annotated[list[Name], Meta(max_length=10_000)] | None = None
    broker_timeout: Annotated[float, finite(30)] = 0.5
    ping_timeout: Annotated[float, finite(30)] = 0.5
    worker_log: LogSource | None = None
    task_events: bool = False


class UnitsConfig(Section, frozen=True):
    """The allowlist: these units, and only these, may be acted on."""

    workers: Annotated[list[UnitName], Meta(min_length=1, max_length=10_000)]
    beat: UnitName | None = None
    broker: UnitName | None = None

    def all(self) -> tuple[str, ...]:
        """Every managed unit, broker first, then workers, then beat (dependency order)."""
        units = [self.broker, *self.workers, self.beat]
        return tuple(u for u in units if u is not None)


class BeatConfig(Section, frozen=True):
    """Where beat keeps its schedule."""

    schedule_file: Path | None = None
    log: LogSource | None = None
    max_silence: Annotated[float, finite(DAY)] | None = None


class PathsConfig(Section, frozen=True):
    """Where healer keeps its state, its audit log and its policies."""

    state_dir: Path = Path("/var/lib/healer")
    audit_log: Path = Path("/var/log/healer/audit.jsonl")
    policies: Path = DEFAULT_POLICIES


class ThresholdsConfig(Section, frozen=True):
    """When a signal becomes a finding."""

    queue_backlog: Annotated[int, count(10**9)] = 100
    memory_mb: Annotated[float, finite(2.0**24)] = 1024  # up to 16 TiB
    task_failures: Annotated[int, count(10**6)] = 3
    task_window: Annotated[float, finite(7 * DAY)] = 600
    retry_loop: Annotated[int, count(10**6, least=2)] = 3
    not_consuming_after: Annotated[float, finite(DAY)] = 60
    startup_grace: Annotated[float, finite(DAY, inclusive=True)] = 30
    silence_window: Annotated[float, finite(DAY, inclusive=True)] = 15
    silence_probes: Annotated[int, count(10_000, least=1)] = 3
    cpu_percent: Annotated[float, finite(100_000)] = 90  # percent of one core
    cpu_sustained: Annotated[float, finite(DAY)] = 120
    task_time_limit: Annotated[float, finite(7 * DAY)] = 3600  # the runbook's task_time_limit


class TasksConfig(Section, frozen=True):
    """Tasks that must keep succeeding (runbook: critical tasks not processing for 30 min)."""

    critical: Annotated[list[Name], Meta(max_length=1000)] = []
    stalled_after: Annotated[float, finite(7 * DAY)] = 1800


class DatabaseConfig(Section, frozen=True):
    """The application's database, checked with a TCP connect (optional)."""

    host: str | None = None
    port: Annotated[int, Meta(ge=1, le=65535)] | None = None
    timeout: Annotated[float, finite(30)] = 0.5


class GuardConfig(Section, frozen=True):
    """Limits over every target at once: the budget, the storm guard, the breaker."""

    budget_per_hour: Annotated[int, count(10_000)] = 30
    storm_share: Annotated[float, finite(1)] = 0.5
    storm_max_units: Annotated[int, count(10_000)] = 3
    storm_min_units: Annotated[int, count(10_000)] = 3
    breaker_cooldown: Annotated[float, finite(30 * DAY)] = 3600


RUNBOOK_TIERS = (0.0, 1200.0, 2400.0)  # on-call at once, a senior after 20 min, the admin at 40


def _check_key(fmt: str, routing_key: str | None) -> None:
    """PagerDuty's Events API takes nothing without its integration key."""
    if fmt == "pagerduty" and not routing_key:
        raise ValueError("format pagerduty needs routing_key (the integration key)")


class TierConfig(Section, frozen=True):
    """One tier of escalation: whom to notify, how long after the incident was escalated.

    ``after`` (seconds) defaults to the runbook's for the tier's place: 0, 20 min, 40 min.
    """

    webhook: Webhook
    after: Annotated[float, finite(30 * DAY, inclusive=True)] | None = None
    format: Format = "generic"
    routing_key: str | None = None

    def __post_init__(self) -> None:
        """PagerDuty needs its key."""
        _check_key(self.format, self.routing_key)


class EscalationConfig(Section, frozen=True):
    """Where escalations go: tiers of webhooks in one of three shapes (none: audited only).

    ``webhook``, ``format`` and ``routing_key`` here are the first tier (after 0); the
    ``[[escalation.tiers]]`` follow. A notification not delivered waits in the outbox,
    tried again after ``retry_after`` seconds, doubling up to 15 minutes, across passes, for
    ``expire_after`` seconds at most.
    """

    webhook: Webhook | None = None
    format: Format = "generic"
    routing_key: str | None = None
    timeout: Annotated[float, finite(60)] = 5
    attempts: Annotated[int, count(10)] = 3
    tiers: Annotated[list[TierConfig], Meta(max_length=10)] = []
    retry_after: Annotated[float, finite(900)] = 30
    expire_after: Annotated[float, finite(30 * DAY)] = DAY

    def __post_init__(self) -> None:
        """PagerDuty needs its key; a tier past the runbook's three needs its ``after``."""
        if self.webhook:
            _check_key(self.format, self.routing_key)
        if any(t.after is None for t in self.tiers[len(RUNBOOK_TIERS) - bool(self.webhook):]):
            raise ValueError(f"tiers: after is required from tier {len(RUNBOOK_TIERS) + 1} on "
                             "(the runbook names three)")

    def all_tiers(self) -> list[TierConfig]:
        """Every tier in order, the top-level webhook first; each ``after`` filled in."""
        first = [TierConfig(after=0, webhook=self.webhook, format=self.format,
                            routing_key=self.routing_key)] if self.webhook else []
        return [t if t.after is not None else replace(t, after=RUNBOOK_TIERS[i])
                for i, t in enumerate([*first, *self.tiers])]


class JournalConfig(Section, frozen=True):
    """Where to read logs set to "journal": the system journal, or a journal directory."""

    directory: Path | None = None
    scope: Literal["system", "user"] = "system"


class AgentConfig(Section, frozen=True):
    """The unattended agent's loop and its metrics."""

    interval: Annotated[float, finite(DAY)] = 5
    events: bool = True  # a pass as soon as a managed unit changes state; false: polling only
    jitter: Annotated[float, Meta(ge=0, lt=1)] = 0.1
    metrics_listen: Annotated[str, Meta(pattern=LOOPBACK)] | None = None
    metrics_textfile: Path | None = None


def _store_url(value: object) -> str:
    """The Redis URL of the fleet's store; the message never repeats it (it may hold a secret)."""
    value = _broker_url(value)
    if urlsplit(value).scheme not in REDIS_SCHEMES:
        raise ValueError("the fleet's store is a Redis URL (redis://, rediss://, unix://)")
    return value


if TYPE_CHECKING:
    StoreUrl = str
else:
    StoreUrl = codec.parsed(str, "StoreUrl", _store_url, {"type": "string"})
KeyPart = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.@-]+$")]


class FleetConfig(Section, frozen=True):
    """Many hosts, one budget: coordination through a Redis store (optional).

    A storm is at least ``storm_min_hosts`` and more than ``storm_share`` of the live hosts
    unhealthy at once. While the store cannot be reached, ``fallback_budget_per_hour`` is
    the local budget.
    """

    store: StoreUrl
    name: KeyPart = "default"
    host_id: KeyPart | None = None  # the hostname
    budget_per_hour: Annotated[int, count(100_000)] = 30
    fallback_budget_per_hour: Annotated[int, count(10_000, least=0)] = 3
    storm_share: Annotated[float, finite(1)] = 0.5
    storm_min_hosts: Annotated[int, count(100_000)] = 3
    heartbeat_ttl: Annotated[float, finite(DAY, least=1, inclusive=True)] = 30


class Config(Section, frozen=True):
    """The whole configuration file."""

    units: UnitsConfig
    systemd: SystemdConfig = SystemdConfig()
    celery: CeleryConfig = CeleryConfig()
    beat: BeatConfig = BeatConfig()
    paths: PathsConfig = PathsConfig()
    thresholds: ThresholdsConfig = ThresholdsConfig()
    tasks: TasksConfig = TasksConfig()
    task_limits: Annotated[dict[Name, Annotated[float, finite(7 * DAY)]],
                           Meta(max_length=10_000)] = {}  # task name: seconds it may run
    database: DatabaseConfig = DatabaseConfig()
    journal: JournalConfig = JournalConfig()
    guard: GuardConfig = GuardConfig()
    escalation: EscalationConfig = EscalationConfig()
    agent: AgentConfig = AgentConfig()
    fleet: FleetConfig | None = None

    def __post_init__(self) -> None:
        """A heartbeat must outlive the interval between two passes, or hosts look gone."""
        if self.fleet and self.fleet.heartbeat_ttl <= self.agent.interval:
            raise ValueError(f"fleet: heartbeat_ttl ({self.fleet.heartbeat_ttl:g}s) must be "
                             f"longer than agent.interval ({self.agent.interval:g}s)")


def _resolve(base: Path, path: Path) -> Path:
    """Relative to the config's folder, without following links (a planted one stays seen)."""
    return path if path.is_absolute() else Path(os.path.normpath(base / path))


def _resolved(base: Path, section: S, *keys: str) -> S:
    """The section with its paths (and log sources that are files) taken from ``base``."""
    def one(value: Path | str) -> Path | str:
        found = _resolve(base, Path(value))
        return found if isinstance(value, Path) else LogSource(found)

    return replace(section, **{
        k: one(v) for k in keys if (v := getattr(section, k)) not in {None, JOURNAL}})


def load_config(path: Path) -> Config:
    """Read and validate the config file; relative paths are taken from the file's folder."""
    try:
        raw = tomllib.loads(safefile.read_capped(path, MAX_CONFIG).decode("utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such config file") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read: not UTF-8 ({exc.reason})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError(f"{path}: invalid TOML: nested too deeply") from exc
    except ValueError as exc:  # an integer of more digits than Python converts
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    try:
        config = codec.convert(raw, Config)
    except codec.Invalid as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError(f"{path}: nested too deeply") from exc
    base = path.resolve().parent
    return replace(config, paths=_resolved(base, config.paths, "state_dir", "audit_log",
                                           "policies"),
                   celery=_resolved(base, config.celery, "worker_log"),
                   beat=_resolved(base, config.beat, "schedule_file", "log"),
                   journal=_resolved(base, config.journal, "directory"))
