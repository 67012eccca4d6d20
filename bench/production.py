"""`production`: the README's production shape on one 2-core machine, as an integration engineer
runs it: gunicorn with `deploy/gunicorn.conf.py` (its access log included), one `qcluster` with
its defaults enriching what arrives, PostgreSQL, `DEBUG=0`, and 32 connections of signed
single-event deliveries, every event a new asset. Nothing is simulated but the peers (the
stand-ins answer every call after `--latency`).

Run twice: the worker at the CPU weight `deploy/` gives it (25 against the web's 100: Adobe's
deliveries first, the enrichment on what is left) and at the web's own weight, for the
difference. Each runs in a CPU cgroup of its own with that weight, as systemd units and compose
services do; the benchmark needs root for that.
"""

from __future__ import annotations

import os
import sys
import time

from bench.e2e import wait_until_done
from bench.load import percentile, run
from bench.processes import CpuGroup, NoCpuGroup, free_port, wait_port
from bench.report import note, report
from bench.signing import signed_requests
from bench.stack import Stack
from pimsync.models import Event, Status

CLIENTS = 32
TARGET_PER_S = 800
TARGET_P99_MS = 500
# The worker's CPU weight in deploy/systemd/pimsync-worker.service (CPUWeight=) and compose.yaml
# (cpu_shares); the web's is the default, 100.
WORKER_WEIGHT = 25


def _shape(stack: Stack, count: int, start: int, weight: int) -> None:
    stack.reset()
    port = free_port()
    web_group, worker_group = CpuGroup("pimsync-bench-web", 100), CpuGroup("pimsync-bench-worker", weight)
    web = stack.procs.start(
        [sys.executable, "-m", "gunicorn", "--config", "deploy/gunicorn.conf.py", "pimsync.wsgi"],
        {**stack.env, "PIMSYNC_BIND": f"127.0.0.1:{port}"},
        cpu_group=web_group,
    )
    wait_port(port)
    cluster = stack.procs.start([sys.executable, "manage.py", "qcluster"], stack.env, cpu_group=worker_group)
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
    web_group.remove()
    worker_group.remove()
    label = f"production.worker_weight_{weight}"
    rate, p99 = count / seconds, percentile(latencies, 0.99) * 1000
    report(f"{label}.deliveries_per_s", rate, f"≥ {TARGET_PER_S}/s", rate / TARGET_PER_S, "req/s")
    report(f"{label}.p50_ms", percentile(latencies, 0.5) * 1000, "(info)", None, "ms")
    report(f"{label}.p99_ms", p99, f"≤ {TARGET_P99_MS} ms", TARGET_P99_MS / p99, "ms")
    ok = sum(1 for status in statuses if status == 200)
    succeeded = Event.objects.filter(status=Status.SUCCEEDED).count()
    report(f"{label}.stored (answered 200 = stored)", Event.objects.count(), f"= {ok + 200}", None, "rows")
    note(
        f"{count:,} deliveries in {seconds:.1f} s, {ok} answered 200; all {succeeded:,} enriched "
        f"{elapsed:.1f} s after the first delivery ({waiting} still waiting); "
        f"CPU weights: the worker {weight}, the web 100"
    )


def production(stack: Stack) -> None:
    """The README's production shape: deliveries while the worker enriches, at the worker's CPU
    weight from deploy/ and at the web's own (PIMSYNC_BENCH_WORKER_WEIGHTS=25,100 lists others)."""
    count = stack.args.production_events
    weights = os.environ.get("PIMSYNC_BENCH_WORKER_WEIGHTS", f"{WORKER_WEIGHT},100")
    try:
        for number, weight in enumerate(int(w) for w in weights.split(",")):
            _shape(stack, count, start=30_000_000 + number * 10_000_000, weight=weight)
    except NoCpuGroup as error:
        note(f"production: not run, it weighs the web and the worker as systemd does: {error}")
