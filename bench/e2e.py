"""Scenarios of the whole pipeline: events delivered while django-q2 workers enrich them against
the stand-ins (`e2e`: throughput, calls per asset, worker memory; `scaleout`: one node and two on
a Redis broker)."""

from __future__ import annotations

import os
import time

import redis
from django.db.models import Count

from bench.load import run
from bench.processes import descendants_of, rss_kb
from bench.report import note, report
from bench.signing import signed_requests
from bench.stack import Stack
from pimsync.models import PENDING, Event, Status

# 10,000 new assets, every PIM and AEM call taking 50 ms, all enriched within a minute.
TARGET_SECONDS = 60
# Round trips an asset waits for, each of the stand-ins' latency: the PIM's GET and AEM's metadata
# GET at once (pimsync.read_ahead), then the PATCH. Three with PIMSYNC_READ_AHEAD=0.
ROUND_TRIPS = 2
# Samples (a quarter of a second apart, and the time each takes) between a worker starting its
# thread pool and its memory being taken as warm: every thread has opened its connections by then.
WARM_SAMPLES = 20


def wait_until_done(count: int, clusters: list, sample_memory: bool) -> tuple[int, list]:
    """Poll until no event waits (or 600 s pass); (events still waiting, memory samples)."""
    samples = []
    deadline = time.monotonic() + 600
    while True:
        waiting = Event.objects.filter(status__in=[*PENDING, Status.PROCESSING]).count()
        if sample_memory:
            pids = [c for cluster in clusters for c in descendants_of(cluster.pid)]
            samples.append((count - waiting, {p: (rss_kb(p), rss_kb(p, "Threads")) for p in pids}))
        if waiting == 0 or time.monotonic() > deadline:
            return waiting, samples
        time.sleep(0.25)


def drain_run(
    stack: Stack,
    count: int,
    workers: list[tuple[int, int]],
    extra_env: dict | None = None,
    start: int = 0,
    sample_memory: bool = False,
) -> dict:
    """Deliver `count` events in batches while the workers run; wait until all finish."""
    web, port = stack.web(extra_env=extra_env)
    requests = signed_requests(stack.pem, f"127.0.0.1:{port}", stack.bodies(count, 20, start=start))
    clusters = [stack.worker(p, t, extra_env) for p, t in workers]
    time.sleep(3)  # let the clusters start before the clock does
    begun = time.perf_counter()
    run("127.0.0.1", port, requests, 8)
    ingested = time.perf_counter() - begun
    waiting, samples = wait_until_done(count, clusters, sample_memory)
    elapsed = time.perf_counter() - begun
    for cluster in clusters:
        stack.procs.stop(cluster)
    stack.procs.stop(web)
    statuses = dict(Event.objects.filter(asset_id__gt="").values_list("status").annotate(n=Count("id")))
    return {"elapsed": elapsed, "ingested": ingested, "statuses": statuses, "samples": samples, "waiting": waiting}


