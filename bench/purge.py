"""Scenario `purge`: `purge_events` deletes a large expired history while the webhook takes
single-event deliveries at a steady rate: the webhook's p99 during the purge, and the purge's rate."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

from django.db import connection
from django.utils import timezone

from bench.dataset import build
from bench.ingest import promise_drain
from bench.load import percentile, run
from bench.processes import ROOT
from bench.report import note, report
from bench.signing import signed_requests
from bench.stack import Stack
from pimsync.models import Event

# The steady webhook load, and how long it can last (the purge's time bound).
PURGE_LOAD_RATE = 400
PURGE_LOAD_SECONDS = 200


def expired_history(rows: int) -> None:
    """`rows` events all past the 90-day failed retention, written out to disk."""
    connection.ensure_connection()
    connection.connection.autocommit = True  # VACUUM cannot run in a transaction
    build(rows, note, now=timezone.now() - timedelta(days=100))
    with connection.cursor() as cursor:
        # Write out the freshly generated history now, so that the baseline and the purge are
        # not measured against the checkpoint of 4 million new rows.
        cursor.execute("CHECKPOINT")


def steady_load(port: int, requests: list[bytes]) -> list[float]:
    """Send `requests` at the purge's rate, all acknowledged; their latencies."""
    _, latencies, statuses = run("127.0.0.1", port, requests, 32, rate=PURGE_LOAD_RATE)
    assert all(s == 200 for s in statuses), {s for s in statuses}
    return latencies


def purge_under_load(stack: Stack, port: int, during: list[bytes]) -> tuple[list[float], list[str], str, float]:
    """Run `purge_events` while `during` is sent; (latencies, p99/max per 5 s, its output, seconds)."""
    purge = subprocess.Popen(
        [sys.executable, "manage.py", "purge_events"],
        cwd=ROOT,
        env=stack.env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    began = time.perf_counter()
    latencies, chunk, timeline = [], PURGE_LOAD_RATE * 5, []  # check every 5 s whether the purge has finished
    while purge.poll() is None and during:
        measured = steady_load(port, during[:chunk])
        latencies += measured
        during = during[chunk:]
        timeline.append(f"{percentile(measured, 0.99) * 1000:.0f}/{max(measured) * 1000:.0f}")
    if purge.poll() is None:  # bounded: the load ran out first; what was deleted so far counts
        os.killpg(purge.pid, signal.SIGTERM)
        note(f"purge stopped after {PURGE_LOAD_SECONDS} s of load; the daily schedule would continue")
    output = purge.communicate()[0]
    return latencies, timeline, output, time.perf_counter() - began


def purge(stack: Stack) -> None:
    """The webhook's p99 with and without a purge of the whole expired history running."""
    stack.reset()
    rows, rate = stack.args.purge_rows, PURGE_LOAD_RATE
    expired_history(rows)
    web, port = stack.web()
    promise_drain()
    requests = signed_requests(
        stack.pem, f"127.0.0.1:{port}", stack.bodies(rate * PURGE_LOAD_SECONDS, 1, start=30_000_000)
    )
    warm, baseline, during = requests[:1000], requests[1000 : 1000 + rate * 15], requests[1000 + rate * 15 :]
    run("127.0.0.1", port, warm, 32)
    before = percentile(steady_load(port, baseline), 0.99) * 1000
    latencies, timeline, output, elapsed = purge_under_load(stack, port, during)
    stack.procs.stop(web)
    deleted = rows - Event.objects.filter(event_id__startswith="bench-").count()
    p99 = percentile(latencies, 0.99) * 1000
    report(f"purge.webhook_p99_ms at {rate} ev/s during the purge", p99, "≤ 50 ms", 50 / p99, "ms")
    report(f"purge.webhook_p99_ms at {rate} ev/s, no purge", before, "(info)", None, "ms")
    report("purge.events_per_s (3 attempts each)", deleted / elapsed, "(info)", None, "ev/s")
    report("purge.deleted (all expired events)", deleted, f"= {rows}", deleted / rows, "rows")
    note(
        f"purge_events deleted {deleted:,} events in {elapsed:.0f} s while the webhook stored "
        f"{len(latencies):,} new ones (p50 {percentile(latencies, 0.5) * 1000:.1f} ms); "
        + " ".join(line.strip() for line in output.splitlines() if line.startswith("events:"))
        + f"; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the end"
    )
    note("p99/max ms per 5 s: " + " ".join(timeline))
