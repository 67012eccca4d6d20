"""Scenarios of re-sync and of the assets it works on: the pace a re-sync keeps (`resync`), live
uploads while a large re-sync saturates the workers (`fairness`), the Assets list at a million
assets (`assets`), and what the 429 pause check costs every outbound call (`throttle`).

Every re-synced asset starts without the mapped values in the AEM stand-in, so each one is a PIM
GET, an AEM GET and a PATCH, as after a PIM change."""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from datetime import datetime

from django.contrib.auth.models import User
from django.db import close_old_connections, connection
from django.db.models import Q
from django.test import Client
from django.utils import timezone

from bench.e2e import ROUND_TRIPS
from bench.load import percentile, run
from bench.report import note, report
from bench.signing import signed_requests
from bench.stack import Stack
from pimsync import resync
from pimsync.models import OUTCOMES, Asset, Event, Job, StaleCause, SyncState
from pimsync.outbound import http, throttle

FOLDER = "/content/dam/pimsync-demo/products/"
# Live uploads during the fairness runs are assets numbered from here (never a re-synced one).
LIVE_FROM = 500_000
WORKERS = (2, 16)  # the shape the README recommends for one 2-core machine (as in e2e)


def register(stack: Stack, count: int) -> None:
    """`count` known assets, each in the AEM stand-in without the mapped values (a re-sync writes
    every one) and named after a product of the PIM stand-in's catalog."""
    stack.reset()
    assets = []
    for n in range(count):
        sku = stack.skus[n % len(stack.skus)]
        asset_id, name = f"urn:aaid:aem:{uuid.UUID(int=n + 1, version=4)}", f"{sku}_{n:06d}.png"
        assets.append(
            Asset(
                asset_id=asset_id,
                path=FOLDER + name,
                name=name,
                mime_type="image/png",
                product_key=sku,
                state=SyncState.STALE,
                stale_cause=StaleCause.PIM,
                known_from="backfill",
            )
        )
    Asset.objects.bulk_create(assets, batch_size=5000)
    forget_written(stack)


def forget_written(stack: Stack) -> None:
    """Every asset in the AEM stand-in as uploaded: no mapped values yet."""
    stack.state.assets.clear()
    stack.state.versions.clear()
    stack.state.reset_counts()


def finished_times(job: Job) -> list[datetime]:
    return sorted(Event.objects.filter(job=job, status__in=OUTCOMES).values_list("finished_at", flat=True))


def wait_for_job(job: Job, count: int, timeout: float) -> int:
    """Poll until `count` of the job's events finished (or `timeout` passed); how many did."""
    deadline = time.monotonic() + timeout
    while True:
        done = Event.objects.filter(job=job, status__in=OUTCOMES).count()
        if done >= count or time.monotonic() > deadline:
            return done
        time.sleep(1)


def steady_rate(times: list[datetime]) -> float:
    """Assets per second between the 10th and the 90th percent of them (start and end trimmed)."""
    if len(times) < 10:
        return 0.0
    low, high = len(times) // 10, len(times) * 9 // 10
    return (high - low) / max((times[high] - times[low]).total_seconds(), 1e-9)


def resync_run(stack: Stack, count: int, rate: float) -> dict:
    """Re-sync `count` assets at PIMSYNC_RESYNC_RATE=`rate` with one cluster; its figures."""
    forget_written(stack)
    cluster = stack.worker(*WORKERS, {"PIMSYNC_RESYNC_RATE": str(rate)})
    time.sleep(3)  # let the cluster start before the clock does
    job = resync.start(None, {"all": True}, why=f"bench: {rate:g}/s")
    done = wait_for_job(job, count, timeout=count / min(rate, 50) + 300)
    stack.procs.stop(cluster)
    job.cancel()  # finished in all but name: the sweeper would mark it at its next tick
    job.refresh_from_db()
    times = finished_times(job)
    whole = (times[-1] - job.created_at).total_seconds() if times else 0
    return {"done": done, "steady": steady_rate(times), "whole": whole, "calls": dict(stack.state.calls)}


