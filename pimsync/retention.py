"""Retention: what pimsync deletes, and how, so that no table grows without bound.

Finished events (with their attempts, which hold PIM data and AEM answers) are kept
`PIMSYNC_RETENTION_DAYS` after they finished, failed ones `PIMSYNC_RETENTION_FAILED_DAYS`; events
still waiting for a worker are never touched. Expired sessions, the admin log, django-q2's task
history and the PIM webhook's expired signatures are bounded alongside.

The purge runs beside live ingest, so it deletes in short transactions of `BATCH` events: each
one locks only the rows it deletes (skipping any a Retry holds), and walks the `event_finished`
index from where the previous batch stopped instead of rescanning rows it keeps (failed events
younger than their own retention sit among the expired successes). Attempts are deleted by
event id first (the `attempt_event_number` index), then the events, in one transaction.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import import_module

from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.sessions.models import Session
from django.db import models, transaction
from django.utils import timezone
from django_q.models import Task

from pimsync import postgresql
from pimsync.models import Attempt, Event, Heartbeat, Job, SeenSignature, Status

log = logging.getLogger(__name__)

# Adobe redelivers for 24 hours (https://developer.adobe.com/events/docs/common/retry-doc) and its
# journal holds 7 days (https://developer.adobe.com/events/docs/guides/api/journaling_api): dedupe
# needs every event id of that week, hence 8 days and never fewer.
MINIMUM_DAYS = 8
BATCH = 1_000
# Seconds of rest per second of deleting. Deleting flat out, the WAL it writes brought
# checkpoints every ~30 s and webhook p99 to 70 ms at 400 deliveries/s; resting twice as long as
# it works, 12 ms, at 8,300 events/s (`make bench` purge scenario, 1,000,000 events, BENCHMARKS.md).
REST = 2.0
# Kept by PIMSYNC_RETENTION_DAYS; failed events by PIMSYNC_RETENTION_FAILED_DAYS; the rest
# (received, processing, retrying) are still waiting for a worker and never purged.
ENDED_WELL = (Status.SUCCEEDED, Status.UNCHANGED, Status.IGNORED)
HEARTBEAT = "purge"


def retention_days() -> int:
    """Days succeeded, unchanged and ignored events are kept (never fewer than MINIMUM_DAYS)."""
    return max(MINIMUM_DAYS, settings.PIMSYNC_RETENTION_DAYS)


def retention_failed_days() -> int:
    """Days failed events are kept (never fewer than MINIMUM_DAYS)."""
    return max(MINIMUM_DAYS, settings.PIMSYNC_RETENTION_FAILED_DAYS)


@dataclass
class Purge:
    """What one purge deleted (or, dry, would delete), per table."""

    dry_run: bool = False
    deleted: dict[str, int] = field(default_factory=dict)
    complete: bool = True
    seconds: float = 0.0

    def summary(self) -> str:
        counts = ", ".join(f"{table} {n:,}" for table, n in self.deleted.items())
        left = "" if self.complete else "; time budget used up, the rest is left for the next run"
        return f"{'would delete' if self.dry_run else 'deleted'} {counts}{left}"


def expired_events(now) -> list[tuple[models.QuerySet, str]]:
    """The expired events, as index-friendly querysets, each with the field it is walked by."""
    cutoff, failed_cutoff = now - timedelta(days=retention_days()), now - timedelta(days=retention_failed_days())

    def expired(age: str) -> models.QuerySet:
        # Both retentions in one walk of the index: a second walk for failed events would touch
        # every page again, and after a checkpoint each touched page costs a full page in the WAL.
        return Event.objects.filter(
            models.Q(status__in=ENDED_WELL, **{f"{age}__lt": cutoff})
            | models.Q(status=Status.FAILED, **{f"{age}__lt": failed_cutoff}),
            **{f"{age}__lt": max(cutoff, failed_cutoff)},  # the index condition
        )

    return [
        (expired("finished_at"), "finished_at"),
        # Age falls back to receipt for a finished event without finished_at (none is written so
        # today; rows from before finished_at was always set may have one).
        (expired("received_at").filter(finished_at__isnull=True), "received_at"),
    ]


def other_history(now) -> list[tuple[str, models.QuerySet]]:
    """Sessions, admin log and task history past their time, as (table, queryset).

    The saved versions of the mapping (`MappingVersion`) are not among them: they are the mapping's
    history, which a restore reads however old, and one row per save stays small."""
    failed_cutoff = now - timedelta(days=retention_failed_days())
    rows = [
        ("admin log entries", LogEntry.objects.filter(action_time__lt=failed_cutoff)),
        ("background jobs", Job.objects.filter(finished_at__lt=failed_cutoff)),
        # Past its expiry a signature is refused as too old: remembering it protects nothing.
        ("PIM webhook signatures", SeenSignature.objects.filter(expires_at__lt=now)),
        (
            "task results",
            Task.objects.filter(
                models.Q(success=True, stopped__lt=now - timedelta(days=retention_days()))
                | models.Q(success=False, stopped__lt=failed_cutoff)
            ),
        ),
    ]
    if _database_sessions():
        rows.insert(0, ("sessions", Session.objects.filter(expire_date__lt=now)))
    return rows


def _database_sessions() -> bool:
    return settings.SESSION_ENGINE in {
        "django.contrib.sessions.backends.db",
        "django.contrib.sessions.backends.cached_db",
    }


def purge(dry_run: bool = False, budget_seconds: float | None = None, batch: int = BATCH) -> Purge:
    """Delete everything past its retention in short transactions; stop once the budget is used."""
    started = time.monotonic()
    deadline = None if budget_seconds is None else started + budget_seconds
    now = timezone.now()
    result = Purge(dry_run=dry_run)
    history = other_history(now)
    result.deleted = dict.fromkeys(["events", "attempts", *(table for table, _ in history)], 0)
    if dry_run:
        for events, _ in expired_events(now):
            result.deleted["events"] += events.count()
            result.deleted["attempts"] += Attempt.objects.filter(event__in=events.values("pk")).count()
        for table, rows in history:
            result.deleted[table] = rows.count()
        result.seconds = time.monotonic() - started
        return result

    for events, walk in expired_events(now):
        if not _purge_events(events, walk, batch, deadline, result):
            result.complete = False
            break
    if result.complete:
        for table, rows in history:
            if not _purge_rows(rows, batch, deadline, result, table):
                result.complete = False
                break
    if not _database_sessions():
        # Another session engine keeps its own store: expire it the way `clearsessions` does.
        import_module(settings.SESSION_ENGINE).SessionStore.clear_expired()
    result.seconds = time.monotonic() - started
    Heartbeat.beat(HEARTBEAT, result.summary())
    log.info(
        "purge %s",
        "done" if result.complete else "stopped at its time budget; the next run continues",
        extra={"deleted": result.deleted, "seconds": round(result.seconds, 1)},
    )
    return result


def _rest(began: float) -> None:
    """Pause in proportion to the batch just done, leaving the database (its WAL flushes above
    all, which every webhook commit waits for) to ingest; a slower database gets longer pauses."""
    time.sleep((time.monotonic() - began) * REST)


def _out_of_time(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _purge_events(events: models.QuerySet, walk: str, batch: int, deadline, result: Purge) -> bool:
    """Delete `events` oldest first, `batch` per transaction; False when the budget ran out."""
    after = None
    while True:
        if _out_of_time(deadline):
            return False
        began = time.monotonic()
        with transaction.atomic():
            # The purge's statements need no plan per run, and planning each run made its
            # foreign-key checks so slow that it deleted 37% fewer events a second (pimsync/postgresql/base.py).
            postgresql.reuse_plans(in_transaction=True)
            page = events if after is None else events.filter(**{f"{walk}__gte": after})
            # SKIP LOCKED: a row that a Retry is changing right now is left for the next run,
            # and neither side waits for the other.
            rows = list(page.select_for_update(skip_locked=True).order_by(walk, "pk").values_list("pk", walk)[:batch])
            if not rows:
                return True
            ids = [pk for pk, _ in rows]
            # Attempts first, by their event index; then the events. Deleting the events through
            # Django's cascade would first load them (payloads included) to collect the attempts.
            result.deleted["attempts"] += _raw_delete(Attempt.objects.filter(event_id__in=ids))
            result.deleted["events"] += _raw_delete(Event.objects.filter(pk__in=ids))
        if len(rows) < batch:
            return True
        after = rows[-1][1]
        _rest(began)


def _purge_rows(rows: models.QuerySet, batch: int, deadline, result: Purge, table: str) -> bool:
    """Delete `rows` (a table nothing points to) `batch` at a time; False when the budget ran out."""
    model = rows.model
    while True:
        if _out_of_time(deadline):
            return False
        with transaction.atomic():
            ids = list(rows.order_by().values_list("pk", flat=True)[:batch])
            if not ids:
                return True
            result.deleted[table] += _raw_delete(model.objects.filter(pk__in=ids))
        if len(ids) < batch:
            return True


def _raw_delete(rows: models.QuerySet) -> int:
    """One DELETE … WHERE statement: no rows loaded first, no signals (none are connected here)."""
    # The statement Django's own cascade runs for a model nothing points to ("fast delete").
    return rows._raw_delete(rows.db)
