"""One redaction: URL passwords and secret parameters, webhooks, the config's secret values."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, cast

import pytest

from healer import compose, redact
from healer.cli import main
from healer.config import CeleryConfig, Config, EscalationConfig, UnitsConfig
from healer.errors import NotifyError
from healer.model import Finding
from healer.notify.escalator import Escalator
from healer.notify.webhook import payload
from healer.redact import Redactor
from healer.state import Incident
from healer.testing import ManualClock
from healer.vocabulary import Outcome, Scenario, Severity

if TYPE_CHECKING:
    from pathlib import Path

    from healer.audit.log import AuditLog
    from healer.notify.webhook import Alert

PASSWORD, QUERY, HOOK_TOKEN, KEY = "pw-s3cret-1", "qp-s3cret-2", "wh-s3cret-3", "rk-s3cret-4"
BROKER_URL = f"redis://:{PASSWORD}@127.0.0.1:6379/0?password={QUERY}&db=0"
HOOK = f"https://hooks.slack.com/services/T000/B000/{HOOK_TOKEN}"


def config() -> Config:
    """A config with every kind of secret planted."""
    return Config(units=UnitsConfig(workers=["celery-w1.service"]),
                  celery=CeleryConfig(broker_url=BROKER_URL),
                  escalation=EscalationConfig(webhook=HOOK, format="pagerduty",
                                              routing_key=KEY))


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://user:s3cret@broker:6379/0", "redis://user:***@broker:6379/0"),
    ("redis://:s3cret@[::1]:6379/0", "redis://:***@[::1]:6379/0"),
    ("redis://broker:6379/0?password=s3cret&db=2", "redis://broker:6379/0?password=***&db=2"),
    ("amqp://b/v?PassWord=a&api_key=b&X-Amz-Signature=c&Auth=d&timeout=5",
     "amqp://b/v?PassWord=***&api_key=***&X-Amz-Signature=***&Auth=***&timeout=5"),
    ("redis://user@broker/0", "redis://user@broker/0"),
    ("https://hooks.slack.com/services/T000/B000/XXXX", "https://hooks.slack.com/…"),
    ("http://me:pw@127.0.0.1:8080/hook?token=x", "http://127.0.0.1:8080/…"),
    ("https://example.com", "https://example.com"),
])
def test_url_hides_passwords_secret_parameters_and_webhook_paths(url: str, shown: str) -> None:
    """A URL keeps no password nor secret parameter value; a webhook only its scheme and host."""
    assert redact.url(url) == shown


def test_patterns_find_urls_in_text_and_keep_the_sentence() -> None:
    """Without any config, every URL in a text is redacted; punctuation after it is kept."""
    said = ("cannot reach redis://:s3cret@b:6379/0, and 'https://h.example/T/B/tok' said no "
            "(amqp://b/?pass=x).")
    assert Redactor().text(said) == ("cannot reach redis://:***@b:6379/0, and "
                                     "'https://h.example/…' said no (amqp://b/?pass=***).")


def test_known_secrets_are_replaced_wherever_they_appear() -> None:
    """The config's secrets go even where no pattern sees them: bare, or percent-decoded."""
    redactor = Redactor.knowing(urls=["redis://:p%40ss-word@b/0", "https://h.example/a b/tok"],
                                secrets=["routing-key-1"])
    said = redactor.text("AUTH p@ss-word failed; key routing-key-1; POST https://h.example/a b/tok")
    assert said == "AUTH *** failed; key ***; POST https://h.example/…"
    assert redactor.text("path /a b/tok, alone") == "path ***, alone"


def test_secrets_shorter_than_the_minimum_are_left_to_the_patterns() -> None:
    """A three-character secret is not replaced in ordinary text, but still hidden in its URL."""
    redactor = Redactor.knowing(urls=["redis://:abc@b/0"], secrets=["xyz"])
    assert redact.MIN_SECRET == 4
    assert redactor.text("abc xyz redis://:abc@b/0") == "abc xyz redis://:***@b/0"


def test_value_redacts_every_string_and_keeps_keys_and_types() -> None:
    """A JSON value is copied with its strings redacted, dict keys, numbers and enums kept."""
    redactor = Redactor.knowing(secrets=[KEY])
    record: dict[str, Any] = {KEY: [KEY, 1, None, {"n": (f"x{KEY}", True)}],
                              "outcome": Outcome.DELIVERED}
    assert redactor.value(record) == {KEY: ["***", 1, None, {"n": ("x***", True)}],
                                      "outcome": "delivered"}
    assert redactor.value(record)["outcome"] is Outcome.DELIVERED
    assert record[KEY][0] == KEY


def test_the_config_redactor_hides_every_planted_secret() -> None:
    """compose.redactor knows the broker's password and query secret, the webhook, the key."""
    said = compose.redactor(config()).text(
        f"{BROKER_URL} {PASSWORD} {QUERY} {HOOK} /services/T000/B000/{HOOK_TOKEN} {KEY}")
    assert "s3cret" not in said
    assert "redis://:***@127.0.0.1:6379/0?password=***&db=0" in said
    assert "https://hooks.slack.com/…" in said


class Receiver:
    """A notifier that keeps the alert, then fails naming the webhook URL and the key."""

    def __init__(self) -> None:
        self.sent: list[Alert] = []

    def send(self, alert: Alert) -> None:
        """Keep the alert; fail as a careless receiver's error would."""
        self.sent.append(alert)
        raise NotifyError(f"POST {HOOK} with key {KEY}: HTTP 500")


class Audit:
    """Records what the escalator audits."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def record(self, event: str, incident: str | None, **fields: Any) -> None:  # noqa: ANN401
        """Keep the record."""
        self.records.append({"event": event, "incident": incident, **fields})


def test_alert_text_and_escalation_error_are_redacted() -> None:
    """The alert's summary and reason, and the undelivered escalation's error, show no secret."""
    receiver, audit = Receiver(), Audit()
    escalator = Escalator(receiver, cast("AuditLog", audit), ManualClock(), "app-1",
                          compose.redactor(config()))
    finding = Finding(scenario=Scenario.BROKER_UNREACHABLE, severity=Severity.CRITICAL,
                      unit="redis.service", summary=f"{BROKER_URL}: refused", evidence={})
    incident = Incident(id="inc-1", opened=0.0, severity=finding.severity.value)
    notice = escalator.trigger(finding.key, incident, finding.summary,
                               f"no answer from {BROKER_URL}", 0)
    assert escalator.deliver(notice)[0] == Outcome.UNDELIVERED
    body = payload(receiver.sent[0], "pagerduty", KEY)
    assert body.pop("routing_key") == KEY  # the real key goes where PagerDuty reads it
    assert "s3cret" not in json.dumps(body)
    assert audit.records[0]["error"] == "POST https://hooks.slack.com/… with key ***: HTTP 500"


def test_an_error_without_a_config_is_redacted(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """With no config read, an error repeating a URL with a password still hides it."""
    log = tmp_path / "audit.jsonl"
    log.write_text("", encoding="utf-8")
    assert main(["audit", "show", "redis://:s3cret@h/0", "--log", str(log)]) == 2
    assert capsys.readouterr().err == f"healer: no incident 'redis://:***@h/0' in {log}\n"
