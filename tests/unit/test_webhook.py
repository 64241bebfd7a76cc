"""Webhook payload shapes, and delivery to a real HTTP server on 127.0.0.1 (retries not slept)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest

from healer.errors import NotifyError
from healer.notify.webhook import Alert, Webhook, payload

if TYPE_CHECKING:
    from collections.abc import Iterator

ALERT = Alert(
    incident="inc-42", scenario="worker_down", unit="celery-w1.service", severity="high",
    summary="failed (Result=signal, status 9)", reason="ladder of rule worker-down exhausted",
    host="app-1", ts="2023-11-14T22:13:20+00:00",
)


@dataclass
class Endpoint:
    """What a local webhook server answers (statuses in turn, then 200) and what it received."""

    statuses: list[int] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    url: str = ""


def handler_for(endpoint: Endpoint) -> type[BaseHTTPRequestHandler]:
    """A request handler recording into ``endpoint`` and answering its statuses."""

    class Handler(BaseHTTPRequestHandler):
        """Records each POST and answers the next status."""

        def do_POST(self) -> None:
            """Record method, path, content type and JSON body; answer."""
            body = self.rfile.read(int(self.headers["Content-Length"]))
            endpoint.bodies.append(json.loads(body))
            endpoint.requests.append((self.command, self.path, self.headers["Content-Type"]))
            status = endpoint.statuses.pop(0) if endpoint.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            """Stay quiet."""

    return Handler


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[Endpoint]:
    """A webhook server on 127.0.0.1 (a free port) in a thread, shut down afterwards."""
    for name in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    answers = Endpoint()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(answers))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                              daemon=True)
    thread.start()
    answers.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/healer"
    yield answers
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def webhook(url: str, waits: list[float], fmt: str = "generic", attempts: int = 3,
            routing_key: str | None = None) -> Webhook:
    """A Webhook whose retry waits are recorded in ``waits`` instead of slept."""
    return Webhook(url, fmt, routing_key, timeout=5, attempts=attempts, sleep=waits.append)


# -- payload shapes --------------------------------------------------------------------------


def test_generic_payload_is_the_alert_with_a_source() -> None:
    """The generic body is every alert field plus source "healer"."""
    assert payload(ALERT, "generic", None) == {"source": "healer", **asdict(ALERT)}


def test_slack_payload_is_one_text() -> None:
    """The Slack body is only "text", naming scenario, unit, severity, reason, summary, incident."""
    body = payload(ALERT, "slack", None)

    assert list(body) == ["text"]
    text = body["text"]
    for part in ("worker_down", "celery-w1.service", "high", ALERT.reason, ALERT.summary,
                 "inc-42"):
        assert part in text
    assert text.startswith("[healer] ")


def test_payload_without_unit_names_the_host() -> None:
    """An alert about no unit (say, the broker URL) names the host in its title."""
    alert = Alert(**{**asdict(ALERT), "unit": None})

    assert "worker_down on app-1 (high)" in payload(alert, "slack", None)["text"]


def test_pagerduty_payload_is_an_events_v2_trigger() -> None:
    """PagerDuty: routing_key, event_action trigger, dedup_key = incident, and the details."""
    body = payload(ALERT, "pagerduty", "R0UTING")

    assert body["routing_key"] == "R0UTING"
    assert body["event_action"] == "trigger"
    assert body["dedup_key"] == "inc-42"
    details = body["payload"]
    assert details["source"] == "app-1"
    assert details["component"] == "celery-w1.service"
    assert details["class"] == "worker_down"
    assert details["custom_details"] == asdict(ALERT)
    assert "worker_down" in details["summary"]


def test_pagerduty_payload_without_routing_key_is_empty_key() -> None:
    """With no routing key configured the body carries an empty routing_key."""
    assert payload(ALERT, "pagerduty", None)["routing_key"] == ""


@pytest.mark.parametrize(("severity", "expected"), [
    ("critical", "critical"), ("high", "error"), ("medium", "warning"), ("low", "info"),
])
def test_pagerduty_severity_mapping(severity: str, expected: str) -> None:
    """Healer severities map onto PagerDuty's critical/error/warning/info."""
    alert = Alert(**{**asdict(ALERT), "severity": severity})

    assert payload(alert, "pagerduty", "key")["payload"]["severity"] == expected


def test_pagerduty_summary_is_cut_at_1024_characters() -> None:
    """PagerDuty limits summary to 1024 characters; a long reason is cut."""
    alert = Alert(**{**asdict(ALERT), "reason": "x" * 2000})

    assert len(payload(alert, "pagerduty", "key")["payload"]["summary"]) == 1024


def test_alertmanager_payload_is_one_alert_whose_labels_a_resolve_keeps() -> None:
    """Labels name the alert; it starts when the incident opened; only a resolve has endsAt."""
    opened = replace(ALERT, started="2023-11-14T22:10:00+00:00")
    [firing] = payload(opened, "alertmanager", None)
    [resolved] = payload(replace(opened, status="resolved", reason="healed",
                                 ts="2023-11-14T22:20:00+00:00"), "alertmanager", None)
    assert firing["labels"] == resolved["labels"] == {
        "alertname": "HealerIncident", "scenario": "worker_down", "unit": "celery-w1.service",
        "host": "app-1", "severity": "high"}
    assert firing["startsAt"] == resolved["startsAt"] == "2023-11-14T22:10:00+00:00"
    assert "endsAt" not in firing
    assert resolved["endsAt"] == "2023-11-14T22:20:00+00:00"
    assert firing["annotations"]["incident"] == "inc-42"


