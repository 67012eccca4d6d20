"""`/healthz` and `/metrics` (SPEC §7): is this deployment healthy, and what is it doing."""

from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.db.models import Case, Count, DurationField, ExpressionWrapper, F, IntegerField, Sum, When
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from pimsync.models import PENDING, Attempt, Event, Heartbeat, Status

HEARTBEAT_STALE = timedelta(minutes=3)
LATENCY_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 3600)  # seconds from receipt to finish


def _check_database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True}
    except Exception as exc:  # any driver error means "down"
        return {"ok": False, "error": type(exc).__name__}


def _check_broker() -> dict:
    from django_q.brokers import get_broker

    try:
        broker = get_broker()
        broker.ping()
        return {"ok": True, "kind": type(broker).__name__, "queued": broker.queue_size()}
    except Exception as exc:  # Redis down, ORM table missing, ...
        return {"ok": False, "error": type(exc).__name__}


def _check_worker(database_ok: bool) -> dict:
    if not database_ok:
        return {"ok": False, "error": "database unavailable"}
    seen = Heartbeat.worker_last_seen()
    if seen is None:
        return {"ok": False, "error": "no worker has reported yet (is `manage.py qcluster` running?)"}
    age = (timezone.now() - seen).total_seconds()
    return {"ok": age < HEARTBEAT_STALE.total_seconds(), "last_seen_seconds_ago": round(age, 1)}


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    database = _check_database()
    report = {"database": database, "broker": _check_broker(), "worker": _check_worker(database["ok"])}
    healthy = all(part["ok"] for part in report.values())
    return JsonResponse({"status": "ok" if healthy else "unhealthy", **report}, status=200 if healthy else 503)


def _labels(**labels) -> str:
    def esc(value):
        return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in labels.items()) + "}"


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text exposition (version 0.0.4)."""
    lines = [
        "# HELP pimsync_events Stored events by type and status.",
        "# TYPE pimsync_events gauge",
    ]
    for row in Event.objects.values("type", "status").annotate(n=Count("id")).order_by("type", "status"):
        lines.append(f"pimsync_events{_labels(type=row['type'], status=row['status'])} {row['n']}")
    lines += ["# HELP pimsync_attempts_total Enrichment attempts by outcome.", "# TYPE pimsync_attempts_total counter"]
    for row in Attempt.objects.values("outcome").annotate(n=Count("id")).order_by("outcome"):
        lines.append(f"pimsync_attempts_total{_labels(outcome=row['outcome'])} {row['n']}")

    finished = Event.objects.filter(
        status__in=[Status.SUCCEEDED, Status.UNCHANGED, Status.FAILED], finished_at__isnull=False
    ).annotate(latency=ExpressionWrapper(F("finished_at") - F("received_at"), output_field=DurationField()))
    aggregates = {"count": Count("id"), "total": Sum("latency")}
    for bound in LATENCY_BUCKETS:
        aggregates[f"le_{bound}"] = Sum(
            Case(When(latency__lte=timedelta(seconds=bound), then=1), default=0, output_field=IntegerField())
        )
    totals = finished.aggregate(**aggregates)
    latency_sum = totals["total"].total_seconds() if totals["total"] else 0.0
    lines += [
        "# HELP pimsync_event_latency_seconds Seconds from receipt to a final status.",
        "# TYPE pimsync_event_latency_seconds histogram",
    ]
    for bound in LATENCY_BUCKETS:
        lines.append(f"pimsync_event_latency_seconds_bucket{_labels(le=bound)} {totals[f'le_{bound}'] or 0}")
    lines.append(f'pimsync_event_latency_seconds_bucket{{le="+Inf"}} {totals["count"]}')
    lines.append(f"pimsync_event_latency_seconds_count {totals['count']}")
    lines.append(f"pimsync_event_latency_seconds_sum {latency_sum}")

    lines += [
        "# HELP pimsync_queue_depth Events waiting for a worker.",
        "# TYPE pimsync_queue_depth gauge",
        f"pimsync_queue_depth {Event.objects.filter(status__in=PENDING).count()}",
    ]
    seen = Heartbeat.worker_last_seen()
    lines += [
        "# HELP pimsync_worker_heartbeat_age_seconds Seconds since a worker last reported.",
        "# TYPE pimsync_worker_heartbeat_age_seconds gauge",
        f"pimsync_worker_heartbeat_age_seconds {(timezone.now() - seen).total_seconds() if seen else 'NaN'}",
    ]
    return HttpResponse("\n".join(lines) + "\n", content_type="text/plain; version=0.0.4; charset=utf-8")