def e2e(stack: Stack) -> None:
    """New assets end to end, then the same assets again (now unchanged)."""
    stack.reset()
    # The worker shape the README recommends for one 2-core machine; PIMSYNC_BENCH_WORKERS=3x12 tries another.
    processes, threads = (int(n) for n in os.environ.get("PIMSYNC_BENCH_WORKERS", "2x16").split("x"))
    count, latency = stack.args.events, stack.args.latency
    result = drain_run(stack, count, [(processes, threads)], sample_memory=True)
    done = result["statuses"].get(Status.SUCCEEDED, 0)
    rate = done / result["elapsed"]
    report(
        f"e2e.assets_per_s ({count:,} events, {latency * 1000:.0f} ms per call)",
        rate,
        f"≥ {count / TARGET_SECONDS:.0f}/s",
        rate * TARGET_SECONDS / count,
        "assets/s",
    )
    report(
        "e2e.seconds_to_all_succeeded",
        result["elapsed"],
        f"≤ {TARGET_SECONDS} s",
        TARGET_SECONDS / result["elapsed"],
        "s",
    )
    bound = processes * threads / (ROUND_TRIPS * latency)
    report("e2e.ratio_to_littles_law_bound", rate / bound, "(info)", None, "×")
    note(
        f"{processes} worker processes × {threads} threads; bound {bound:.0f} assets/s "
        f"({ROUND_TRIPS} round trips × {latency * 1000:.0f} ms each); statuses {result['statuses']}; "
        f"ingest took {result['ingested']:.1f} s"
    )
    report_calls(stack, count, done)
    report_memory_drift(count, [s for s in result["samples"] if s[1]], threads)
    # The same assets again, now already up to date.
    stack.state.reset_counts()
    again = drain_run(stack, count // 5, [(processes, threads)], start=0)
    unchanged = again["statuses"].get(Status.UNCHANGED, 0)
    calls = stack.state.calls
    per_unchanged = (calls.get("aem_get", 0) + calls.get("aem_patch", 0)) / max(unchanged, 1)
    report("e2e.aem_calls_per_unchanged_asset", per_unchanged, "≤ 1", 1 / max(per_unchanged, 1e-9), "calls")


def report_calls(stack: Stack, count: int, done: int) -> None:
    """Token requests, AEM calls per changed asset and duplicate PATCHes of an e2e run."""
    calls = dict(stack.state.calls)
    per_1000 = calls.get("ims", 0) * 1000 / count
    report("e2e.ims_token_requests_per_1000_events", per_1000, "≤ 1", 1 / max(per_1000, 1e-9), "req")
    per_changed = (calls.get("aem_get", 0) + calls.get("aem_patch", 0)) / max(done, 1)
    report("e2e.aem_calls_per_changed_asset", per_changed, "≤ 2", 2 / per_changed, "calls")
    duplicates = sum(1 for n in stack.state.patches_per_asset.values() if n > 1)
    report("e2e.duplicate_patches", duplicates, "= 0", None if duplicates else 1.0, "assets")


def report_memory_drift(count: int, samples: list, threads: int) -> None:
    """Per worker process: RSS once it is warm against its peak from then on; the worst process
    is reported. Warm: 10% of the events done, and for a process that enriches, its pool of
    `threads` running for WARM_SAMPLES samples. A django-q2 worker may take its first drain only
    after the 10% mark (the other one held the drain until then): the memory of building its
    pool, its connections and its sessions is its start, not a drift, and was once reported as
    one (a worker's 54 MB at 10% against 71 MB after)."""
    if not samples:
        return
    tenth = next((i for i, s in enumerate(samples) if s[0] >= count * 0.1), 0)
    drifts, late = {}, 0
    for pid in samples[tenth][1]:
        seen = [s[1][pid] for s in samples[tenth:] if pid in s[1]]
        pooled = next((i for i, (_, running) in enumerate(seen) if running >= threads), None)
        if pooled:  # started its pool after the 10% mark
            late += 1
            seen = seen[pooled + WARM_SAMPLES :]
        if seen and seen[0][0]:
            start_kb, peak_kb = seen[0][0], max(rss for rss, _ in seen)
            drifts[pid] = ((peak_kb - start_kb) / start_kb * 100, start_kb, peak_kb)
    if not drifts:
        note(f"no worker-cluster process was warm long enough to measure ({late} started enriching late)")
        return
    pid, (drift, start_kb, peak_kb) = max(drifts.items(), key=lambda item: item[1][0])
    report("memory.worker_rss_drift_percent", drift, "≤ 10 %", 10 / max(drift, 0.01), "%")
    note(
        f"{len(drifts)} worker-cluster processes sampled {len(samples) - tenth} times from 10% done "
        f"({late} of them started enriching later, measured from {WARM_SAMPLES} samples after); "
        f"the largest drift: {start_kb / 1024:.0f} MB when warm, peak {peak_kb / 1024:.0f} MB after"
    )


def scaleout(stack: Stack) -> None:
    """One worker node, then two, sharing a Redis broker: nothing lost, nothing patched twice."""
    redis_env = {"PIMSYNC_BROKER_URL": "redis://127.0.0.1:6379/7"}
    count, threads = stack.args.events // 2, 8
    rates = []
    for nodes in (1, 2):
        redis.from_url(redis_env["PIMSYNC_BROKER_URL"]).flushdb()
        stack.reset()
        result = drain_run(stack, count, [(1, threads)] * nodes, redis_env)
        done = result["statuses"].get(Status.SUCCEEDED, 0)
        rates.append(done / result["elapsed"])
        lost = count - done
        duplicates = sum(1 for n in stack.state.patches_per_asset.values() if n > 1)
        note(
            f"{nodes} node(s), Redis broker, 1 process × {threads} threads each: {rates[-1]:.0f} assets/s, "
            f"lost {lost}, duplicate PATCHes {duplicates}, statuses {result['statuses']}"
        )
        report(f"scaleout.{nodes}_node.lost_events", lost, "= 0", None if lost else 1.0, "events")
        report(f"scaleout.{nodes}_node.duplicate_patches", duplicates, "= 0", None if duplicates else 1.0, "")
    speedup = rates[1] / rates[0]
    report("scaleout.two_nodes_speedup", speedup, "≥ 1.7×", speedup / 1.7, "×")
