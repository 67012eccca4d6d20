"""`/healthz`, `/metrics` and the structured logs (SPEC §7)."""

from __future__ import annotations

import json
import logging

import pytest
from django.db import OperationalError, connection

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


def metric(text: str, name: str) -> float:
    """The value of one sample (name with its labels) in Prometheus text; 0 when absent."""
    for line in text.splitlines():
        sample, _, value = line.rpartition(" ")
        if sample == name:
            return float(value)
    return 0.0


def test_metrics_counters_move(client, world):
    before = client.get("/metrics").content.decode()
    assert metric(before, 'pimsync_attempts_total{outcome="succeeded"}') == 0
    world.pim.products["SKU-100001"] = product("SKU-100001")
    world.adobe.deliver(client, [world.upload(client, 1), world.upload(client, 2)])
    during = client.get("/metrics").content.decode()
    assert metric(during, "pimsync_queue_depth") == 2
    world.drain()
    response = client.get("/metrics")
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    after = response.content.decode()
    kind = 'type="aem.assets.asset.processing_completed"'
    assert metric(after, f'pimsync_events{{{kind},status="succeeded"}}') == 1
    assert metric(after, f'pimsync_events{{{kind},status="failed"}}') == 1
    assert metric(after, 'pimsync_attempts_total{outcome="succeeded"}') == 1
    assert metric(after, "pimsync_event_latency_seconds_count") == 2
    assert metric(after, 'pimsync_event_latency_seconds_bucket{le="+Inf"}') == 2
    assert metric(after, "pimsync_queue_depth") == 0


def test_logs_are_json_lines_with_the_event_id(client, adobe, caplog):
    from tests.conftest import make_event

    with caplog.at_level(logging.INFO, logger="pimsync"):
        adobe.deliver(client, make_event(7))
    record = next(r for r in caplog.records if r.getMessage() == "event stored")
    line = json.loads(JsonFormatter().format(record))
    assert line["event_id"] == "evt-000007-processing_completed"
    assert line["level"] == "INFO" and line["logger"] == "pimsync.webhooks"


def test_secrets_never_reach_the_logs(client, world, caplog, settings):
    with caplog.at_level(logging.DEBUG):
        world.pim.products["SKU-100001"] = product("SKU-100001")
        world.adobe.deliver(client, world.upload(client, 1))
        world.drain()
    text = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert settings.ADOBE_CLIENT_SECRET not in text
    assert "token-1" not in text
