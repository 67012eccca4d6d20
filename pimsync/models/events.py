"""Events as Adobe delivered them (or a re-sync created them) and every enrichment attempt.

Our rows are the source of truth for work and retries; django-q2 only carries wake-up calls.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import models
from django.utils import timezone

from pimsync.outbound.redaction import without_credentials


class Status(models.TextChoices):
    RECEIVED = "received", "received"
    PROCESSING = "processing", "processing"
    SUCCEEDED = "succeeded", "succeeded"
    UNCHANGED = "unchanged", "unchanged"
    RETRYING = "retrying", "retrying"
    FAILED = "failed", "failed"
    IGNORED = "ignored", "ignored"


# Statuses in which an event still waits for the worker.
PENDING = (Status.RECEIVED, Status.RETRYING)
# Final statuses: the worker is done with the event (until someone retries it).
FINAL = (Status.SUCCEEDED, Status.UNCHANGED, Status.FAILED, Status.IGNORED)
# Final statuses the enrichment ran for (an ignored event never waited for it): the outcomes
# whose time from receipt to finish is the enrichment latency.
OUTCOMES = (Status.SUCCEEDED, Status.UNCHANGED, Status.FAILED)
# Statuses support may send back to the worker (a Retry keeps the history).
RETRYABLE = (Status.FAILED, Status.RETRYING, Status.SUCCEEDED, Status.UNCHANGED)


class EventType:
    PROCESSING_COMPLETED = "aem.assets.asset.processing_completed"
    METADATA_UPDATED = "aem.assets.asset.metadata_updated"
    DELETED = "aem.assets.asset.deleted"
    # Not from AEM: pimsync's own request to enrich an asset again (a re-sync, `pimsync.resync`).
    RESYNC = "pimsync.asset.resync"
    HANDLED = (PROCESSING_COMPLETED, METADATA_UPDATED, DELETED, RESYNC)


@dataclass(frozen=True)
class AssetRef:
    """An AEM asset as an event names it: what the mapping rules match and key on."""

    asset_id: str
    path: str = ""
    name: str = ""
    mime_type: str = ""


def aem_asset_url(path: str) -> str:
    """Link to an asset's details page in the AEM author UI ("" without an author URL or a path)."""
    if not settings.AEM_AUTHOR_URL or not path:
        return ""
    # A user:password@ in the configured URL is for pimsync's calls, never for a page.
    return f"{without_credentials(settings.AEM_AUTHOR_URL)}/ui#/aem/assetdetails.html{path}"


class Arrival(models.TextChoices):
    """How an event reached pimsync first (`Event.arrived_by`)."""

    WEBHOOK = "webhook", "webhook"
    JOURNAL = "journal", "journal"
    # Created by a re-sync job, not delivered by Adobe.
    RESYNC = "resync", "resync"


class EventQuerySet(models.QuerySet):
    def pending(self) -> EventQuerySet:
        """Events that still wait for the worker, due or not."""
        return self.filter(status__in=PENDING)

    def due(self, now=None) -> EventQuerySet:
        """Pending events whose time has come: what a worker should run now."""
        return self.pending().filter(next_attempt_at__lte=now or timezone.now())

    def finished(self) -> EventQuerySet:
        """Events in a final status."""
        return self.filter(status__in=FINAL)

    def retry(self, job=None) -> int:
        """Send the retryable ones back to the worker with a fresh attempt budget, keeping every
        earlier attempt; return how many. One UPDATE, however many events (a retry job's batch).
        With the retry's `job`, the events remember it: its page shows where they are now."""
        by_job = {"retried_by": job} if job is not None else {}
        return self.filter(status__in=RETRYABLE).update(
            status=Status.RECEIVED,
            reason="Retry requested",
            error_class="",
            next_attempt_at=timezone.now(),
            attempts_base=models.F("attempts"),
            finished_at=None,
            **by_job,
        )

    def failed_by_error_class(self) -> dict[str, int]:
        """How many of these events failed, by error class (a few classes: one GROUP BY)."""
        counts = self.filter(status=Status.FAILED).values_list("error_class").annotate(n=models.Count("id"))
        return dict(counts.order_by())


