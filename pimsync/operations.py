"""`/healthz`, `/healthz/ready` and `/metrics`: is this deployment healthy, and what is it doing.

`/healthz` is the whole system (database, broker, a worker's heartbeat) for people and monitoring;
`/healthz/ready` is this web process and its database only, for load balancers and container
health checks: a web node that can serve must not be dropped because a worker or Redis is down.
"""

from __future__ import annotations

import hmac
from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, Count, DurationField, ExpressionWrapper, F, IntegerField, Sum, When
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_safe

from pimsync.adobe import journal
from pimsync.models import FINAL, OUTCOMES, Attempt, Event, Heartbeat, MetricsWatermark, MetricTotal, Pause
from pimsync.wakeups import broker

LATENCY_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 3600)  # seconds from receipt to finish


def _check_database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True}
    except Exception as exc:  # any driver error means "down"
        return {"ok": False, "error": type(exc).__name__}


def _check_broker() -> dict:
    try:
        queue = broker()
        queue.ping()
        return {"ok": True, "kind": type(queue).__name__, "queued": queue.queue_size()}
    except Exception as exc:  # Redis down, ORM table missing, ...
        return {"ok": False, "error": type(exc).__name__}


def _check_worker(database_ok: bool) -> dict:
    if not database_ok:
        return {"ok": False, "error": "database unavailable"}
    seen = Heartbeat.worker_last_seen()
    if seen is None:
        return {"ok": False, "error": "no worker has reported yet (is `manage.py qcluster` running?)"}
    age = (timezone.now() - seen).total_seconds()
    return {"ok": age < Heartbeat.STALE.total_seconds(), "last_seen_seconds_ago": round(age, 1)}


