"""Figures for the overview page: what happened, how fast, and whether anything needs a person.

Every query here reads a bounded slice through an index, so the page stays fast with millions of
stored events: counts are bounded by time (the last 24 h / 7 d, or the last hour of failures,
served by the `finished_at` and `status, received_at` indexes), the latency sample and the
newest failures by a LIMIT, and the queue depth counts only events still waiting (the
`status, received_at` index; a healthy deployment has few).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core import checks
from django.db import connection
from django.db.models import BigIntegerField, Case, Count, Q, Value, When
from django.db.models.functions import TruncHour
from django.utils import timezone

from pimsync import wakeups
from pimsync.adobe import journal
from pimsync.alerts.monitor import TITLES
from pimsync.checks import configuration
from pimsync.models import OUTCOMES, PENDING, Alert, Asset, DoctorRun, Event, Heartbeat, Status, SyncState
from pimsync.outbound import throttle
from pimsync.outbound.redaction import without_credentials
from pimsync.pim import akeneo
from pimsync.retention import HEARTBEAT, retention_days, retention_failed_days
from pimsync.stats import percentile

# Bound the latency sample: percentiles of the newest 5,000 finished events are plenty.
LATENCY_SAMPLE = 5_000


@dataclass
class Bucket:
    start: object
    done: int = 0
    failed: int = 0
    p50: float | None = None
    p95: float | None = None


def status_counts(now) -> tuple[dict[str, int], dict[str, int], int]:
    """How many events received in the last 24 hours and in the last 7 days are in each status,
    and how many wait for a worker (of any age). One round trip, two index scans: the week's part
    of `event_newest` (it holds the status too) and the waiting part of `event_due`. (One scan
    with an OR of both conditions reads the whole index: 2.8 s at 10,000,000 events.)"""
    day, week = dict.fromkeys(Status.values, 0), dict.fromkeys(Status.values, 0)
    week_ago, none = now - timedelta(days=7), Value(0, output_field=BigIntegerField())
    recent = (
        Event.objects.filter(received_at__gte=week_ago)
        .values("status")
        .annotate(day=Count("id", filter=Q(received_at__gte=now - timedelta(days=1))), week=Count("id"), waiting=none)
        .order_by()
    )
    pending = (
        Event.objects.filter(status__in=PENDING)
        .values("status")
        .annotate(day=none, week=none, waiting=Count("id"))
        .order_by()
    )
    waiting = 0
    for row in recent.union(pending, all=True):
        day[row["status"]] = day.get(row["status"], 0) + row["day"]
        week[row["status"]] = week.get(row["status"], 0) + row["week"]
        waiting += row["waiting"]
    return day, week, waiting


def success_rate(counts: dict[str, int]) -> float | None:
    """Succeeded or unchanged, in percent of the finished events; None when none finished."""
    done = counts[Status.SUCCEEDED] + counts[Status.UNCHANGED]
    finished = done + counts[Status.FAILED]
    return None if not finished else 100.0 * done / finished


@dataclass
class Finished:
    """The last 24 hours of finished events: per hour, and the systems unreachable in the last hour."""

    hours: list[Bucket]
    unreachable: list[str]


def finished(now, hours: int = 24) -> Finished:
    """Throughput per hour (counted in the database) and latency percentiles per hour (from the
    newest LATENCY_SAMPLE finished events, so the page stays fast at any volume). The same GROUP BY
    names the `…_unreachable` error classes of the last hour, among the enrichment's outcomes
    (succeeded, unchanged, failed): an event still retrying has no `finished_at`, and an ignored
    one (a cancelled re-sync, say) says nothing about whether a system can be reached now."""
    # Hours of the dashboard's zone: TruncHour below truncates in it too (a zone can be 30 min off UTC).
    start = timezone.localtime(now - timedelta(hours=hours - 1)).replace(minute=0, second=0, microsecond=0)
    buckets = [Bucket(start + timedelta(hours=h)) for h in range(hours)]
    finished = Event.objects.filter(finished_at__gte=start, status__in=OUTCOMES)
    unreachable_lately = Case(
        When(Q(finished_at__gte=now - timedelta(hours=1), error_class__endswith="_unreachable"), then="error_class"),
        default=Value(""),
    )
    counts = finished.annotate(hour=TruncHour("finished_at"), unreachable=unreachable_lately)
    unreachable = set()
    for row in counts.values("hour", "status", "unreachable").annotate(n=Count("id")).order_by():
        index = int((row["hour"] - start).total_seconds() // 3600)
        if 0 <= index < hours:
            if row["status"] == Status.FAILED:
                buckets[index].failed += row["n"]
            else:
                buckets[index].done += row["n"]
        if row["unreachable"]:
            unreachable.add(row["unreachable"])
    samples: list[list[float]] = [[] for _ in buckets]
    # Re-syncs (priority 1) are scheduled at PIMSYNC_RESYNC_RATE and wait behind Adobe's events by
    # design: counted here they would read as a slow pipeline during every large re-sync.
    uploads = finished.exclude(status=Status.FAILED).filter(priority=0)
    rows = uploads.order_by("-finished_at").values_list("finished_at", "received_at")
    for finished_at, received in rows[:LATENCY_SAMPLE]:
        index = int((finished_at - start).total_seconds() // 3600)
        if 0 <= index < hours:
            samples[index].append((finished_at - received).total_seconds())
    for bucket, values in zip(buckets, samples, strict=True):
        bucket.p50, bucket.p95 = percentile(values, 0.5), percentile(values, 0.95)
    return Finished(buckets, sorted(unreachable))


def queue_depth(waiting: int) -> dict:
    """Events waiting for a worker (`waiting`, counted with the statuses) and wake-up calls
    waiting in the broker."""
    try:
        # The process's one broker: `get_broker()` would open a new Redis pool on every page view.
        broker = wakeups.broker().queue_size()
    except Exception:  # the broker being down is itself shown on the page
        broker = None
    return {"events": waiting, "broker": broker}


def worker_state(now, beats) -> dict:
    """When a worker last reported, and whether that is recent enough to call it alive."""
    seen = Heartbeat.worker_last_seen(beats)
    return {"at": seen, "alive": bool(seen and now - seen < Heartbeat.STALE)}


def warnings(unreachable: list[str]) -> list[str]:
    """Configuration problems (the system checks) and the outbound systems whose calls failed as
    unreachable in the last hour (`unreachable`: their error classes, from `finished`)."""
    messages = [f"{m.msg}. {m.hint or ''}".strip() for m in configuration(None) if m.level >= checks.WARNING]
    names = {"aem": "AEM", "pim": "the PIM", "ims": "Adobe IMS"}
    for error_class in unreachable:
        system = names.get(error_class.split("_")[0], error_class)
        messages.append(f"{system} was unreachable in the last hour ({error_class}).")
    problem = pim_connection_problem()
    if problem:
        messages.append(problem)
    if settings.PIMSYNC_SANDBOX:
        messages.append("Sandbox mode: events are written to pimsync's built-in AEM stand-in, not to a real AEM.")
    return messages


def pim_connection_problem() -> str | None:
    """Why pimsync cannot reach Akeneo, from a connection test each web process makes at most
    every few minutes (pimsync.pim.akeneo.connection_problem), so a page view does not call it."""
    if settings.PIM_CONNECTOR != "akeneo":
        return None
    if akeneo.missing_settings():
        return None  # the system checks above name the missing variables
    problem = akeneo.connection_problem()
    return f"Cannot use Akeneo at {without_credentials(settings.PIM_BASE_URL)}: {problem}" if problem else None


def retention(beats) -> dict:
    """How long events are kept, and what the last purge did (its heartbeat row, among `beats`)."""
    last = next((beat for beat in beats if beat.name == HEARTBEAT), None)
    return {"days": retention_days(), "failed_days": retention_failed_days(), "last": last}


def open_alerts() -> list[dict]:
    """The alerts open now (at most one per condition), oldest first, with their titles."""
    alerts = Alert.objects.filter(resolved_at__isnull=True).order_by("opened_at")
    return [{"alert": a, "title": TITLES.get(a.condition, a.condition)} for a in alerts]


# Up to this many assets (PostgreSQL's estimate of the table) every state is counted row by row.
# Above it, counting the most common state (in step, usually) would read most of the table on every
# overview (565 ms at 3,000,000 assets, BENCHMARKS.md), so that one is the estimate less the others.
EXACT_ASSET_COUNTS_UP_TO = 500_000


def asset_states() -> tuple[dict[str, int], str | None]:
    """How many known assets are in each sync state, and the state whose figure is an estimate
    (None: all exact). One GROUP BY over the `asset_state_path` index: of the whole index, or, for
    a large table, of the other states' parts only."""
    counts = dict.fromkeys(SyncState.values, 0)
    estimate = table_statistics(Asset, "state")
    if estimate is None or estimate[0] <= EXACT_ASSET_COUNTS_UP_TO or estimate[1] not in counts:
        for state, n in Asset.objects.values_list("state").annotate(n=Count("asset_id")).order_by():
            counts[state] = n
        return counts, None
    total, common = estimate
    others = Asset.objects.filter(state__in=[state for state in counts if state != common])
    for state, n in others.values_list("state").annotate(n=Count("asset_id")).order_by():
        counts[state] = n
    counts[common] = max(0, total - sum(counts.values()))
    return counts, common


