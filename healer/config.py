"""The TOML configuration, validated with pydantic; every error names the file and the key.

Relative paths are taken from the config file's folder.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from healer import safefile
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


def _unit_name(value: str) -> str:
    if not _UNIT_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a systemd unit name (e.g. celery.service)")
    return value


UnitName = Annotated[str, AfterValidator(_unit_name)]

DAY = 86400.0


def finite(most: float, least: float = 0, inclusive: bool = False) -> object:
    """A finite number above ``least`` (or from it, ``inclusive``) up to ``most``."""
    low = {"ge": least} if inclusive else {"gt": least}
    return Field(le=most, allow_inf_nan=False, **low)  # type: ignore[call-overload]


def count(most: int, least: int = 1) -> object:
    """A whole number from ``least`` to ``most``."""
    return Field(ge=least, le=most)


def _clean_path(value: Path) -> Path:
    if "\x00" in str(value) or not value.name:
        raise ValueError("not a file path (a NUL byte, or no file name)")
    return value


FilePath = Annotated[Path, AfterValidator(_clean_path)]
REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})
AMQP_SCHEMES = frozenset({"amqp", "amqps", "pyamqp"})


def _broker_url(value: str) -> str:
    """A URL of a broker healer can probe; the message never repeats it (it may hold a secret)."""
    try:
        parts = urlsplit(value)
        _ = parts.port  # parses it: a port that is not a number is an error here
    except ValueError as exc:
        raise ValueError(f"not a URL healer can parse ({exc})") from None
    if parts.scheme not in REDIS_SCHEMES | AMQP_SCHEMES:
        raise ValueError(f"unsupported broker scheme {parts.scheme!r} "
                         "(redis://, rediss://, amqp://, amqps://)")
    return value


Name = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f]+$")]


class Section(BaseModel):
    """A config section: unknown keys are errors, so a typo never disables a setting."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SystemdConfig(Section):
    """How to reach systemd."""

    bus: str = "system"


class CeleryConfig(Section):
    """How to reach Celery's broker and which nodes and queues to expect."""

    broker_url: Annotated[str, Field(max_length=4096, pattern=r"^[^\x00-\x1f]*$"),
                          AfterValidator(_broker_url)] = "redis://127.0.0.1:6379/0"
    queues: list[Name] = Field(default_factory=lambda: ["celery"], min_length=1, max_length=1000)
    nodes: list[Name] | None = Field(default=None, max_length=10_000)
    broker_timeout: Annotated[float, finite(30)] = 0.5
    ping_timeout: Annotated[float, finite(30)] = 0.5
    worker_log: Literal["journal"] | FilePath | None = None
    task_events: bool = False


class UnitsConfig(Section):
    """The allowlist: these units, and only these, may be acted on."""

    workers: list[UnitName] = Field(min_length=1, max_length=10_000)
    beat: UnitName | None = None
    broker: UnitName | None = None

    def all(self) -> tuple[str, ...]:
        """Every managed unit, broker first, then workers, then beat (dependency order)."""
        units = [self.broker, *self.workers, self.beat]
        return tuple(u for u in units if u is not None)


class BeatConfig(Section):
    """Where beat keeps its schedule."""

    schedule_file: FilePath | None = None
    log: Literal["journal"] | FilePath | None = None
    max_silence: Annotated[float, finite(DAY)] | None = None


class PathsConfig(Section):
    """Where healer keeps its state, its audit log and its policies."""

    state_dir: FilePath = Path("/var/lib/healer")
    audit_log: FilePath = Path("/var/log/healer/audit.jsonl")
    policies: FilePath = DEFAULT_POLICIES


class ThresholdsConfig(Section):
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


class TasksConfig(Section):
    """Tasks that must keep succeeding (runbook: critical tasks not processing for 30 min)."""

    critical: list[Name] = Field(default_factory=list, max_length=1000)
    stalled_after: Annotated[float, finite(7 * DAY)] = 1800


class DatabaseConfig(Section):
    """The application's database, checked with a TCP connect (optional)."""

    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    timeout: Annotated[float, finite(30)] = 0.5


class GuardConfig(Section):
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


class TierConfig(Section):
    """One tier of escalation: whom to notify, how long after the incident was escalated.

    ``after`` (seconds) defaults to the runbook's for the tier's place: 0, 20 min, 40 min.
    """

    after: Annotated[float, finite(30 * DAY, inclusive=True)] | None = None
    webhook: str = Field(pattern=r"^https?://[^\s/]+")
    format: Literal["generic", "slack", "pagerduty"] = "generic"
    routing_key: str | None = None

    @model_validator(mode="after")
    def _pagerduty_needs_a_key(self) -> TierConfig:
        _check_key(self.format, self.routing_key)
        return self


