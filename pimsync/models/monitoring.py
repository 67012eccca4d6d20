"""What `/metrics` and the alerts keep: metric totals, alerts, refused webhook deliveries."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class MetricTotal(models.Model):
    """One monotonic sample behind `/metrics` (a counter, or a histogram bucket, sum or count).

    Totals are kept here rather than counted from events and attempts on every scrape, so that a
    scrape costs the same at any history size and a retention purge never makes a counter go down.
    """

    sample = models.CharField(max_length=255, primary_key=True, help_text="Name with labels, as exposed")
    value = models.FloatField(default=0)

    def __str__(self) -> str:
        return f"{self.sample} {self.value:g}"


class MetricsWatermark(models.Model):
    """How far `/metrics` has counted: rows up to these marks are in the totals, later ones not yet.

    A single row, locked while a scrape adds to the totals so two scrapes never count a row twice.
    """

    name = models.CharField(max_length=32, primary_key=True, default="metrics")
    # Attempt ids up to this one are counted.
    attempts_counted_to = models.BigIntegerField(default=0)
    # The highest attempt id when `attempts_seen_at` was read: counted once every transaction that
    # could still insert a lower id has had time to commit.
    attempts_seen_max = models.BigIntegerField(default=0)
    attempts_seen_at = models.DateTimeField(null=True, blank=True)
    # Events finished at or before this moment are counted (None: nothing counted yet).
    events_counted_to = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"metrics counted to attempt {self.attempts_counted_to}, events finished by {self.events_counted_to}"


class Alert(models.Model):
    """One time a condition needed a person (`pimsync.alerts.monitor`): opened when the condition started,
    resolved when it ended. At most one alert per condition is open at a time.

    `notified_open` / `notified_resolved` list the channels that delivered the opening and the
    resolving message; a channel missing from them is tried again on the next check.
    """

    condition = models.CharField(max_length=64)
    summary = models.TextField(help_text="What was wrong when the alert was opened or last changed")
    link = models.CharField(max_length=500, blank=True, help_text="The dashboard page that shows it (a path)")
    opened_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    last_checked_at = models.DateTimeField(default=timezone.now)
    notified_open = models.JSONField(default=list, blank=True)
    notified_resolved = models.JSONField(default=list, blank=True)
    notify_failures = models.PositiveIntegerField(default=0, help_text="Messages a channel failed to deliver")

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            # Two checkers running at once (two worker nodes) cannot open the same alert twice.
            models.UniqueConstraint(
                fields=["condition"], condition=models.Q(resolved_at__isnull=True), name="alert_one_open"
            )
        ]
        indexes = [
            # The history page (newest first) and the unsent-message retry (recently resolved).
            models.Index(fields=["-opened_at", "-id"], name="alert_newest"),
            models.Index(fields=["resolved_at"], name="alert_resolved"),
        ]

    def __str__(self) -> str:
        return f"{self.condition} alert ({'open' if self.is_open else 'resolved'})"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


class SignatureRefusals(models.Model):
    """Webhook deliveries refused as not authentic (401), counted per minute.

    Each web process counts in memory and adds its count here at most every few seconds
    (`pimsync.inbound.REFUSALS`), so a flood of forged requests costs no write per request.
    """

    minute = models.DateTimeField(primary_key=True)
    count = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.count} refused at {self.minute:%H:%M}"
