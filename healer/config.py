"""The TOML configuration, validated with pydantic; every error names the file and the key.

Relative paths are taken from the config file's folder.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from healer.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

DEFAULT_CONFIG = Path("/etc/healer/healer.toml")
DEFAULT_POLICIES = Path(__file__).resolve().parent / "default_policies"
LOOPBACK = r"^(127\.\d+\.\d+\.\d+|localhost):\d+$"  # metrics are served on loopback only
_UNIT_NAME = re.compile(r"^[A-Za-z0-9:_.\\@-]+\.(service|socket|target|timer|mount|path)$")


def _unit_name(value: str) -> str:
    if not _UNIT_NAME.match(value):
        raise ValueError(f"{value!r} is not a systemd unit name (e.g. celery.service)")
    return value


UnitName = Annotated[str, AfterValidator(_unit_name)]


class Section(BaseModel):
    """A config section: unknown keys are errors, so a typo never disables a setting."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SystemdConfig(Section):
    """How to reach systemd."""

    bus: str = "system"


class CeleryConfig(Section):
    """How to reach Celery's broker and which nodes and queues to expect."""

    broker_url: str = "redis://127.0.0.1:6379/0"
    queues: list[str] = Field(default_factory=lambda: ["celery"])
    nodes: list[str] | None = None
    broker_timeout: float = Field(default=0.5, gt=0, le=30)
    ping_timeout: float = Field(default=0.5, gt=0, le=30)
    worker_log: Literal["journal"] | Path | None = None
    task_events: bool = False


class UnitsConfig(Section):
    """The allowlist: these units, and only these, may be acted on."""

    workers: list[UnitName] = Field(min_length=1)
    beat: UnitName | None = None
    broker: UnitName | None = None

    def all(self) -> tuple[str, ...]:
        """Every managed unit, broker first, then workers, then beat (dependency order)."""
        units = [self.broker, *self.workers, self.beat]
        return tuple(u for u in units if u is not None)


class BeatConfig(Section):
    """Where beat keeps its schedule."""

    schedule_file: Path | None = None
    log: Literal["journal"] | Path | None = None
    max_silence: float | None = Field(default=None, gt=0)


class PathsConfig(Section):
    """Where healer keeps its state, its audit log and its policies."""

    state_dir: Path = Path("/var/lib/healer")
    audit_log: Path = Path("/var/log/healer/audit.jsonl")
    policies: Path = DEFAULT_POLICIES


class ThresholdsConfig(Section):
    """When a signal becomes a finding."""

    queue_backlog: int = Field(default=100, ge=1)
    memory_mb: float = Field(default=1024, gt=0)
    task_failures: int = Field(default=3, ge=1)
    task_window: float = Field(default=600, gt=0)
    retry_loop: int = Field(default=3, ge=2)
    not_consuming_after: float = Field(default=60, gt=0)
    startup_grace: float = Field(default=30, ge=0)
    cpu_percent: float = Field(default=90, gt=0)
    cpu_sustained: float = Field(default=120, gt=0)


class DatabaseConfig(Section):
    """The application's database, checked with a TCP connect (optional)."""

    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    timeout: float = Field(default=0.5, gt=0, le=30)


class GuardConfig(Section):
    """Limits over every target at once: the budget, the storm guard, the breaker."""

    budget_per_hour: int = Field(default=30, ge=1)
    storm_share: float = Field(default=0.5, gt=0, le=1)
    storm_max_units: int = Field(default=3, ge=1)
    storm_min_units: int = Field(default=3, ge=1)
    breaker_cooldown: float = Field(default=3600, gt=0)


class EscalationConfig(Section):
    """Where escalations go: a webhook in one of three shapes (none: audited only)."""

    webhook: str | None = Field(default=None, pattern=r"^https?://[^\s/]+")
    format: Literal["generic", "slack", "pagerduty"] = "generic"
    routing_key: str | None = None
    timeout: float = Field(default=5, gt=0, le=60)
    attempts: int = Field(default=3, ge=1, le=10)

    @model_validator(mode="after")
    def _pagerduty_needs_a_key(self) -> EscalationConfig:
        if self.webhook and self.format == "pagerduty" and not self.routing_key:
            raise ValueError("format pagerduty needs routing_key (the integration key)")
        return self


class JournalConfig(Section):
    """Where to read logs set to "journal": the system journal, or a journal directory."""

    directory: Path | None = None
    scope: Literal["system", "user"] = "system"


class AgentConfig(Section):
    """The unattended agent's loop and its metrics."""

    interval: float = Field(default=5, gt=0)
    jitter: float = Field(default=0.1, ge=0, lt=1)
    metrics_listen: str | None = Field(default=None, pattern=LOOPBACK)
    metrics_textfile: Path | None = None


class Config(Section):
    """The whole configuration file."""

    systemd: SystemdConfig = SystemdConfig()
    celery: CeleryConfig = CeleryConfig()
    units: UnitsConfig
    beat: BeatConfig = BeatConfig()
    paths: PathsConfig = PathsConfig()
    thresholds: ThresholdsConfig = ThresholdsConfig()
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
    return path if path.is_absolute() else (base / path).resolve()


def load_config(path: Path) -> Config:
    """Read and validate the config file; relative paths are taken from the file's folder."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such config file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_describe(exc)}") from exc
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