def resync_pace(stack: Stack) -> None:
    """The pace a re-sync keeps at a rate the workers sustain, and the most they do at a high one."""
    count, rate = stack.args.resync_assets, stack.args.resync_rate
    latency = stack.args.latency * 1000
    register(stack, count)
    paced = resync_run(stack, count, rate)
    deviation = abs(paced["steady"] / rate - 1)
    report(f"resync.assets_per_s at PIMSYNC_RESYNC_RATE={rate:g}", paced["steady"], f"= {rate:g}/s ± 10%", None, "/s")
    report("resync.pace_deviation_percent", deviation * 100, "≤ 10 %", min(0.10 / max(deviation, 1e-9), 99), "%")
    note(
        f"{count:,} assets, {WORKERS[0]}×{WORKERS[1]} worker threads, {latency:.0f} ms per stand-in call; "
        f"{paced['done']:,} enriched, the whole job {paced['whole']:.0f} s ({count / rate:.0f} s at the setting); "
        f"rate measured between the 10th and 90th percent finished; calls {paced['calls']}"
    )
    high = stack.args.resync_max_rate
    fastest = resync_run(stack, count, high)
    bound = WORKERS[0] * WORKERS[1] / (ROUND_TRIPS * stack.args.latency)
    report(f"resync.max_assets_per_s at PIMSYNC_RESYNC_RATE={high:g}", fastest["steady"], "(info)", None, "/s")
    note(
        f"{fastest['done']:,} enriched in {fastest['whole']:.0f} s after the job started; Little's-law bound "
        f"{bound:.0f}/s ({ROUND_TRIPS} round trips × {latency:.0f} ms); e2e's new uploads measure the same path"
    )


class Deprioritiser(threading.Thread):
    """The comparison without priority: the job's events are made live-priority (0) as it
    schedules them, as if workers had no priority at all."""

    def __init__(self, job: Job) -> None:
        super().__init__(daemon=True)
        self.job, self.stop = job, threading.Event()

    def run(self) -> None:
        try:
            while not self.stop.wait(0.5):
                Event.objects.filter(job=self.job, priority__gt=0).update(priority=0)
        finally:
            close_old_connections()
            connection.close()


def fairness_run(stack: Stack, with_priority: bool) -> dict:
    """Live uploads at a steady rate while a large re-sync saturates the workers."""
    assets, live, live_rate = stack.args.fairness_assets, stack.args.live_events, stack.args.live_rate
    register(stack, assets)
    web, port = stack.web()
    requests = signed_requests(stack.pem, f"127.0.0.1:{port}", stack.bodies(live, 1, start=LIVE_FROM))
    cluster = stack.worker(*WORKERS, {"PIMSYNC_RESYNC_RATE": str(stack.args.fairness_rate)})
    time.sleep(3)
    job = resync.start(None, {"all": True}, why="bench: fairness")
    helper = None if with_priority else Deprioritiser(job)
    if helper:
        helper.start()
    time.sleep(5)  # the re-sync's backlog builds up first
    began = timezone.now()
    _, _, statuses = run("127.0.0.1", port, requests, concurrency=4, rate=live_rate)
    ended = timezone.now()
    webhook = Event.objects.filter(arrived_by="webhook")
    deadline = time.monotonic() + 600
    while webhook.filter(status__in=OUTCOMES).count() < live and time.monotonic() < deadline:
        time.sleep(1)
    latencies = [
        (f - r).total_seconds()
        for r, f in webhook.filter(status__in=OUTCOMES).values_list("received_at", "finished_at")
    ]
    during = Event.objects.filter(job=job, status__in=OUTCOMES, finished_at__range=(began, ended)).count()
    if helper:
        helper.stop.set()
        helper.join()
    job.cancel()
    stack.procs.stop(cluster)
    stack.procs.stop(web)
    return {
        "latencies": latencies,
        "accepted": sum(1 for s in statuses if s == 200),
        "resync_rate": during / max((ended - began).total_seconds(), 1e-9),
    }


