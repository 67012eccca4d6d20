"""Background jobs: retries, re-syncs and mapping checks too large for one request."""

from __future__ import annotations

from django.conf import settings
from django.db import models, transaction
from django.db.models import Count
from django.utils import timezone

from pimsync.models.events import FINAL, PENDING, Event, Status


class Job(models.Model):
    """A bulk operation too large for one request, run by a worker in batches; its row holds the
    selection, the position reached and the progress. Kinds: a retry of many events
    (`pimsync.jobs`), a re-sync of many assets and a mapping check after a save (`pimsync.resync`).

    Status transitions (each one a conditional UPDATE or made under the row's lock):
      queued  → running (a worker took it) | cancelled
      running → finished | failed | cancelled | running (its worker died: handed out again)
    """

    class Kind(models.TextChoices):
        RETRY = "retry", "retry"
        RESYNC = "resync", "re-sync"
        # Find the assets a mapping change affects and mark them stale.
        AFFECTED = "affected", "mapping check"

    class State(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        FINISHED = "finished", "finished"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"

    ACTIVE = (State.QUEUED, State.RUNNING)

    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.RETRY)
    status = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    # Written after every batch (and when a job is handed out again): a running job whose
    # heartbeat is old lost its worker.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    # The selection: the event list's query string (its filters and search), optionally narrowed
    # to one status, or an explicit list of event ids; events stored after the job was created
    # (id above `upto_id`) are not part of it.
    query = models.TextField(blank=True)
    only_status = models.CharField(max_length=16, blank=True)
    ids = models.JSONField(null=True, blank=True)
    upto_id = models.BigIntegerField(default=0)
    description = models.CharField(max_length=255, blank=True)
    # A re-sync's assets: {"asset_ids": [...]}, {"product_keys": [...]}, {"path_prefix": "..."},
    # {"state": "..."}, {"mapping_affected": true} or {"all": true} (`pimsync.resync.select`).
    assets = models.JSONField(null=True, blank=True)
    why = models.CharField(max_length=255, blank=True, help_text="Why the job was started")
    # Assets are handled in asset id order; the last one a re-sync scheduled, and the time its
    # last event was scheduled for (the schedule keeps PIMSYNC_RESYNC_RATE).
    asset_position = models.CharField(max_length=255, blank=True)
    scheduled_until = models.DateTimeField(null=True, blank=True)
    unchanged = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)

    # Events are handled in id order; `position` is the last id handled, so a resumed job goes on
    # after it and never handles an event twice.
    position = models.BigIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The job history (newest first) and the sweeper's look for active jobs.
            models.Index(fields=["-created_at", "-id"], name="job_newest"),
            models.Index(fields=["status", "heartbeat_at"], name="job_status_heartbeat"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} job {self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def percent(self) -> int:
        return 100 if not self.total else min(100, self.done * 100 // self.total)

    def cancel(self) -> bool:
        """Stop a queued or running job before its next batch; False when it had already ended.

        A re-sync's events that still wait for a worker are ignored: cancelled means no more AEM
        writes for it (an enrichment already running finishes); its row then holds the counts as
        they are after the cancel, the ones its page shows."""
        now = timezone.now()
        with transaction.atomic():
            updated = Job.objects.filter(pk=self.pk, status__in=self.ACTIVE).update(
                status=self.State.CANCELLED, finished_at=now
            )
            if updated and self.kind == self.Kind.RESYNC:
                Event.objects.filter(job=self).pending().update(
                    status=Status.IGNORED, reason="its re-sync was cancelled", next_attempt_at=None, finished_at=now
                )
                self.recount()
                Job.objects.filter(pk=self.pk).update(**{name: getattr(self, name) for name in self.COUNTS})
        self.refresh_from_db()
        return bool(updated)

    # The counts a re-sync copies from its events (`recount`).
    COUNTS = ("done", "total", "succeeded", "unchanged", "failed", "skipped")

    def recount(self) -> int:
        """A re-sync's outcomes counted from its events onto this object (not saved); return how many
        events have not ended yet. One GROUP BY on the `event_job_status` index."""
        counts = dict(Event.objects.filter(job=self).values_list("status").annotate(n=Count("id")).order_by())
        self.succeeded = counts.get(Status.SUCCEEDED, 0)
        self.unchanged = counts.get(Status.UNCHANGED, 0)
        self.failed = counts.get(Status.FAILED, 0)
        self.skipped = counts.get(Status.IGNORED, 0)
        self.done = self.succeeded + self.unchanged + self.failed + self.skipped
        self.total = max(self.total, sum(counts.values()))
        return sum(counts.get(status, 0) for status in (*PENDING, Status.PROCESSING))

    def retried_now(self) -> dict[str, int]:
        """Where a retry's events are now: how many in each status (`Event.retried_by`)."""
        counts = dict(self.retried_events.values_list("status").annotate(n=Count("id")).order_by())
        return {status: counts[status] for status in (*PENDING, Status.PROCESSING, *FINAL) if counts.get(status)}
