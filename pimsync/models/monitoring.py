"""What `/metrics` and the alerts keep: metric totals, alerts, refused webhook deliveries."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
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
    # Silenced by a person for a while: no message goes out until then (`pimsync.alerts.monitor`).
    silenced_until = models.DateTimeField(null=True, blank=True)
    silenced_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    silenced_why = models.CharField(max_length=255, blank=True)

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
        permissions = [("silence_alert", "Can silence alerts")]

    def __str__(self) -> str:
        return f"{self.condition} alert ({'open' if self.is_open else 'resolved'})"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None

    def is_silenced(self, now: datetime) -> bool:
        return self.silenced_until is not None and self.silenced_until > now

    @property
    def resolved_while_silenced(self) -> bool:
        """Ended before its silence did: its opening message would only be news of the past."""
        return (
            self.resolved_at is not None and self.silenced_until is not None and self.resolved_at <= self.silenced_until
        )

    def silence(self, user, until: datetime, why: str) -> None:
        """Send no message about this alert (nor about a new one of its condition) until `until`."""
        self.silenced_until, self.silenced_by, self.silenced_why = until, user, why[:255]
        Alert.objects.filter(pk=self.pk).update(silenced_until=until, silenced_by=user, silenced_why=why[:255])

    def unsilence(self) -> None:
        """End the silence now: messages not yet sent go out at the next check."""
        now = timezone.now()
        if self.is_silenced(now):
            self.silenced_until = now
            Alert.objects.filter(pk=self.pk).update(silenced_until=now)

    @staticmethod
    def silence_of(condition: str, now: datetime) -> dict:
        """The silence a new alert of `condition` inherits from one still silenced ({} if none)."""
        silenced = Alert.objects.filter(condition=condition, silenced_until__gt=now).order_by("-silenced_until").first()
        if silenced is None:
            return {}
        return {
            "silenced_until": silenced.silenced_until,
            "silenced_by_id": silenced.silenced_by_id,
            "silenced_why": silenced.silenced_why,
        }


class SignatureRefusals(models.Model):
    """Webhook deliveries refused as not authentic (401), counted per minute.

    Each web process counts in memory and adds its count here at most every few seconds
    (`pimsync.inbound.REFUSALS`), so a flood of forged requests costs no write per request.
    """

    minute = models.DateTimeField(primary_key=True)
    count = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.count} refused at {self.minute:%H:%M}"