# -- delivery --------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "posted"), [("", "/api/v2/alerts"), ("/am/", "/am/api/v2/alerts"),
                                              ("/api/v2/alerts", "/api/v2/alerts")])
def test_alertmanager_alerts_go_to_its_alerts_api(endpoint: Endpoint, path: str, posted: str
                                                 ) -> None:
    """The configured URL is Alertmanager's, with or without the API's path."""
    base = endpoint.url.removesuffix("/hooks/healer")
    webhook(base + path, [], "alertmanager").send(ALERT)
    assert endpoint.requests == [("POST", posted, "application/json")]


@pytest.mark.parametrize("fmt", ["generic", "slack", "pagerduty"])
def test_send_posts_the_json_body(endpoint: Endpoint, fmt: str) -> None:
    """The payload is POSTed as JSON to the URL, once, without waiting."""
    waits: list[float] = []

    webhook(endpoint.url, waits, fmt, routing_key="key").send(ALERT)

    assert endpoint.requests == [("POST", "/hooks/healer", "application/json")]
    assert endpoint.bodies == [payload(ALERT, fmt, "key")]
    assert waits == []


def test_send_retries_server_errors_until_delivered(endpoint: Endpoint) -> None:
    """500, 500, then 200: delivered on the third attempt after waits of 0.5 s and 1 s."""
    endpoint.statuses = [500, 500]
    waits: list[float] = []

    webhook(endpoint.url, waits, attempts=3).send(ALERT)

    assert len(endpoint.bodies) == 3
    assert all(body == endpoint.bodies[0] for body in endpoint.bodies)
    assert waits == [0.5, 1.0]


def test_send_gives_up_after_its_attempts(endpoint: Endpoint) -> None:
    """A server answering 500 every time gets exactly `attempts` requests, then NotifyError."""
    endpoint.statuses = [500] * 10
    waits: list[float] = []

    with pytest.raises(NotifyError, match="after 2 attempts"):
        webhook(endpoint.url, waits, attempts=2).send(ALERT)

    assert len(endpoint.bodies) == 2
    assert waits == [0.5]


def test_send_to_a_closed_port_raises_notify_error() -> None:
    """Connection refused every time: NotifyError after `attempts` tries (attempts-1 waits)."""
    waits: list[float] = []
    with socket.socket() as unused:  # bound, never listening: connections are refused
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        url = f"http://127.0.0.1:{port}/hook"

        with pytest.raises(NotifyError, match="after 4 attempts") as raised:
            webhook(url, waits, attempts=4).send(ALERT)

    assert f"webhook http://127.0.0.1:{port}/…: " in str(raised.value)
    assert "/hook" not in str(raised.value)  # a webhook's path may hold its token
    assert waits == [0.5, 1.0, 2.0]


@pytest.mark.parametrize(("status", "says"), [(302, "a redirect: not followed"),
                                              (400, "HTTP 400: refused, not retried"),
                                              (404, "HTTP 404: refused, not retried")])
def test_a_redirect_or_a_refusal_is_undelivered_after_one_post(
    endpoint: Endpoint, status: int, says: str,
) -> None:
    """302 is not followed (nor recorded delivered), and a 4xx is final: exactly one POST."""
    endpoint.statuses = [status] * 5
    waits: list[float] = []
    with pytest.raises(NotifyError, match=says):
        webhook(endpoint.url, waits, attempts=3).send(ALERT)
    assert [method for method, _, _ in endpoint.requests] == ["POST"]
    assert waits == []


@pytest.mark.parametrize("status", [429, 503])
def test_429_and_5xx_are_retried(endpoint: Endpoint, status: int) -> None:
    """Too many requests and server errors are tried again until delivered."""
    endpoint.statuses = [status]
    waits: list[float] = []
    webhook(endpoint.url, waits, attempts=3).send(ALERT)
    assert len(endpoint.requests) == 2
    assert waits == [0.5]


def test_a_receiver_that_drips_its_answer_is_cut_at_the_deadline() -> None:
    """One byte every 0.2 s, forever: each attempt ends at its timeout, not per read."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def drip() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\n")
                with contextlib.suppress(OSError):
                    while not stop.wait(0.2):
                        conn.sendall(b"X-Drip: 1\r\n")

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/hook"
    start = time.monotonic()
    try:
        with pytest.raises(NotifyError, match=r"no whole answer within 0\.5s"):
            Webhook(url, "generic", None, timeout=0.5, attempts=2, sleep=lambda _s: None
                    ).send(ALERT)
    finally:
        stop.set()
        server.close()
    assert time.monotonic() - start < 3  # two attempts of 0.5 s, not a read timeout each