def fairness(stack: Stack) -> None:
    """Live enrichment latency during a saturating re-sync, with priority and (for comparison) without."""
    args = stack.args
    for with_priority in (True, False):
        result = fairness_run(stack, with_priority)
        lat = result["latencies"]
        p50, p95 = percentile(lat, 0.5) or 0, percentile(lat, 0.95) or 0
        label = "fairness" if with_priority else "fairness.comparison_without_priority"
        target = "≤ 5 s" if with_priority else "(info)"
        report(f"{label}.live_p95_s", p95, target, 5 / max(p95, 1e-9) if with_priority else None, "s")
        report(f"{label}.live_p50_s", p50, "(info)", None, "s")
        report(f"{label}.live_max_s", max(lat, default=0), "(info)", None, "s")
        report(f"{label}.resync_assets_per_s_meanwhile", result["resync_rate"], "(info)", None, "/s")
        note(
            f"{'with' if with_priority else 'WITHOUT'} priority: {args.live_events} live uploads at "
            f"{args.live_rate:g}/s ({result['accepted']} accepted, {len(lat)} enriched) during a re-sync of "
            f"{args.fairness_assets:,} assets at PIMSYNC_RESYNC_RATE={args.fairness_rate:g}; latency = "
            f"received → finished; {args.latency * 1000:.0f} ms per stand-in call"
        )


# --- the Assets list at a million assets ------------------------------------------------------

ASSETS_SQL = """
INSERT INTO pimsync_asset (asset_id, path, name, mime_type, product_key, pim_product_uuid, state, state_reason,
    stale_cause, stale_since, last_outcome, last_synced_at, pim_fingerprint, mapping_fingerprint, first_seen_at,
    known_from, lease_token, lease_until, last_written, last_written_at, deleted_at)
SELECT 'urn:aaid:aem:' || md5('bench' || g)::uuid,
    '/content/dam/brand-' || lpad((g %% 40)::text, 2, '0') || '/' || (ARRAY['footwear', 'bags', 'outerwear',
        'tents', 'climbing', 'accessories'])[1 + g %% 6] || '/' || (2019 + g %% 7) || '/SKU-' || (100000 + g / 4)
        || '_' || (ARRAY['front', 'back', 'side', 'detail'])[1 + g %% 4] || '.jpg',
    'SKU-' || (100000 + g / 4) || '_' || (ARRAY['front', 'back', 'side', 'detail'])[1 + g %% 4] || '.jpg',
    'image/jpeg', 'SKU-' || (100000 + g / 4), '',
    s.state, CASE s.state WHEN 'failing' THEN 'product is not in the PIM' WHEN 'stale' THEN 'PIM data changed'
        ELSE '' END,
    CASE s.state WHEN 'stale' THEN (CASE WHEN g %% 2 = 0 THEN 'pim' ELSE 'mapping' END) ELSE '' END,
    CASE s.state WHEN 'stale' THEN %(now)s::timestamptz - (g %% 86400) * interval '1 second' END,
    CASE s.state WHEN 'never_synced' THEN '' WHEN 'failing' THEN 'failed' ELSE 'succeeded' END,
    CASE WHEN s.state IN ('in_step', 'stale') THEN %(now)s::timestamptz - (g %% 2592000) * interval '1 second' END,
    md5('p' || g / 4), md5('m' || g %% 7), %(now)s::timestamptz - (g %% 31536000) * interval '1 second', 'event',
    '', NULL, '{}'::jsonb, NULL,
    CASE s.state WHEN 'deleted' THEN %(now)s::timestamptz - (g %% 600000) * interval '1 second' END
FROM generate_series(1, %(rows)s) g
CROSS JOIN LATERAL (SELECT CASE WHEN g %% 100 < 84 THEN 'in_step' WHEN g %% 100 < 92 THEN 'stale'
    WHEN g %% 100 < 95 THEN 'failing' WHEN g %% 100 < 99 THEN 'never_synced' ELSE 'deleted' END AS state) s
"""


def build_assets(rows: int) -> None:
    """`rows` assets: 40 brands × 6 categories × 7 years of folders, 4 views per product, most in step.
    The events are kept, so the dashboard scenario can time its pages over both at once."""
    started = time.perf_counter()
    connection.ensure_connection()
    connection.connection.autocommit = True  # VACUUM cannot run in a transaction
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE pimsync_event SET job_id = NULL, retried_by_id = NULL "
            "WHERE job_id IS NOT NULL OR retried_by_id IS NOT NULL"
        )
        cursor.execute("DELETE FROM pimsync_job")
        cursor.execute("TRUNCATE pimsync_asset")
        cursor.execute(ASSETS_SQL, {"rows": rows, "now": timezone.now()})
        cursor.execute("VACUUM ANALYZE pimsync_asset")
    note(f"generated {rows:,} assets in {time.perf_counter() - started:.0f} s")


