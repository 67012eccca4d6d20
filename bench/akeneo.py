"""`/webhooks/akeneo` under a burst (`akeneo-webhook`): legacy Events API requests of 10 full
products each, which Akeneo gives 0.5 s and never sends again
(https://api.akeneo.com/events-documentation/limits-and-scalability.html), mixed with Event
Platform deliveries (5 s, retried). Bodies are Akeneo's documented examples
(`standins/akeneo_examples.py`), each event with an id of its own, signed as Akeneo signs them."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

from django.db import connection

from bench.load import build_request, percentile, run
from bench.report import note, report
from bench.stack import Stack
from pimsync.models import PimNotification
from standins import akeneo_examples
from standins.akeneo import event_platform_headers, legacy_headers

PRIMARY, SECONDARY = "bench-akeneo-primary", "bench-akeneo-secondary"
CLIENTS = 16
# Akeneo waits 0.5 s for a legacy request: the p99 must stay well inside it.
TARGET_P99_MS = 250


def _legacy_body(extra_values: dict | None = None) -> bytes:
    """A legacy request of ten documented `product.updated` events, every event id new."""
    batch = akeneo_examples.legacy_batch(extra_values=extra_values)
    for event in batch["events"]:
        event["event_id"] = str(uuid.uuid4())
    return json.dumps(batch, separators=(",", ":")).encode()


def _cloud_event_body() -> bytes:
    """Akeneo's documented `product.updated` CloudEvent, with an id, a product and a time (now) of
    its own: a CloudEvent as old as the sample's is refused as a possible replay."""
    event = json.loads(akeneo_examples.EVENT_PLATFORM_UPDATED)
    event["id"], event["data"]["product"]["uuid"] = str(uuid.uuid4()), str(uuid.uuid4())
    event["time"] = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return json.dumps(event, separators=(",", ":")).encode()


def _requests(host: str, legacy: int, cloud: int, extra_values: dict | None = None) -> tuple[list[bytes], list[str]]:
    """Signed requests, one Event Platform delivery after every legacy request while both last;
    (requests, kind of each). Signed now: a legacy timestamp is good for 5 minutes."""
    now = int(time.time())
    legacy_requests = []
    for _ in range(legacy):
        raw = _legacy_body(extra_values)
        legacy_requests.append(build_request("/webhooks/akeneo", raw, legacy_headers(raw, PRIMARY, now), host))
    cloud_requests = []
    for _ in range(cloud):
        raw = _cloud_event_body()
        headers = event_platform_headers(raw, PRIMARY, SECONDARY)
        cloud_requests.append(build_request("/webhooks/akeneo", raw, headers, host))
    requests, kinds = [], []
    while legacy_requests or cloud_requests:
        for queue, kind in ((legacy_requests, "legacy"), (cloud_requests, "cloud")):
            if queue:
                requests.append(queue.pop())
                kinds.append(kind)
    return requests, kinds


def _send(port: int, requests: list[bytes], clients: int):
    seconds, latencies, statuses = run("127.0.0.1", port, requests, clients)
    assert all(s == 200 for s in statuses), sorted(set(statuses))
    return seconds, latencies


def akeneo_webhook(stack: Stack) -> None:
    """p50/p99 of `/webhooks/akeneo` under a burst of signed legacy requests and Event Platform
    deliveries, then under legacy requests of ten rich (about 100 KB) products."""
    stack.reset()
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {PimNotification._meta.db_table}")
    web, port = stack.web(extra_env={"AKENEO_EVENT_SECRETS": f"{PRIMARY},{SECONDARY}"})
    host = f"127.0.0.1:{port}"
    batches = stack.args.akeneo_batches

    warm, _ = _requests(host, 20, 40)
    _send(port, warm, CLIENTS)

    requests, kinds = _requests(host, batches, 2 * batches)
    seconds, latencies = _send(port, requests, CLIENTS)
    for kind, label in (("legacy", "legacy_batch10"), ("cloud", "event_platform")):
        mine = [latency for latency, k in zip(latencies, kinds, strict=True) if k == kind]
        p50, p99 = percentile(mine, 0.5) * 1000, percentile(mine, 0.99) * 1000
        report(f"akeneo.{label}.p50_ms", p50, "(info)", None, "ms")
        target = TARGET_P99_MS if kind == "legacy" else 5000
        report(f"akeneo.{label}.p99_ms", p99, f"≤ {target} ms", target / p99, "ms")
    size = len(_legacy_body())
    note(
        f"{batches} legacy requests of 10 events ({size / 1024:.1f} KB each) and {2 * batches} Event Platform "
        f"deliveries, interleaved, {CLIENTS} clients at once: {len(requests) / seconds:,.0f} requests/s, "
        f"{(10 * batches + 2 * batches) / seconds:,.0f} notifications/s; Akeneo waits 0.5 s for a legacy request"
    )

    rich = akeneo_examples.rich_values()
    big, _ = _requests(host, 40, 0, extra_values=rich)
    seconds, latencies = _send(port, big, 4)
    p99 = percentile(latencies, 0.99) * 1000
    report("akeneo.legacy_rich_batch10.p50_ms", percentile(latencies, 0.5) * 1000, "(info)", None, "ms")
    report("akeneo.legacy_rich_batch10.p99_ms", p99, f"≤ {TARGET_P99_MS} ms", TARGET_P99_MS / p99, "ms")
    note(f"40 legacy requests of 10 rich products ({len(_legacy_body(rich)) / 1e6:.2f} MB each), 4 clients at once")

    stored = PimNotification.objects.count()
    expected = 10 * (20 + batches + 40) + 40 + 2 * batches
    report("akeneo.stored (acknowledged = stored)", stored, f"= {expected}", stored / expected, "rows")
    stack.procs.stop(web)
