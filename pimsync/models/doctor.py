"""The result of each `manage.py doctor` run, for the overview."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class DoctorRun(models.Model):
    """One run of the doctor: when, how many checks passed, failed or were skipped, and every line
    (status, system, what was asked, what answered, what to do). No secret is ever in a line."""

    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    ok = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    lines = models.JSONField(default=list, blank=True)

    class Meta:
        # The overview shows the newest run: served by the primary key's order.
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"doctor {self.started_at:%Y-%m-%d %H:%M}: {self.ok} OK, {self.failed} failed"

    @classmethod
    def last(cls) -> DoctorRun | None:
        """The newest run, or None before the first."""
        return cls.objects.order_by("-id").first()

    def failing_lines(self) -> list[dict]:
        return [line for line in self.lines if isinstance(line, dict) and line.get("status") == "FAIL"]
