"""The same scenarios on a real RabbitMQ broker: passive declares for depth and consumers."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from sandbox.stack import NODE, RABBITMQ, WORKER, CeleryStack
from tests.conftest import diagnose, scenarios
from tests.integration.conftest import client

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.integration


@pytest.fixture
def rabbit() -> Iterator[CeleryStack]:
    """A Celery worker and beat on a sandboxed rabbitmq-server."""
    with CeleryStack(broker="rabbitmq") as running:
        yield running


def test_rabbitmq_healthy_backlog_and_unreachable(rabbit: CeleryStack) -> None:
    """RabbitMQ: healthy is OK; a backlog is queue_backlog; a stopped broker is refused."""
    config = rabbit.config()
    assert diagnose(config) == (0, [])
    app = client(rabbit)
    for _ in range(300):
        app.send_task("demoapp.sleep", args=(0.2,))
    code, findings = diagnose(config)
    assert (code, scenarios(findings)) == (1, [("queue_backlog", "low")])
    assert findings[0]["evidence"]["depth"] > 250

    rabbit.manager.systemctl("stop", RABBITMQ)
    code, findings = diagnose(config)
    assert ("broker_unreachable", "critical") in scenarios(findings)
    assert findings[0]["evidence"]["error_kind"] == "refused"
    assert findings[0]["unit"] == RABBITMQ


def test_rabbitmq_no_consumer_is_not_consuming(rabbit: CeleryStack) -> None:
    """RabbitMQ reports 0 consumers on a queue with messages: worker_not_consuming at once."""
    app = client(rabbit)
    app.control.cancel_consumer("celery", destination=[NODE], reply=True, timeout=2)
    for _ in range(3):
        app.send_task("demoapp.add", args=(1, 2))
    code, findings = diagnose(rabbit.config())
    assert (code, scenarios(findings)) == (2, [("worker_not_consuming", "high")])
    assert findings[0]["evidence"]["consumers"] == 0
    assert findings[0]["unit"] == WORKER
