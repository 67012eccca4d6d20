"""Scenario `dashboard`: the admin pages with a large history (1,000,000 events, 3 attempts each, and
`--asset-rows` assets), generated in PostgreSQL with generate_series, then each page timed through
Django's test client. `build` also gives the purge scenario its history.

Ten times the default data: `python -m bench dashboard --dashboard-rows 10000000 --asset-rows 3000000`."""

from __future__ import annotations

import time

from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bench.load import percentile
from bench.report import note, report
from bench.resync import LIST_PAGES, ensure_assets
from pimsync.models import Event

EVENTS_SQL = """
INSERT INTO pimsync_event (event_id, cloudevent_id, type, source, time, received_at, asset_id, asset_path,
    asset_name, mime_type, product_key, status, reason, error_class, attempts, attempts_base, next_attempt_at,
    claimed_at, finished_at, payload, delivery_id, delivery_retry_count, arrived_by, priority)
SELECT 'bench-' || g, 'ce-' || g, 'aem.assets.asset.processing_completed', 'acct:aem-p12345-e67890@adobe.com',
    %(now)s::timestamptz - g * interval '2.6 seconds', %(now)s::timestamptz - g * interval '2.6 seconds',
    'urn:aaid:aem:' || md5(g::text),
    '/content/dam/bench/' || (g %% 1000) || '/SKU-' || (100000 + g %% 50000) || '_' || g || '.png',
    'SKU-' || (100000 + g %% 50000) || '_' || g || '.png', 'image/png', 'SKU-' || (100000 + g %% 50000),
    CASE WHEN g %% 20 = 0 THEN 'failed' WHEN g %% 7 = 0 THEN 'unchanged' ELSE 'succeeded' END,
    CASE WHEN g %% 20 = 0 THEN 'product ''SKU-' || (100000 + g %% 50000) || ''' is not in the PIM'
         ELSE 'wrote 4 properties' END,
    CASE WHEN g %% 20 = 0 THEN 'pim_not_found' ELSE '' END, 3, 0, NULL,
    %(now)s::timestamptz - g * interval '2.6 seconds',
    %(now)s::timestamptz - g * interval '2.6 seconds' + interval '1.2 seconds',
    jsonb_build_object('type', 'aem.assets.asset.processing_completed', 'eventid', 'bench-' || g,
                       'data', jsonb_build_object('assetId', 'urn:aaid:aem:' || md5(g::text))),
    '', NULL, CASE WHEN g %% 50 = 0 THEN 'journal' ELSE 'webhook' END, 0
FROM generate_series(1, %(rows)s) g
"""

ATTEMPTS_SQL = """
INSERT INTO pimsync_attempt (event_id, number, started_at, duration_ms, outcome, error_class, message,
    product_key, pim_data, changes, aem_status, aem_body)
SELECT e.id, n, e.received_at + n * interval '0.3 seconds', 140 + n,
    CASE WHEN n < 3 THEN 'retrying' ELSE e.status END, '', e.reason, e.product_key,
    '{"SKUID": "SKU-1", "SupplierName": "Bench"}'::jsonb,
    '[{"path": "dc:title", "old": null, "new": "Bench"}]'::jsonb, 200, ''
FROM pimsync_event e CROSS JOIN generate_series(1, 3) n
"""


def build(rows: int, note, now=None) -> None:
    """`rows` events, one every 2.6 s back from `now` (default: the present), 3 attempts each."""
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE pimsync_attempt, pimsync_event")
        cursor.execute(EVENTS_SQL, {"rows": rows, "now": now or timezone.now()})
        cursor.execute(ATTEMPTS_SQL)
        cursor.execute("VACUUM ANALYZE pimsync_event")
        cursor.execute("VACUUM ANALYZE pimsync_attempt")
    note(f"generated {rows:,} events and {rows * 3:,} attempts in {time.perf_counter() - started:.0f} s")


def dashboard(stack) -> None:
    """Each admin page's p95 and query count over `--dashboard-rows` events and `--asset-rows` assets."""
    rows = stack.args.dashboard_rows
    connection.ensure_connection()
    connection.connection.autocommit = True  # VACUUM cannot run in a transaction
    if Event.objects.count() != rows or Event.objects.exclude(event_id__startswith="bench-").exists():
        build(rows, note)
    else:
        note(f"reusing the {rows:,} generated events")
    ensure_assets(stack.args.asset_rows)
    user, _ = User.objects.get_or_create(username="bench-admin", defaults={"is_staff": True, "is_superuser": True})
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    some = Event.objects.order_by("-id").values_list("id", flat=True)[rows // 2]
    pages = {
        "event list (unfiltered)": "/admin/pimsync/event/",
        "event list (status=failed)": "/admin/pimsync/event/?status__exact=failed",
        "event list (search name prefix)": "/admin/pimsync/event/?q=SKU-123456_",
        "event detail": f"/admin/pimsync/event/{some}/change/",
        "overview": "/admin/",
        **{f"assets {name}": url for name, url in LIST_PAGES.items() if name != "overview"},
    }
    for name, url in pages.items():
        p95, queries = time_page(client, url)
        key = name.replace(" ", "_").replace("(", "").replace(")", "").replace("=", "_")
        report(f"dashboard.{key}.p95_ms", p95, "≤ 300 ms", 300 / p95, "ms")
        report(f"dashboard.{key}.queries", queries, "≤ 15", 15 / max(queries, 1), "queries")


def time_page(client: Client, url: str) -> tuple[float, int]:
    """The page's p95 in ms over 20 loads (after 2 warm-ups), and its number of queries."""
    for _ in range(2):
        assert client.get(url, secure=True).status_code == 200, url
    timings = []
    for _ in range(20):
        started = time.perf_counter()
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url, secure=True)
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200
    return percentile(timings, 0.95) * 1000, len(queries)
