"""`production`: the README's production shape on one 2-core machine, as an integration engineer
runs it: gunicorn with `deploy/gunicorn.conf.py` (its access log included), one `qcluster` with
its defaults enriching what arrives, PostgreSQL, `DEBUG=0`, and 32 connections of signed
single-event deliveries, every event a new asset. Nothing is simulated but the peers (the
stand-ins answer every call after `--latency`).

Run twice: the worker at the CPU priority `deploy/` gives it (`nice` 10: Adobe's deliveries
first, the enrichment on what is left) and at the web's own priority, for the difference.
"""

from __future__ import annotations

import os
import sys
import time

from bench.e2e import wait_until_done
from bench.load import percentile, run
from bench.processes import free_port, wait_port
from bench.report import note, report
from bench.signing import signed_requests
from bench.stack import Stack
from pimsync.models import Event, Status

CLIENTS = 32
TARGET_PER_S = 800
TARGET_P99_MS = 500
# The worker's niceness in deploy/systemd/pimsync-worker.service (Nice=) and compose.yaml.
WORKER_NICE = 10


def _shape(stack: Stack, count: int, start: int, nice: int) -> None:
    stack.reset()
    port = free_port()
    web = stack.procs.start(
        [sys.executable, "-m", "gunicorn", "--config", "deploy/gunicorn.conf.py", "pimsync.wsgi"],
        {**stack.env, "PIMSYNC_BIND": f"127.0.0.1:{port}"},
    )
    wait_port(port)
    worker_command = [sys.executable, "manage.py", "qcluster"]
    if nice:
        worker_command = ["nice", "-n", str(nice), *worker_command]
    cluster = stack.procs.start(worker_command, stack.env)
    host = f"127.0.0.1:{port}"
    warm = signed_requests(stack.pem, host, stack.bodies(200, 1, start=start))
    requests = signed_requests(stack.pem, host, stack.bodies(count, 1, start=start + 200))
    time.sleep(3)  # the cluster starts before the clock does
    run("127.0.0.1", port, warm, 8)
    begun = time.perf_counter()
    seconds, latencies, statuses = run("127.0.0.1", port, requests, CLIENTS)
    waiting, _ = wait_until_done(count + 200, [cluster], sample_memory=False)
    elapsed = time.perf_counter() - begun
    stack.procs.stop(cluster)
    stack.procs.stop(web)
    label = f"production.worker_nice_{nice}"
    rate, p99 = count / seconds, percentile(latencies, 0.99) * 1000
    report(f"{label}.deliveries_per_s", rate, f"≥ {TARGET_PER_S}/s", rate / TARGET_PER_S, "req/s")
    report(f"{label}.p50_ms", percentile(latencies, 0.5) * 1000, "(info)", None, "ms")
    report(f"{label}.p99_ms", p99, f"≤ {TARGET_P99_MS} ms", TARGET_P99_MS / p99, "ms")
    ok = sum(1 for status in statuses if status == 200)
    succeeded = Event.objects.filter(status=Status.SUCCEEDED).count()
    report(f"{label}.stored (answered 200 = stored)", Event.objects.count(), f"= {ok + 200}", None, "rows")
    note(
        f"{count:,} deliveries in {seconds:.1f} s, {ok} answered 200; all {succeeded:,} enriched "
        f"{elapsed:.1f} s after the first delivery ({waiting} still waiting); worker `nice -n {nice}`"
    )


def production(stack: Stack) -> None:
    """The README's production shape: deliveries while the worker enriches, worker niced and not."""
    count = stack.args.production_events
    nice = int(os.environ.get("PIMSYNC_BENCH_WORKER_NICE", WORKER_NICE))
    _shape(stack, count, start=30_000_000, nice=nice)
    _shape(stack, count, start=40_000_000, nice=0)
