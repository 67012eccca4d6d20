"""Scenarios of the webhook alone: single-event deliveries against a trivial view's ceiling
(`ingest`), batches of 20 (`batch`), and a web worker's memory for a 2 MB batch (`memory`)."""

from __future__ import annotations

import time
from datetime import timedelta

from django.utils import timezone

from bench.load import build_request, percentile, run
from bench.processes import children_of, rss_kb
from bench.report import note, report
from bench.signing import signed_requests
from bench.stack import Stack
from pimsync.models import Event, Heartbeat


def promise_drain() -> None:
    """What a drain running on a worker node keeps in the heartbeat row (pimsync.wakeups.DrainPromise)."""
    Heartbeat.objects.update_or_create(name="drain", defaults={"at": timezone.now() + timedelta(hours=1)})
    time.sleep(1)  # the web processes' cached read of the promise expires


def trivial_view_rate(port: int) -> float:
    """Requests per second a trivial Django view answers on the same gunicorn."""
    noop = [build_request("/bench/noop", b"{}", {"Content-Type": "application/json"}, f"127.0.0.1:{port}")] * 20000
    run("127.0.0.1", port, noop[:2000], 32)  # warm up
    seconds, _, _ = run("127.0.0.1", port, noop, 32)
    return len(noop) / seconds


def deliver(stack: Stack, port: int, bodies: list[bytes], clients: int, rate: float | None = None):
    """Sign and send `bodies`, all of which must be acknowledged; (events per second, latencies)."""
    requests = signed_requests(stack.pem, f"127.0.0.1:{port}", bodies)
    seconds, latencies, statuses = run("127.0.0.1", port, requests, clients, rate=rate)
    assert all(s == 200 for s in statuses), {s for s in statuses}
    return len(bodies) / seconds, latencies


def ingest(stack: Stack) -> None:
    """Single-event deliveries: with no worker anywhere, with workers draining elsewhere, at 400/s."""
    stack.reset()
    web, port = stack.web()
    ceiling = trivial_view_rate(port)
    count = stack.args.events
    deliver(stack, port, stack.bodies(1000, 1), 32)  # warm up (key fetch, connections)
    rate, _ = deliver(stack, port, stack.bodies(count, 1, start=1000), 32)
    report("ingest.single.events_per_s, no worker anywhere", rate, "(info)", None, "ev/s")
    note("with no worker running, every request also queues a wake-up in the same transaction")
    # The production case: workers drain on other nodes while the burst arrives, and their
    # promise (pimsync.wakeups.DrainPromise) spares each request its wake-up.
    promise_drain()
    rate, latencies = deliver(stack, port, stack.bodies(count, 1, start=20_000_000), 32)
    report("ingest.single.events_per_s (32 clients)", rate, "≥ 800/s", rate / 800, "ev/s")
    report("ingest.single.p99_ms at full speed", percentile(latencies, 0.99) * 1000, "(info)", None, "ms")
    report("ingest.single.ratio_to_trivial_view", rate / ceiling, "(info)", None, "×")
    note(f"trivial Django view on the same gunicorn: {ceiling:,.0f} req/s; workers draining elsewhere")
    _, latencies = deliver(stack, port, stack.bodies(count // 2, 1, start=10_000_000), 32, rate=400)
    p99 = percentile(latencies, 0.99) * 1000
    report("ingest.single.p99_ms at 400 ev/s", p99, "≤ 50 ms", 50 / p99, "ms")
    stored = Event.objects.count()
    expected = 2 * count + 1000 + count // 2
    report("ingest.single.stored (acknowledged = stored)", stored, f"= {expected}", stored / expected, "rows")
    stack.procs.stop(web)


def batch(stack: Stack) -> None:
    """Batches of 20 events per delivery, workers draining elsewhere."""
    stack.reset()
    web, port = stack.web()
    count = stack.args.events * 3
    requests = signed_requests(stack.pem, f"127.0.0.1:{port}", stack.bodies(count + 2000, 20))
    promise_drain()
    run("127.0.0.1", port, requests[:100], 16)
    seconds, _, statuses = run("127.0.0.1", port, requests[100:], 16)
    assert all(s == 200 for s in statuses), {s for s in statuses}
    rate = count / seconds
    report("ingest.batch20.events_per_s", rate, "≥ 6000/s", rate / 6000, "ev/s")
    stack.procs.stop(web)


def memory(stack: Stack) -> None:
    """The extra memory of one web worker for a 2 MB batch of 20 events."""
    stack.reset()
    web, port = stack.web(workers=1, threads=1)
    pid = children_of(web.pid)[0]
    warm = signed_requests(stack.pem, f"127.0.0.1:{port}", stack.bodies(40, 20))
    run("127.0.0.1", port, warm, 1)
    before = rss_kb(pid)
    body = stack.bodies(20, 20, start=5000, padding=100_000)[0]
    requests = signed_requests(stack.pem, f"127.0.0.1:{port}", [body])
    _, _, statuses = run("127.0.0.1", port, requests, 1)
    peak = rss_kb(pid, "VmHWM")
    extra = (peak - before) / 1024
    report("memory.web_extra_mb_for_2mb_batch", extra, "≤ 50 MB", 50 / max(extra, 0.01), "MB")
    note(
        f"batch body {len(body) / 1e6:.2f} MB answered {statuses[0]}; web worker RSS {before / 1024:.0f} MB "
        f"before, peak {peak / 1024:.0f} MB"
    )
    stack.procs.stop(web)