class EscalationConfig(Section):
    """Where escalations go: tiers of webhooks in one of three shapes (none: audited only).

    ``webhook``, ``format`` and ``routing_key`` here are the first tier (after 0); the
    ``[[escalation.tiers]]`` follow. A notification not delivered waits in the outbox,
    tried again after ``retry_after`` seconds, doubling up to 15 minutes, across passes, for
    ``expire_after`` seconds at most.
    """

    webhook: str | None = Field(default=None, pattern=r"^https?://[^\s/]+")
    format: Literal["generic", "slack", "pagerduty"] = "generic"
    routing_key: str | None = None
    timeout: Annotated[float, finite(60)] = 5
    attempts: Annotated[int, count(10)] = 3
    tiers: list[TierConfig] = Field(default_factory=list, max_length=10)
    retry_after: Annotated[float, finite(900)] = 30
    expire_after: Annotated[float, finite(30 * DAY)] = DAY

    @model_validator(mode="after")
    def _pagerduty_needs_a_key(self) -> EscalationConfig:
        if self.webhook:
            _check_key(self.format, self.routing_key)
        if any(t.after is None for t in self.tiers[len(RUNBOOK_TIERS) - bool(self.webhook):]):
            raise ValueError(f"tiers: after is required from tier {len(RUNBOOK_TIERS) + 1} on "
                             "(the runbook names three)")
        return self

    def all_tiers(self) -> list[TierConfig]:
        """Every tier in order, the top-level webhook first; each ``after`` filled in."""
        first = [TierConfig(after=0, webhook=self.webhook, format=self.format,
                            routing_key=self.routing_key)] if self.webhook else []
        return [t if t.after is not None else t.model_copy(update={"after": RUNBOOK_TIERS[i]})
                for i, t in enumerate([*first, *self.tiers])]


class JournalConfig(Section):
    """Where to read logs set to "journal": the system journal, or a journal directory."""

    directory: FilePath | None = None
    scope: Literal["system", "user"] = "system"


class AgentConfig(Section):
    """The unattended agent's loop and its metrics."""

    interval: Annotated[float, finite(DAY)] = 5
    events: bool = True  # a pass as soon as a managed unit changes state; false: polling only
    jitter: float = Field(default=0.1, ge=0, lt=1, allow_inf_nan=False)
    metrics_listen: str | None = Field(default=None, pattern=LOOPBACK)
    metrics_textfile: FilePath | None = None


class Config(Section):
    """The whole configuration file."""

    systemd: SystemdConfig = SystemdConfig()
    celery: CeleryConfig = CeleryConfig()
    units: UnitsConfig
    beat: BeatConfig = BeatConfig()
    paths: PathsConfig = PathsConfig()
    thresholds: ThresholdsConfig = ThresholdsConfig()
    tasks: TasksConfig = TasksConfig()
    task_limits: dict[Name, Annotated[float, finite(7 * DAY)]] = Field(
        default_factory=dict, max_length=10_000)  # task name: seconds it may run
    database: DatabaseConfig = DatabaseConfig()
    journal: JournalConfig = JournalConfig()
    guard: GuardConfig = GuardConfig()
    escalation: EscalationConfig = EscalationConfig()
    agent: AgentConfig = AgentConfig()


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        parts.append(f"{key}: {msg}")
    return "; ".join(parts)


def _resolve(base: Path, path: Path) -> Path:
    """Relative to the config's folder, without following links (a planted one stays seen)."""
    return path if path.is_absolute() else Path(os.path.normpath(base / path))


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
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_describe(exc)}") from exc
    except RecursionError as exc:
        raise ConfigError(f"{path}: nested too deeply") from exc
    base = path.resolve().parent

    def resolved(section: Section, *keys: str) -> Section:
        return section.model_copy(update={
            k: _resolve(base, v) for k in keys
            if isinstance(v := getattr(section, k), Path)})

    return config.model_copy(update={
        "paths": resolved(config.paths, "state_dir", "audit_log", "policies"),
        "celery": resolved(config.celery, "worker_log"),
        "beat": resolved(config.beat, "schedule_file", "log"),
        "journal": resolved(config.journal, "directory"),
    })
