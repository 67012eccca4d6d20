"""`/healthz`, `/healthz/ready`, `/metrics` and the structured logs."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from django.db import OperationalError, connection
from django.utils import timezone

from pimsync import pipeline
from pimsync.logging import JsonFormatter
from tests.conftest import product

pytestmark = pytest.mark.django_db


def test_healthz_is_ok_when_database_broker_and_worker_are(client):
    pipeline.sweep()  # what a running worker does every minute
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] and body["broker"]["ok"] and body["worker"]["ok"]


def test_healthz_is_503_when_no_worker_has_reported(client):
    response = client.get("/healthz")
    assert response.status_code == 503
    assert "qcluster" in response.json()["worker"]["error"]


def test_healthz_is_503_when_a_worker_went_silent(client):
    import time_machine
    from django.utils import timezone

    pipeline.sweep()
    with time_machine.travel(timezone.now() + timezone.timedelta(minutes=5)):
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["worker"]["last_seen_seconds_ago"] >= 300


def test_healthz_is_503_when_the_database_is_down(client):
    def database_down(execute, sql, params, many, context):
        raise OperationalError("could not connect to server")

    with connection.execute_wrapper(database_down):
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"] == {"ok": False, "error": "OperationalError"}


def test_ready_is_ok_while_no_worker_runs(client):
    # A load balancer must not drop every web node because the workers (or Redis) are down.
    assert client.get("/healthz").status_code == 503
    response = client.get("/healthz/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": {"ok": True}}


def test_ready_is_503_when_the_database_is_down(client):
    def database_down(execute, sql, params, many, context):
        raise OperationalError("could not connect to server")

    with connection.execute_wrapper(database_down):
        response = client.get("/healthz/ready")
    assert response.status_code == 503
    assert response.json()["database"] == {"ok": False, "error": "OperationalError"}


@pytest.mark.parametrize("host", ["10.0.0.5:8000", "172.17.0.3", "[fd00::5]:8000", "127.0.0.1:8000"])
def test_probes_addressed_by_ip_are_answered_though_allowed_hosts_lists_only_the_name(client, settings, host):
    settings.ALLOWED_HOSTS = ["pimsync.example.com"]
    pipeline.sweep()
    assert client.get("/healthz/ready", HTTP_HOST=host).status_code == 200
    assert client.get("/healthz", HTTP_HOST=host).status_code == 200
    assert client.head("/healthz/ready", HTTP_HOST=host).status_code == 200  # some balancers send HEAD
    # Every other page still refuses a host it does not know.
    assert client.get("/admin/", HTTP_HOST=host).status_code == 400
    assert client.get("/metrics", HTTP_HOST=host).status_code == 400
    assert client.get("/healthz/ready", HTTP_HOST="pimsync.example.com").status_code == 200


def test_probes_take_no_writes(client):
    assert client.post("/healthz/ready", HTTP_HOST="10.0.0.5").status_code == 405
    assert client.post("/healthz").status_code == 405


def metric(text: str, name: str) -> float:
    """The value of one sample (name with its labels) in Prometheus text; 0 when absent."""
    for line in text.splitlines():
        sample, _, value = line.rpartition(" ")
        if sample == name:
            return float(value)
    return 0.0


def settled(client, time_machine, **headers) -> str:
    """A scrape once every row written so far has settled (counters trail writes by a moment)."""
    from pimsync.operations import SETTLE

    for _ in range(2):  # attempt ids are counted up to the highest one seen a settling time ago
        client.get("/metrics", **headers)
        time_machine.shift(SETTLE + timedelta(seconds=1))
    response = client.get("/metrics", **headers)
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def clock(time_machine):
    """A clock that runs from now and that tests may move forward."""
    time_machine.move_to(timezone.now(), tick=True)
    return time_machine


def test_metrics_counters_move(client, world, clock):
    before = client.get("/metrics").content.decode()
    assert metric(before, 'pimsync_attempts_total{outcome="succeeded"}') == 0
    world.pim.products["SKU-100001"] = product("SKU-100001")
    world.adobe.deliver(client, [world.upload(client, 1), world.upload(client, 2)])
    during = client.get("/metrics").content.decode()
    assert metric(during, "pimsync_queue_depth") == 2
    kind = 'type="aem.assets.asset.processing_completed"'
    assert metric(during, f'pimsync_events{{{kind},status="received"}}') == 2
    world.drain()
    response = client.get("/metrics")
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    after = settled(client, clock)
    assert metric(after, f'pimsync_events_finished_total{{{kind},status="succeeded"}}') == 1
    assert metric(after, f'pimsync_events_finished_total{{{kind},status="failed"}}') == 1
    assert metric(after, f'pimsync_events{{{kind},status="received"}}') == 0
    assert metric(after, 'pimsync_attempts_total{outcome="succeeded"}') == 1
    assert metric(after, "pimsync_event_latency_seconds_count") == 2
    assert metric(after, 'pimsync_event_latency_seconds_bucket{le="+Inf"}') == 2
    assert metric(after, "pimsync_queue_depth") == 0


def test_metrics_asks_for_the_bearer_token_when_one_is_set(client, settings):
    assert client.get("/metrics").status_code == 200  # no token configured: open, as before
    settings.PIMSYNC_METRICS_TOKEN = "scrape-token-7f3a"
    missing = client.get("/metrics")
    assert missing.status_code == 401
    assert missing["WWW-Authenticate"].startswith("Bearer")
    assert b"pimsync_" not in missing.content
    for wrong in ("Bearer scrape-token-7f3", "Bearer scrape-token-7f3a0", "scrape-token-7f3a", "Basic eDp5"):
        assert client.get("/metrics", HTTP_AUTHORIZATION=wrong).status_code == 401, wrong
    allowed = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token-7f3a")
    assert allowed.status_code == 200
    assert b"pimsync_queue_depth" in allowed.content


def old_history(n: int, *, days_ago: int = 40, prefix: str = "old") -> None:
    """`n` events that finished long ago, each with one succeeded attempt (a month of history)."""
    from pimsync.models import Attempt, Event

    finished = timezone.now() - timedelta(days=days_ago)
    events = Event.objects.bulk_create(
        Event(
            event_id=f"{prefix}-{i}",
            type="aem.assets.asset.processing_completed",
            source="acct:aem-p12345-e67890@adobe.com",
            received_at=finished - timedelta(seconds=3),
            finished_at=finished,
            status="succeeded",
            attempts=1,
            payload={},
        )
        for i in range(n)
    )
    Attempt.objects.bulk_create(
        Attempt(event=event, number=1, started_at=finished, outcome="succeeded") for event in events
    )


SUCCEEDED_EVENTS = 'pimsync_events_finished_total{type="aem.assets.asset.processing_completed",status="succeeded"}'
SUCCEEDED_ATTEMPTS = 'pimsync_attempts_total{outcome="succeeded"}'


def test_counters_do_not_go_down_when_old_events_are_purged(client, clock):
    from pimsync.models import Event

    old_history(30)
    before = settled(client, clock)
    assert metric(before, SUCCEEDED_EVENTS) == 30
    assert metric(before, SUCCEEDED_ATTEMPTS) == 30
    assert metric(before, "pimsync_event_latency_seconds_count") == 30

    Event.objects.all().delete()  # what retention does to old events and their attempts
    after = settled(client, clock)
    for sample in (SUCCEEDED_EVENTS, SUCCEEDED_ATTEMPTS, "pimsync_event_latency_seconds_count"):
        assert metric(after, sample) == metric(before, sample), sample
    assert metric(after, "pimsync_event_latency_seconds_sum") == metric(before, "pimsync_event_latency_seconds_sum")


def test_a_scrape_reads_only_rows_written_since_the_last_one(client, clock, django_assert_max_num_queries):
    from pimsync.models import Attempt, Event

    old_history(200)
    first = settled(client, clock)
    assert metric(first, SUCCEEDED_EVENTS) == 200

    # Rows already counted are never read again: rewriting them moves nothing.
    Event.objects.filter(event_id__startswith="old-").update(status="failed")
    Attempt.objects.update(outcome="failed")
    second = settled(client, clock)
    with django_assert_max_num_queries(16):  # the same few queries at any history size
        client.get("/metrics")
    assert metric(second, SUCCEEDED_EVENTS) == 200
    assert metric(second, SUCCEEDED_ATTEMPTS) == 200
    assert (
        metric(second, 'pimsync_events_finished_total{type="aem.assets.asset.processing_completed",status="failed"}')
        == 0
    )

    # ...while a row written since is counted once.
    old_history(1, days_ago=0, prefix="new")
    third = settled(client, clock)
    assert metric(third, SUCCEEDED_EVENTS) == 201
    fourth = settled(client, clock)
    assert metric(fourth, SUCCEEDED_EVENTS) == 201


def test_a_scrape_soon_after_the_last_count_writes_nothing(client, clock):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    old_history(3)
    first = settled(client, clock)
    with CaptureQueriesContext(connection) as queries:
        again = client.get("/metrics")
    assert again.status_code == 200
    assert metric(again.content.decode(), SUCCEEDED_EVENTS) == metric(first, SUCCEEDED_EVENTS) == 3
    writes = [q["sql"] for q in queries if q["sql"].split()[0].upper() in ("INSERT", "UPDATE", "DELETE")]
    assert writes == [], writes
    assert not [q["sql"] for q in queries if "FOR UPDATE" in q["sql"].upper()]


def test_logs_are_json_lines_with_the_event_id(client, adobe, caplog):
    from tests.conftest import make_event

    with caplog.at_level(logging.INFO, logger="pimsync"):
        adobe.deliver(client, make_event(7))
    record = next(r for r in caplog.records if r.getMessage() == "event stored")
    line = json.loads(JsonFormatter().format(record))
    assert line["event_id"] == "evt-000007-processing_completed"
    assert line["level"] == "INFO" and line["logger"] == "pimsync.adobe.webhook"


def test_secrets_never_reach_the_logs(client, world, caplog, settings):
    with caplog.at_level(logging.DEBUG):
        world.pim.products["SKU-100001"] = product("SKU-100001")
        world.adobe.deliver(client, world.upload(client, 1))
        world.drain()
    text = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert settings.ADOBE_CLIENT_SECRET not in text
    assert "token-1" not in text