def ensure_assets(rows: int) -> None:
    """`rows` generated assets, reusing those of an earlier run when they are exactly that."""
    if Asset.objects.count() != rows or Asset.objects.exclude(path__startswith="/content/dam/brand-").exists():
        build_assets(rows)
    else:
        note(f"reusing the {rows:,} generated assets")


def assets_list(stack: Stack) -> None:
    """The Assets list at `--asset-rows` assets: the admin page when it exists, else its queries."""
    ensure_assets(stack.args.asset_rows)
    user, _ = User.objects.get_or_create(username="bench-admin", defaults={"is_staff": True, "is_superuser": True})
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    if client.get("/admin/pimsync/asset/", secure=True).status_code == 200:
        time_admin_pages(client)
    else:
        note("no Assets admin page in this version: timing the queries its list runs (count + a page of 100)")
        time_list_queries()


LIST_PAGES = {
    "default": "/admin/pimsync/asset/",
    "state_stale": "/admin/pimsync/asset/?state__exact=stale",
    "path_prefix": "/admin/pimsync/asset/?path__startswith=/content/dam/brand-07/tents/",
    # A prefix that sorts last: a list that walked the path index in order would read almost all of it.
    "path_prefix_last": "/admin/pimsync/asset/?path__startswith=/content/dam/brand-39/tents/",
    "search": "/admin/pimsync/asset/?q=SKU-123456",
    # The pages that count assets by state or all of them: the overview and "Re-sync all matching"
    # with no filter.
    "overview": "/admin/",
    "resync_all_confirm": "/admin/pimsync/asset/resync/?filters=",
}


def time_admin_pages(client: Client) -> None:
    for name, url in LIST_PAGES.items():
        if client.get(url, secure=True).status_code != 200:
            note(f"{url} is not a page of this version's Assets list: skipped")
            continue
        median = median_ms(lambda url=url: client.get(url, secure=True))
        report(f"assets.list_{name}.median_ms", median, "≤ 300 ms", 300 / median, "ms")
        note(f"GET {url} as a logged-in superuser, median of 7 after a warm-up")


def time_list_queries() -> None:
    """What an admin list of 100 per page, ordered by path, runs: a count and the first page."""
    assets = Asset.objects.order_by("path", "asset_id")
    lists = {
        "default": assets,
        "state_stale": assets.filter(state=SyncState.STALE),
        "path_prefix": assets.filter(path__startswith="/content/dam/brand-07/tents/"),
        "search_name_prefix": assets.filter(Q(name__startswith="SKU-123456") | Q(product_key="SKU-123456")),
    }
    for name, queryset in lists.items():
        median = median_ms(lambda queryset=queryset: (queryset.count(), list(queryset[:100])))
        report(f"assets.queries_{name}.median_ms", median, "≤ 300 ms", 300 / median, "ms")
        note(f"{name}: {queryset.count():,} assets")


def median_ms(load, times: int = 7) -> float:
    """The median in ms of `times` runs of `load` (after one warm-up)."""
    load()
    timings = []
    for _ in range(times):
        started = time.perf_counter()
        load()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1000


# --- the pause check on every outbound call -----------------------------------------------------


def throttle_cost(stack: Stack) -> None:
    """N GETs to a loopback server that answers at once, with the pause check and without,
    interleaved in rounds (the difference is the check: one primary-key read)."""
    calls, rounds = stack.args.throttle_calls, 10
    url = stack.stub.url + "/keys/pub-key-bench.pem"  # the key server answers without latency
    throttle.extend("aem", 0, reason="bench: an expired pause, as after any earlier 429")
    spent = {None: 0.0, "aem": 0.0}
    for _ in range(rounds):
        for key in spent:
            started = time.perf_counter()
            for _ in range(calls // rounds):
                http.request("GET", url, pause_key=key)
            spent[key] += time.perf_counter() - started
    without, with_check = (spent[key] / calls * 1e6 for key in (None, "aem"))
    report("throttle.get_us_without_pause_check", without, "(info)", None, "µs")
    report("throttle.get_us_with_pause_check", with_check, "(info)", None, "µs")
    report("throttle.pause_check_us_per_call", with_check - without, "(info)", None, "µs")
    note(f"{calls:,} GETs each way in {rounds} interleaved rounds, loopback, PostgreSQL on the same machine")