class Event(models.Model):
    """One Adobe I/O event, stored before it is acknowledged.

    Status transitions (each one a conditional UPDATE, see `pimsync.pipeline`):
      received   → processing (a worker claimed it) | ignored (asset deleted, echo)
      processing → succeeded | unchanged | retrying | failed | ignored
                   | received (its worker died: the sweeper hands it out again)
      retrying   → processing | ignored
      failed, succeeded, unchanged, retrying → received (manual Retry; attempts are kept)
    """

    event_id = models.CharField(max_length=255, unique=True)
    cloudevent_id = models.CharField(max_length=255, blank=True)
    type = models.CharField(max_length=255)
    source = models.CharField(max_length=255)
    time = models.DateTimeField(null=True, blank=True, help_text="When AEM emitted the event")
    received_at = models.DateTimeField(default=timezone.now)

    asset_id = models.CharField(max_length=255, blank=True)
    asset_path = models.CharField(max_length=1024, blank=True)
    asset_name = models.CharField(max_length=255, blank=True)
    mime_type = models.CharField(max_length=255, blank=True)
    product_key = models.CharField(max_length=255, blank=True)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    reason = models.TextField(blank=True, help_text="Why the event is in its status")
    error_class = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # Attempts counted against PIMSYNC_MAX_ATTEMPTS start here, so a manual retry gets a full budget.
    attempts_base = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    payload = models.JSONField()
    delivery_id = models.CharField(max_length=255, blank=True)
    delivery_retry_count = models.PositiveIntegerField(null=True, blank=True)
    arrived_by = models.CharField(
        max_length=16,
        choices=Arrival.choices,
        default=Arrival.WEBHOOK,
        help_text="How the event reached pimsync first: pushed to the webhook, pulled from the journal, "
        "or created by a re-sync",
    )
    # Workers take due events with the lowest priority first: live events (0) are never stuck
    # behind the thousands a re-sync schedules (1).
    priority = models.PositiveSmallIntegerField(default=0)
    # The re-sync job that created the event (None for events from Adobe).
    # Indexed below with the status (an index of its own would only repeat that one's first column).
    job = models.ForeignKey(
        "Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="events", db_index=False
    )
    # The retry job that last sent the event back to the worker (its page and the list filter
    # `retry_job` show where the retried events are now); indexed below with the status.
    retried_by = models.ForeignKey(
        "Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="retried_events", db_index=False
    )

    objects = EventQuerySet.as_manager()

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            # The dashboard's default list: newest first. Status rides along so that the overview's
            # counts by status for the last 24 h / 7 d are index-only scans (bench: dashboard).
            models.Index(fields=["-received_at", "-id", "status"], name="event_newest"),
            # Status filter on the list, status counts on the overview.
            models.Index(fields=["status", "-received_at"], name="event_status_newest"),
            # The sweeper: pending events that are due, and stuck `processing` rows.
            models.Index(fields=["status", "next_attempt_at"], name="event_due"),
            # A worker looking for work: due events, live ones before a re-sync's.
            models.Index(fields=["status", "priority", "next_attempt_at"], name="event_due_priority"),
            # A re-sync job's progress: its events counted by status.
            models.Index(fields=["job", "status"], name="event_job_status"),
            # Where a retry's events are now: counted by status on its job page, listed by `retry_job`.
            models.Index(fields=["retried_by", "status"], name="event_retried_by_status"),
            # A worker claiming every pending event of one asset.
            models.Index(fields=["asset_id", "status"], name="event_asset_status"),
            # Dashboard search: exact or prefix (LIKE 'x%') lookups; on PostgreSQL a prefix LIKE
            # can use a btree only with the pattern operator class (ignored on SQLite).
            models.Index(fields=["asset_name"], name="event_asset_name", opclasses=["varchar_pattern_ops"]),
            models.Index(fields=["asset_path"], name="event_asset_path", opclasses=["varchar_pattern_ops"]),
            models.Index(fields=["product_key"], name="event_product_key", opclasses=["varchar_pattern_ops"]),
            # Overview: outcomes and latency over time.
            models.Index(fields=["finished_at"], name="event_finished"),
            # Overview and /metrics: events only the journal delivered, recent first.
            models.Index(fields=["arrived_by", "-received_at"], name="event_arrival"),
        ]
        permissions = [("retry_event", "Can retry events")]

    def __str__(self) -> str:
        return f"{self.short_type} {self.asset_name or self.asset_id or self.event_id}"

    @property
    def short_type(self) -> str:
        """The last part of the event type, e.g. `processing_completed`."""
        return self.type.rsplit(".", 1)[-1]

    @property
    def asset(self) -> AssetRef:
        """The asset this event is about, as the mapping rules see it."""
        return AssetRef(self.asset_id, self.asset_path, self.asset_name, self.mime_type)

    def aem_asset_url(self) -> str:
        """Link to the asset in the AEM author UI."""
        return aem_asset_url(self.asset_path)

    @property
    def attempts_used(self) -> int:
        """Attempts counted against PIMSYNC_MAX_ATTEMPTS: since receipt or the last manual retry."""
        return self.attempts - self.attempts_base

    def retry(self) -> bool:
        """Send this event back to the worker (see `EventQuerySet.retry`); False when its status
        cannot be retried. `pipeline.retry` calls this and wakes a worker."""
        updated = Event.objects.filter(pk=self.pk).retry()
        if updated:
            self.refresh_from_db()
        return bool(updated)


class Attempt(models.Model):
    """One run of the enrichment for one event: what was read, what was written, what AEM said."""

    class Outcome(models.TextChoices):
        SUCCEEDED = "succeeded"
        UNCHANGED = "unchanged"
        RETRYING = "retrying"
        FAILED = "failed"
        IGNORED = "ignored"

    # Indexed below with the number (the detail page's timeline, the cascade from a deleted event).
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="attempt_set", db_index=False)
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    error_class = models.CharField(max_length=64, blank=True)
    message = models.TextField(blank=True)
    product_key = models.CharField(max_length=255, blank=True)
    pim_data = models.JSONField(null=True, blank=True)
    # [{"path": "dc:title", "old": ..., "new": ...}] for the properties that changed.
    changes = models.JSONField(default=list, blank=True)
    aem_status = models.PositiveSmallIntegerField(null=True, blank=True)
    aem_body = models.TextField(blank=True, help_text="Excerpt of AEM's answer")

    class Meta:
        ordering = ["event", "number"]
        # One index serves the detail page's timeline and the attempt counts.
        indexes = [
            models.Index(fields=["event", "number"], name="attempt_event_number"),
            # The "PIM or AEM unreachable" alert reads the attempts of the last hour.
            models.Index(fields=["started_at"], name="attempt_started"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of event {self.event_id}: {self.outcome}"