# PostgreSQL changes these statistics only when ANALYZE runs (autovacuum: at most once a minute per
# table), so each process reads them at most once a minute: one query less on most list pages.
STATISTICS_SECONDS = 60
_statistics: dict[tuple, tuple[float, tuple[int, str | None] | None]] = {}


def table_statistics(model, column: str | None = None) -> tuple[int, str | None] | None:
    """PostgreSQL's estimate of the rows of `model`'s table and, with `column`, that column's most
    common value, from the statistics ANALYZE (and autovacuum) keep; None on another database or
    before any ANALYZE. Pages that would otherwise count every row of a large table use it."""
    if connection.vendor != "postgresql":
        return None
    key = (connection.alias, model._meta.db_table, column)
    kept = _statistics.get(key)
    if kept and time.monotonic() - kept[0] < STATISTICS_SECONDS:
        return kept[1]
    value = _read_table_statistics(model, column)
    _statistics[key] = (time.monotonic(), value)
    return value


def forget_table_statistics() -> None:
    """Read the statistics again at the next use (tests; a process's cache is otherwise its own)."""
    _statistics.clear()


def _read_table_statistics(model, column: str | None) -> tuple[int, str | None] | None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.reltuples, (s.most_common_vals::text::text[])[1] FROM pg_class c "
            "LEFT JOIN pg_stats s ON s.schemaname = current_schema() AND s.tablename = c.relname "
            "AND s.attname = %s WHERE c.oid = %s::regclass",
            [column or "", model._meta.db_table],
        )
        row = cursor.fetchone()
    if row is None or row[0] is None or row[0] < 0:
        return None
    return int(row[0]), row[1]


def build(now=None) -> dict:
    """Everything the overview page shows."""
    now = now or timezone.now()
    day, week, waiting = status_counts(now)
    done = finished(now)
    # The worker's and the purge's heartbeats in one read.
    beats = list(Heartbeat.objects.filter(name__in=[Heartbeat.SWEEPER, Heartbeat.DRAIN, HEARTBEAT]))
    failures = Event.objects.filter(status=Status.FAILED).order_by("-finished_at", "-id")[:10]
    return {
        "day": day,
        "week": week,
        "rate_day": success_rate(day),
        "rate_week": success_rate(week),
        "hours": done.hours,
        "queue": queue_depth(waiting),
        "worker": worker_state(now, beats),
        "warnings": warnings(done.unreachable),
        "failures": list(failures.only("id", "asset_name", "asset_path", "reason", "finished_at", "product_key")),
        "statuses": Status.values,
        "retention": retention(beats),
        "alerts": open_alerts(),
        "journal": journal.state(now),
        # A system that answered 429: no worker calls it before the pause ends (one row per system).
        "pauses": throttle.active(now),
        # The last `manage.py doctor` run: when, how many checks passed or failed, the failing lines.
        "doctor": DoctorRun.last(),
    }
