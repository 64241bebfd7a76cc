"""On the real sandbox: no secret reaches any output, and a slow receiver delays no healing."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

from sandbox.stack import BROKER, WORKER, CeleryStack
from tests.conftest import audit_records, healer

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.integration

SECRETS = {"userinfo": "Us3rPassw0rd", "query": "Qu3ryPassw0rd", "path": "T0kenInThePath",
           "routing key": "R0ut1ngKeyOfPagerDuty"}
SECOND = "celery-second.service"


def _whole_request(conn: socket.socket) -> bytes:
    """The request's head and its Content-Length of body, however the client split them."""
    data = b""
    while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length and (chunk := conn.recv(65536)):
        body += chunk
    return head + b"\r\n\r\n" + body


@dataclass
class Receiver:
    """A webhook receiver on loopback: answers ``status``, or with ``drip`` one byte at a time."""

    status: int = 503
    drip: bool = False
    requests: list[bytes] = field(default_factory=list)
    port: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def serve(self, server: socket.socket) -> None:
        """Answer every connection until stopped."""
        while not self.stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError):
                self.requests.append(_whole_request(conn))
                if not self.drip:
                    conn.sendall(f"HTTP/1.1 {self.status} X\r\nContent-Length: 0\r\n\r\n".encode())
                    continue
                conn.sendall(b"HTTP/1.1 200 OK\r\n")
                while not self.stop.wait(0.5):
                    conn.sendall(b"X")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver on a free loopback port, stopped after the test."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    answers = Receiver(port=server.getsockname()[1])
    thread = threading.Thread(target=answers.serve, args=(server,), daemon=True)
    thread.start()
    yield answers
    answers.stop.set()
    server.close()
    thread.join(timeout=5)


def policies(stack: CeleryStack, rules: str) -> str:
    """The [paths] section with a policy folder holding ``rules``."""
    folder = stack.root / "policies"
    folder.mkdir(exist_ok=True)
    (folder / "p.yaml").write_text(rules)
    return (f'state_dir = "{stack.root / "state"}"\naudit_log = "{stack.audit_log}"\n'
            f'policies = "{folder}"')


def planted(stack: CeleryStack, receiver: Receiver) -> Path:
    """A config with a secret in each place one can be: the broker URL, webhook and key."""
    url = (f"redis://:{SECRETS['userinfo']}@127.0.0.1:{stack.port}/0"
           f"?password={SECRETS['query']}")
    return stack.config(
        celery=f'broker_url = "{url}"\nqueues = ["celery"]\n'
               f'worker_log = "{stack.logs / "celery.log"}"',
        paths=policies(stack, "rules:\n  - name: page\n    match: {scenario: broker_unreachable}"
                              "\n    ladder:\n      - {action: escalate}\n"),
        extra=f'[escalation]\nwebhook = "http://127.0.0.1:{receiver.port}/services/'
              f'{SECRETS["path"]}"\nformat = "pagerduty"\nrouting_key = "{SECRETS["routing key"]}"'
              "\ntimeout = 2\nattempts = 2\n")


def test_no_secret_reaches_any_output(stack: CeleryStack, receiver: Receiver) -> None:
    """Broker down, escalation tried: outputs, errors and the audit log hold no planted secret."""
    config = planted(stack, receiver)
    stack.kill(BROKER)
    runs = [healer(config, "diagnose"), healer(config, "diagnose", "--json"),
            healer(config, "run-once", "--json")]
    assert runs[0].returncode == 2, runs[0].stdout + runs[0].stderr  # CRITICAL
    assert len(receiver.requests) == 2  # a 503 is tried again; the real key was sent
    assert all(SECRETS["routing key"].encode() in r for r in receiver.requests)
    [escalation] = [r for r in audit_records(stack.audit_log) if r["event"] == "escalation"]
    assert escalation["outcome"] == "undelivered"
    assert f"http://127.0.0.1:{receiver.port}/…" in escalation["error"]
    runs.append(healer(config, "audit", "list", "--json"))
    runs.append(healer(config, "audit", "show", escalation["incident"], "--json"))
    runs.append(healer(config, "audit", "show", escalation["incident"]))
    said = [run.stdout + run.stderr for run in runs] + [stack.audit_log.read_text()]
    assert json.loads(runs[1].stdout)["findings"][0]["scenario"] == "broker_unreachable"
    leaks = {(name, n) for n, text in enumerate(said) for name, secret in SECRETS.items()
             if secret in text}
    assert leaks == set()


def test_a_slow_receiver_does_not_delay_another_units_restart(
        stack: CeleryStack, receiver: Receiver) -> None:
    """One unit escalates to a dripping receiver, another dies: it is restarted first."""
    receiver.drip = True
    stack.add_worker(SECOND, "second@sandbox")
    config = stack.config(
        paths=policies(stack, f"""
rules:
  - name: page
    match: {{scenario: worker_down, unit: {WORKER}}}
    ladder:
      - {{action: escalate}}
  - name: restart
    match: {{scenario: worker_down}}
    ladder:
      - {{action: restart_unit, verify: 1s}}
"""),
        extra=f'[escalation]\nwebhook = "http://127.0.0.1:{receiver.port}/hook"\ntimeout = 3\n'
              "attempts = 1\n")
    stack.kill(WORKER)
    stack.kill(SECOND)
    healer(config, "run-once")
    records = audit_records(stack.audit_log)
    [restarted] = [r for r in records if r["event"] == "action_finished"]
    [escalation] = [r for r in records if r["event"] == "escalation"]
    assert (restarted["unit"], restarted["outcome"]) == (SECOND, "healed")
    assert escalation["outcome"] == "undelivered"
    assert "no whole answer within 3s" in escalation["error"]
    assert restarted["ts"] < escalation["ts"]  # healed, then the receiver was waited for
    assert receiver.requests