@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database, the broker and a worker are all alive; else 503, saying which is not."""
    database = _check_database()
    report = {"database": database, "broker": _check_broker(), "worker": _check_worker(database["ok"])}
    healthy = all(part["ok"] for part in report.values())
    return JsonResponse({"status": "ok" if healthy else "unhealthy", **report}, status=200 if healthy else 503)


@require_safe
def ready(request: HttpRequest) -> JsonResponse:
    """200 when this process can serve requests (its database answers); else 503."""
    database = _check_database()
    status = 200 if database["ok"] else 503
    return JsonResponse({"status": "ok" if database["ok"] else "unavailable", "database": database}, status=status)


def _labels(**labels) -> str:
    def esc(value):
        return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in labels.items()) + "}"


# A row is counted once every transaction that could still write an earlier one has committed:
# workers stamp `finished_at` and take attempt ids a moment before they commit (and web and worker
# hosts' clocks differ a little). Counters therefore trail writes by up to twice this long plus a
# scrape interval (attempt ids are counted up to the highest one seen at least this long ago).
SETTLE = timedelta(seconds=15)


def _authorized(request: HttpRequest) -> bool:
    token = settings.PIMSYNC_METRICS_TOKEN
    if not token:
        return True
    given = request.headers.get("Authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


def _counted_lately(mark: MetricsWatermark | None, now) -> bool:
    """Whether a scrape counted less than SETTLE ago (`events_counted_to` is its time less SETTLE)."""
    return mark is not None and mark.events_counted_to is not None and mark.events_counted_to > now - 2 * SETTLE


def _count_new_rows(now) -> None:
    """Add the attempts and finished events since the last scrape to the stored totals.

    Skipped, without a write or a lock, when a scrape counted lately: `/metrics` may be open to
    anyone (no PIMSYNC_METRICS_TOKEN), and a write per GET would take the writer lock the webhook
    needs on SQLite. Counters trail the rows by SETTLE anyway; this adds at most SETTLE more."""
    mark = MetricsWatermark.objects.filter(name="metrics").first()
    if _counted_lately(mark, now):
        return
    if mark is None:
        try:
            with transaction.atomic():
                MetricsWatermark.objects.create(name="metrics")
        except IntegrityError:
            pass  # a concurrent first scrape created it
    with transaction.atomic():
        mark = MetricsWatermark.objects.select_for_update().get(name="metrics")
        if _counted_lately(mark, now):
            return  # a concurrent scrape counted while this one waited for the lock
        add: dict[str, float] = defaultdict(float)
        _count_attempts(mark, now, add)
        _count_finished_events(mark, now, add)
        mark.save()
        _add_to_totals({sample: n for sample, n in add.items() if n})


def _count_attempts(mark: MetricsWatermark, now, add: dict[str, float]) -> None:
    """Count the attempts up to the highest id seen at least SETTLE ago, then look for the next one."""
    if mark.attempts_seen_at is not None and mark.attempts_seen_at <= now - SETTLE:
        window = Attempt.objects.filter(id__gt=mark.attempts_counted_to, id__lte=mark.attempts_seen_max)
        for row in window.values("outcome").annotate(n=Count("id")).order_by():
            add[f"pimsync_attempts_total{_labels(outcome=row['outcome'])}"] += row["n"]
        mark.attempts_counted_to = max(mark.attempts_counted_to, mark.attempts_seen_max)
        mark.attempts_seen_at = None
    if mark.attempts_seen_at is None:
        newest = Attempt.objects.order_by("-id").values_list("id", flat=True).first() or 0
        mark.attempts_seen_max, mark.attempts_seen_at = max(newest, mark.attempts_counted_to), now


def _count_finished_events(mark: MetricsWatermark, now, add: dict[str, float]) -> None:
    """Count the events that finished since the last count and at least SETTLE ago, and their latency."""
    cutoff = now - SETTLE
    if mark.events_counted_to is not None and mark.events_counted_to >= cutoff:
        return
    finished = Event.objects.finished().filter(finished_at__lte=cutoff)
    if mark.events_counted_to is not None:
        finished = finished.filter(finished_at__gt=mark.events_counted_to)
    for row in finished.values("type", "status").annotate(n=Count("id")).order_by():
        add[f"pimsync_events_finished_total{_labels(type=row['type'], status=row['status'])}"] += row["n"]
    _add_latency(add, finished.filter(status__in=OUTCOMES))
    mark.events_counted_to = cutoff


def _add_to_totals(add: dict[str, float]) -> None:
    """Add to the stored totals (in the caller's transaction, under the watermark's lock)."""
    if not add:
        return
    totals = {t.sample: t for t in MetricTotal.objects.filter(sample__in=add)}
    rows = [MetricTotal(sample=s, value=(totals[s].value if s in totals else 0) + n) for s, n in add.items()]
    MetricTotal.objects.bulk_create(rows, update_conflicts=True, unique_fields=["sample"], update_fields=["value"])


def _add_latency(add: dict[str, float], finished) -> None:
    latency = ExpressionWrapper(F("finished_at") - F("received_at"), output_field=DurationField())
    aggregates = {"count": Count("id"), "total": Sum(latency)}
    for bound in LATENCY_BUCKETS:
        aggregates[f"le_{bound}"] = Sum(
            Case(When(latency__lte=timedelta(seconds=bound), then=1), default=0, output_field=IntegerField())
        )
    totals = finished.annotate(latency=latency).aggregate(**aggregates)
    for bound in LATENCY_BUCKETS:
        add[f"pimsync_event_latency_seconds_bucket{_labels(le=bound)}"] += totals[f"le_{bound}"] or 0
    add['pimsync_event_latency_seconds_bucket{le="+Inf"}'] += totals["count"]
    add["pimsync_event_latency_seconds_count"] += totals["count"]
    add["pimsync_event_latency_seconds_sum"] += totals["total"].total_seconds() if totals["total"] else 0.0


def _family(lines: list[str], totals: dict[str, float], name: str, kind: str, help: str, always=()) -> None:
    lines += [f"# HELP {name} {help}", f"# TYPE {name} {kind}"]
    samples = {s: v for s, v in totals.items() if s == name or s.startswith((name + "{", name + "_"))}
    for sample in always:
        samples.setdefault(sample, 0.0)
    for sample in sorted(samples, key=_sample_order):
        value = samples[sample]
        lines.append(f"{sample} {int(value) if value.is_integer() else value!r}")


def _sample_order(sample: str):
    # Histogram buckets in ascending order of `le`, as Prometheus expects; the rest by name.
    if '_bucket{le="' in sample:
        bound = sample.split('le="', 1)[1].rstrip('"}')
        return (0, float("inf") if bound == "+Inf" else float(bound), sample)
    return (1, 0, sample)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text exposition (version 0.0.4); `Authorization: Bearer` when a token is set."""
    if not _authorized(request):
        response = HttpResponse("a bearer token is required (PIMSYNC_METRICS_TOKEN)\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    now = timezone.now()
    _count_new_rows(now)
    totals = dict(MetricTotal.objects.values_list("sample", "value"))
    lines = _waiting_events()
    _family(
        lines,
        totals,
        "pimsync_events_finished_total",
        "counter",
        "Events that reached a final status, by type and status.",
    )
    _family(lines, totals, "pimsync_attempts_total", "counter", "Enrichment attempts by outcome.")
    _family(
        lines,
        totals,
        "pimsync_event_latency_seconds",
        "histogram",
        "Seconds from receipt to a final status.",
        always=LATENCY_SAMPLES,
    )
    lines += _queue_and_worker(now)
    lines += _journal(now)
    lines += _pauses(now)
    return HttpResponse("\n".join(lines) + "\n", content_type="text/plain; version=0.0.4; charset=utf-8")


# The histogram's samples, exposed (as 0) before any event finished.
LATENCY_SAMPLES = (
    *(f"pimsync_event_latency_seconds_bucket{_labels(le=bound)}" for bound in LATENCY_BUCKETS),
    'pimsync_event_latency_seconds_bucket{le="+Inf"}',
    "pimsync_event_latency_seconds_count",
    "pimsync_event_latency_seconds_sum",
)


def _waiting_events() -> list[str]:
    """The gauge of events not yet in a final status."""
    lines = [
        "# HELP pimsync_events Events not yet in a final status, by type and status.",
        "# TYPE pimsync_events gauge",
    ]
    waiting = Event.objects.exclude(status__in=FINAL)
    for row in waiting.values("type", "status").annotate(n=Count("id")).order_by("type", "status"):
        lines.append(f"pimsync_events{_labels(type=row['type'], status=row['status'])} {row['n']}")
    return lines


def _queue_and_worker(now) -> list[str]:
    """The gauges of events waiting for a worker and of the worker's last sign of life."""
    seen = Heartbeat.worker_last_seen()
    return [
        "# HELP pimsync_queue_depth Events waiting for a worker.",
        "# TYPE pimsync_queue_depth gauge",
        f"pimsync_queue_depth {Event.objects.pending().count()}",
        "# HELP pimsync_worker_heartbeat_age_seconds Seconds since a worker last reported.",
        "# TYPE pimsync_worker_heartbeat_age_seconds gauge",
        f"pimsync_worker_heartbeat_age_seconds {(now - seen).total_seconds() if seen else 'NaN'}",
    ]


def _journal(now) -> list[str]:
    """The journal pull's gauges and counter (only when ADOBE_JOURNAL_URL is set)."""
    if not journal.enabled():
        return []
    state = journal.state(now)

    def stamp(moment) -> str:
        return f"{moment.timestamp():.3f}" if moment else "NaN"

    lag = state["lag_seconds"]
    return [
        "# HELP pimsync_journal_events_pulled_total Events read from the I/O Events journal.",
        "# TYPE pimsync_journal_events_pulled_total counter",
        f"pimsync_journal_events_pulled_total {state['pulled_total']}",
        "# HELP pimsync_journal_only_events Events only the journal delivered (the webhook missed them).",
        "# TYPE pimsync_journal_only_events gauge",
        f'pimsync_journal_only_events{{window="24h"}} {state["only_journal_day"]}',
        f'pimsync_journal_only_events{{window="7d"}} {state["only_journal_week"]}',
        "# HELP pimsync_journal_lag_seconds Seconds since a pull last read the journal to its end.",
        "# TYPE pimsync_journal_lag_seconds gauge",
        f"pimsync_journal_lag_seconds {'NaN' if lag is None else f'{lag:.3f}'}",
        "# HELP pimsync_journal_newest_event_timestamp_seconds Time of the newest event read from the journal.",
        "# TYPE pimsync_journal_newest_event_timestamp_seconds gauge",
        f"pimsync_journal_newest_event_timestamp_seconds {stamp(state['newest_event_time'])}",
        "# HELP pimsync_journal_last_pull_timestamp_seconds When a pull last reached the journal.",
        "# TYPE pimsync_journal_last_pull_timestamp_seconds gauge",
        f"pimsync_journal_last_pull_timestamp_seconds {stamp(state['last_pulled_at'])}",
        "# HELP pimsync_journal_expired_timestamp_seconds When the journal last answered 410 Gone (NaN: never).",
        "# TYPE pimsync_journal_expired_timestamp_seconds gauge",
        f"pimsync_journal_expired_timestamp_seconds {stamp(state['expired_at'])}",
    ]


def _pauses(now) -> list[str]:
    """Seconds until each system that answered 429 may be called again (0: not paused)."""
    lines = [
        "# HELP pimsync_paused_seconds Seconds until calls to a system resume after it answered 429 (0: not paused).",
        "# TYPE pimsync_paused_seconds gauge",
    ]
    for name, until in Pause.objects.order_by("name").values_list("name", "until"):
        lines.append(f"pimsync_paused_seconds{_labels(system=name)} {max(0.0, (until - now).total_seconds()):.3f}")
    return lines
